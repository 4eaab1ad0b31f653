package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// SeamsConfig selects the cases of the seams scenario ("Security at the
// seams"). The zero value runs them all; every case is quick.
type SeamsConfig struct {
	// Only runs the cases whose ID or group contains one of these words
	// (all when empty).
	Only []string
}

// SeamsResult has one row per adversarial case.
type SeamsResult struct {
	Outcome
	Cases   []*SeamCase `json:"cases"`
	Passed  int         `json:"passed"`
	Failed  int         `json:"failed"`
	Skipped int         `json:"skipped"`
	Known   int         `json:"known_issues"`
	Seconds float64     `json:"seconds"`
}

// SeamCase is one attack at a seam of the relay: what the attacker does,
// what the relay answered, what reached a next hop (observed at a sink:
// the envelope it got, the notices and to whom) and what was expected.
type SeamCase struct {
	Outcome
	ID        string  `json:"id"`
	Group     string  `json:"group"`
	Attack    string  `json:"attack"`
	Expect    string  `json:"expect"`
	Reply     string  `json:"reply"`
	Delivered string  `json:"delivered"`
	Known     string  `json:"known_issue,omitempty"`
	Seconds   float64 `json:"seconds"`
}

// seamDef defines a case; run fills in Reply and Delivered and records
// what does not match the expectation as failures.
type seamDef struct {
	id, group, attack, expect string
	run                       func(ctx context.Context, e *seams, c *SeamCase) error
	known                     *knownIssue
}

// knownIssue is a deviation already reported to the component's owners.
// A case whose every failure matches is listed as a known issue, not as
// a failure, until it passes; any other failure fails it.
type knownIssue struct {
	what    string
	matches *regexp.Regexp
}

// covers tells whether the failures are all the known deviation.
func (k *knownIssue) covers(failures []string) bool {
	if k == nil || len(failures) == 0 {
		return false
	}
	for _, f := range failures {
		if !k.matches.MatchString(f) {
			return false
		}
	}
	return true
}

// seams is what the cases share: the suite, one DNS server, and the
// relays and conversations of the case running now (checked and ended
// after it).
type seams struct {
	s     *suite
	zone  *dnsZone
	c     *SeamCase
	procs []*relayProc
	talks []*talk
}

func seamDefs() []seamDef {
	var out []seamDef
	for _, group := range [][]seamDef{loopCases(), addressCases(), dataCases(), submissionCases(),
		backscatterCases(), attachmentCases(), smallerCases()} {
		out = append(out, group...)
	}
	return out
}

func runSeams(ctx context.Context, s *suite, cfg SeamsConfig) *SeamsResult {
	res := &SeamsResult{}
	start := time.Now()
	defer res.settle()
	e := &seams{s: s}
	for _, d := range seamDefs() {
		if ctx.Err() != nil {
			res.fail("interrupted")
			break
		}
		if !selected(d.id+" "+d.group, cfg.Only) {
			continue
		}
		c := e.runCase(ctx, d)
		res.Cases = append(res.Cases, c)
		switch c.Status {
		case StatusPass:
			res.Passed++
		case StatusSkip:
			res.Skipped++
		case StatusKnown:
			res.Known++
		default:
			res.Failed++
			res.fail("%s: %s", c.ID, strings.Join(c.Failures, "; "))
		}
		s.progress("seams: %s %s: %s | reply %s | delivered %s", c.ID, c.Status, oneLine(c.Attack), oneLine(c.Reply), oneLine(c.Delivered))
	}
	res.Seconds = time.Since(start).Seconds()
	return res
}

// runCase runs one case, then checks that its relays neither died nor
// panicked and that every reply line was well formed, and stops them.
func (e *seams) runCase(ctx context.Context, d seamDef) *SeamCase {
	c := &SeamCase{ID: d.id, Group: d.group, Attack: d.attack, Expect: d.expect}
	e.c, e.procs, e.talks = c, nil, nil
	start := time.Now()
	if err := d.run(ctx, e, c); err != nil {
		if isMissing(err) {
			c.skip(e.s.ci, err)
		} else {
			c.fail("%v", err)
		}
	}
	for _, t := range e.talks {
		t.close()
		c.require(len(t.bad) == 0, "malformed reply lines: %s", strings.Join(t.bad, "; "))
	}
	for _, r := range e.procs {
		if !r.alive() {
			c.fail("the relay died: %s", r.tail())
		}
		if n := r.panicLines(); n > 0 {
			c.fail("%d panic lines in the relay's log", n)
		}
		r.kill()
	}
	c.Seconds = time.Since(start).Seconds()
	c.settle()
	switch {
	case c.Status == StatusFail && d.known.covers(c.Failures):
		c.Status, c.Known = StatusKnown, d.known.what
	case c.Status == StatusPass && d.known != nil:
		c.note("passes now: its known-issue mark (%s) can go", d.known.what)
	}
	return c
}

// dns returns the run's DNS server: this host's names and the other
// domains the cases route to.
func (e *seams) dns() (*dnsZone, error) {
	if e.zone != nil {
		return e.zone, nil
	}
	z, err := e.s.startDNSZone(map[string]string{
		"localhost":                 "127.0.0.1",
		"loop.example":              "127.0.0.1",
		"remote.example":            "192.0.2.1", // TEST-NET-1: never reached
		"mx.zero.example":           "0.0.0.0",
		"mx.self.example":           "127.0.0.1",
		"relay.nix.co.jj":           "127.0.0.1",
		"relay2.nix.co.jj":          "192.0.2.2",
		"outside.example":           "192.0.2.3",
		"victim.example":            "192.0.2.4",
		"mail._domainkey.x.example": "192.0.2.5",
	}, map[string]string{"zero.example": "mx.zero.example", "self.example": "mx.self.example"})
	if err != nil {
		return nil, err
	}
	e.zone = z
	return z, nil
}

// outside is the untrusted source address (skipped without root).
func (e *seams) outside() (string, error) { return e.s.outsideAddr() }

// startRelay runs a relay for the current case in a fresh directory:
// spool, greet pause off, no metrics listener, retries after 1 s; args
// come after these and may name a -config.
func (e *seams) startRelay(ctx context.Context, name string, args ...string) (*relayProc, string, error) {
	dir, err := e.s.dir("seams-" + e.c.ID + "-" + name)
	if err != nil {
		return nil, "", err
	}
	r, err := e.startRelayIn(ctx, dir, args...)
	return r, dir, err
}

// startRelayIn is startRelay in a directory of the caller's.
func (e *seams) startRelayIn(ctx context.Context, dir string, args ...string) (*relayProc, error) {
	all := append([]string{"-spool", filepath.Join(dir, "spool"), "-greet-pause", "0", "-metrics-listen", "",
		"-min-backoff", "1s", "-max-backoff", "2s"}, args...)
	if !hasFlag(args, "-listen") {
		all = append(all, "-listen", "127.0.0.1:0")
	}
	r, err := e.s.startRelay(ctx, dir, filepath.Join(dir, "relay.log"), all...)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, r)
	return r, nil
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// migration runs examples/relay/migration (relay.toml, access,
// mailertable) unchanged but for the sockets, the spool, the DNS server,
// the greet pause (10 s for every untrusted connection) and the retry
// delays (1 s, 2 s; no case retries): the mail store, [192.168.1.1] in
// its mailertable, is a recording sink.
func (e *seams) migration(ctx context.Context, extra ...string) (*relayProc, *sink, error) {
	store, err := e.s.startRecordingSink()
	if err != nil {
		return nil, nil, err
	}
	z, err := e.dns()
	if err != nil {
		return nil, nil, err
	}
	dir, err := e.s.dir("seams-" + e.c.ID + "-migration")
	if err != nil {
		return nil, nil, err
	}
	for _, f := range []string{"relay.toml", "access", "mailertable"} {
		b, err := os.ReadFile(filepath.Join(e.s.root, "examples", "relay", "migration", f))
		if err != nil {
			return nil, nil, err
		}
		text := strings.ReplaceAll(string(b), "esmtp:[192.168.1.1]", "esmtp:"+hostPort(store.addr))
		if err := os.WriteFile(filepath.Join(dir, f), []byte(text), 0o644); err != nil {
			return nil, nil, err
		}
	}
	args := append([]string{"-config", filepath.Join(dir, "relay.toml"), "-dns-resolver", z.addr}, extra...)
	r, err := e.startRelayIn(ctx, dir, args...)
	return r, store, err
}

// dial opens a conversation from src, registered for the end-of-case
// checks.
func (e *seams) dial(ctx context.Context, src, addr string) (*talk, string, error) {
	t, banner, err := dialTalk(ctx, src, addr)
	if err != nil {
		return nil, "", err
	}
	e.talks = append(e.talks, t)
	return t, banner, nil
}

// dialog opens a conversation from src, says EHLO and sends cmds one at
// a time; it returns the reply to each command.
func (e *seams) dialog(ctx context.Context, src, addr string, cmds ...string) ([]string, error) {
	t, banner, err := e.dial(ctx, src, addr)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(banner, "220") {
		return nil, fmt.Errorf("banner %q", banner)
	}
	if _, err := t.do("EHLO attacker.example"); err != nil {
		return nil, err
	}
	var out []string
	for _, cmd := range cmds {
		r, err := t.do(cmd)
		if err != nil {
			return out, err
		}
		out = append(out, r[0])
	}
	t.quit()
	return out, nil
}

// mailertable routes each domain to an address (host:port) and returns
// the file.
func mailertable(dir string, routes map[string]string) (string, error) {
	var b strings.Builder
	for domain, addr := range routes {
		fmt.Fprintf(&b, "%s esmtp:%s\n", domain, hostPort(addr))
	}
	p := filepath.Join(dir, "mailertable")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

// summary writes a conversation's replies for the table: the codes of
// all but the last, then the last whole ("250 250 354 → 250 2.0.0 Ok:
// queued as X").
func summary(replies []string) string {
	if len(replies) == 0 {
		return "no reply"
	}
	last := replies[len(replies)-1]
	if len(replies) == 1 {
		return last
	}
	return codes(replies[:len(replies)-1]) + " → " + last
}

// writeFile writes text to dir/name and returns the path.
func writeFile(dir, name, text string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(text), 0o644)
}

// queuedLine is the relay's log line for a message a session accepted.
var queuedLine = regexp.MustCompile(`msg=message .*action=queued`)

// logText returns the relay's whole log so far.
func (r *relayProc) logText() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// accepted counts the messages the relay's sessions queued.
func (r *relayProc) accepted() int { return len(queuedLine.FindAllString(r.logText(), -1)) }

// settleSink waits until k has n messages (or within passes), then for
// quiet more seconds in which anything else would arrive, and returns
// what it got.
func settleSink(ctx context.Context, k *sink, n int, within, quiet time.Duration) []sunk {
	waitFor(ctx, within, func() bool { return len(k.received()) >= n })
	time.Sleep(quiet)
	return k.received()
}

// deliveries returns the transactions k got that reached their end of
// data, as they were written on the wire.
func deliveries(k *sink) []wireTxn {
	var out []wireTxn
	for _, w := range k.wire() {
		for _, t := range wireTxns(w) {
			if t.Data != nil {
				out = append(out, t)
			}
		}
	}
	return out
}

// envelopes describes deliveries for the table: "MAIL FROM:<> RCPT
// TO:<a@b> NOTIFY=NEVER", one per transaction.
func envelopes(ts []wireTxn) string {
	if len(ts) == 0 {
		return "nothing"
	}
	var parts []string
	for _, t := range ts {
		rc := make([]string, len(t.Rcpts))
		for i, r := range t.Rcpts {
			rc[i] = "RCPT TO:" + r
		}
		parts = append(parts, "MAIL FROM:"+wirePath(t.Mail)+" "+strings.Join(rc, " "))
	}
	return strings.Join(parts, "; ")
}

// statusOf returns the Status field of a delivery status notification
// (RFC 3464 §2.3.4), "" if there is none.
var statusRE = regexp.MustCompile(`(?m)^Status: *([245]\.\d{1,3}\.\d{1,3})`)

func statusOf(msg []byte) string {
	if m := statusRE.FindSubmatch(msg); m != nil {
		return string(m[1])
	}
	return ""
}

// notices describes failure notices for the table: "1 notice (5.4.6) to
// <alice@nix.co.jj>".
func notices(ts []wireTxn) string {
	if len(ts) == 0 {
		return "no notice"
	}
	var parts []string
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("notice (Status: %s) MAIL FROM:%s RCPT TO:%s", statusOf(t.Data), wirePath(t.Mail), strings.Join(t.Rcpts, ",")))
	}
	return fmt.Sprintf("%d: %s", len(ts), strings.Join(parts, "; "))
}
