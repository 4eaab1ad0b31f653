package stats_test

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern/examples/relay/internal/stats"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	bg = context.Background()
	// The fixture's period: the 24 hours before the daily report.
	periodFrom = time.Date(2026, 3, 9, 6, 0, 0, 0, time.UTC)
	periodTo   = time.Date(2026, 3, 10, 6, 0, 0, 0, time.UTC)
)

// clock is the journal's clock in tests: the end of the fixture's period.
func clock() time.Time { return periodTo }

func at(h, m int) time.Time {
	return periodFrom.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// fixture is a day of a small relay, plus one event on each side of the
// period that must not count.
func fixture() []stats.Event {
	rcv := func(t time.Time, id, client, sender string, size int64) stats.Event {
		return stats.Event{Time: t, Kind: stats.Received, QueueID: id, ConnID: "c" + id, ClientIP: ip(client), Sender: sender, Size: size}
	}
	dlv := func(t time.Time, id, rcpt string, size int64) stats.Event {
		return stats.Event{Time: t, Kind: stats.Delivered, QueueID: id, Rcpt: rcpt, Code: 250, Size: size}
	}
	rej := func(t time.Time, client, stage, filter string, code int, reason string) stats.Event {
		return stats.Event{Time: t, Kind: stats.Rejected, ClientIP: ip(client), Stage: stage, Filter: filter, Code: code, Reason: reason}
	}
	return []stats.Event{
		rcv(periodFrom.Add(-time.Second), "Q0", "192.0.2.10", "early@example.com", 100), // before the period
		rcv(at(0, 0), "Q1", "192.0.2.10", "alice@example.com", 2048),
		dlv(at(0, 1), "Q1", "bob@example.org", 2048),
		dlv(at(0, 1), "Q1", "carol@example.org", 2048),
		rcv(at(1, 30), "Q2", "192.0.2.10", "Alice@Example.COM", 15_000),
		{Time: at(1, 31), Kind: stats.Ham, QueueID: "Q2", Score: 1.5},
		dlv(at(1, 32), "Q2", "bob@example.org", 15_000),
		rcv(at(3, 0), "Q3", "198.51.100.20", "news@lists.example.net", 40_000),
		{Time: at(3, 0), Kind: stats.Spam, QueueID: "Q3", Score: 9.2},
		{Time: at(3, 0), Kind: stats.Quarantined, QueueID: "Q3", Reason: "scan: spam score 9.2"},
		rcv(at(5, 0), "Q4", "203.0.113.5", "", 3_000),
		{Time: at(5, 1), Kind: stats.Deferred, QueueID: "Q4", Rcpt: "dave@example.org", Code: 451, Reason: "451 4.3.0 mailbox busy"},
		{Time: at(5, 20), Kind: stats.Deferred, QueueID: "Q4", Rcpt: "dave@example.org", Code: 451, Reason: "451 4.3.0 mailbox busy"},
		{Time: at(6, 0), Kind: stats.Expired, QueueID: "Q4", Rcpt: "dave@example.org", Code: 451},
		rcv(at(7, 0), "Q5", "198.51.100.20", "news@lists.example.net", 41_000),
		{Time: at(7, 0), Kind: stats.Ham, QueueID: "Q5", Score: -0.3},
		{Time: at(7, 1), Kind: stats.Bounced, QueueID: "Q5", Rcpt: "gone@example.org", Code: 550, Reason: "550 5.1.1 user unknown"},
		rej(at(8, 0), "198.51.100.7", "connect", "dnsbl", 554, "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2"),
		rej(at(8, 5), "198.51.100.8", "connect", "dnsbl", 554, "dnsbl: client 198.51.100.8 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.4"),
		rej(at(9, 0), "203.0.113.9", "rcpt", "verify", 550, "no such user nobody@example.org"),
		rej(at(9, 1), "203.0.113.9", "rcpt", "verify", 550, "no such user noone@example.org"),
		rej(at(10, 0), "203.0.113.77", "connect", "access", 554, "access: Connect:203.0.113 REJECT (/etc/postern/access:12)"),
		rej(at(11, 0), "192.0.2.200", "mail", "spf", 451, "spf: temperror for mfrom x@example.biz example.biz: lookup timed out"),
		rej(at(12, 0), "192.0.2.201", "data", "", 552, "message too big"),
		rcv(at(18, 0), "Q6", "192.0.2.10", "alice@example.com", 9_000),
		{Time: at(18, 0), Kind: stats.Virus, QueueID: "Q6", Virus: "Eicar-Signature"},
		{Time: at(18, 0), Kind: stats.Virus, QueueID: "Q6", Virus: "Win.Test.EICAR_HDB-1"},
		{Time: at(18, 0), Kind: stats.Quarantined, QueueID: "Q6", Reason: "virus"},
		rcv(at(19, 0), "Q7", "192.0.2.11", "postmaster@example.com", 500),
		{Time: at(19, 0), Kind: stats.Discarded, QueueID: "Q7", Reason: "access: From:postmaster@example.com DISCARD"},
		rcv(at(20, 0), "Q8", "198.51.100.20", "news@lists.example.net", 39_000),
		{Time: at(20, 0), Kind: stats.Virus, QueueID: "Q8", Virus: "Eicar-Signature"},
		{Time: at(20, 0), Kind: stats.Quarantined, QueueID: "Q8", Reason: "virus"},
		{Time: at(21, 0), Kind: "greylisted", QueueID: "Q9"},        // a kind from a newer relay
		rcv(periodTo, "Q10", "192.0.2.10", "late@example.com", 100), // after the period
	}
}

// writeJournal records events through a Journal into a new directory.
func writeJournal(t testing.TB, events []stats.Event) string {
	t.Helper()
	dir := t.TempDir()
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock, Buffer: len(events) + 1})
	require.NoError(t, err)
	for _, e := range events {
		j.Record(e)
	}
	require.NoError(t, j.Close())
	require.Zero(t, j.Dropped())
	return dir
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	require.Equal(t, string(want), string(got))
}

// lines reads a file's lines.
func lines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, b, 0o644))
}
