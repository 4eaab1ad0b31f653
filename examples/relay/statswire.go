package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/internal/stats"
	"github.com/postern/postern/examples/relay/internal/webui"
	"github.com/postern/postern/internal/termsafe"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
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
	viruses := rep.Viruses()
	for _, v := range viruses {
		e := ev
		e.Kind, e.Virus = stats.Virus, v
		r.journal.Record(e)
	}
	// A message with a virus counts as that, not as ham (its score is
	// its text's): the spam ratio is of the mail that was judged on it.
	if rep.Spam != nil && len(viruses) == 0 {
		e := ev
		e.Kind, e.Score = stats.Ham, rep.Spam.Score
		if r.countsAsSpam(rep.Spam) {
			e.Kind = stats.Spam
		}
		r.journal.Record(e)
	}
}

// countsAsSpam judges a score as the site does: at or over its tag score
// (scan.spam_tag_score, the score at which mail is tagged), or by the
// scorer's own verdict when the site set none. spamd's verdict is its
// required_score, 5.0 by default, so a site that tags at 6.8 would
// otherwise count mail it delivers untagged as spam.
func (r *relayServer) countsAsSpam(res *scan.Result) bool {
	if g := r.cur.Load(); g != nil && g.s.Scan.SpamTagScore > 0 {
		return res.Score >= g.s.Scan.SpamTagScore
	}
	return res.Spam
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
	sum, err := stats.Summarize(ctx, r.cur.Load().s.Stats.Dir, from, to, stats.SummaryOptions{})
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
// sender, so a failure cannot bounce back). Both keys are read from the
// configuration in force: a reload that changes them is followed at once
// (the wait is begun again when the generation is replaced).
func (r *relayServer) mailDaily(ctx context.Context, now func() time.Time) {
	r.everyDay(ctx, now, func(s *Config) {
		if s.Stats.DailyTo == "" {
			return
		}
		end := now()
		if id, to, err := r.sendSummary(ctx, s, end.Add(-24*time.Hour), end, "", 0); err != nil {
			r.log.Error("daily statistics mail failed", "to", s.Stats.DailyTo, "error", err)
		} else {
			r.log.Info("daily statistics queued", "queue_id", id, "to", to)
		}
	})
}

// everyDay calls do with the configuration in force at stats.daily_at
// each day, until ctx ends. The time is read from the configuration in
// force too: a reload begins the wait again.
func (r *relayServer) everyDay(ctx context.Context, now func() time.Time, do func(s *Config)) {
	for {
		g := r.cur.Load()
		switch waitDaily(ctx, g.s.Stats.DailyAt, now, g.replaced()) {
		case waitEnded:
			return
		case waitReloaded:
			continue
		}
		do(r.cur.Load().s)
	}
}

// What waitDaily saw.
const (
	waitFired = iota
	waitReloaded
	waitEnded
)

// waitDaily waits for the next hh:mm (local time). It returns waitFired
// then, waitReloaded when reloaded is closed first (the configuration
// was replaced: the time may have changed), waitEnded when ctx ends.
func waitDaily(ctx context.Context, hhmm string, now func() time.Time, reloaded <-chan struct{}) int {
	if ctx.Err() != nil {
		return waitEnded // at shutdown the generation ends too: not a reload
	}
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
		return waitEnded
	case <-reloaded:
		return waitReloaded
	case <-t.C:
		return waitFired
	}
}

// digestDaily sends each user with newly quarantined mail a list of it,
// with links to the page, at stats.daily_at each day while web.digests
// is on (both as the configuration in force says).
func (r *relayServer) digestDaily(ctx context.Context, now func() time.Time) {
	since := now()
	r.everyDay(ctx, now, func(s *Config) {
		if !s.Web.Digests {
			return
		}
		sent := now()
		if err := r.sendDigests(ctx, s, since); err != nil {
			r.log.Error("quarantine digests failed", "error", err)
			return // the next digest lists these too
		}
		since = sent
	})
}

func (r *relayServer) sendDigests(ctx context.Context, s *Config, since time.Time) error {
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

// sendSummary writes out the journal and queues the summary of [from,
// end) for to (stats.daily_to when empty).
func (r *relayServer) sendSummary(ctx context.Context, s *Config, from, end time.Time, to string, top int) (id, rcpt string, err error) {
	if r.journal != nil {
		r.journal.Flush(ctx)
	}
	var grey *ratelimit.Greylist
	if g := r.cur.Load(); g != nil && g.front != nil {
		grey = g.front.grey
	}
	return queueSummary(ctx, r.q, s, from, end, to, top, grey)
}

// ErrNoReportAddress: the report has nowhere to go.
var ErrNoReportAddress = errors.New("no address for the report: set stats.daily_to or give -mail-to")

// queueSummary queues the statistics report of [from, end) as the daily
// mail is sent: from MAILER-DAEMON with the null sender, to to or
// stats.daily_to. It returns the queue ID and the address.
func queueSummary(ctx context.Context, q *queue.Queue, s *Config, from, end time.Time, to string, top int, grey *ratelimit.Greylist) (id, rcpt string, err error) {
	if to == "" {
		to = s.Stats.DailyTo
	}
	if to == "" {
		return "", "", ErrNoReportAddress
	}
	if to, err = envelopeAddr(to); err != nil {
		return "", "", err
	}
	sum, err := stats.Summarize(ctx, s.Stats.Dir, from, end, stats.SummaryOptions{Top: top})
	if err != nil {
		return "", "", err
	}
	if grey != nil {
		sum.Greylist = greylistDays(ctx, grey, from, end)
	}
	host := s.hostnameOrDefault()
	msg, err := sum.Message("MAILER-DAEMON@"+host, postern.WireAddr(to), host, end)
	if err != nil {
		return "", "", err
	}
	id, err = q.Enqueue(ctx, queue.Envelope{From: "", Recipients: []queue.Recipient{{Addr: to, Original: to}}},
		bytes.NewReader(msg))
	return id, to, err
}

// greylistDays reads greylisting's figures for the report of [from, end):
// the days of the period, and before them the days whose retry window
// closed within it (their never-retried count is final). A store that
// cannot be asked leaves a day out.
func greylistDays(ctx context.Context, grey *ratelimit.Greylist, from, end time.Time) []stats.GreyDay {
	out := []stats.GreyDay{}
	first := from.Add(-grey.RetryWindow() - 24*time.Hour).UTC().Truncate(24 * time.Hour)
	for d := first; d.Before(end); d = d.Add(24 * time.Hour) {
		gd, err := grey.Day(ctx, d)
		if err != nil {
			continue
		}
		out = append(out, stats.GreyDay{Date: gd.Day, Greylisted: gd.Greylisted, Passed: gd.Passed,
			NeverRetried: gd.NeverRetried, Final: gd.Final})
	}
	return out
}

// mailStatsRequest is what "relay stats -mail" asks the running relay
// (control command mail-stats), as flags.
type mailStatsRequest struct {
	since time.Duration
	until time.Time
	to    string
	top   int
}

func (m *mailStatsRequest) args() []string {
	a := []string{"-since", m.since.String(), "-until", m.until.Format(time.RFC3339Nano), "-top", strconv.Itoa(m.top)}
	if m.to != "" {
		a = append(a, "-to", m.to)
	}
	return a
}

func parseMailStats(args []string) (*mailStatsRequest, error) {
	m := &mailStatsRequest{}
	fs := flag.NewFlagSet("mail-stats", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.DurationVar(&m.since, "since", 24*time.Hour, "")
	until := fs.String("until", "", "")
	fs.StringVar(&m.to, "to", "", "")
	fs.IntVar(&m.top, "top", 0, "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, *until)
	if err != nil {
		return nil, fmt.Errorf("-until: %w", err)
	}
	if m.since <= 0 {
		return nil, fmt.Errorf("-since %s: not a period", m.since)
	}
	m.until = t
	return m, nil
}

// summarySender queues a report (sendSummary in the relay,
// queueSummary on a stopped relay's spool).
type summarySender func(ctx context.Context, s *Config, from, end time.Time, to string, top int) (id, rcpt string, err error)

// mailStats runs a mail-stats request with the settings s and says what
// it queued.
func mailStats(ctx context.Context, send summarySender, s *Config, m *mailStatsRequest, w io.Writer) int {
	id, to, err := send(ctx, s, m.until.Add(-m.since), m.until, m.to, m.top)
	if err != nil {
		fmt.Fprintf(w, "relay stats: %s\n", safe(err.Error()))
		return 1
	}
	fmt.Fprintf(w, "statistics of %s to %s queued as %s for <%s>\n", m.until.Add(-m.since).Format(time.RFC3339),
		m.until.Format(time.RFC3339), safe(id), safe(to))
	return 0
}

// statsCommand prints a summary of the relay's records, or with -mail
// queues it for stats.daily_to (or -mail-to) at once: the daily mail,
// now.
func statsCommand(args []string, stdout, stderr io.Writer) int {
	// The report escapes the names it prints; errors may quote files.
	so, se := termsafe.NewWriter(stdout), termsafe.NewWriter(stderr)
	defer so.Close()
	defer se.Close()
	stdout, stderr = so, se
	var since *time.Duration
	var top *int
	var until, mailTo *string
	var mail *bool
	s, _, ok := commandSettings("relay stats", args, stderr, func(fs *flag.FlagSet) {
		since = fs.Duration("since", 24*time.Hour, "summarise this long a `period` before -until")
		until = fs.String("until", "", "end of the period, RFC 3339 `time` (default now)")
		top = fs.Int("top", 10, "`entries` in each ranked list")
		mail = fs.Bool("mail", false, "mail the report to stats.daily_to now (queued as the daily mail is) instead of printing it")
		mailTo = fs.String("mail-to", "", "mail the report to this `address` now")
	})
	if !ok {
		return 2
	}
	end := time.Now()
	if *until != "" {
		var err error
		if end, err = time.Parse(time.RFC3339, *until); err != nil {
			fmt.Fprintln(stderr, "relay: -until:", err)
			return 2
		}
	}
	if *since <= 0 {
		fmt.Fprintln(stderr, "relay: -since must be a positive period")
		return 2
	}
	if *mail || *mailTo != "" {
		return mailStatsCommand(s, &mailStatsRequest{since: *since, until: end, to: *mailTo, top: *top}, stdout, stderr)
	}
	// A running relay writes its records within a second; ask it to
	// write them now. A stopped one has written everything.
	if _, _, err := askRelay(s.Control.Socket, "flush-stats", nil, io.Discard); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	sum, err := stats.Summarize(context.Background(), s.Stats.Dir, end.Add(-*since), end, stats.SummaryOptions{Top: *top})
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

// mailStatsCommand has the running relay queue the report (with the
// configuration it runs with); with no relay running it queues the
// report in the spool itself, for the relay to deliver when it starts.
func mailStatsCommand(s *Config, m *mailStatsRequest, stdout, stderr io.Writer) int {
	code, ok, err := askRelay(s.Control.Socket, "mail-stats", m.args(), stdout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if ok {
		return code
	}
	q, err := queue.Open(queue.Config{Dir: s.Spool, Hostname: s.Hostname, Postmaster: s.Delivery.Postmaster})
	if err != nil {
		fmt.Fprintf(stderr, "relay: spool %s: %s\n", s.Spool, err)
		return 1
	}
	defer q.Close()
	send := func(ctx context.Context, s *Config, from, end time.Time, to string, top int) (string, string, error) {
		return queueSummary(ctx, q, s, from, end, to, top, nil)
	}
	code = mailStats(context.Background(), send, s, m, stdout)
	if code == 0 {
		fmt.Fprintln(stdout, "the relay is not running: it delivers the report when it starts")
	}
	return code
}
