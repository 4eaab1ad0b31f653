package ratelimit_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
)

// Keys name the source that is counted. By default a client is its IPv4
// address or its IPv6 /64; IPv4-mapped addresses count as IPv4.
func ExampleIPKey() {
	network := ratelimit.Class{V4: 24, V6: 48}
	for _, s := range []string{"192.0.2.7", "::ffff:192.0.2.7", "2001:db8:1:2:3:4:5:6"} {
		ip := netip.MustParseAddr(s)
		fmt.Printf("%-22s %-24s %s\n", s, ratelimit.IPKey(ip, ratelimit.Class{}), ratelimit.IPKey(ip, network))
	}
	fmt.Println(ratelimit.SenderKey("<Alice@Example.ORG>"), ratelimit.UserKey("alice"))
	// Output:
	// 192.0.2.7              ip:192.0.2.7/32          ip:192.0.2.0/24
	// ::ffff:192.0.2.7       ip:192.0.2.7/32          ip:192.0.2.0/24
	// 2001:db8:1:2:3:4:5:6   ip:2001:db8:1:2::/64     ip:2001:db8:1::/48
	// from:alice@example.org user:alice
}

// A clock the example can move.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// Token buckets per key, on an injected clock.
func ExampleLimiters() {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l, err := ratelimit.NewLimiters(ratelimit.LimitersConfig{MaxKeys: 10_000, Now: clk.Now})
	if err != nil {
		log.Fatal(err)
	}
	r := ratelimit.Rate{Count: 2, Per: time.Minute}
	key := ratelimit.IPKey(netip.MustParseAddr("192.0.2.7"), ratelimit.Class{})
	fmt.Println(l.Allow(key, r), l.Allow(key, r), l.Allow(key, r))
	clk.t = clk.t.Add(30 * time.Second) // one token back
	fmt.Println(l.Allow(key, r), l.Allow(key, r))
	// Output:
	// true true false
	// true false
}

// The directory-harvest guard: a source that collects ten "User
// unknown" answers within ten minutes is answered 451 for thirty minutes,
// then served again.
func ExampleGuard() {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	guard, err := ratelimit.NewGuard(ratelimit.GuardConfig{Now: clk.Now}) // 10 in 10 min, hold 30 min
	if err != nil {
		log.Fatal(err)
	}
	// The recipient check, and a chain that feeds its answers to the guard.
	verify := postern.RcptFunc("verify", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
		if r.Addr == "alice@example.test" {
			return postern.Pass, nil
		}
		return postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", "no such user "+r.Addr), nil
	})
	chain, err := postern.NewChain(postern.ChainConfig{
		Entries:  []postern.Entry{{Filter: guard}, {Filter: verify}},
		Observer: guard.Observe,
	})
	if err != nil {
		log.Fatal(err)
	}
	harvester := &postern.Conn{ID: "h", Remote: netip.MustParseAddrPort("198.51.100.23:40000")}
	rcpt := func(addr string) string {
		v, _ := chain.CheckRcpt(ctx, harvester, &postern.Txn{}, &postern.Rcpt{Addr: addr})
		if !v.Final() {
			return "250 OK"
		}
		return v.Reply.Error()
	}
	for i := range 10 {
		rcpt(fmt.Sprintf("guess%d@example.test", i))
	}
	fmt.Println(rcpt("alice@example.test"))
	clk.t = clk.t.Add(30 * time.Minute)
	fmt.Println(rcpt("alice@example.test"))
	st := guard.Stats()
	fmt.Println("unknown:", st.Unknown, "holds:", st.Holds, "refused:", st.Refused)
	// Output:
	// 451 4.7.1 Too many unknown recipients from 198.51.100.23, try again later
	// 250 OK
	// unknown: 10 holds: 1 refused: 1
}

// Messages and recipients per client, as Postfix's anvil limits them.
func ExampleFilter() {
	ctx := context.Background()
	f, err := ratelimit.NewFilter(ratelimit.FilterConfig{
		Messages:   ratelimit.Rate{Count: 2, Per: time.Minute},
		Recipients: ratelimit.Rate{Count: 100, Per: time.Minute},
	})
	if err != nil {
		log.Fatal(err)
	}
	c := &postern.Conn{ID: "c", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
	for range 3 {
		v, _ := f.CheckMail(ctx, c, &postern.Txn{From: "bulk@example.org"})
		if !v.Final() {
			fmt.Println("MAIL accepted")
			continue
		}
		fmt.Println(v.Reply.Error())
	}
	// Output:
	// MAIL accepted
	// MAIL accepted
	// 450 4.7.1 Error: too much mail from 192.0.2.7
}

// The site's own senders: a second Filter counts trusted clients per
// address and users who logged in per user, apart from the inbound
// limit, and holds a worm on an inside PC to its rate.
func ExampleByOutbound() {
	ctx := context.Background()
	out, err := ratelimit.NewFilter(ratelimit.FilterConfig{
		Name:         "outbound-ratelimit",
		Key:          ratelimit.ByOutbound(ratelimit.Class{}),
		LimitTrusted: true,
		Messages:     ratelimit.Rate{Count: 2, Per: time.Hour},
	})
	if err != nil {
		log.Fatal(err)
	}
	pc := &postern.Conn{ID: "c", Remote: netip.MustParseAddrPort("10.1.2.3:40000"), Trusted: true}
	for range 3 {
		v, _ := out.CheckMail(ctx, pc, &postern.Txn{From: "pc@campus.example"})
		if !v.Final() {
			fmt.Println("MAIL accepted")
			continue
		}
		fmt.Println(v.Reply.Error())
		fmt.Println(v.Reason[:strings.Index(v.Reason, ";")])
	}
	// Output:
	// MAIL accepted
	// MAIL accepted
	// 450 4.7.1 Error: too much mail from 10.1.2.3
	// outbound-ratelimit: message rate 2/1h0m0s exceeded (ip:10.1.2.3/32)
}

// AUTH failures: the server records each failure and asks before each
// attempt.
func ExampleAuthLimiter() {
	ctx := context.Background()
	a, err := ratelimit.NewAuthLimiter(ratelimit.AuthConfig{MaxFailures: 3})
	if err != nil {
		log.Fatal(err)
	}
	client := ratelimit.IPKey(netip.MustParseAddr("203.0.113.9"), ratelimit.Class{})
	for range 3 {
		if v := a.CheckAuth(ctx, client); v.Final() {
			fmt.Println("refused early")
		}
		_ = a.RecordAuthFailure(ctx, client) // the password was wrong
	}
	fmt.Println(a.CheckAuth(ctx, client).Reply.Error())
	// Output:
	// 454 4.7.0 Too many failed authentication attempts, try again later
}

// The listener in front of the server: sendmail's "ClientConn:" limit
// (here one connection per client) refuses the second connection with
// 421 before the server greets it.
func ExampleNewListener() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	l, err := ratelimit.NewListener(inner, ratelimit.ListenerConfig{
		// With an access map: func(ip netip.Addr) (int, bool) { return m.ClientConn(ip) }
		ClientConn: func(netip.Addr) (int, bool) { return 1, true },
		Hostname:   "mx.example.test",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() { // the server: with go-smtp, smtpServer.Serve(l)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "220 mx.example.test ESMTP\r\n") // and keep it open
		}
	}()
	first := func() string {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	fmt.Println(first())
	fmt.Println(first())
	// Output:
	// 220 mx.example.test ESMTP
	// 421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1
}

// The pass cache, postscreen's temporary allowlist: a client that waited
// out the greet pause and passed the DNS lists is known, so a greet pause
// (greetpause.Config.Known) lets its next connections in at once; an
// early talker is remembered as failed.
func ExamplePassCache() {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	pc, err := ratelimit.NewPassCache(ratelimit.PassCacheConfig{Now: clk.Now}) // memory; PassGreet|PassDNSBL
	if err != nil {
		log.Fatal(err)
	}
	patient, early := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9")
	_ = pc.Pass(ctx, patient, ratelimit.PassGreet)
	known, _ := pc.Known(ctx, patient)
	fmt.Println("after the pause:", known)
	_ = pc.Pass(ctx, patient, ratelimit.PassDNSBL)
	known, _ = pc.Known(ctx, patient)
	fmt.Println("and the lists:", known)

	_ = pc.Fail(ctx, early, ratelimit.PassGreet)
	_ = pc.Pass(ctx, early, ratelimit.PassDNSBL) // not recorded while it is failed
	e, _ := pc.Lookup(ctx, early)
	fmt.Println("early talker failed:", e.Failed, "known:", e.Known)

	clk.t = clk.t.Add(2 * time.Hour) // the lists' pass (an hour) has run out
	known, _ = pc.Known(ctx, patient)
	fmt.Println("two hours on:", known)
	// Output:
	// after the pause: false
	// and the lists: true
	// early talker failed: true known: false
	// two hours on: false
}

// Triplet greylisting: the first attempt is answered 451 4.7.1, a retry
// before the minimum delay too; one after it passes and the triplet is
// remembered.
func ExampleGreylist() {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g, err := ratelimit.NewGreylist(ratelimit.GreylistConfig{Now: clk.Now}) // 5 min, 48 h, 36 days
	if err != nil {
		log.Fatal(err)
	}
	c := &postern.Conn{ID: "c", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
	t := &postern.Txn{From: "alice@example.org"}
	r := &postern.Rcpt{Addr: "bob@example.com", Original: "bob@example.com"}
	try := func(when string) {
		v, _ := g.CheckRcpt(ctx, c, t, r)
		if v.Final() {
			fmt.Println(when+":", v.Reply.Error())
			return
		}
		fmt.Println(when+":", "accepted")
	}
	try("first")
	clk.t = clk.t.Add(time.Minute)
	try("a minute on")
	clk.t = clk.t.Add(10 * time.Minute)
	try("eleven minutes on")
	c.Remote = netip.MustParseAddrPort("192.0.2.8:40000") // same /24
	try("from another address of its /24")
	// Output:
	// first: 451 4.7.1 Greylisted, please try again in 300 seconds
	// a minute on: 451 4.7.1 Greylisted, please try again in 240 seconds
	// eleven minutes on: accepted
	// from another address of its /24: accepted
}
