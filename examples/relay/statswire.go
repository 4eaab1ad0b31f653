package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/stats"
	"github.com/postern/postern/examples/relay/webui"
	"github.com/postern/postern/internal/termsafe"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver"
)

// The relay keeps its own statistics records (package stats): one event
// per accepted, refused, quarantined or discarded message, per delivery
// outcome and per scan result, in day files under stats.dir. "relay
// stats", the daily mail and the quarantine page's chart read them.

// recordDecision records refusals and scan results of the policy chain.
func (r *relayServer) recordDecision(d postern.Decision) {
	if r.journal == nil {
		return
	}
	ev := stats.Event{Stage: d.Stage.String(), Filter: d.Filter}
	if d.Conn != nil {
		ev.ConnID, ev.ClientIP = d.Conn.ID, d.Conn.RemoteAddr()
	}
	if d.Txn != nil {
		ev.QueueID, ev.Sender = d.Txn.ID, d.Txn.From
	}
	if d.Rcpt != nil {
		ev.Rcpt = d.Rcpt.Addr
	}
	switch d.Verdict.Action {
	case postern.Reject, postern.TempFail:
		e := ev
		e.Kind, e.Reason, e.Code = stats.Rejected, d.Verdict.Reason, d.Verdict.ReplyAt(d.Stage).Code
		r.journal.Record(e)
	}
	if d.Filter != scan.FilterName || d.Stage != postern.StageData || d.Txn == nil {
		return
	}
	rep, ok := postern.GetValue(&d.Txn.Values, scan.ReportKey)
	if !ok {
		return
	}
	for _, v := range rep.Viruses() {
		e := ev
		e.Kind, e.Virus = stats.Virus, v
		r.journal.Record(e)
	}
	if rep.Spam != nil {
		e := ev
		e.Kind, e.Score = stats.Ham, rep.Spam.Score
		if rep.Spam.Spam {
			e.Kind = stats.Spam
		}
		r.journal.Record(e)
	}
}

// observeTxn sees each transaction's outcome at the end of DATA.
func (r *relayServer) observeTxn(_ context.Context, res smtpserver.TxnResult) {
	r.met.messages.WithLabelValues(res.Outcome).Inc()
	if r.journal == nil {
		return
	}
	ev := stats.Event{QueueID: res.QueueID, ConnID: res.Conn.ID, ClientIP: res.Conn.RemoteAddr(),
		Sender: res.Txn.From, Size: res.Size}
	switch res.Outcome {
	case "queued":
		ev.Kind = stats.Received
	case "quarantine":
		ev.Kind = stats.Received
		r.journal.Record(ev)
		ev.Kind, ev.Reason = stats.Quarantined, res.Txn.Quarantine
	case "discard":
		ev.Kind = stats.Discarded
	default:
		return // refusals are recorded from the policy's decisions
	}
	r.journal.Record(ev)
}

// recordQueue records delivery outcomes per recipient.
func (r *relayServer) recordQueue(e queue.Event) {
	if r.journal == nil {
		return
	}
	ev := stats.Event{QueueID: e.ID, Sender: e.From, Rcpt: e.Rcpt, Code: e.Reply.Code, Size: e.Size}
	switch e.Kind {
	case queue.EventDelivered:
		ev.Kind = stats.Delivered
	case queue.EventDeferred:
		ev.Kind, ev.Reason = stats.Deferred, e.Reply.Error()
	case queue.EventBounced:
		ev.Kind, ev.Reason = stats.Bounced, e.Reply.Error()
	case queue.EventExpired:
		ev.Kind, ev.Reason = stats.Expired, e.Reply.Error()
	default:
		return
	}
	r.journal.Record(ev)
}

// days is the quarantine page's chart source.
func (r *relayServer) days(ctx context.Context, from, to time.Time) ([]webui.Day, error) {
	if r.journal != nil {
		r.journal.Flush(ctx)
	}
	sum, err := stats.Summarize(ctx, r.cur.Load().s.statsDir, from, to, stats.SummaryOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]webui.Day, len(sum.Days))
	for i, d := range sum.Days {
		out[i] = webui.Day(d)
	}
	return out, nil
}

// mailDaily sends the summary of the last 24 hours to stats.daily_to at
// stats.daily_at each day, queued like any other mail (from the null
// sender, so a failure cannot bounce back).
func (r *relayServer) mailDaily(ctx context.Context, s *settings, now func() time.Time) {
	if s.dailyTo == "" {
		return
	}
	for waitDaily(ctx, s.dailyAt, now) {
		if err := r.sendSummary(ctx, s, now()); err != nil {
			r.log.Error("daily statistics mail failed", "to", s.dailyTo, "error", err)
		}
	}
}

// waitDaily waits for the next hh:mm (local time) and reports whether it
// came before ctx ended.
func waitDaily(ctx context.Context, hhmm string, now func() time.Time) bool {
	at, _ := time.Parse("15:04", hhmm)
	n := now()
	next := time.Date(n.Year(), n.Month(), n.Day(), at.Hour(), at.Minute(), 0, 0, n.Location())
	if !next.After(n) {
		next = next.AddDate(0, 0, 1)
	}
	t := time.NewTimer(next.Sub(n))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// digestDaily sends each user with newly quarantined mail a list of it,
// with links to the page, at stats.daily_at each day.
func (r *relayServer) digestDaily(ctx context.Context, s *settings, now func() time.Time) {
	since := now()
	for waitDaily(ctx, s.dailyAt, now) {
		sent := now()
		if err := r.sendDigests(ctx, s, since); err != nil {
			r.log.Error("quarantine digests failed", "error", err)
			continue // the next digest lists these too
		}
		since = sent
	}
}

func (r *relayServer) sendDigests(ctx context.Context, s *settings, since time.Time) error {
	ds, err := r.page.Digests(ctx, webui.DigestConfig{From: "postmaster@" + s.hostnameOrDefault(), URL: s.pageURL(), Since: since})
	if err != nil {
		return err
	}
	for _, d := range ds {
		id, err := r.q.Enqueue(ctx, queue.Envelope{From: "", Recipients: []queue.Recipient{{Addr: d.To}}},
			strings.NewReader(string(d.Message)))
		if err != nil {
			return err
		}
		r.log.Info("quarantine digest queued", "queue_id", id, "to", d.To, "messages", len(d.Items))
	}
	return nil
}

func (r *relayServer) sendSummary(ctx context.Context, s *settings, end time.Time) error {
	r.journal.Flush(ctx)
	sum, err := stats.Summarize(ctx, s.statsDir, end.Add(-24*time.Hour), end, stats.SummaryOptions{})
	if err != nil {
		return err
	}
	host := s.hostnameOrDefault()
	msg, err := sum.Message("MAILER-DAEMON@"+host, postern.WireAddr(s.dailyTo), host, end)
	if err != nil {
		return err
	}
	id, err := r.q.Enqueue(ctx, queue.Envelope{From: "", Recipients: []queue.Recipient{{Addr: s.dailyTo}}},
		strings.NewReader(string(msg)))
	if err != nil {
		return err
	}
	r.log.Info("daily statistics queued", "queue_id", id, "to", s.dailyTo)
	return nil
}

// statsCommand prints a summary of the relay's records.
func statsCommand(args []string, stdout, stderr io.Writer) int {
	// The report escapes the names it prints; errors may quote files.
	so, se := termsafe.NewWriter(stdout), termsafe.NewWriter(stderr)
	defer so.Close()
	defer se.Close()
	stdout, stderr = so, se
	var since *time.Duration
	var top *int
	var until *string
	s, _, ok := commandSettings("relay stats", args, stderr, func(fs *flag.FlagSet) {
		since = fs.Duration("since", 24*time.Hour, "summarise this long a `period` before -until")
		until = fs.String("until", "", "end of the period, RFC 3339 `time` (default now)")
		top = fs.Int("top", 10, "`entries` in each ranked list")
	})
	if !ok {
		return 2
	}
	// A running relay writes its records within a second; ask it to
	// write them now. A stopped one has written everything.
	if _, _, err := askRelay(s.controlSocket, "flush-stats", nil, io.Discard); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	end := time.Now()
	if *until != "" {
		var err error
		if end, err = time.Parse(time.RFC3339, *until); err != nil {
			fmt.Fprintln(stderr, "relay: -until:", err)
			return 2
		}
	}
	sum, err := stats.Summarize(context.Background(), s.statsDir, end.Add(-*since), end, stats.SummaryOptions{Top: *top})
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	if err := sum.WriteText(stdout); err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	return 0
}
