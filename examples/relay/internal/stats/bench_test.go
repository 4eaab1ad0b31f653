package stats_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern/examples/relay/internal/stats"
)

var benchEvent = stats.Event{
	Kind: stats.Rejected, QueueID: "4XyZ1", ConnID: "c7", ClientIP: ip("198.51.100.7"),
	Sender: "alice@example.com", Rcpt: "bob@example.org", Stage: "rcpt", Filter: "dnsbl", Code: 554,
	Reason: "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2",
}

// BenchmarkRecord is the cost an SMTP session pays per event: stamping
// and queueing, with the writer draining to disk at the same time. The
// drops metric is the share of events the writer could not keep up with.
func BenchmarkRecord(b *testing.B) {
	j, err := stats.Open(stats.JournalConfig{Dir: b.TempDir(), Buffer: 1 << 16})
	require.NoError(b, err)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		j.Record(benchEvent)
		n++
	}
	b.StopTimer()
	require.NoError(b, j.Close())
	b.ReportMetric(float64(j.Dropped())/float64(n), "drops/op")
}

// BenchmarkRecordParallel is Record from many sessions at once.
func BenchmarkRecordParallel(b *testing.B) {
	j, err := stats.Open(stats.JournalConfig{Dir: b.TempDir(), Buffer: 1 << 16})
	require.NoError(b, err)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			j.Record(benchEvent)
		}
	})
	b.StopTimer()
	require.NoError(b, j.Close())
	b.ReportMetric(float64(j.Dropped())/float64(b.N), "drops/op")
}

// BenchmarkSummarize reads a day file of 100,000 events from 5,000
// senders; ns/op divided by 100,000 is the cost of a line.
func BenchmarkSummarize(b *testing.B) {
	const events = 100_000
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "2026-03-09.jsonl"))
	require.NoError(b, err)
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // as the journal writes
	kinds := []stats.Kind{stats.Received, stats.Delivered, stats.Rejected, stats.Ham, stats.Received, stats.Delivered}
	for i := range events {
		e := benchEvent
		e.Time = at(0, 0).Add(time.Duration(i) * 100 * time.Millisecond)
		e.Kind = kinds[i%len(kinds)]
		e.Sender = fmt.Sprintf("user%d@example.com", i%5000)
		require.NoError(b, enc.Encode(e))
	}
	require.NoError(b, w.Flush())
	require.NoError(b, f.Close())

	b.ReportAllocs()
	for b.Loop() {
		s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
		if err != nil || s.Events != events {
			b.Fatal(err, s.Events)
		}
	}
}

// BenchmarkRejectKey classifies one reason.
func BenchmarkRejectKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if stats.RejectKey(benchEvent) == "" {
			b.Fatal("empty")
		}
	}
}
