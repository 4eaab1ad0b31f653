package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern/postern/internal/termsafe"
	"github.com/postern/postern/queue"
)

// The queue and quarantine commands: mailq (list, show) and postsuper
// (hold, release, delete, bounce, retry), with selection of messages and
// of recipients within them. They run inside the relay (over the control
// socket) or on a stopped relay's spool, through adminRun.

// adminWait bounds how long a command waits for delivery attempts under
// way to end before it reports a message as busy.
const adminWait = 30 * time.Second

// adminOpts are a command's flags.
type adminOpts struct {
	f       queue.ListFilter
	held    bool
	phase   string
	reason  string
	body    bool
	dryRun  bool
	selects bool // a selection flag was given
}

// selection binds the selection flags: which messages and, for delete
// and bounce, which of their recipients.
func (o *adminOpts) selection(fs *flag.FlagSet) {
	str := func(p *string, name, usage string) {
		fs.Func(name, usage, func(v string) error { *p, o.selects = v, true; return nil })
	}
	age := func(p *time.Duration, name, usage string) {
		fs.Func(name, usage, func(v string) error {
			d, err := parseAge(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("%q is not an age like 30m, 4h or 3d", v)
			}
			*p, o.selects = d, true
			return nil
		})
	}
	str(&o.f.Sender, "sender", "only messages whose sender contains `text` (<> for the null sender)")
	str(&o.f.Recipient, "rcpt", "only recipients whose address contains `text`")
	str(&o.f.RcptDomain, "rcpt-domain", "only recipients at this `domain` (.example.org: at its subdomains)")
	str(&o.f.Destination, "dest", "only recipients going to this `destination` (next hop)")
	str(&o.f.Reply, "reply", "only recipients whose last reply matches `pattern`: a code (450, 4xx), an enhanced code (5.1.1, 4.2.x) or text (\"User unknown\")")
	age(&o.f.OlderThan, "older", "only messages older than this `age` (30m, 4h, 3d)")
	age(&o.f.YoungerThan, "younger", "only messages younger than this `age`")
	str(&o.phase, "state", "only messages in this `state`: new, active, deferred or held")
}

// adminHelp is the description each verb's -h prints before its flags.
var adminHelp = map[string]string{
	"list": `List queued messages (mailq), with the recipients still pending and
their last reply. Selection narrows the list.
  relay queue list -reply 'User unknown'
  relay queue list -rcpt-domain example.org -older 4h`,
	"show": `Show messages' envelopes, delivery state and header (-body: the whole
message).
  relay queue show ID`,
	"hold": `Hold messages (postsuper -h): they are not delivered until released.
  relay queue hold ID ...
  relay queue hold -sender spammer@example.net -dry-run`,
	"release": `Release held messages (postsuper -H) for delivery now.
  relay queue release ID ...
  relay queue release -state held -younger 1h`,
	"delete": `Delete messages without notice (postsuper -d). With -rcpt, -rcpt-domain,
-dest or -reply only the recipients selected are removed and the others
stay queued; a message left without recipients goes. ALL deletes every
message. -dry-run lists what would be deleted.
  relay queue delete ID ...
  relay queue delete -reply '5.1.1' -dry-run
  relay queue delete -reply 'User unknown' -older 1d
  relay queue delete -rcpt-domain example.org
  relay queue delete ALL`,
	"bounce": `Return messages to their senders now (a failure notice, as the
recipients' NOTIFY asks). With -rcpt, -rcpt-domain, -dest or -reply only
the recipients selected are returned, one notice per message naming
them, and the others stay queued.
  relay queue bounce ID ...
  relay queue bounce -reply 'User unknown' -dry-run
  relay queue bounce -rcpt bob@example.org ID`,
	"retry": `Deliver messages now (postqueue -f; with IDs, postqueue -i).
  relay queue retry
  relay queue retry -dest '[store.example.org]'`,
}

// adminRun runs one queue or quarantine command against q. The
// quarantine is the queue's hold area: quarantine commands see held
// messages only.
func adminRun(q *queue.Queue, cmd string, args []string, w io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(w, "usage: relay %s %s\n", cmd, adminVerbs(cmd))
		return 2
	}
	verb, args := args[0], args[1:]
	if !slices.Contains(strings.Split(adminVerbs(cmd), "|"), verb) {
		fmt.Fprintf(w, "relay %s: unknown command %q (%s)\n", cmd, safe(verb), adminVerbs(cmd))
		return 2
	}
	fs := flag.NewFlagSet("relay "+cmd+" "+verb, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "usage: relay %s %s [flags] [ID ...]\n%s\n", cmd, verb,
			strings.ReplaceAll(adminHelp[verb], "relay queue", "relay "+cmd))
		fs.PrintDefaults()
	}
	o := &adminOpts{}
	switch verb {
	case "list":
		o.selection(fs)
		if cmd == "queue" {
			fs.BoolVar(&o.held, "held", false, "only held messages")
		}
	case "show":
		fs.BoolVar(&o.body, "body", false, "print the whole message, not only its header")
	default:
		o.selection(fs)
		fs.BoolVar(&o.dryRun, "dry-run", false, "list what would be done, change nothing")
		if verb == "hold" || verb == "delete" || verb == "bounce" {
			fs.StringVar(&o.reason, "reason", "", "`reason`, logged (and in the bounce)")
		}
	}
	ids, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if o.phase != "" {
		p, ok := queue.ParsePhase(o.phase)
		if !ok {
			fmt.Fprintf(w, "relay %s %s: -state %q is not new, active, deferred or held\n", cmd, verb, safe(o.phase))
			return 2
		}
		o.f.Phase = p
	}
	if o.held {
		o.f.Held = "only"
	}
	if cmd == "quarantine" {
		o.f.Held = "only"
	}
	switch verb {
	case "list":
		if len(ids) > 0 {
			fmt.Fprintf(w, "relay %s list: takes no queue IDs (use show)\n", cmd)
			return 2
		}
		printList(w, q.List(o.f), time.Now())
		return 0
	case "show":
		return adminShow(q, cmd, ids, o.body, w)
	}
	return adminChange(q, cmd, verb, o, ids, w)
}

// parseInterleaved parses flags wherever they are among the arguments
// ("delete ID -dry-run" as well as "delete -dry-run ID"), up to "--",
// and returns the others.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func adminShow(q *queue.Queue, cmd string, ids []string, body bool, w io.Writer) int {
	if len(ids) == 0 {
		fmt.Fprintf(w, "relay %s show: which message? give one or more queue IDs\n", cmd)
		return 2
	}
	code := 0
	for _, id := range ids {
		err := inQuarantine(q, cmd, id)
		if err == nil {
			err = showMessage(w, q, id, body)
		}
		if err != nil {
			fmt.Fprintf(w, "%s: %s\n", safe(id), safe(err.Error()))
			code = 1
		}
	}
	return code
}

var errNotHeld = errors.New("not in quarantine")

// inQuarantine refuses, for quarantine commands, a message that is not
// held.
func inQuarantine(q *queue.Queue, cmd, id string) error {
	if cmd != "quarantine" {
		return nil
	}
	if info, err := q.Show(id); err == nil && !info.Held() {
		return errNotHeld
	}
	return nil
}

// adminChange runs hold, release, delete, bounce and retry on the
// messages named or selected.
func adminChange(q *queue.Queue, cmd, verb string, o *adminOpts, ids []string, w io.Writer) int {
	all := len(ids) == 1 && ids[0] == "ALL" // postsuper -d ALL
	if all {
		ids = nil
	}
	if len(ids) == 0 && !all && !o.selects {
		if verb != "retry" {
			fmt.Fprintf(w, "relay %s %s: which message? give queue IDs, ALL, or a selection such as -reply, -rcpt-domain, -sender, -older (-h lists them)\n", cmd, verb)
			return 2
		}
		all = true // relay queue retry: everything, as sendmail -q
		o.f.Held = "none"
	}
	targets, code := adminTargets(q, cmd, o, ids, w)
	perRcpt := (verb == "delete" || verb == "bounce") && o.f.HasRecipientCriteria()
	ctx, cancel := context.WithTimeout(context.Background(), adminWait)
	defer cancel()
	var nmsg, nrcpt int
	for _, info := range targets {
		var n int
		var err error
		if perRcpt {
			n, err = changeRecipients(ctx, q, verb, o, info, w)
		} else {
			n, err = changeMessage(ctx, q, verb, o, info, w)
		}
		if err != nil {
			fmt.Fprintf(w, "%s: %s\n", safe(info.ID), safe(err.Error()))
			code = 1
		}
		if n > 0 {
			nmsg++
			nrcpt += n
		}
	}
	if o.selects || all || o.dryRun {
		summarize(w, verb, o.dryRun, perRcpt, nmsg, nrcpt)
	}
	return code
}

// adminTargets returns the messages a command acts on: those named
// (each must exist, and match the selection if one is given), or
// everything the selection picks.
func adminTargets(q *queue.Queue, cmd string, o *adminOpts, ids []string, w io.Writer) ([]queue.Info, int) {
	if len(ids) == 0 {
		return q.List(o.f), 0
	}
	code := 0
	selected := map[string]bool{}
	if o.selects {
		for _, info := range q.List(o.f) {
			selected[info.ID] = true
		}
	}
	var out []queue.Info
	for _, id := range ids {
		info, err := q.Show(id)
		if err == nil {
			err = inQuarantine(q, cmd, id)
		}
		if err != nil {
			fmt.Fprintf(w, "%s: %s\n", safe(id), safe(err.Error()))
			code = 1
			continue
		}
		if o.selects && !selected[id] {
			fmt.Fprintf(w, "%s: does not match the selection; left alone\n", safe(id))
			continue
		}
		out = append(out, info)
	}
	return out, code
}

// changeMessage applies a verb to a whole message.
func changeMessage(ctx context.Context, q *queue.Queue, verb string, o *adminOpts, info queue.Info, w io.Writer) (int, error) {
	id := info.ID
	if o.dryRun {
		fmt.Fprintf(w, "%s: would be %s (%s, %d recipient(s) pending)\n", safe(id), pastTense(verb), sender(info.Envelope.From), len(pending(info)))
		return 1, nil
	}
	var err error
	switch verb {
	case "hold":
		err = q.Hold(id, cmpOr(o.reason, "held by the administrator"))
	case "release":
		err = q.Release(id)
	case "delete":
		err = q.Delete(id)
	case "retry":
		if err = q.Retry(id); errors.Is(err, queue.ErrBusy) {
			fmt.Fprintf(w, "%s: being delivered now\n", safe(id))
			return 1, nil
		}
	case "bounce":
		var got []queue.Picked
		got, err = q.BounceRecipients(ctx, id, q.SelectRecipients(queue.ListFilter{}), cmpOr(o.reason, "returned by the administrator"))
		if err == nil && len(got) == 0 {
			fmt.Fprintf(w, "%s: no recipient pending\n", safe(id))
			return 0, nil
		}
	}
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(w, "%s: %s\n", safe(id), pastTense(verb))
	return 1, nil
}

// changeRecipients deletes or bounces the selected recipients of one
// message; a dry run lists them from what the queue says now.
func changeRecipients(ctx context.Context, q *queue.Queue, verb string, o *adminOpts, info queue.Info, w io.Writer) (int, error) {
	pick := q.SelectRecipients(o.f)
	var got []queue.Picked
	if o.dryRun {
		for i, r := range info.Envelope.Recipients {
			if i < len(info.State.Rcpts) && pick(r, info.State.Rcpts[i]) {
				got = append(got, queue.Picked{Recipient: r, State: info.State.Rcpts[i]})
			}
		}
	} else {
		var err error
		if verb == "delete" {
			got, err = q.DeleteRecipients(ctx, info.ID, pick, o.reason)
		} else {
			got, err = q.BounceRecipients(ctx, info.ID, pick, cmpOr(o.reason, "returned by the administrator"))
		}
		if err != nil {
			return 0, err
		}
	}
	done := pastTense(verb)
	if o.dryRun {
		done = "would be " + done
	}
	for _, p := range got {
		last := ""
		if p.State.Reply.Code != 0 {
			last = "  (" + oneLine(p.State.Reply.Error()) + ")"
		}
		fmt.Fprintf(w, "%s: <%s> %s%s\n", safe(info.ID), safe(p.Recipient.Addr), done, last)
	}
	return len(got), nil
}

// summarize ends a selection's output with what it did.
func summarize(w io.Writer, verb string, dry, perRcpt bool, nmsg, nrcpt int) {
	what := fmt.Sprintf("%d message(s)", nmsg)
	if perRcpt {
		what = fmt.Sprintf("%d recipient(s) in %d message(s)", nrcpt, nmsg)
	}
	if dry {
		fmt.Fprintf(w, "-- dry run: %s would be %s; nothing was changed\n", what, pastTense(verb))
		return
	}
	fmt.Fprintf(w, "-- %s %s\n", what, pastTense(verb))
}

func pending(info queue.Info) []string {
	var out []string
	for i, r := range info.Envelope.Recipients {
		if i < len(info.State.Rcpts) && info.State.Rcpts[i].Status == queue.Pending {
			out = append(out, r.Addr)
		}
	}
	return out
}

func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return "<" + safe(from) + ">"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func adminVerbs(cmd string) string {
	if cmd == "quarantine" {
		return "list|show|release|delete"
	}
	return "list|show|hold|release|delete|retry|bounce"
}

func pastTense(verb string) string {
	switch verb {
	case "hold":
		return "held"
	case "retry":
		return "scheduled for delivery now"
	case "bounce":
		return "returned to the sender"
	}
	return verb + "d"
}

// printList writes a mailq-style listing: one line per message and one
// per recipient still pending, with the last reply.
func printList(w io.Writer, items []queue.Info, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE ID\tSTATE\tSIZE\tAGE\tSENDER / RECIPIENTS")
	held := 0
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", safe(it.ID), it.Phase(), it.Size, age(now.Sub(it.Envelope.Received)), sender(it.Envelope.From))
		if it.Held() {
			held++
			fmt.Fprintf(tw, "\t\t\t\t  (held: %s)\n", oneLine(it.State.Hold))
		}
		for i, rc := range it.Envelope.Recipients {
			line := "  " + safe(rc.Addr)
			if i < len(it.State.Rcpts) {
				st := it.State.Rcpts[i]
				switch {
				case st.Status != queue.Pending:
					continue // delivered, failed or deleted: no longer queued
				case st.Reply.Code != 0:
					line += "  (" + oneLine(st.Reply.Error()) + ")"
				}
			}
			fmt.Fprintf(tw, "\t\t\t\t%s\n", line)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "-- %d message(s), %d held\n", len(items), held)
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// oneLine is s on one line, escaped, at most 120 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = strings.ToValidUTF8(s[:117], "") + "..."
	}
	return safe(s)
}

// showMessage prints a message's envelope, state and header (or the whole
// message). Control characters are not passed to the terminal.
func showMessage(w io.Writer, q *queue.Queue, id string, body bool) error {
	info, err := q.Show(id)
	if err != nil {
		return err
	}
	e := info.Envelope
	fmt.Fprintf(w, "Queue-ID: %s\nArrival: %s\nSize: %d\nSender: <%s>\n", safe(info.ID), e.Received.Format(time.RFC1123Z), info.Size, safe(e.From))
	if e.ClientIP != "" {
		fmt.Fprintf(w, "Client: %s (HELO %s)\n", safe(e.ClientIP), safe(e.HELO))
	}
	if e.AuthUser != "" {
		fmt.Fprintf(w, "Authenticated: %s\n", safe(e.AuthUser))
	}
	fmt.Fprintf(w, "State: %s\n", info.Phase())
	if info.Held() {
		fmt.Fprintf(w, "Held: %s\n", safe(info.State.Hold))
	}
	fmt.Fprintf(w, "Attempts: %d\n", info.State.Attempts)
	if !info.State.NextAttempt.IsZero() && !info.Held() {
		fmt.Fprintf(w, "Next attempt: %s\n", info.State.NextAttempt.Format(time.RFC1123Z))
	}
	for i, rc := range e.Recipients {
		status := queue.Pending
		var reply string
		if i < len(info.State.Rcpts) {
			status = info.State.Rcpts[i].Status
			if info.State.Rcpts[i].Reply.Code != 0 {
				reply = " " + oneLine(info.State.Rcpts[i].Reply.Error())
			}
		}
		fmt.Fprintf(w, "Recipient: <%s> %s%s\n", safe(rc.Addr), status, reply)
	}
	rc, err := q.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	fmt.Fprintln(w)
	if body {
		sw := termsafe.NewWriter(w)
		if _, err = io.Copy(sw, rc); err != nil {
			return err
		}
		return sw.Close()
	}
	sc := bufio.NewScanner(io.LimitReader(rc, 1<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			break
		}
		fmt.Fprintln(w, termsafe.Text(line)) // folded lines keep their tab
	}
	return nil
}
