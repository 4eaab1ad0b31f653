package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/greetpause"
	"github.com/postern/postern/smtpserver/proxyproto"
)

// The front door: the pass cache (postscreen's temporary allowlist) that
// lets clients that passed the greet pause and the DNS lists in at once,
// the deep protocol tests, greylisting, and the PROXY protocol listener
// for a relay behind a load balancer. The pass cache and the greylist
// keep their records in the counter store (memory, or Redis shared by
// the relays); they are built with each generation, from its keys.

// frontSettings are the front door's keys, parsed by resolveFront.
type frontSettings struct {
	passRequire   ratelimit.PassTest
	protocolTests smtpserver.ProtocolTest
	balancers     []netip.Prefix
	greyAt        postern.Stage
	greySPF       []string // lower case
	rspamdGrey    scan.SoftAction
	rspamdSoft    scan.SoftAction
}

var protocolTestNames = map[string]smtpserver.ProtocolTest{
	"pipelining": smtpserver.ProtocolPipelining, "non_smtp": smtpserver.ProtocolNonSMTP,
	"bare_newline": smtpserver.ProtocolBareNewline,
}

// validateFront checks the front door's keys.
func (c *Config) validateFront() error {
	for i, t := range c.SMTP.ProtocolTests {
		if _, ok := protocolTestNames[t]; !ok {
			return keyErr("smtp.protocol_tests", "%q (item %d) is not pipelining, non_smtp or bare_newline", t, i+1)
		}
	}
	if _, err := parsePrefixes(strings.Join(c.SMTP.ProxyBalancers, ",")); err != nil {
		return keyErr("smtp.proxy_balancers", "%v", err)
	}
	switch c.Greylist.At {
	case "", "rcpt", "data":
	default:
		return keyErr("greylist.at", "%q is not rcpt or data", c.Greylist.At)
	}
	if d, w := c.Greylist.MinDelay.Duration, c.Greylist.RetryWindow.Duration; w > 0 && d >= w {
		return keyErr("greylist.min_delay", "%s is not shorter than greylist.retry_window (%s)", d, w)
	}
	if c.Greylist.AutoAllow < 0 {
		return keyErr("greylist.auto_allow", "cannot be negative (0 turns it off)")
	}
	for i, d := range c.Greylist.ExemptSPFDomains {
		if !validDomain(d) {
			return keyErr("greylist.exempt_spf_domains", "%q (item %d) is not a domain name", d, i+1)
		}
	}
	for _, k := range []struct{ key, v string }{{"scan.rspamd_greylist", c.Scan.RspamdGreylist},
		{"scan.rspamd_soft_reject", c.Scan.RspamdSoftReject}} {
		if k.v == "" {
			continue
		}
		if _, err := scan.ParseSoftAction(k.v); err != nil {
			return keyErr(k.key, "%q is not tempfail, greylist or accept", k.v)
		}
	}
	return nil
}

// resolveFront parses the front door's keys into c.front.
func (c *Config) resolveFront() error {
	f := frontSettings{passRequire: ratelimit.PassGreet, greyAt: postern.StageRcpt}
	if len(c.DNSBL.Zones)+len(c.DNSBL.Allow) > 0 {
		f.passRequire |= ratelimit.PassDNSBL
	}
	for _, t := range c.SMTP.ProtocolTests {
		f.protocolTests |= protocolTestNames[t]
	}
	if f.protocolTests != 0 {
		f.passRequire |= ratelimit.PassProtocol
	}
	var err error
	if f.balancers, err = parsePrefixes(strings.Join(c.SMTP.ProxyBalancers, ",")); err != nil {
		return keyErr("smtp.proxy_balancers", "%v", err)
	}
	if c.Greylist.At == "data" {
		f.greyAt = postern.StageData
	}
	for _, d := range c.Greylist.ExemptSPFDomains {
		f.greySPF = append(f.greySPF, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for _, k := range []struct {
		v   string
		out *scan.SoftAction
	}{{c.Scan.RspamdGreylist, &f.rspamdGrey}, {c.Scan.RspamdSoftReject, &f.rspamdSoft}} {
		if k.v != "" {
			if *k.out, err = scan.ParseSoftAction(k.v); err != nil {
				return err
			}
		}
	}
	c.front = f
	return nil
}

// frontParts are a generation's pass cache and greylist.
type frontParts struct {
	s *Config
	// pass is nil with smtp.pass_cache off.
	pass *ratelimit.PassCache
	// grey is nil unless greylist.enabled or an rspamd action is handed
	// to greylisting; filter says whether it is in the chain.
	grey   *ratelimit.Greylist
	filter bool
	log    *slog.Logger
}

// buildFront builds the pass cache and the greylist on the counter store.
func buildFront(s *Config, store ratelimit.Store, log *slog.Logger, greyObs func(ratelimit.GreyEvent)) (*frontParts, error) {
	f := &frontParts{s: s, log: log}
	var err error
	if s.SMTP.PassCache {
		if f.pass, err = ratelimit.NewPassCache(ratelimit.PassCacheConfig{Store: store, Require: s.front.passRequire,
			GreetTTL: s.SMTP.PassCacheTTL.Duration, DNSBLTTL: s.SMTP.PassCacheDNSBLTTL.Duration,
			ProtocolTTL: s.SMTP.ProtocolTestsTTL.Duration, FailTTL: s.SMTP.PassCacheFailTTL.Duration, Logger: log}); err != nil {
			return nil, fmt.Errorf("smtp.pass_cache: %w", err)
		}
	}
	f.filter = s.Greylist.Enabled
	if !f.filter && s.front.rspamdGrey != scan.SoftGreylist && s.front.rspamdSoft != scan.SoftGreylist {
		return f, nil
	}
	autoAllow := s.Greylist.AutoAllow
	if autoAllow == 0 {
		autoAllow = -1 // the key's 0 is "never"
	}
	gc := ratelimit.GreylistConfig{Store: store, At: s.front.greyAt, MinDelay: s.Greylist.MinDelay.Duration,
		RetryWindow: s.Greylist.RetryWindow.Duration, PassTTL: s.Greylist.PassTTL.Duration, AutoAllow: autoAllow,
		Exempt: f.greyExempt, OnError: s.Redis.OnError, Observer: greyObs, Logger: log}
	if s.Greylist.ExemptPassCache {
		gc.PassCache = f.pass
	}
	if f.grey, err = ratelimit.NewGreylist(gc); err != nil {
		return nil, fmt.Errorf("greylist: %w", err)
	}
	return f, nil
}

// greyExempt spares clients on a DNS allow list and senders of the listed
// domains whose SPF passed.
func (f *frontParts) greyExempt(c *postern.Conn, t *postern.Txn) string {
	if dnsbl.Whitelisted(c) {
		return "dns allow list"
	}
	if len(f.s.front.greySPF) == 0 || t == nil {
		return ""
	}
	r, ok := postern.GetValue(&t.Values, auth.SPFResultKey)
	if !ok || r.Status != auth.Pass || r.Identity != auth.IdentityMailFrom {
		return ""
	}
	d := strings.ToLower(strings.TrimSuffix(r.Domain, "."))
	for _, e := range f.s.front.greySPF {
		if d == e || strings.HasSuffix(d, "."+e) {
			return "spf pass: " + e
		}
	}
	return ""
}

// checkMessage is scan's hand-off for rspamd's actions sent to
// greylisting.
func (f *frontParts) checkMessage(ctx context.Context, c *postern.Conn, t *postern.Txn) postern.Verdict {
	if f.grey == nil {
		return postern.Pass // not reached: buildFront makes one for it
	}
	return f.grey.CheckMessage(ctx, c, t)
}

// recordTimeout bounds a pass cache record made off the session's path.
const recordTimeout = 2 * time.Second

// recordGreet records a greet pause outcome: a wait in silence is a pass,
// an early talker a failure. It runs on a goroutine of its own.
func (f *frontParts) recordGreet(ev greetpause.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	switch ev.Action {
	case greetpause.ActionPass:
		_ = f.pass.Pass(ctx, ev.Remote.Addr(), ratelimit.PassGreet)
	case greetpause.ActionReject:
		_ = f.pass.Fail(ctx, ev.Remote.Addr(), ratelimit.PassGreet)
	}
}

// recordDNSBL records the connect-stage check of the DNS lists: not
// listed (or allow-listed) is a pass, listed a failure, a failed lookup
// nothing.
func (f *frontParts) recordDNSBL(ctx context.Context, c *postern.Conn, r dnsbl.Result) {
	if f.pass == nil {
		return
	}
	switch {
	case r.Failed:
	case r.Listed:
		_ = f.pass.Fail(ctx, c.RemoteAddr(), ratelimit.PassDNSBL)
	default:
		_ = f.pass.Pass(ctx, c.RemoteAddr(), ratelimit.PassDNSBL)
	}
}

// selectTests chooses the deep protocol tests for a connection: none for
// trusted clients and for those that passed them recently.
func (f *frontParts) selectTests(ctx context.Context, c *postern.Conn) smtpserver.ProtocolTest {
	tests := f.s.front.protocolTests
	if tests == 0 || c.Trusted || c.Authenticated() {
		return 0
	}
	if f.pass != nil {
		if passed, _ := f.pass.Passed(ctx, c.RemoteAddr(), ratelimit.PassProtocol); passed {
			return 0
		}
	}
	return tests
}

// recordProtocol records a deep protocol test's outcome.
func (f *frontParts) recordProtocol(ctx context.Context, c *postern.Conn, failed smtpserver.ProtocolTest) {
	if f.pass == nil {
		return
	}
	if failed == 0 {
		_ = f.pass.Pass(ctx, c.RemoteAddr(), ratelimit.PassProtocol)
		return
	}
	_ = f.pass.Fail(ctx, c.RemoteAddr(), ratelimit.PassProtocol)
}

// The relay's side: hooks that read the generation in force at each
// connection, so a reload applies to the next one.

// knownClient is the greet pause's question: did this client pass before?
// An access-file GreetPause: entry wins over the cache.
func (r *relayServer) knownClient(ctx context.Context, ip netip.Addr) bool {
	g := r.cur.Load()
	if g.front.pass == nil || g.pol.greetEntry(ip) {
		return false
	}
	known, _ := g.front.pass.Known(ctx, ip)
	return known
}

// greetEvent counts a greet pause outcome and records it in the pass
// cache (off the accept path: Redis takes a round trip).
func (r *relayServer) greetEvent(ev greetpause.Event) {
	r.met.greet.WithLabelValues(ev.Action.String()).Inc()
	f := r.cur.Load().front
	if f.pass != nil && (ev.Action == greetpause.ActionPass || ev.Action == greetpause.ActionReject) {
		go f.recordGreet(ev)
	}
}

// protocolTests are the MX server's deep protocol tests.
func (r *relayServer) protocolTests() smtpserver.ProtocolTests {
	return smtpserver.ProtocolTests{
		Select: func(ctx context.Context, c *postern.Conn) smtpserver.ProtocolTest {
			return r.cur.Load().front.selectTests(ctx, c)
		},
		Result: func(_ context.Context, c *postern.Conn, failed smtpserver.ProtocolTest) {
			result := "passed"
			if failed != 0 {
				result = strings.ReplaceAll(failed.String(), "-", "_")
			}
			r.met.protocol.WithLabelValues(result).Inc()
			f := r.cur.Load().front
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
				defer cancel()
				f.recordProtocol(ctx, c, failed)
			}()
		},
	}
}

// proxyListener reads the PROXY protocol header of the balancers named by
// smtp.proxy_balancers in force (and refuses one from anyone else).
func (r *relayServer) proxyListener(s *Config, inner net.Listener) (net.Listener, error) {
	return proxyproto.NewListener(inner, proxyproto.Config{Timeout: s.SMTP.ProxyTimeout.Duration, Logger: r.log,
		IsBalancer: func(ip netip.Addr) bool {
			for _, p := range r.cur.Load().s.front.balancers {
				if p.Contains(ip) {
					return true
				}
			}
			return false
		}})
}

// greylistNeverRetried is the metric's value: the triplets of the last
// UTC day whose retry window has closed that were never retried.
func (r *relayServer) greylistNeverRetried() float64 {
	g := r.cur.Load()
	if g.front.grey == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d, err := g.front.grey.Day(ctx, time.Now().Add(-g.front.grey.RetryWindow()-24*time.Hour))
	if err != nil || !d.Final {
		return 0
	}
	return float64(d.NeverRetried)
}
