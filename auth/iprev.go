package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern"
)

// Defaults of IPRevConfig.
const (
	DefaultIPRevTimeout     = 10 * time.Second
	DefaultIPRevTTL         = 10 * time.Minute
	DefaultIPRevNegativeTTL = time.Minute
	// DefaultIPRevNames is how many PTR names are tried: RFC 7208 §4.6.4
	// stops the "ptr" mechanism at 10, and a reverse zone listing more is
	// playing games.
	DefaultIPRevNames = 10
	// DefaultIPRevEntries bounds the addresses kept.
	DefaultIPRevEntries = 10000
)

// IPRevConfig configures NewIPRev. The zero value asks net.DefaultResolver
// with the defaults above.
type IPRevConfig struct {
	// Resolver answers the PTR and A/AAAA queries; nil is
	// net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds one lookup: the PTR query and the forward queries
	// of its names. Running out of time is ResolveTemp. Default
	// DefaultIPRevTimeout.
	Timeout time.Duration
	// TTL is how long a verified name (ResolveOK) is kept. The Resolver
	// does not tell a record's own TTL, so this is a ceiling under the
	// usual TTLs of PTR and address records (an hour or more): a changed
	// name is seen at most TTL late. Default DefaultIPRevTTL.
	TTL time.Duration
	// NegativeTTL is how long "no PTR" (ResolveFail) and "does not
	// confirm" (ResolveForged) are kept: short, so that a site that
	// fixes its DNS after a refusal is believed on its next try. Default
	// DefaultIPRevNegativeTTL; negative keeps them not at all.
	//
	// Temporary failures (ResolveTemp) are never kept: a timeout must not
	// outlive itself. Concurrent lookups of one address share the query
	// under way whatever its outcome.
	NegativeTTL time.Duration
	// MaxNames bounds the PTR names tried; default DefaultIPRevNames.
	MaxNames int
	// MaxEntries bounds the cache; past it the expired entries and then
	// about half of the rest are dropped. Default DefaultIPRevEntries.
	MaxEntries int
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
}

// IPRev looks up the verified host name of client addresses (forward-
// confirmed reverse DNS, RFC 8601 §3 "iprev") and keeps the results a
// while. It is safe for concurrent use; concurrent lookups of one address
// share one query. It implements smtpserver.ReverseResolver.
type IPRev struct {
	r   Resolver
	cfg IPRevConfig

	mu sync.Mutex
	m  map[netip.Addr]*iprevEntry
}

type iprevEntry struct {
	done    chan struct{} // closed when host is set
	host    postern.ClientHost
	expires time.Time // under IPRev.mu
}

// NewIPRev validates cfg and returns an IPRev.
func NewIPRev(cfg IPRevConfig) (*IPRev, error) {
	if cfg.Timeout < 0 || cfg.TTL < 0 || cfg.MaxNames < 0 || cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("%w: negative iprev timeout, TTL or bound", ErrConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultIPRevTimeout
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultIPRevTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultIPRevNegativeTTL
	}
	if cfg.MaxNames == 0 {
		cfg.MaxNames = DefaultIPRevNames
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultIPRevEntries
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &IPRev{r: orDefaultResolver(cfg.Resolver), cfg: cfg, m: map[netip.Addr]*iprevEntry{}}, nil
}

// LookupClientHost finds the verified host name of ip:
//
//   - the PTR records of ip are asked (an IPv4-mapped address is looked up
//     as IPv4); none (NXDOMAIN, no answer) is ResolveFail;
//   - the A and AAAA records of each PTR name, up to MaxNames, are asked;
//     the first name whose addresses hold ip is the verified name
//     (ResolveOK);
//   - otherwise, if one of those queries failed temporarily, the outcome
//     is ResolveTemp, else ResolveForged (the PTR names claim a host that
//     is not this one);
//   - a timeout or SERVFAIL of the PTR query is ResolveTemp.
//
// Names that cannot be host names are not asked: a name whose last label
// is all digits (RFC 1123 §2.1: "1.2.3.4" in a PTR record is no name).
// "localhost" and names under it confirm only loopback addresses and are
// never sent to DNS (RFC 6761 §6.3): a PTR record elsewhere claiming
// "localhost" is forged, whatever a misconfigured resolver would answer.
//
// Results are kept by outcome (see IPRevConfig). When ctx ends before the
// lookup does, the result is ResolveTemp; the lookup goes on for other
// callers, within Timeout.
func (v *IPRev) LookupClientHost(ctx context.Context, ip netip.Addr) postern.ClientHost {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return postern.ClientHost{Resolve: postern.ResolveFail}
	}
	now := v.cfg.Clock()
	v.mu.Lock()
	e, ok := v.m[ip]
	if ok {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				ok = false // expired: ask again
			}
		default: // under way: wait for it
		}
	}
	if !ok {
		if len(v.m) >= v.cfg.MaxEntries {
			v.evict(now)
		}
		e = &iprevEntry{done: make(chan struct{})}
		v.m[ip] = e
		// The query belongs to everyone waiting for it, not to the first
		// caller: it runs on its own and within Timeout only.
		go v.fill(context.WithoutCancel(ctx), ip, e)
	}
	v.mu.Unlock()
	select {
	case <-e.done:
		return e.host
	case <-ctx.Done():
		return postern.ClientHost{Resolve: postern.ResolveTemp}
	}
}

func (v *IPRev) fill(ctx context.Context, ip netip.Addr, e *iprevEntry) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	e.host = lookupIPRev(ctx, v.r, ip, v.cfg.MaxNames)
	var ttl time.Duration
	switch e.host.Resolve {
	case postern.ResolveOK:
		ttl = v.cfg.TTL
	case postern.ResolveFail, postern.ResolveForged:
		ttl = v.cfg.NegativeTTL
	}
	v.mu.Lock()
	e.expires = v.cfg.Clock().Add(ttl)
	if ttl <= 0 && v.m[ip] == e {
		delete(v.m, ip)
	}
	v.mu.Unlock()
	close(e.done)
}

// evict drops the expired entries, and if that is not enough, about half
// of the rest (never one under way). Called with mu held.
func (v *IPRev) evict(now time.Time) {
	done := func(e *iprevEntry) bool {
		select {
		case <-e.done:
			return true
		default:
			return false
		}
	}
	for k, e := range v.m {
		if done(e) && !now.Before(e.expires) {
			delete(v.m, k)
		}
	}
	n := len(v.m) / 2
	for k, e := range v.m { // map order is random enough
		if len(v.m) < v.cfg.MaxEntries || n == 0 {
			break
		}
		if done(e) {
			delete(v.m, k)
			n--
		}
	}
}

// lookupIPRev is the lookup itself, without the cache.
func lookupIPRev(ctx context.Context, r Resolver, ip netip.Addr, maxNames int) postern.ClientHost {
	ptrs, err := r.LookupAddr(ctx, ip.String())
	names := ptrNames(ptrs, maxNames)
	if len(names) == 0 {
		// The standard resolver drops names that are not domain names and
		// says so with an error; only none at all is a failure.
		if len(ptrs) == 0 && dnsTemporary(err) {
			return postern.ClientHost{Resolve: postern.ResolveTemp}
		}
		return postern.ClientHost{Resolve: postern.ResolveFail}
	}
	h := postern.ClientHost{Resolve: postern.ResolveForged, PTR: names[0]}
	temp := false
	for _, n := range names {
		if isLocalhostName(n) {
			if ip.IsLoopback() {
				h.Resolve, h.Name = postern.ResolveOK, n
				return h
			}
			continue
		}
		addrs, err := r.LookupIPAddr(ctx, fqdn(n))
		for _, a := range addrs {
			if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
				h.Resolve, h.Name = postern.ResolveOK, n
				return h
			}
		}
		if err != nil && dnsTemporary(err) {
			temp = true
		}
	}
	if temp {
		h.Resolve = postern.ResolveTemp
	}
	return h
}

// ptrNames normalises PTR names (lower case, no trailing dot), drops the
// ones that cannot be host names and duplicates, and keeps at most max.
func ptrNames(ptrs []string, max int) []string {
	var out []string
	for _, p := range ptrs {
		n, ok := hostName(p)
		if !ok || slices.Contains(out, n) {
			continue
		}
		out = append(out, n)
		if len(out) == max {
			break
		}
	}
	return out
}

// hostName returns name in lower case without the trailing dot, and
// whether it can be a host name: 1 to 253 octets of letters, digits,
// hyphens, underscores and dots in labels of 1 to 63 octets, the last
// label not all digits (RFC 1123 §2.1). Underscores appear in real PTR
// records and harm nothing here.
func hostName(name string) (string, bool) {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if n == "" || len(n) > 253 {
		return "", false
	}
	label, digits := 0, true
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", false
			}
			label, digits = 0, true
			continue
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c == '-', c == '_':
			digits = false
		default:
			return "", false
		}
		label++
		if label > 63 {
			return "", false
		}
	}
	if label == 0 || digits {
		return "", false
	}
	return n, true
}

func isLocalhostName(n string) bool {
	return n == "localhost" || strings.HasSuffix(n, ".localhost")
}

// dnsTemporary reports a failure that asking again may not have: a
// timeout, SERVFAIL, an unreachable server, a context that ended. NXDOMAIN,
// an empty answer and a malformed answer are permanent.
func dnsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return !de.IsNotFound && (de.IsTemporary || de.IsTimeout)
	}
	return true
}

// IPRevStatus is the RFC 8601 §2.7.3 result of the "iprev" method for an
// outcome: pass (OK), fail (FORGED), permerror (FAIL: no PTR data),
// temperror (TEMP); "" for ResolveNone.
func IPRevStatus(r postern.ClientResolve) Status {
	switch r {
	case postern.ResolveOK:
		return Pass
	case postern.ResolveForged:
		return Fail
	case postern.ResolveFail:
		return PermError
	case postern.ResolveTemp:
		return TempError
	}
	return ""
}
