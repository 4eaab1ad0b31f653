package dnsbl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern"
	"github.com/postern/postern/route/resolver"
)

// Errors. Lookup failures are reported per zone in Result.Errors as a
// ZoneError wrapping ErrLookup, ErrBadAnswer or ErrZoneBroken. NXDOMAIN is
// not an error: it means "not listed".
var (
	// ErrConfig is returned by New and NewFilter for an invalid
	// configuration.
	ErrConfig = errors.New("dnsbl: invalid configuration")
	// ErrLookup means the zone could not be asked: timeout, network error,
	// SERVFAIL or another error code, a garbled or truncated response.
	ErrLookup = errors.New("dnsbl: lookup failed")
	// ErrBadAnswer means the zone answered what no DNSBL may answer: an
	// address outside 127.0.0.0/8, a "query refused" code such as
	// 127.255.255.254, or records of the wrong type.
	ErrBadAnswer = errors.New("dnsbl: bad answer")
	// ErrZoneBroken means the zone failed its last health check and is not
	// asked until it passes again.
	ErrZoneBroken = errors.New("dnsbl: zone failed its health check")
	// ErrInvalidAddress is returned by CheckIP for the zero netip.Addr.
	ErrInvalidAddress = errors.New("dnsbl: invalid IP address")
	// ErrInvalidDomain is returned by CheckDomain for a string that is not
	// a domain name (an address literal, non-ASCII, empty labels ...).
	ErrInvalidDomain = errors.New("dnsbl: not a domain name")
)

// Defaults of Config.
const (
	DefaultThreshold      = 1.0
	DefaultHealthInterval = 15 * time.Minute
)

// Resolver is how a Checker asks the DNS. *resolver.Resolver implements
// it: its cache keeps the lists' answers for their TTL (Postfix's
// postscreen bounds, 1 minute to 1 hour; "not listed" for the SOA
// minimum, at most 10 minutes), concurrent checks of one subject share
// one query, and its servers, timeouts and attempts are the lists'.
type Resolver interface {
	// Lookup answers from the cache or the servers.
	Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error)
	// Exchange asks the servers, bypassing the cache (health checks).
	Exchange(ctx context.Context, name string, qtype uint16) (resolver.Answer, error)
	// Cached answers from the cache only.
	Cached(name string, qtype uint16) (resolver.Answer, bool)
}

// Config configures a Checker. The zero value of every field but Zones is
// the default documented on it.
type Config struct {
	// Zones are the lists asked. IP zones answer CheckIP, domain zones
	// CheckDomain. A zone name may appear once per kind.
	Zones []Zone
	// Threshold is the score at which a subject is listed; 0 means 1. It
	// cannot be negative: a subject that no zone lists is never listed.
	Threshold float64

	// Resolver asks the DNS; share one with the program's other DNS
	// users. Nil means resolver.New with its defaults (the nameservers
	// of /etc/resolv.conf, read by New). DNSBL operators refuse queries
	// forwarded through large public resolvers (Spamhaus answers
	// 127.255.255.254): use a local recursive resolver.
	Resolver Resolver
	// Timeout bounds one zone's lookup (its A query, and the TXT query
	// of a listed subject) beyond the resolver's own timeouts; 0 means
	// no other bound. Zone.Timeout overrides it per zone.
	Timeout time.Duration

	// HealthInterval is the period of RunHealthChecks; 0 means 15 minutes.
	HealthInterval time.Duration

	// Logger receives health check results (Warn, Info) and lookup
	// errors (Debug); nil discards.
	Logger *slog.Logger
	// Now is the clock of ZoneHealth.Checked; time.Now when nil.
	Now func() time.Time
}

// Checker asks DNS lists about addresses and domains. It is immutable
// (build a new one to reload) and safe for concurrent use; its cache and
// zone health are shared by all callers.
type Checker struct {
	ipZones     []*zone
	domainZones []*zone
	threshold   float64
	interval    time.Duration
	log         *slog.Logger
	now         func() time.Time
	res         Resolver
}

// New validates cfg and builds a Checker. Zone names are lower-cased and
// lose their trailing dot; matchers, weights and templates are checked.
// Without a Resolver it makes one, which reads /etc/resolv.conf.
func New(cfg Config) (*Checker, error) {
	c := &Checker{
		threshold: cfg.Threshold,
		interval:  cmp.Or(cfg.HealthInterval, DefaultHealthInterval),
		log:       cmp.Or(cfg.Logger, postern.DiscardLogger()),
		now:       cfg.Now,
		res:       cfg.Resolver,
	}
	switch {
	case math.IsNaN(c.threshold) || math.IsInf(c.threshold, 0) || c.threshold < 0:
		return nil, fmt.Errorf("%w: threshold %v", ErrConfig, cfg.Threshold)
	case c.threshold == 0:
		c.threshold = DefaultThreshold
	}
	if cfg.Timeout < 0 || cfg.HealthInterval < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrConfig)
	}
	if c.now == nil {
		c.now = time.Now
	}
	timeout := cfg.Timeout
	if len(cfg.Zones) == 0 {
		return nil, fmt.Errorf("%w: no zones", ErrConfig)
	}
	seen := make(map[string]bool)
	for _, z := range cfg.Zones {
		cz, err := compileZone(z, timeout)
		if err != nil {
			return nil, err
		}
		key := cz.kind.String() + " " + cz.name
		if seen[key] {
			return nil, fmt.Errorf("%w: %s zone %s listed twice (use Codes for per-code weights)", ErrConfig, cz.kind, cz.name)
		}
		seen[key] = true
		if cz.kind == IPZone {
			c.ipZones = append(c.ipZones, cz)
		} else {
			c.domainZones = append(c.domainZones, cz)
		}
	}

	if c.res == nil {
		res, err := resolver.New(resolver.Config{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		c.res = res
	}
	return c, nil
}

// Threshold returns the score at which a subject is listed.
func (c *Checker) Threshold() float64 { return c.threshold }

// Result is the outcome of one check.
type Result struct {
	// IP is the address checked (unmapped), for CheckIP.
	IP netip.Addr
	// Domain is the domain checked (normalised), for CheckDomain.
	Domain string
	// Score is the sum of the weights of the hits.
	Score float64
	// Threshold is the Checker's threshold.
	Threshold float64
	// Listed is Score >= Threshold.
	Listed bool
	// Failed is set when zones that do not fail open (OnError tempfail or
	// reject) could not be asked and their answers could have changed
	// Listed: blocking zones when the subject is not listed, allowing
	// (negative) zones when it is. Check Failed before Listed.
	Failed bool
	// OnError is what Failed calls for: postern.OnErrorTempFail or
	// postern.OnErrorReject, the stricter policy of the zones that could
	// have changed Listed (reject over tempfail). OnErrorDefault when not
	// Failed.
	OnError postern.ErrorPolicy
	// Hits are the zones that list the subject, in configuration order.
	Hits []Hit
	// Errors are the zones that could not be asked, in configuration
	// order. They do not count in Score.
	Errors []ZoneError
}

// Hit is one zone listing the subject.
type Hit struct {
	Zone string
	// Weight is what the zone added to the score.
	Weight float64
	// Answers are the return codes that matched.
	Answers []netip.Addr
	// TXT is the zone's TXT record, sanitized for a reply line, when the
	// zone has TXT set and the query succeeded.
	TXT string
	// Text is the zone's Reply template filled in.
	Text string
}

// ZoneError is a zone that could not be asked.
type ZoneError struct {
	Zone string
	// Policy is the zone's OnError, resolved: never OnErrorDefault.
	Policy postern.ErrorPolicy
	// Err wraps ErrLookup, ErrBadAnswer or ErrZoneBroken, or is the
	// context's error.
	Err error
}

func (e ZoneError) Error() string { return "zone " + e.Zone + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e ZoneError) Unwrap() error { return e.Err }

// Whitelisted reports whether an allow list (a zone of negative weight)
// lists the subject and the subject is not listed: later filters may skip
// their checks for it.
func (r Result) Whitelisted() bool {
	if r.Listed {
		return false
	}
	for _, h := range r.Hits {
		if h.Weight < 0 {
			return true
		}
	}
	return false
}

// Top returns the hit with the largest positive weight (the first such in
// configuration order), the one whose text goes into a reply.
func (r Result) Top() (Hit, bool) {
	best := -1
	for i, h := range r.Hits {
		if h.Weight > 0 && (best < 0 || h.Weight > r.Hits[best].Weight) {
			best = i
		}
	}
	if best < 0 {
		return Hit{}, false
	}
	return r.Hits[best], true
}

// String summarises the result for logs, e.g. "192.0.2.1 listed (score 1.5
// >= 1): zen.spamhaus.org=127.0.0.4 bl.example=127.0.0.2".
func (r Result) String() string {
	var b strings.Builder
	if r.IP.IsValid() {
		b.WriteString(r.IP.String())
	} else {
		b.WriteString(r.Domain)
	}
	switch {
	case r.Failed:
		b.WriteString(" " + r.OnError.String())
	case r.Listed:
		b.WriteString(" listed")
	case r.Whitelisted():
		b.WriteString(" whitelisted")
	default:
		b.WriteString(" not listed")
	}
	fmt.Fprintf(&b, " (score %g", r.Score)
	if r.Listed {
		b.WriteString(" >=")
	} else {
		b.WriteString(" <")
	}
	fmt.Fprintf(&b, " %g)", r.Threshold)
	for i, h := range r.Hits {
		if i == 0 {
			b.WriteByte(':')
		}
		b.WriteByte(' ')
		b.WriteString(h.Zone)
		for j, a := range h.Answers {
			if j == 0 {
				b.WriteByte('=')
			} else {
				b.WriteByte(',')
			}
			b.WriteString(a.String())
		}
	}
	for _, e := range r.Errors {
		b.WriteString("; ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// subject is what is checked.
type subject struct {
	ip     netip.Addr
	domain string
}

func (s subject) queryName(z *zone) (string, bool) {
	if s.ip.IsValid() {
		return ipQueryName(s.ip, z.name), true
	}
	return domainQueryName(s.domain, z.name)
}

// CheckIP asks every IP zone about ip, concurrently: the check takes as
// long as the slowest zone. An IPv4-mapped IPv6 address is checked as
// IPv4. The error is ErrInvalidAddress, or the context's error when ctx
// ended before every zone answered (the Result then holds what was known).
// Zone failures are not errors: see Result.Errors and Result.Failed.
func (c *Checker) CheckIP(ctx context.Context, ip netip.Addr) (Result, error) {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return Result{Threshold: c.threshold}, ErrInvalidAddress
	}
	return c.check(ctx, c.ipZones, subject{ip: ip})
}

// CheckDomain asks every domain zone (RHSBL) about domain, concurrently.
// The domain is lower-cased and loses a trailing dot; an address, an
// address literal or a name with other characters than letters, digits,
// '-' and '_' is ErrInvalidDomain (internationalised names must be given
// as A-labels). A zone for which <domain>.<zone> would be longer than 253
// bytes is skipped. Errors are as for CheckIP.
func (c *Checker) CheckDomain(ctx context.Context, domain string) (Result, error) {
	d, err := normalizeName(domain)
	if err != nil {
		return Result{Threshold: c.threshold}, fmt.Errorf("%w: %q: %v", ErrInvalidDomain, domain, err)
	}
	return c.check(ctx, c.domainZones, subject{domain: d})
}

// outcome is one zone's contribution: a hit, an error or neither.
type outcome struct {
	hit *Hit
	err error
}

func (c *Checker) check(ctx context.Context, zones []*zone, s subject) (Result, error) {
	res := Result{IP: s.ip, Domain: s.domain, Threshold: c.threshold}
	outs := make([]outcome, len(zones))
	// Answers from the cache need no goroutine; the rest are asked
	// concurrently, so the check costs the slowest zone, not the sum.
	var pending []int
	for i, z := range zones {
		if o, ok := c.fromCache(z, s); ok {
			outs[i] = o
			continue
		}
		pending = append(pending, i)
	}
	switch len(pending) {
	case 0:
	case 1:
		i := pending[0]
		outs[i] = c.lookupZone(ctx, zones[i], s)
	default:
		var wg sync.WaitGroup
		for _, i := range pending {
			wg.Go(func() { outs[i] = c.lookupZone(ctx, zones[i], s) })
		}
		wg.Wait()
	}

	// Zones that fail open count as silent; the others are counted
	// apart, by the direction their answer could have moved the score.
	var posErr, negErr float64
	var posPolicy, negPolicy postern.ErrorPolicy
	for i, o := range outs {
		z := zones[i]
		switch {
		case o.err != nil:
			res.Errors = append(res.Errors, ZoneError{Zone: z.name, Policy: z.onError, Err: o.err})
			if z.onError != postern.OnErrorAccept {
				posErr += z.posWeight
				negErr += z.negWeight
				if z.posWeight > 0 {
					posPolicy = posPolicy.Stricter(z.onError)
				}
				if z.negWeight < 0 {
					negPolicy = negPolicy.Stricter(z.onError)
				}
			}
			c.log.LogAttrs(ctx, slog.LevelDebug, "dnsbl lookup failed", slog.String("zone", z.name),
				slog.String("policy", z.onError.String()), slog.String("error", o.err.Error()))
		case o.hit != nil:
			res.Hits = append(res.Hits, *o.hit)
			res.Score += o.hit.Weight
		}
	}
	res.Listed = res.Score >= c.threshold
	// The result fails only if the failed zones' answers could have
	// flipped it, so a failed minor zone does not hold up mail it could
	// not block.
	switch {
	case !res.Listed && res.Score+posErr >= c.threshold:
		res.Failed, res.OnError = true, posPolicy
	case res.Listed && res.Score+negErr < c.threshold:
		res.Failed, res.OnError = true, negPolicy
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("dnsbl: check interrupted: %w", context.Cause(ctx))
	}
	return res, nil
}

// fromCache builds a zone's outcome from cached answers only.
func (c *Checker) fromCache(z *zone, s subject) (outcome, bool) {
	if z.broken() {
		return outcome{err: z.brokenErr()}, true
	}
	qname, ok := s.queryName(z)
	if !ok {
		return outcome{}, true
	}
	ra, ok := c.res.Cached(qname, dns.TypeA)
	if !ok {
		return outcome{}, false
	}
	a, err := readAnswer(ra, nil)
	if err != nil {
		return outcome{err: err}, true
	}
	hit, err := z.evaluate(a.addrs)
	if err != nil || hit == nil {
		return outcome{err: err}, true
	}
	if z.txt {
		rt, ok := c.res.Cached(qname, dns.TypeTXT)
		if !ok {
			return outcome{}, false
		}
		if t, err := readAnswer(rt, nil); err == nil {
			hit.TXT = t.txt
		}
	}
	z.finish(hit, s)
	return outcome{hit: hit}, true
}

func (c *Checker) lookupZone(ctx context.Context, z *zone, s subject) outcome {
	if z.broken() {
		return outcome{err: z.brokenErr()}
	}
	qname, ok := s.queryName(z)
	if !ok {
		return outcome{}
	}
	if z.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, z.timeout)
		defer cancel()
	}
	a, err := readAnswer(c.res.Lookup(ctx, qname, dns.TypeA))
	if err != nil {
		return outcome{err: err}
	}
	hit, err := z.evaluate(a.addrs)
	if err != nil || hit == nil {
		return outcome{err: err}
	}
	if z.txt {
		// The reason text is optional: a failed TXT query leaves it empty.
		if t, err := readAnswer(c.res.Lookup(ctx, qname, dns.TypeTXT)); err == nil {
			hit.TXT = t.txt
		}
	}
	z.finish(hit, s)
	return outcome{hit: hit}
}

// evaluate applies the zone's matchers to the valid return codes: nil for
// no listing.
func (z *zone) evaluate(addrs []netip.Addr) (*Hit, error) {
	if len(addrs) == 0 {
		return nil, nil
	}
	if !z.errMatch.IsZero() {
		for _, a := range addrs {
			if z.errMatch.Match(a) {
				return nil, fmt.Errorf("%w: %s means the query was refused (ErrorMatch %s)", ErrBadAnswer, a, z.errMatch)
			}
		}
	}
	var hit *Hit
	for _, cd := range z.codes {
		matched := false
		for _, a := range addrs {
			if cd.any || cd.m.Match(a) {
				matched = true
				if hit == nil {
					hit = &Hit{Zone: z.name}
				}
				if !containsAddr(hit.Answers, a) {
					hit.Answers = append(hit.Answers, a)
				}
			}
		}
		if matched {
			hit.Weight += cd.weight
		}
	}
	return hit, nil
}

func (z *zone) finish(h *Hit, s subject) {
	h.Text = render(z.reply, s.ip, s.domain, z.name, h.Answers[0], h.TXT)
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}
