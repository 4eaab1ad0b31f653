package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// PassTest names a test of the pass cache: what a client must have
// passed, recently enough, to be let in at once.
type PassTest uint8

// The tests, as postscreen(8) names them.
const (
	// PassGreet is the greet pause (postscreen's pregreet test): the
	// client waited for the banner in silence.
	PassGreet PassTest = 1 << iota
	// PassDNSBL is the connect-stage DNS lists: the client was not
	// listed.
	PassDNSBL
	// PassProtocol is the deep protocol tests (pipelining before the
	// EHLO reply, non-SMTP commands, bare newlines): the client spoke
	// SMTP as it should through a transaction.
	PassProtocol

	allPassTests = PassGreet | PassDNSBL | PassProtocol
)

var passTestNames = []struct {
	t    PassTest
	name string
}{{PassGreet, "greet"}, {PassDNSBL, "dnsbl"}, {PassProtocol, "protocol"}}

// String names the tests in t: "greet", "greet+dnsbl".
func (t PassTest) String() string {
	var parts []string
	for _, n := range passTestNames {
		if t&n.t != 0 {
			parts = append(parts, n.name)
		}
	}
	if rest := t &^ allPassTests; rest != 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("test(%d)", uint8(t)))
	}
	return strings.Join(parts, "+")
}

// Pass cache defaults: postscreen's postscreen_greet_ttl (1 day), the
// upper bound of its DNSBL cache (postscreen_dnsbl_max_ttl, 1 hour) and
// its deep-test TTLs (postscreen_pipelining_ttl and the others, 30
// days). A failure is kept for 10 minutes.
const (
	DefaultPassGreetTTL    = 24 * time.Hour
	DefaultPassDNSBLTTL    = time.Hour
	DefaultPassProtocolTTL = 30 * 24 * time.Hour
	DefaultPassFailTTL     = 10 * time.Minute
)

// PassCacheConfig configures a PassCache. The zero value remembers, in
// memory, clients (an IPv4 address, an IPv6 /64) that passed the greet
// pause (for a day) and the DNS lists (for an hour).
type PassCacheConfig struct {
	// Store holds the records; nil means a new MemoryStore on Now. With
	// a shared store (ratelimit/redisstore) a client that passed at one
	// relay is let in at once by every relay sharing it.
	Store Store
	// Class is what is remembered: an IPv4 address and an IPv6 /64 by
	// default (a host may use any address of its /64).
	Class Class
	// Require are the tests a client must have passed to be known; 0
	// means PassGreet|PassDNSBL (postscreen's defaults). Leave PassDNSBL
	// out when no DNS list is asked at connect, or no client is ever
	// known; add PassProtocol with the deep protocol tests.
	Require PassTest
	// GreetTTL, DNSBLTTL and ProtocolTTL are how long a pass of each test
	// counts; 0 means the defaults above.
	GreetTTL    time.Duration
	DNSBLTTL    time.Duration
	ProtocolTTL time.Duration
	// FailTTL is how long a failure (an early talker, a listed client, a
	// failed protocol test) is remembered: the client's passes are
	// forgotten and no new one is recorded meanwhile, so a client that
	// talked early cannot earn a pass on its next connection. 0 means
	// DefaultPassFailTTL.
	FailTTL time.Duration
	// Logger receives store errors (Warn, at most one line per 10 s) and
	// failures recorded (Debug); nil discards.
	Logger *slog.Logger
	// Now is the clock of the default store and of the error log;
	// time.Now when nil.
	Now func() time.Time
}

// PassCacheStats are a PassCache's counters.
type PassCacheStats struct {
	// Known and Unknown count Known's answers; Passes and Failures the
	// records made (a pass refused because the client failed recently is
	// not counted).
	Known, Unknown   uint64
	Passes, Failures uint64
	// StoreErrors counts calls the store could not answer.
	StoreErrors uint64
}

// PassCache is postscreen's temporary allowlist: it remembers clients
// that passed the tests at the front door (the greet pause, the DNS
// lists, the deep protocol tests), each for its own time, so that their
// next connections are let in at once. A client is known while every
// required test has a current pass. A failure forgets the client's
// passes and blocks new ones for FailTTL.
//
// A store that cannot be asked makes the client unknown (it waits the
// pause, as on its first visit): the cache only ever spares work, so
// failing closed costs only time. It is safe for concurrent use.
type PassCache struct {
	store   Store
	class   Class
	require PassTest
	ttl     [3]time.Duration // by test bit: greet, dnsbl, protocol
	failTTL time.Duration
	log     *slog.Logger
	fails   failures

	known, unknown, passes, failures atomic.Uint64
}

// NewPassCache validates cfg and returns the cache.
func NewPassCache(cfg PassCacheConfig) (*PassCache, error) {
	if err := cfg.Class.validate("pass cache"); err != nil {
		return nil, err
	}
	if cfg.Require&^allPassTests != 0 {
		return nil, fmt.Errorf("%w: pass cache: unknown test in Require %v", ErrConfig, cfg.Require)
	}
	for _, d := range []struct {
		what string
		d    time.Duration
	}{{"pass cache GreetTTL", cfg.GreetTTL}, {"pass cache DNSBLTTL", cfg.DNSBLTTL},
		{"pass cache ProtocolTTL", cfg.ProtocolTTL}, {"pass cache FailTTL", cfg.FailTTL}} {
		if err := checkPositive(d.what, d.d); err != nil {
			return nil, err
		}
	}
	p := &PassCache{store: cfg.Store, class: cfg.Class, require: cfg.Require, log: cmp.Or(cfg.Logger, postern.DiscardLogger()),
		ttl: [3]time.Duration{cmp.Or(cfg.GreetTTL, DefaultPassGreetTTL), cmp.Or(cfg.DNSBLTTL, DefaultPassDNSBLTTL),
			cmp.Or(cfg.ProtocolTTL, DefaultPassProtocolTTL)},
		failTTL: cmp.Or(cfg.FailTTL, DefaultPassFailTTL)}
	if p.require == 0 {
		p.require = PassGreet | PassDNSBL
	}
	now := orNow(cfg.Now)
	if p.store == nil {
		p.store = newDefaultStore(now)
	}
	p.fails = failures{now: now, log: p.log}
	return p, nil
}

// Require returns the tests a client must have passed to be known.
func (p *PassCache) Require() PassTest { return p.require }

// Stats returns the counters.
func (p *PassCache) Stats() PassCacheStats {
	return PassCacheStats{Known: p.known.Load(), Unknown: p.unknown.Load(), Passes: p.passes.Load(),
		Failures: p.failures.Load(), StoreErrors: p.fails.count.Load()}
}

// Store keys: passPrefix, the test's name, then the client's IPKey;
// passFailPrefix and the IPKey for a failure.
const (
	passPrefix     = "pass:"
	passFailPrefix = "pass:fail:"
)

func passKey(t PassTest, src string) string { return passPrefix + t.String() + ":" + src }

// single reports whether t names exactly one known test, and its index.
func (t PassTest) single() (int, bool) {
	for i, n := range passTestNames {
		if t == n.t {
			return i, true
		}
	}
	return 0, false
}

// Known reports whether ip has a current pass of every required test. A
// client not on IP, or a store that cannot be asked, is unknown (the
// error says why).
func (p *PassCache) Known(ctx context.Context, ip netip.Addr) (bool, error) {
	src := IPKey(ip, p.class)
	if src == "" {
		p.unknown.Add(1)
		return false, nil
	}
	for _, n := range passTestNames {
		if p.require&n.t == 0 {
			continue
		}
		held, _, err := p.store.Held(ctx, passKey(n.t, src))
		if err != nil {
			p.storeFailed(ctx, ip, "known", err)
			p.unknown.Add(1)
			return false, fmt.Errorf("ratelimit: pass cache: %w", err)
		}
		if !held {
			p.unknown.Add(1)
			return false, nil
		}
	}
	// A pass recorded while a failure was being recorded must not count.
	failed, _, err := p.store.Held(ctx, passFailPrefix+src)
	if err != nil {
		p.storeFailed(ctx, ip, "known", err)
		p.unknown.Add(1)
		return false, fmt.Errorf("ratelimit: pass cache: %w", err)
	}
	if failed {
		p.unknown.Add(1)
		return false, nil
	}
	p.known.Add(1)
	return true, nil
}

// Passed reports whether ip has a current pass of test t and no failure:
// for a caller that runs a test only on clients that have not passed it
// (the deep protocol tests).
func (p *PassCache) Passed(ctx context.Context, ip netip.Addr, t PassTest) (bool, error) {
	if _, ok := t.single(); !ok {
		return false, fmt.Errorf("%w: pass cache: Passed of %v: one test at a time", ErrConfig, t)
	}
	src := IPKey(ip, p.class)
	if src == "" {
		return false, nil
	}
	passed, _, err := p.store.Held(ctx, passKey(t, src))
	failed := false
	if err == nil && passed {
		failed, _, err = p.store.Held(ctx, passFailPrefix+src)
	}
	if err != nil {
		p.storeFailed(ctx, ip, "passed", err)
		return false, fmt.Errorf("ratelimit: pass cache: %w", err)
	}
	return passed && !failed, nil
}

// Pass records that ip passed test t, for t's TTL, unless ip failed a
// test within FailTTL.
func (p *PassCache) Pass(ctx context.Context, ip netip.Addr, t PassTest) error {
	i, ok := t.single()
	if !ok {
		return fmt.Errorf("%w: pass cache: Pass of %v: one test at a time", ErrConfig, t)
	}
	src := IPKey(ip, p.class)
	if src == "" {
		return nil
	}
	failed, _, err := p.store.Held(ctx, passFailPrefix+src)
	if err == nil && !failed {
		err = p.store.Hold(ctx, passKey(t, src), p.ttl[i])
	}
	if err != nil {
		p.storeFailed(ctx, ip, "pass", err)
		return fmt.Errorf("ratelimit: pass cache: %w", err)
	}
	if !failed {
		p.passes.Add(1)
	}
	return nil
}

// Fail records that ip failed test t: its passes are forgotten and none
// is recorded for FailTTL.
func (p *PassCache) Fail(ctx context.Context, ip netip.Addr, t PassTest) error {
	if _, ok := t.single(); !ok {
		return fmt.Errorf("%w: pass cache: Fail of %v: one test at a time", ErrConfig, t)
	}
	src := IPKey(ip, p.class)
	if src == "" {
		return nil
	}
	// The failure first: a Pass racing with this one then finds it.
	err := p.store.Hold(ctx, passFailPrefix+src, p.failTTL)
	for _, n := range passTestNames {
		if err != nil {
			break
		}
		err = p.store.Delete(ctx, passKey(n.t, src))
	}
	if err != nil {
		p.storeFailed(ctx, ip, "fail", err)
		return fmt.Errorf("ratelimit: pass cache: %w", err)
	}
	p.failures.Add(1)
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.LogAttrs(ctx, slog.LevelDebug, "pass cache: client failed", slog.String("remote_ip", ipString(ip.Unmap())),
			slog.String("test", t.String()), slog.Duration("fail_ttl", p.failTTL))
	}
	return nil
}

// PassEntry is what the cache holds for one client.
type PassEntry struct {
	// Passed are the tests with a current pass; Left how long each has
	// to run, in the order greet, dnsbl, protocol (0 for a test not
	// passed).
	Passed PassTest
	Left   [3]time.Duration
	// Failed is set while a failure is remembered, for FailLeft.
	Failed   bool
	FailLeft time.Duration
	// Known is the answer Known gives: every required test passed.
	Known bool
}

// Lookup returns what the cache holds for ip (for an admin's question:
// why did this client wait?).
func (p *PassCache) Lookup(ctx context.Context, ip netip.Addr) (PassEntry, error) {
	var e PassEntry
	src := IPKey(ip, p.class)
	if src == "" {
		return e, nil
	}
	for i, n := range passTestNames {
		held, left, err := p.store.Held(ctx, passKey(n.t, src))
		if err != nil {
			return e, fmt.Errorf("ratelimit: pass cache: %w", err)
		}
		if held {
			e.Passed |= n.t
			e.Left[i] = left
		}
	}
	var err error
	if e.Failed, e.FailLeft, err = p.store.Held(ctx, passFailPrefix+src); err != nil {
		return e, fmt.Errorf("ratelimit: pass cache: %w", err)
	}
	e.Known = e.Passed&p.require == p.require && !e.Failed
	return e, nil
}

func (p *PassCache) storeFailed(ctx context.Context, ip netip.Addr, op string, err error) {
	p.fails.record(ctx, err, slog.String("remote_ip", ipString(ip.Unmap())), slog.String("filter", "pass-cache"),
		slog.String("op", op))
}
