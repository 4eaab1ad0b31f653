package main

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/internal/stats"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver"
)

// What the relay's observers see becomes statistics records, and the
// daily mail is queued from the null sender with their summary.
func TestStatisticsRecords(t *testing.T) {
	dir := t.TempDir()
	j, err := stats.Open(stats.JournalConfig{Dir: filepath.Join(dir, "stats")})
	require.NoError(t, err)
	defer j.Close()
	q, err := queue.Open(queue.Config{Dir: filepath.Join(dir, "spool")})
	require.NoError(t, err)
	defer q.Close()
	r := &relayServer{journal: j, q: q, met: newMetrics(), log: discardLog()}

	c := &postern.Conn{ID: "c1", Remote: netip.MustParseAddrPort("192.0.2.7:4000")}
	tx := &postern.Txn{ID: "T1", From: "alice@example.net"}
	// A refusal at RCPT, and a scan that found a virus and spam.
	r.observe(context.Background(), postern.Decision{Stage: postern.StageRcpt, Filter: "relay", Conn: c, Txn: tx,
		Rcpt:    &postern.Rcpt{Addr: "x@elsewhere.example"},
		Verdict: postern.Rejected(550, postern.ESC(5, 7, 1), "Relay access denied", "relay: not ours")})
	// A virus in a message also scored counts as the virus only.
	rep := &scan.Report{Results: []scan.Result{{Viruses: []string{"Eicar-Signature"}}}, Spam: &scan.Result{Spam: true, Score: 12}}
	postern.SetValue(&tx.Values, scan.ReportKey, rep)
	r.observe(context.Background(), postern.Decision{Stage: postern.StageData, Filter: scan.FilterName, Conn: c, Txn: tx})
	tx2 := &postern.Txn{ID: "T2", From: "bob@example.net"}
	postern.SetValue(&tx2.Values, scan.ReportKey, &scan.Report{Spam: &scan.Result{Spam: true, Score: 12}})
	r.observe(context.Background(), postern.Decision{Stage: postern.StageData, Filter: scan.FilterName, Conn: c, Txn: tx2})
	// Two accepted transactions (one held), one discarded.
	for _, o := range []string{"queued", "quarantine", "discard"} {
		r.observeTxn(context.Background(), smtpserver.TxnResult{Conn: c, Txn: tx, Size: 1000, Outcome: o, Code: 250, QueueID: "T1"})
	}
	r.observeQueue(queue.Event{Kind: queue.EventDelivered, ID: "T1", Rcpt: "bob@example.test"})
	r.observeQueue(queue.Event{Kind: queue.EventDeferred, ID: "T1", Rcpt: "carol@example.test",
		Reply: postern.NewReply(451, postern.ESC(4, 4, 1), "try later")})

	s := &Config{Stats: StatsSection{Dir: filepath.Join(dir, "stats"), DailyTo: "postmaster@example.test"}, Hostname: "relay.example.test"}
	end := time.Now().Add(time.Second)
	_, _, err = r.sendSummary(context.Background(), s, end.Add(-24*time.Hour), end, "", 0)
	require.NoError(t, err)
	sum, err := stats.Summarize(context.Background(), s.Stats.Dir, end.Add(-time.Hour), end, stats.SummaryOptions{})
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Received)
	assert.Equal(t, 1, sum.Quarantined)
	assert.Equal(t, 1, sum.Discarded)
	assert.Equal(t, 1, sum.Rejected)
	assert.Equal(t, 1, sum.Delivered)
	assert.Equal(t, 1, sum.Deferred)
	assert.Equal(t, 1, sum.VirusesFound)
	assert.Equal(t, 1, sum.Spam)
	assert.Equal(t, 0, sum.Ham)
	assert.Equal(t, []stats.Count{{Key: "192.0.2.7", N: 2}}, sum.TopSources)

	list := q.List(queue.ListFilter{})
	require.Len(t, list, 1)
	assert.Equal(t, "", list[0].Envelope.From, "from the null sender")
	assert.Equal(t, "postmaster@example.test", list[0].Envelope.Recipients[0].Addr)
	rc, err := q.Open(list[0].ID)
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	assert.Contains(t, string(b), "Subject: Postern statistics for relay.example.test")
	assert.Contains(t, string(b), "Eicar-Signature")
}

// Spam is counted as the site tags it: at scan.spam_tag_score when set,
// whatever the scorer's own verdict (spamd's required_score, 5.0); by
// the verdict when the site set no score.
func TestSpamCountedAtSiteTagScore(t *testing.T) {
	for _, tc := range []struct {
		tag       float64
		score     float64
		verdict   bool
		wantSpam  bool
		situation string
	}{
		{6.8, 6.3, true, false, "scorer says spam, under the site's tag score"},
		{6.8, 6.8, true, true, "at the tag score"},
		{6.8, 9.0, true, true, "over it"},
		{4.0, 4.5, false, true, "scorer says ham, over a lower site score"},
		{0, 6.3, true, true, "no site score: the scorer's verdict"},
		{0, 6.3, false, false, "no site score: the scorer's verdict (ham)"},
	} {
		t.Run(tc.situation, func(t *testing.T) {
			dir := t.TempDir()
			j, err := stats.Open(stats.JournalConfig{Dir: dir})
			require.NoError(t, err)
			defer j.Close()
			r := &relayServer{journal: j, met: newMetrics(), log: discardLog()}
			r.cur.Store(&generation{s: &Config{Scan: ScanSection{SpamTagScore: tc.tag}}})
			tx := &postern.Txn{ID: "T1", From: "a@example.net"}
			postern.SetValue(&tx.Values, scan.ReportKey, &scan.Report{Spam: &scan.Result{Spam: tc.verdict, Score: tc.score}})
			r.observe(context.Background(), postern.Decision{Stage: postern.StageData, Filter: scan.FilterName,
				Conn: &postern.Conn{ID: "c1"}, Txn: tx})
			require.NoError(t, j.Flush(context.Background()))
			end := time.Now().Add(time.Second)
			sum, err := stats.Summarize(context.Background(), dir, end.Add(-time.Hour), end, stats.SummaryOptions{})
			require.NoError(t, err)
			if tc.wantSpam {
				assert.Equal(t, [2]int{1, 0}, [2]int{sum.Spam, sum.Ham})
			} else {
				assert.Equal(t, [2]int{0, 1}, [2]int{sum.Spam, sum.Ham})
			}
		})
	}
}

// The daily mail follows a reload: a new stats.daily_at moves it and a
// new stats.daily_to gets it, without a restart.
func TestDailyMailFollowsReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		q, err := queue.Open(queue.Config{Dir: filepath.Join(dir, "spool"), Hostname: "relay.example.test"})
		require.NoError(t, err)
		defer q.Close()
		r := &relayServer{q: q, log: discardLog(), met: newMetrics()}
		gen := func(to, at string) context.CancelFunc {
			ctx, cancel := context.WithCancel(context.Background())
			r.cur.Store(&generation{s: &Config{Stats: StatsSection{Dir: filepath.Join(dir, "stats"), DailyTo: to, DailyAt: at},
				Hostname: "relay.example.test"}, done: ctx.Done()})
			return cancel
		}
		retire := gen("old@example.test", "06:00")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go r.mailDaily(ctx, time.Now)
		at := func(hhmm string) time.Time {
			h, _ := time.Parse("15:04", hhmm)
			n := time.Now()
			t := time.Date(n.Year(), n.Month(), n.Day(), h.Hour(), h.Minute(), 0, 0, n.Location())
			if !t.After(n) {
				t = t.AddDate(0, 0, 1)
			}
			return t
		}
		mails := func() []string {
			var out []string
			for _, i := range q.List(queue.ListFilter{Sender: "<>"}) {
				out = append(out, i.Envelope.Recipients[0].Addr)
			}
			return out
		}
		six, seven := at("06:00"), at("07:00")
		if seven.Before(six) {
			seven = seven.AddDate(0, 0, 1)
		}
		time.Sleep(time.Until(six) - time.Minute)
		synctest.Wait()
		assert.Empty(t, mails())

		// A reload moves the mail to 07:00 and to another address.
		next := gen("new@example.test", "07:00")
		retire()
		retire = next
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		assert.Empty(t, mails(), "no mail at the old time")
		time.Sleep(time.Until(seven) + time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"new@example.test"}, mails())

		// Emptied by a reload: no mail, and the loop goes on.
		next = gen("", "07:00")
		retire()
		retire = next
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		assert.Len(t, mails(), 1)
		retire()
		cancel()
	})
}

// relay stats -mail on a stopped relay queues the report in its spool,
// for the relay to deliver when it starts; without an address it says
// which key to set.
func TestStatsMailOnStoppedRelay(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "spool")
	var out, errb bytes.Buffer
	code := run([]string{"stats", "-spool", spool, "-mail"}, &out, &errb)
	assert.Equal(t, 1, code)
	assert.Contains(t, out.String()+errb.String(), "set stats.daily_to or give -mail-to")

	out.Reset()
	errb.Reset()
	code = run([]string{"stats", "-spool", spool, "-hostname", "relay.example.test", "-mail-to", "Admin@Example.TEST",
		"-since", "2h"}, &out, &errb)
	require.Equal(t, 0, code, out.String()+errb.String())
	assert.Contains(t, out.String(), "for <Admin@example.test>")
	assert.Contains(t, out.String(), "delivers the report when it starts")
	q, err := queue.Open(queue.Config{Dir: spool})
	require.NoError(t, err)
	defer q.Close()
	list := q.List(queue.ListFilter{})
	require.Len(t, list, 1)
	assert.Equal(t, "", list[0].Envelope.From)
	assert.Equal(t, "Admin@example.test", list[0].Envelope.Recipients[0].Addr)
	rc, err := q.Open(list[0].ID)
	require.NoError(t, err)
	b, _ := io.ReadAll(rc)
	rc.Close()
	assert.Contains(t, string(b), "Subject: Postern statistics for relay.example.test")
	assert.Contains(t, string(b), "To: <Admin@example.test>")

	for _, bad := range [][]string{{"-mail-to", "not an address"}, {"-mail", "-since", "-1h"}} {
		out.Reset()
		errb.Reset()
		code = run(append([]string{"stats", "-spool", spool}, bad...), &out, &errb)
		assert.NotEqual(t, 0, code, bad)
	}
}

func TestMailStatsRequest(t *testing.T) {
	until := time.Date(2026, 3, 10, 6, 0, 0, 0, time.UTC)
	m := &mailStatsRequest{since: 24 * time.Hour, until: until, to: "admin@example.test", top: 5}
	got, err := parseMailStats(m.args())
	require.NoError(t, err)
	assert.Equal(t, m, got)
	for _, bad := range [][]string{{"-until", "yesterday"}, {"-since", "0s", "-until", until.Format(time.RFC3339)}, {"-bogus"}} {
		_, err := parseMailStats(bad)
		assert.Error(t, err, strings.Join(bad, " "))
	}
}
