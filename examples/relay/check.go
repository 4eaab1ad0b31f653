package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/postern/postern"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/internal/termsafe"
	"github.com/postern/postern/ratelimit"
)

// check runs the relay's policy for one client and envelope without
// serving, and prints every decision: which filter said what, and why.
func check(args []string, stdout, stderr io.Writer) int {
	// Reasons quote DNS answers, access entries and the addresses given:
	// every line is escaped (internal/termsafe), each decision on one line.
	so, se := termsafe.NewWriter(stdout), termsafe.NewWriter(stderr)
	defer so.Close()
	defer se.Close()
	a, s, code := checkFlags(args, se)
	if s == nil {
		return code
	}
	dr, err := newDryRun(s, so, se)
	if err != nil {
		fmt.Fprintln(se, "relay:", err)
		return 1
	}
	defer dr.routing.Close()
	defer closeDirectory(dr.dir, 0)
	describeDirectory(context.Background(), so, s, dr.dir, a)
	dr.run(context.Background(), a)
	return 0
}

// checkArgs is the mail relay check pretends to receive.
type checkArgs struct {
	ip                         netip.Addr
	name, helo, from, authUser string
	rcpts                      []string
}

// checkFlags reads the configuration and the check's own flags; s is nil
// when the command must end with code.
func checkFlags(args []string, stderr io.Writer) (a checkArgs, s *Config, code int) {
	var ipStr, name, helo, from, authUser *string
	var rcpts multiFlag
	s, _, ok := commandSettings("relay check", args, stderr, func(fs *flag.FlagSet) {
		ipStr = fs.String("ip", "192.0.2.1", "client IP `address`")
		name = fs.String("client-name", "", "client's verified host `name` (default: looked up in DNS as the server does, with smtp.reverse_dns)")
		helo = fs.String("helo", "client.example", "HELO/EHLO `name`")
		from = fs.String("from", "", "envelope sender (empty for <>), as written in SMTP: a local part may be quoted")
		fs.Var(&rcpts, "rcpt", "envelope recipient (repeat for several), as written in SMTP")
		authUser = fs.String("auth", "", "authenticated `user`, if the session used SMTP AUTH")
	})
	if !ok {
		return a, nil, 2
	}
	ip, err := netip.ParseAddr(*ipStr)
	if err != nil {
		fmt.Fprintln(stderr, "relay: -ip:", err)
		return a, nil, 2
	}
	return checkArgs{ip: ip, name: *name, helo: *helo, from: *from, authUser: *authUser, rcpts: rcpts}, s, 0
}

// dryRun is the relay's policy built for one check: the same chain the
// server runs, printing each decision.
type dryRun struct {
	s       *Config
	pol     *policy
	ap      *authParts
	routing *delivery
	dir     *directory.Directory // nil without ldap.urls
	out     io.Writer
}

func newDryRun(s *Config, stdout, stderr io.Writer) (*dryRun, error) {
	dr := &dryRun{s: s, out: stdout}
	// Map warnings go to stderr; the decisions to stdout.
	warnLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	res, err := newResolver(s, warnLog)
	if err != nil {
		return nil, err
	}
	if dr.dir, err = buildDirectory(s, res, warnLog); err != nil {
		return nil, err
	}
	if dr.routing, err = buildRouting(s, res, warnLog, nil, dr.dir); err != nil {
		closeDirectory(dr.dir, 0)
		return nil, err
	}
	fail := func(err error) (*dryRun, error) { dr.routing.Close(); closeDirectory(dr.dir, 0); return nil, err }
	if dr.ap, err = buildAuth(s, res, warnLog, dr.dir); err != nil {
		return fail(err)
	}
	// A dry run counts in a store of its own: taken from the shared one
	// (Redis), its messages would count against the real client (and a
	// greylisted triplet would be recorded as seen).
	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	if err != nil {
		return fail(err)
	}
	front, err := buildFront(s, store, warnLog, nil)
	if err != nil {
		return fail(err)
	}
	sc, err := buildScan(s, warnLog, dr.dir, front)
	if err != nil {
		return fail(err)
	}
	if dr.pol, err = buildPolicy(s, warnLog, dr.observe, dr.routing.verifier, dr.ap, sc, store, front); err != nil {
		return fail(err)
	}
	return dr, nil
}

// observe prints one filter's decision.
func (dr *dryRun) observe(_ context.Context, d postern.Decision) {
	line := fmt.Sprintf("  %-8s %-18s %-10s", d.Stage, d.Filter, d.Verdict.Action)
	if d.Verdict.Action == postern.Reject || d.Verdict.Action == postern.TempFail {
		line += " " + d.Verdict.ReplyAt(d.Stage).Error()
	}
	if d.Verdict.Reason != "" {
		line += "  (" + d.Verdict.Reason + ")"
	}
	if d.Err != nil {
		line += "  error: " + d.Err.Error()
	}
	fmt.Fprintln(dr.out, safe(strings.TrimRight(line, " ")))
}

// final prints a stage's outcome and reports whether the dialogue goes
// on.
func (dr *dryRun) final(stage string, v postern.Verdict, st postern.Stage) bool {
	switch v.Action {
	case postern.Reject, postern.TempFail:
		fmt.Fprintf(dr.out, "=> %s: %s\n", safe(stage), safe(v.ReplyAt(st).Error()))
		return false
	}
	fmt.Fprintf(dr.out, "=> %s: %s\n", safe(stage), v.Action)
	return true
}

// run goes through the dialogue as the server would.
func (dr *dryRun) run(ctx context.Context, a checkArgs) {
	s, out, chain := dr.s, dr.out, dr.pol.chain
	c := &postern.Conn{ID: "check", Remote: netip.AddrPortFrom(a.ip, 0), AuthUser: a.authUser}
	if a.authUser != "" {
		c.AuthMech = "PLAIN"
	}
	fmt.Fprintf(out, "filters: %s (%s)\n", strings.Join(dr.pol.names, ", "), safe(orderSource(s)))
	d, why := dr.pol.pause(a.ip)
	fmt.Fprintf(out, "greet pause: %s (%s)\n", d, safe(why))
	fmt.Fprintf(out, "reverse dns: %s\n", safe(checkClientHost(ctx, s, dr.ap, c, a.name)))
	fmt.Fprintf(out, "connect %s\n", a.ip)
	if v, _ := chain.CheckConnect(ctx, c); !dr.final("connect", v, postern.StageConnect) {
		return
	}
	c.HELO, c.ESMTP = a.helo, true
	fmt.Fprintf(out, "helo %s\n", safe(c.HELO))
	if v, _ := chain.CheckHelo(ctx, c); !dr.final("helo", v, postern.StageHelo) {
		return
	}
	fmt.Fprintf(out, "mail from:<%s>\n", safe(a.from))
	sender := ""
	if a.from != "" {
		addr, rep := checkAddr(s, a.from, postern.StageMail)
		if !rep.IsZero() {
			fmt.Fprintf(out, "=> mail: %s\n", safe(rep.Error()))
			return
		}
		sender = addr.String()
	}
	t := &postern.Txn{ID: "check", From: sender}
	v, _ := chain.CheckMail(ctx, c, t)
	if !dr.final("mail", v, postern.StageMail) {
		return
	}
	applyTxn(t, v)
	dr.rcpts(ctx, c, t, a.rcpts)
}

// rcpts runs the recipients and says what becomes of the message.
func (dr *dryRun) rcpts(ctx context.Context, c *postern.Conn, t *postern.Txn, rcpts []string) {
	out := dr.out
	for _, r := range rcpts {
		fmt.Fprintf(out, "rcpt to:<%s>\n", safe(r))
		a, rep := checkAddr(dr.s, r, postern.StageRcpt)
		if !rep.IsZero() {
			fmt.Fprintf(out, "=> rcpt <%s>: %s\n", safe(r), safe(rep.Error()))
			continue
		}
		rc := &postern.Rcpt{Addr: a.String(), Original: a.String()}
		v, _ := dr.pol.chain.CheckRcpt(ctx, c, t, rc)
		if dr.final("rcpt <"+r+">", v, postern.StageRcpt) {
			applyTxn(t, v)
			t.Rcpts = append(t.Rcpts, rc)
		}
	}
	switch {
	case len(t.Rcpts) == 0:
		fmt.Fprintln(out, "=> message: no accepted recipients")
	case t.Discard:
		fmt.Fprintln(out, "=> message: accepted and discarded")
	case t.Quarantine != "":
		fmt.Fprintf(out, "=> message: accepted into quarantine (%s)\n", safe(t.Quarantine))
	default:
		fmt.Fprintf(out, "=> message: accepted for %d recipient(s)\n", len(t.Rcpts))
	}
}

// checkClientHost sets the client's host name as the server would (or as
// -client-name says) and describes it.
func checkClientHost(ctx context.Context, s *Config, ap *authParts, c *postern.Conn, name string) string {
	ip := c.RemoteAddr()
	switch n, trusted := s.trustedNet(ip); {
	case name != "":
		c.SetClientHost(postern.ClientHost{Resolve: postern.ResolveOK, Name: strings.TrimSuffix(strings.ToLower(name), "."), PTR: name})
		return "OK " + c.ClientName + " (given by -client-name, not looked up)"
	case ap.iprev == nil:
		return "not looked up (smtp.reverse_dns = false)"
	case trusted:
		return "not looked up (trusted network " + n.String() + ")"
	}
	ctx, cancel := context.WithTimeout(ctx, maxReverseDNSTimeout)
	defer cancel()
	h := ap.iprev.LookupClientHost(ctx, ip)
	c.SetClientHost(h)
	return describeClientHost(h, ip)
}

// checkAddr reads an address given on the command line as a client writes
// it in SMTP (a local part may be quoted; the bare Postmaster only as a
// recipient) and returns the canonical form the server hands the policy,
// or the refusal the server answers (smtpserver refuses syntax errors and,
// with smtp.quoted_local_parts = "refuse", local parts that need quotes).
func checkAddr(s *Config, addr string, st postern.Stage) (postern.Address, postern.Reply) {
	esc := postern.ESC(5, 1, 3)
	if st == postern.StageMail {
		esc = postern.ESC(5, 1, 7)
	}
	a, err := postern.ParseMailbox(addr)
	if err != nil && !strings.HasPrefix(addr, `"`) {
		a, err = postern.SplitAddress(addr) // unquoted, as go-smtp takes it
	}
	if err == nil && a.Domain == "" && st == postern.StageMail {
		err = errors.New("a sender needs a domain")
	}
	switch {
	case err != nil:
		return a, postern.NewReply(553, esc, "Bad address syntax ("+strings.TrimPrefix(err.Error(), "postern: bad address syntax: ")+")")
	case s.refuseQuoted && a.NeedsQuoting():
		return a, postern.NewReply(553, esc, "Address rejected: quoted local parts are not accepted here")
	}
	return a, postern.Reply{}
}

// applyTxn mirrors what the server does with Discard and Quarantine.
func applyTxn(t *postern.Txn, v postern.Verdict) {
	switch v.Action {
	case postern.Discard:
		t.Discard = true
	case postern.Quarantine:
		if t.Quarantine == "" {
			t.Quarantine = v.Reason
		}
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
