package stats_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/postern/postern/examples/relay/internal/stats"
)

func Example() {
	dir, err := os.MkdirTemp("", "stats")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	now := time.Date(2026, 3, 10, 6, 0, 0, 0, time.UTC)
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	client := netip.MustParseAddr("192.0.2.10")
	// What the relay records as mail comes and goes.
	j.Record(stats.Event{Time: now.Add(-3 * time.Hour), Kind: stats.Received, QueueID: "4XyZ1",
		ClientIP: client, Sender: "alice@example.com", Size: 2048})
	j.Record(stats.Event{Time: now.Add(-3 * time.Hour), Kind: stats.Ham, QueueID: "4XyZ1", Score: 0.4})
	j.Record(stats.Event{Time: now.Add(-3 * time.Hour), Kind: stats.Delivered, QueueID: "4XyZ1",
		Rcpt: "bob@example.org", Code: 250, Size: 2048})
	j.Record(stats.Event{Time: now.Add(-2 * time.Hour), Kind: stats.Rejected,
		ClientIP: netip.MustParseAddr("198.51.100.7"), Stage: "connect", Filter: "dnsbl", Code: 554,
		Reason: "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2"})
	if err := j.Close(); err != nil {
		fmt.Println(err)
		return
	}

	s, err := stats.Summarize(context.Background(), dir, now.Add(-24*time.Hour), now, stats.SummaryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("received", s.Received, "delivered", s.Delivered, "rejected", s.Rejected)
	fmt.Println(s.RejectedBy)
	for _, d := range s.Days {
		fmt.Println(d.Date.Format("2006-01-02"), d.Received, d.Rejected)
	}
	// Output:
	// received 1 delivered 1 rejected 1
	// [{dnsbl: 554 client listed zen.spamhaus.org 1}]
	// 2026-03-09 0 0
	// 2026-03-10 1 1
}

func ExampleSummary_WriteText() {
	s := &stats.Summary{
		From:     time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC),
		To:       time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC),
		Received: 120, Delivered: 118, Rejected: 40, RejectedTemp: 2,
		ReceivedBytes: 3_500_000, DeliveredBytes: 3_400_000,
		Spam: 6, Ham: 114, SpamRatio: 0.05,
		RejectedBy: []stats.Count{{"dnsbl: 554 client listed zen.spamhaus.org", 38}, {"spf: 451 temperror", 2}},
		TopSenders: []stats.Count{{"alice@example.com", 20}, {stats.Other, 100}},
		TopSources: []stats.Count{{"192.0.2.10", 120}},
		Days:       []stats.Day{{Date: time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC), Received: 120, Delivered: 118, Rejected: 40, Spam: 6}},
	}
	s.WriteText(os.Stdout)
	// Output:
	// Postern statistics for 2026-03-09 00:00 to 2026-03-10 00:00 UTC
	//
	// Totals
	//   received     120  messages, 3.5 MB
	//   delivered    118  recipients, 3.4 MB
	//   deferred       0  delivery attempts
	//   bounced        0  recipients
	//   expired        0  recipients
	//   quarantined    0  messages
	//   discarded      0  messages
	//   rejected      40  commands, 2 of them temporarily (4xx)
	//   viruses        0  found
	//   spam           6  of 120 scored messages (5.0% spam)
	//
	// Rejected by reason
	//   38  dnsbl: 554 client listed zen.spamhaus.org
	//    2  spf: 451 temperror
	//
	// Viruses by name
	//   none
	//
	// Top senders
	//    20  alice@example.com
	//   100  (other)
	//
	// Top sources
	//   120  192.0.2.10
	//
	// Per day (UTC)
	//   date        received  delivered  rejected  quarantined  viruses  spam
	//   2026-03-09       120        118        40            0        0     6
}

func ExampleReasonClass() {
	for _, r := range []struct{ filter, reason string }{
		{"dnsbl", "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2"},
		{"verify", "no such user bob@example.org"},
		{"access", "access: Connect:203.0.113 REJECT (/etc/postern/access:12)"},
	} {
		fmt.Printf("%q\n", stats.ReasonClass(r.filter, r.reason))
	}
	// Output:
	// "client listed zen.spamhaus.org"
	// "no such user @example.org"
	// "Connect:203.0.113 REJECT"
}

func ExampleSummary_Message() {
	s := &stats.Summary{From: time.Date(2026, 3, 9, 6, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 10, 6, 0, 0, 0, time.UTC)}
	msg, err := s.Message("postern@mx.example.org", "postmaster@example.org", "mx.example.org", time.Date(2026, 3, 10, 6, 0, 3, 0, time.UTC))
	if err != nil {
		fmt.Println(err)
		return
	}
	head, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	fmt.Println(strings.ReplaceAll(head, "\r\n", "\n"))
	// Output:
	// Date: Tue, 10 Mar 2026 06:00:03 +0000
	// From: <postern@mx.example.org>
	// To: <postmaster@example.org>
	// Subject: Postern statistics for mx.example.org: 2026-03-09 06:00 to
	//  2026-03-10 06:00 UTC
	// Message-ID: <postern-stats.20260310060003.000000000@mx.example.org>
	// MIME-Version: 1.0
	// Content-Type: text/plain; charset=utf-8
	// Content-Transfer-Encoding: 7bit
	// Auto-Submitted: auto-generated
}
