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
	stdout, stderr = so, se
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
		return 2
	}
	ip, err := netip.ParseAddr(*ipStr)
	if err != nil {
		fmt.Fprintln(stderr, "relay: -ip:", err)
		return 2
	}
	obs := func(_ context.Context, d postern.Decision) {
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
		fmt.Fprintln(stdout, safe(strings.TrimRight(line, " ")))
	}
	// Map warnings go to stderr; the decisions to stdout.
	warnLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := newResolver(s, warnLog)
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	routing, err := buildRouting(s, res, warnLog, nil)
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	defer routing.Close()
	ap, err := buildAuth(s, res, warnLog)
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	sc, err := buildScan(s, warnLog)
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	// A dry run counts in a store of its own: taken from the shared one
	// (Redis), its messages would count against the real client.
	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	pol, err := buildPolicy(s, warnLog, obs, routing.verifier, ap, sc, store)
	if err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 1
	}
	ctx := context.Background()
	c := &postern.Conn{ID: "check", Remote: netip.AddrPortFrom(ip, 0), AuthUser: *authUser}
	if *authUser != "" {
		c.AuthMech = "PLAIN"
	}
	fmt.Fprintf(stdout, "filters: %s (%s)\n", strings.Join(pol.names, ", "), safe(orderSource(s)))
	d, why := pol.pause(ip)
	fmt.Fprintf(stdout, "greet pause: %s (%s)\n", d, safe(why))
	fmt.Fprintf(stdout, "reverse dns: %s\n", safe(checkClientHost(ctx, s, ap, c, *name)))

	final := func(stage string, v postern.Verdict, st postern.Stage) bool {
		switch v.Action {
		case postern.Reject, postern.TempFail:
			fmt.Fprintf(stdout, "=> %s: %s\n", safe(stage), safe(v.ReplyAt(st).Error()))
			return false
		}
		fmt.Fprintf(stdout, "=> %s: %s\n", stage, v.Action)
		return true
	}
	fmt.Fprintf(stdout, "connect %s\n", ip)
	v, _ := pol.chain.CheckConnect(ctx, c)
	if !final("connect", v, postern.StageConnect) {
		return 0
	}
	c.HELO, c.ESMTP = *helo, true
	fmt.Fprintf(stdout, "helo %s\n", safe(c.HELO))
	v, _ = pol.chain.CheckHelo(ctx, c)
	if !final("helo", v, postern.StageHelo) {
		return 0
	}
	fmt.Fprintf(stdout, "mail from:<%s>\n", safe(*from))
	sender := ""
	if *from != "" {
		a, rep := checkAddr(s, *from, postern.StageMail)
		if !rep.IsZero() {
			fmt.Fprintf(stdout, "=> mail: %s\n", safe(rep.Error()))
			return 0
		}
		sender = a.String()
	}
	t := &postern.Txn{ID: "check", From: sender}
	v, _ = pol.chain.CheckMail(ctx, c, t)
	if !final("mail", v, postern.StageMail) {
		return 0
	}
	applyTxn(t, v)
	for _, r := range rcpts {
		fmt.Fprintf(stdout, "rcpt to:<%s>\n", safe(r))
		a, rep := checkAddr(s, r, postern.StageRcpt)
		if !rep.IsZero() {
			fmt.Fprintf(stdout, "=> rcpt <%s>: %s\n", safe(r), safe(rep.Error()))
			continue
		}
		rc := &postern.Rcpt{Addr: a.String(), Original: a.String()}
		v, _ = pol.chain.CheckRcpt(ctx, c, t, rc)
		if final("rcpt <"+r+">", v, postern.StageRcpt) {
			applyTxn(t, v)
			t.Rcpts = append(t.Rcpts, rc)
		}
	}
	switch {
	case len(t.Rcpts) == 0:
		fmt.Fprintln(stdout, "=> message: no accepted recipients")
	case t.Discard:
		fmt.Fprintln(stdout, "=> message: accepted and discarded")
	case t.Quarantine != "":
		fmt.Fprintf(stdout, "=> message: accepted into quarantine (%s)\n", safe(t.Quarantine))
	default:
		fmt.Fprintf(stdout, "=> message: accepted for %d recipient(s)\n", len(t.Rcpts))
	}
	return 0
}

// checkClientHost sets the client's host name as the server would (or as
// -client-name says) and describes it.
func checkClientHost(ctx context.Context, s *settings, ap *authParts, c *postern.Conn, name string) string {
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
func checkAddr(s *settings, addr string, st postern.Stage) (postern.Address, postern.Reply) {
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
