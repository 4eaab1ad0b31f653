package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// zoneState is the mutable part of a zone: its health.
type zoneState struct {
	p atomic.Pointer[ZoneHealth]
}

func (z *zone) broken() bool {
	h := z.state.p.Load()
	return h != nil && h.Broken
}

func (z *zone) brokenErr() error {
	reason := "unknown"
	if h := z.state.p.Load(); h != nil {
		reason = h.Reason
	}
	return fmt.Errorf("%w: %s", ErrZoneBroken, reason)
}

// ZoneHealth is a zone's state as the health checks see it.
type ZoneHealth struct {
	Zone string
	Kind Kind
	// Broken is set when the last conclusive check failed: the zone is
	// then not asked, and checks report a ZoneError wrapping
	// ErrZoneBroken, with the zone's error policy.
	Broken bool
	// Reason says why the zone is broken.
	Reason string
	// Checked is when the last conclusive check ended; zero if none.
	Checked time.Time
	// Err is set when the last check could not decide (the test queries
	// failed); the zone keeps its previous state.
	Err error
}

// Test points (RFC 5782 §5): an IP list MUST list 127.0.0.2 and MUST NOT
// list 127.0.0.1; a domain list MUST list "test" and MUST NOT list
// "invalid".
var (
	testListedIP    = netip.AddrFrom4([4]byte{127, 0, 0, 2})
	testNotListedIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
)

// testPoints returns the positive and negative test points and their
// query names.
func (z *zone) testPoints() (listed, notListed, listedName, notListedName string) {
	if z.kind == IPZone {
		return testListedIP.String(), testNotListedIP.String(),
			ipQueryName(testListedIP, z.name), ipQueryName(testNotListedIP, z.name)
	}
	return "test", "invalid", "test." + z.name + ".", "invalid." + z.name + "."
}

// Health returns the state of every zone, in configuration order (IP
// zones first), without asking anything.
func (c *Checker) Health() []ZoneHealth {
	var out []ZoneHealth
	for _, z := range c.allZones() {
		h := ZoneHealth{Zone: z.name, Kind: z.kind}
		if p := z.state.p.Load(); p != nil {
			h = *p
		}
		out = append(out, h)
	}
	return out
}

func (c *Checker) allZones() []*zone {
	return append(append([]*zone(nil), c.ipZones...), c.domainZones...)
}

// CheckHealth runs the RFC 5782 §5 test queries against every zone
// (except those with NoHealthCheck), bypassing the cache, and returns
// the new states. A zone that does not list its positive test point,
// lists its negative one (it would list everyone) or answers a test with
// a refusal code is marked broken: until a later check passes, it is not
// asked and its error policy applies. A check that cannot decide (the
// queries fail) leaves the state as it was. Transitions are logged at
// Warn (broken) and Info (working again).
func (c *Checker) CheckHealth(ctx context.Context) []ZoneHealth {
	zones := c.allZones()
	out := make([]ZoneHealth, len(zones))
	var wg sync.WaitGroup
	for i, z := range zones {
		if !z.health {
			out[i] = ZoneHealth{Zone: z.name, Kind: z.kind}
			continue
		}
		wg.Go(func() { out[i] = c.checkZone(ctx, z) })
	}
	wg.Wait()
	return out
}

func (c *Checker) checkZone(ctx context.Context, z *zone) ZoneHealth {
	listed, notListed, listedName, notListedName := z.testPoints()
	var pos, neg answer
	var posErr, negErr error
	var wg sync.WaitGroup
	wg.Go(func() { pos, posErr = c.probe(ctx, z, listedName) })
	wg.Go(func() { neg, negErr = c.probe(ctx, z, notListedName) })
	wg.Wait()

	prev := z.state.p.Load()
	h := ZoneHealth{Zone: z.name, Kind: z.kind}
	if prev != nil {
		h = *prev
	}
	h.Err = nil
	switch {
	case negErr == nil && len(neg.addrs) > 0:
		h.Broken, h.Reason = true, fmt.Sprintf("test point %s is listed (%s): the zone would list everyone", notListed, neg.addrs[0])
	case errors.Is(posErr, ErrBadAnswer):
		h.Broken, h.Reason = true, fmt.Sprintf("test point %s: %v", listed, posErr)
	case errors.Is(negErr, ErrBadAnswer):
		h.Broken, h.Reason = true, fmt.Sprintf("test point %s: %v", notListed, negErr)
	case posErr == nil && len(pos.addrs) == 0:
		h.Broken, h.Reason = true, fmt.Sprintf("test point %s is not listed: the zone answers nothing", listed)
	case posErr == nil && negErr == nil:
		if _, err := z.evaluate(pos.addrs); err != nil {
			h.Broken, h.Reason = true, fmt.Sprintf("test point %s: %v", listed, err)
		} else {
			h.Broken, h.Reason = false, ""
		}
	default:
		h.Err = errors.Join(posErr, negErr)
	}
	if h.Err == nil {
		h.Checked = c.now()
	}
	z.state.p.Store(&h)

	attrs := []slog.Attr{slog.String("zone", z.name), slog.String("policy", z.onError.String())}
	wasBroken := prev != nil && prev.Broken
	switch {
	case h.Err != nil:
		c.log.LogAttrs(ctx, slog.LevelWarn, "dnsbl zone health check could not decide", append(attrs,
			slog.Bool("broken", h.Broken), slog.String("error", h.Err.Error()))...)
	case h.Broken && (!wasBroken || prev.Reason != h.Reason):
		c.log.LogAttrs(ctx, slog.LevelWarn, "dnsbl zone failed its health check; its answers are ignored", append(attrs,
			slog.String("reason", h.Reason))...)
	case !h.Broken && wasBroken:
		c.log.LogAttrs(ctx, slog.LevelInfo, "dnsbl zone passed its health check; it is asked again", attrs...)
	}
	return h
}

// probe asks the A records of a test point, bypassing the cache.
func (c *Checker) probe(ctx context.Context, z *zone, qname string) (answer, error) {
	if z.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, z.timeout)
		defer cancel()
	}
	return readAnswer(c.res.Exchange(ctx, qname, dns.TypeA))
}

// RunHealthChecks runs CheckHealth at once and then every
// Config.HealthInterval until ctx ends. Start it on its own goroutine;
// without it, zones are never marked broken.
func (c *Checker) RunHealthChecks(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.CheckHealth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
