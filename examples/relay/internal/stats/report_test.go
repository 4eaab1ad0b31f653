package stats_test

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/examples/relay/internal/stats"
)

// mailTime is when the daily report is mailed.
var mailTime = time.Date(2026, 3, 10, 6, 0, 3, 250_000_000, time.UTC)

func fixtureSummary(t *testing.T) *stats.Summary {
	t.Helper()
	s, err := stats.Summarize(bg, writeJournal(t, fixture()), periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	return s
}

func text(t *testing.T, s *stats.Summary) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, s.WriteText(&b))
	return b.String()
}

func TestWriteTextGolden(t *testing.T) {
	t.Run("day", func(t *testing.T) {
		golden(t, "report.txt", []byte(text(t, fixtureSummary(t))))
	})
	t.Run("empty week", func(t *testing.T) {
		s, err := stats.Summarize(bg, t.TempDir(), periodTo.AddDate(0, 0, -7), periodTo, stats.SummaryOptions{})
		require.NoError(t, err)
		golden(t, "empty.txt", []byte(text(t, s)))
	})
}

// Names come from strangers: they cannot add lines to the report or hide
// in invisible characters, and long ones are cut.
func TestWriteTextEscapes(t *testing.T) {
	evil := []string{
		"a@example.com\nTop senders\n  9999  boss@example.org",
		"b@example.com\r\x1b[2J",
		"c\u200b@example.com", // zero-width space
		"d\xff@example.com",
		strings.Repeat("e", 300) + "@example.com",
	}
	var events []stats.Event
	for _, s := range evil {
		events = append(events, stats.Event{Time: at(1, 0), Kind: stats.Received, Sender: s})
	}
	dir := writeJournal(t, events)
	s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	out := text(t, s)
	assert.Equal(t, 1, strings.Count(out, "Top senders"))
	assert.NotContains(t, out, "\r")
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\u200b")
	assert.Contains(t, out, "  1  a@example.com?top senders?  9999  boss@example.org\n")
	assert.Contains(t, out, "  1  b@example.com??[2j\n")
	assert.Contains(t, out, "  1  c?@example.com\n")
	assert.Contains(t, out, "  1  d?@example.com\n")
	assert.Contains(t, out, "  1  "+strings.Repeat("e", 80)+"...\n")
	for line := range strings.SplitSeq(out, "\n") {
		assert.LessOrEqual(t, len(line), 200, line)
	}
}

func TestMessageGolden(t *testing.T) {
	s := fixtureSummary(t)
	msg, err := s.Message("Postern <postern@mx.example.org>", "postmaster@example.org", "mx.example.org", mailTime)
	require.NoError(t, err)
	golden(t, "report.eml", msg)

	m, err := mail.ReadMessage(bytes.NewReader(msg))
	require.NoError(t, err)
	assert.Equal(t, "Postern statistics for mx.example.org: 2026-03-09 06:00 to 2026-03-10 06:00 UTC", m.Header.Get("Subject"))
	assert.Equal(t, "<postern-stats.20260310060003.250000000@mx.example.org>", m.Header.Get("Message-Id"))
	d, err := m.Header.Date()
	require.NoError(t, err)
	assert.True(t, d.Equal(mailTime.Truncate(time.Second)))
	from, err := m.Header.AddressList("From")
	require.NoError(t, err)
	assert.Equal(t, []*mail.Address{{Name: "Postern", Address: "postern@mx.example.org"}}, from)
	assert.Equal(t, "7bit", m.Header.Get("Content-Transfer-Encoding"))
	body, err := io.ReadAll(m.Body)
	require.NoError(t, err)
	assert.Equal(t, text(t, s), strings.ReplaceAll(string(body), "\r\n", "\n"))

	for line := range strings.SplitSeq(strings.TrimSuffix(string(msg), "\r\n"), "\r\n") {
		assert.LessOrEqual(t, len(line), 78, line)
		assert.NotContains(t, line, "\n")
	}

	again, err := s.Message("Postern <postern@mx.example.org>", "postmaster@example.org", "mx.example.org", mailTime)
	require.NoError(t, err)
	assert.Equal(t, msg, again)
}

// A report naming a non-ASCII sender goes quoted-printable, and decodes
// back to the text.
func TestMessageNonASCII(t *testing.T) {
	dir := writeJournal(t, []stats.Event{{Time: at(1, 0), Kind: stats.Received, Sender: "jürgen@bücher.example"}})
	s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	msg, err := s.Message("Jürgen Müller <postern@mx.example.org>", "postmaster@example.org", "mx.example.org", mailTime)
	require.NoError(t, err)
	for _, c := range msg {
		require.Less(t, c, byte(0x80), "the message is 7-bit")
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	require.NoError(t, err)
	assert.Equal(t, "quoted-printable", m.Header.Get("Content-Transfer-Encoding"))
	from, err := (&mime.WordDecoder{}).DecodeHeader(m.Header.Get("From"))
	require.NoError(t, err)
	assert.Equal(t, `Jürgen Müller <postern@mx.example.org>`, from)
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	require.NoError(t, err)
	assert.Equal(t, text(t, s), strings.ReplaceAll(string(body), "\r\n", "\n"))
	assert.Contains(t, string(body), "jürgen@bücher.example")
}

func TestMessageBadInput(t *testing.T) {
	s := &stats.Summary{From: periodFrom, To: periodTo}
	tests := []struct {
		name, from, to, host string
	}{
		{"from with header", "postern@mx.example.org\r\nBcc: all@example.org", "postmaster@example.org", "mx.example.org"},
		{"to with LF", "postern@mx.example.org", "postmaster@example.org\nX: y", "mx.example.org"},
		{"from not an address", "postern", "postmaster@example.org", "mx.example.org"},
		{"to empty", "postern@mx.example.org", "", "mx.example.org"},
		{"no hostname", "postern@mx.example.org", "postmaster@example.org", ""},
		{"hostname with space", "postern@mx.example.org", "postmaster@example.org", "mx example"},
		{"hostname with line break", "postern@mx.example.org", "postmaster@example.org", "mx\r\nBcc: x"},
		{"hostname with >", "postern@mx.example.org", "postmaster@example.org", "mx>"},
		{"hostname not ASCII", "postern@mx.example.org", "postmaster@example.org", "bücher.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := s.Message(tt.from, tt.to, tt.host, mailTime)
			assert.ErrorIs(t, err, stats.ErrMessage)
			assert.Nil(t, msg)
		})
	}
}

func TestPeriodInOtherZones(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	s := &stats.Summary{From: periodFrom.In(cet), To: periodTo}
	assert.True(t, strings.HasPrefix(text(t, s), "Postern statistics for 2026-03-09 07:00 to 2026-03-10 07:00 CET\n"))
}

// The greylisting table: one row per day of first attempt, "never
// retried" only once the day's retry window has closed; no section when
// the relay set none.
func TestWriteTextGreylist(t *testing.T) {
	s := fixtureSummary(t)
	assert.NotContains(t, text(t, s), "Greylisting")
	day := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	s.Greylist = []stats.GreyDay{
		{Date: day(7), Greylisted: 40, Passed: 31, NeverRetried: 9, Final: true},
		{Date: day(9), Greylisted: 12, Passed: 5},
	}
	out := text(t, s)
	assert.Contains(t, out, "\nGreylisting (triplets by the UTC day of their first attempt)\n"+
		"  date        greylisted      passed  never retried\n"+
		"  2026-03-07          40          31              9\n"+
		"  2026-03-09          12           5              -\n")
	s.Greylist = []stats.GreyDay{}
	assert.Contains(t, text(t, s), "Greylisting (triplets by the UTC day of their first attempt)\n  none\n")
}
