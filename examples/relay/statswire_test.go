package main

import (
	"context"
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/stats"
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
	rep := &scan.Report{Results: []scan.Result{{Viruses: []string{"Eicar-Signature"}}}, Spam: &scan.Result{Spam: true, Score: 12}}
	postern.SetValue(&tx.Values, scan.ReportKey, rep)
	r.observe(context.Background(), postern.Decision{Stage: postern.StageData, Filter: scan.FilterName, Conn: c, Txn: tx})
	// Two accepted transactions (one held), one discarded.
	for _, o := range []string{"queued", "quarantine", "discard"} {
		r.observeTxn(context.Background(), smtpserver.TxnResult{Conn: c, Txn: tx, Size: 1000, Outcome: o, Code: 250, QueueID: "T1"})
	}
	r.observeQueue(queue.Event{Kind: queue.EventDelivered, ID: "T1", Rcpt: "bob@example.test"})
	r.observeQueue(queue.Event{Kind: queue.EventDeferred, ID: "T1", Rcpt: "carol@example.test",
		Reply: postern.NewReply(451, postern.ESC(4, 4, 1), "try later")})

	s := &settings{statsDir: filepath.Join(dir, "stats"), dailyTo: "postmaster@example.test", hostname: "relay.example.test"}
	end := time.Now().Add(time.Second)
	require.NoError(t, r.sendSummary(context.Background(), s, end))
	sum, err := stats.Summarize(context.Background(), s.statsDir, end.Add(-time.Hour), end, stats.SummaryOptions{})
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Received)
	assert.Equal(t, 1, sum.Quarantined)
	assert.Equal(t, 1, sum.Discarded)
	assert.Equal(t, 1, sum.Rejected)
	assert.Equal(t, 1, sum.Delivered)
	assert.Equal(t, 1, sum.Deferred)
	assert.Equal(t, 1, sum.VirusesFound)
	assert.Equal(t, 1, sum.Spam)
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
