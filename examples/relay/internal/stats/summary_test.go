package stats_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/examples/relay/internal/stats"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestSummarizeFixture(t *testing.T) {
	dir := writeJournal(t, fixture())
	s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)

	want := &stats.Summary{
		From: periodFrom, To: periodTo,
		Received: 8, Quarantined: 3, Discarded: 1,
		Delivered: 3, Deferred: 2, Bounced: 1, Expired: 1,
		Rejected: 7, RejectedTemp: 1,
		ReceivedBytes:  2048 + 15_000 + 40_000 + 3_000 + 41_000 + 9_000 + 500 + 39_000,
		DeliveredBytes: 2048 + 2048 + 15_000,
		VirusesFound:   3,
		Spam:           1, Ham: 2, SpamRatio: 1.0 / 3,
		RejectedBy: []stats.Count{
			{"dnsbl: 554 client listed zen.spamhaus.org", 2},
			{"verify: 550 no such user @example.org", 2},
			{"access: 554 Connect:203.0.113 REJECT", 1},
			{"data: 552 message too big", 1},
			{"spf: 451 temperror for mfrom @example.biz example.biz lookup", 1},
		},
		Viruses: []stats.Count{{"Eicar-Signature", 2}, {"Win.Test.EICAR_HDB-1", 1}},
		TopSenders: []stats.Count{
			{"alice@example.com", 3},
			{"news@lists.example.net", 3},
			{"<>", 1},
			{"postmaster@example.com", 1},
		},
		TopSources: []stats.Count{
			{"192.0.2.10", 3},
			{"198.51.100.20", 3},
			{"192.0.2.11", 1},
			{"203.0.113.5", 1},
		},
		Days: []stats.Day{
			{Date: day(2026, 3, 9), Received: 5, Delivered: 3, Rejected: 7, Quarantined: 1, Spam: 1},
			{Date: day(2026, 3, 10), Received: 3, Quarantined: 2, Viruses: 3},
		},
		Events: 35 - 3, // without the two outside the period and the unknown kind
	}
	assert.Equal(t, want, s)
}

func TestSummarizeMissing(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "nothing"), t.TempDir()} {
		s, err := stats.Summarize(bg, dir, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), stats.SummaryOptions{})
		require.NoError(t, err)
		assert.Equal(t, []stats.Day{{Date: day(2026, 3, 1)}, {Date: day(2026, 3, 2)}, {Date: day(2026, 3, 3)}}, s.Days)
		assert.Zero(t, s.Received)
		assert.Nil(t, s.TopSenders)
	}
}

func TestSummarizeArguments(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		from, to time.Time
		opts     stats.SummaryOptions
		err      error
	}{
		{"empty period", periodFrom, periodFrom, stats.SummaryOptions{}, stats.ErrPeriod},
		{"reversed", periodTo, periodFrom, stats.SummaryOptions{}, stats.ErrPeriod},
		{"too long", periodFrom.AddDate(-20, 0, 0), periodTo, stats.SummaryOptions{}, stats.ErrPeriod},
		{"negative top", periodFrom, periodTo, stats.SummaryOptions{Top: -1}, stats.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := stats.Summarize(bg, dir, tt.from, tt.to, tt.opts)
			assert.ErrorIs(t, err, tt.err)
			assert.Nil(t, s)
		})
	}

	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := stats.Summarize(ctx, dir, periodFrom, periodTo, stats.SummaryOptions{})
	assert.ErrorIs(t, err, context.Canceled)
}

// The period is [from, to) in any zone; days are UTC days.
func TestSummarizeBoundaries(t *testing.T) {
	dir := writeJournal(t, []stats.Event{
		{Time: time.Date(2026, 3, 9, 23, 59, 59, 999_999_999, time.UTC), Kind: stats.Received},
		{Time: time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC), Kind: stats.Received},
		{Time: time.Date(2026, 3, 10, 23, 0, 0, 0, time.UTC), Kind: stats.Received},
		{Time: time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), Kind: stats.Received},
	})
	tokyo := time.FixedZone("JST", 9*3600)
	tests := []struct {
		from, to time.Time
		received int
		days     []time.Time
	}{
		{day(2026, 3, 10), day(2026, 3, 11), 2, []time.Time{day(2026, 3, 10)}},
		{day(2026, 3, 9), day(2026, 3, 12), 4, []time.Time{day(2026, 3, 9), day(2026, 3, 10), day(2026, 3, 11)}},
		{day(2026, 3, 10).Add(time.Nanosecond), day(2026, 3, 11).Add(time.Nanosecond), 2, []time.Time{day(2026, 3, 10), day(2026, 3, 11)}},
		// Midnight in Tokyo is 15:00 UTC the day before.
		{time.Date(2026, 3, 10, 0, 0, 0, 0, tokyo), time.Date(2026, 3, 11, 0, 0, 0, 0, tokyo), 2, []time.Time{day(2026, 3, 9), day(2026, 3, 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.from.String(), func(t *testing.T) {
			s, err := stats.Summarize(bg, dir, tt.from, tt.to, stats.SummaryOptions{})
			require.NoError(t, err)
			assert.Equal(t, tt.received, s.Received)
			var days []time.Time
			sum := 0
			for _, d := range s.Days {
				days = append(days, d.Date)
				sum += d.Received
			}
			assert.Equal(t, tt.days, days)
			assert.Equal(t, tt.received, sum)
		})
	}
}

// Lines that are not events are counted and skipped; nothing stops the
// summary.
func TestSummarizeBadLines(t *testing.T) {
	dir := t.TempDir()
	ev := func(kind string) string {
		return `{"time":"2026-03-09T10:00:00Z","kind":"` + kind + `","client_ip":"192.0.2.1"}`
	}
	content := strings.Join([]string{
		ev("received"),
		"",
		"   ",
		"not json",
		`{"kind":"received"}`,                    // no time
		`{"time":"2026-03-09T10:00:00Z"}`,        // no kind
		`{"time":"yesterday","kind":"received"}`, // bad time
		`{"time":"2026-03-09T10:00:00Z","kind":"received","client_ip":"999.1.1.1"}`,
		`{"time":"2026-03-09T10:00:00Z","kind":"received","size":"big"}`,
		`{"time":"2026-03-09T10:00:00Z","kind":"received"} trailing`,
		`[1,2,3]`,
		`null`,
		"\x00\xff\xfe",
		`{"time":"2026-03-09T10:00:00Z","kind":"received","sender":"` + strings.Repeat("x", 70<<10) + `"}`, // too long
		ev("received") + "\r",
		ev("rejected"),
		`{"time":"2026-03-09T10:00:00Z","kind":"received","extra":{"future":true}}`, // unknown fields are fine
	}, "\n") + "\n"
	writeFile(t, filepath.Join(dir, "2026-03-09.jsonl"), []byte(content))

	s, err := stats.Summarize(bg, dir, periodFrom.Add(-24*time.Hour), periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	assert.Equal(t, 3, s.Received)
	assert.Equal(t, 1, s.Rejected)
	assert.Equal(t, 11, s.BadLines)
	assert.Equal(t, []stats.Count{{"192.0.2.1", 2}, {"(unknown)", 1}}, s.TopSources)
}

func TestSummarizeUnreadable(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "2026-03-09.jsonl"), 0o755))
	_, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.Error(t, err)
	assert.ErrorContains(t, err, "2026-03-09.jsonl")
}

// Each ranked list keeps Top entries, ties broken by key, and sums the
// rest under Other.
func TestSummarizeTop(t *testing.T) {
	var events []stats.Event
	for i := range 12 {
		for range i + 1 {
			events = append(events, stats.Event{Time: at(1, i), Kind: stats.Received,
				Sender: fmt.Sprintf("s%02d@example.com", i%10), ClientIP: ip(fmt.Sprintf("192.0.2.%d", i))})
		}
	}
	dir := writeJournal(t, events)
	s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{Top: 3})
	require.NoError(t, err)
	// s00 has 1+11, s01 2+12, s09 10.
	assert.Equal(t, []stats.Count{{"s01@example.com", 14}, {"s00@example.com", 12}, {"s09@example.com", 10}, {stats.Other, 42}}, s.TopSenders)
	assert.Equal(t, []stats.Count{{"192.0.2.11", 12}, {"192.0.2.10", 11}, {"192.0.2.9", 10}, {stats.Other, 45}}, s.TopSources)
	assert.Equal(t, 78, s.Received)

	s, err = stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{Top: 10})
	require.NoError(t, err)
	assert.Len(t, s.TopSenders, 10) // exactly ten senders: no Other
}

func TestReasonClass(t *testing.T) {
	tests := []struct {
		filter, reason, want string
	}{
		{"dnsbl", "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2 bl.spamcop.net=127.0.0.2", "client listed zen.spamhaus.org bl.spamcop.net"},
		{"dnsbl", "dnsbl: client 2001:db8::7 tempfail (score 0 < 1); dnsbl: lookup failed", "client tempfail"},
		{"verify", "no such user bob@example.org", "no such user @example.org"},
		{"verify", "no such user <Bob@Example.ORG>", "no such user @example.org"},
		{"access", "access: From:spammer@bad.example REJECT (/etc/postern/access:3)", "From:@bad.example REJECT"},
		{"access", "access: Connect:[192.0.2.1] REJECT (/etc/postern/access:4)", "Connect:[192.0.2.1] REJECT"},
		{"relay", "relay: recipient bob has no domain", "recipient bob has no domain"},
		{"scan", "dial tcp 127.0.0.1:3310: connect: connection refused", "dial tcp connect connection refused"},
		{"spf", "spf: fail for mfrom a@b.example b.example", "fail for mfrom @b.example b.example"},
		{"ratelimit", "ratelimit: 31 connections from 192.0.2.0/24 in 60s, limit 30", "connections from in 60s limit"},
		{"", "", ""},
		{"x", "x:", ""},
		{"x", "x: (((unbalanced", ""},
		{"x", "one two three four five six seven eight", "one two three four five six"},
		{"x", strings.Repeat("abcdefghij", 10), strings.Repeat("abcdefghij", 6)},
		{"x", "aaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbb cccccccccccccccccccc dddddd", "aaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbb"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			assert.Equal(t, tt.want, stats.ReasonClass(tt.filter, tt.reason))
		})
	}
}

func TestRejectKey(t *testing.T) {
	tests := []struct {
		e    stats.Event
		want string
	}{
		{stats.Event{Filter: "dnsbl", Code: 554, Reason: "dnsbl: client 192.0.2.1 listed: zen.spamhaus.org=127.0.0.2"}, "dnsbl: 554 client listed zen.spamhaus.org"},
		{stats.Event{Stage: "data", Code: 552, Reason: "message too big"}, "data: 552 message too big"},
		{stats.Event{Filter: "greylist", Code: 450}, "greylist: 450"},
		{stats.Event{Filter: "greylist", Reason: "greylisted"}, "greylist: greylisted"},
		{stats.Event{}, "smtp: (no reason)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, stats.RejectKey(tt.e))
	}
}
