package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern"
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
	DefaultThreshold           = 1.0
	DefaultTimeout             = 2 * time.Second
	DefaultRetries             = 1
	DefaultCacheSize           = 10000
	DefaultCacheMinTTL         = time.Minute
	DefaultCacheMaxTTL         = time.Hour
	DefaultCacheNegativeMaxTTL = 10 * time.Minute
	DefaultHealthInterval      = 15 * time.Minute
)

// Config configures a Checker. The zero value of every field but Zones is
// the default documented on it.
type Config struct {
	// Zones are the lists asked. IP zones answer CheckIP, domain zones
	// CheckDomain. A zone name may appear once per kind.
	Zones []Zone
	// Threshold is the score at which a subject is listed; 0 means 1. It
	// cannot be negative: a subject that no zone lists is never listed.
	Threshold float64

	// Resolvers are the DNS servers asked, "addr:port" or "addr" (port
	// 53), tried in turn on retries. Empty: the nameservers of
	// /etc/resolv.conf, read by New. DNSBL operators refuse queries
	// forwarded through large public resolvers (Spamhaus answers
	// 127.255.255.254): use a local recursive resolver.
	Resolvers []string
	// Net is "udp" (the default: UDP, and TCP again when the answer is
	// truncated) or "tcp". Only for the default Exchanger.
	Net string
	// Timeout bounds one attempt of one query; 0 means 2s. Zone.Timeout
	// overrides it per zone.
	Timeout time.Duration
	// Retries is how many times a failed query (timeout, network error,
	// SERVFAIL, garbled answer) is asked again, of the next resolver; 0
	// means 1, negative means none. A zone's worst case is thus
	// (Retries+1) × Timeout.
	Retries int

	// CacheSize bounds the number of cached answers (least recently used
	// go first); 0 means 10000, negative disables the cache.
	CacheSize int
	// CacheMinTTL and CacheMaxTTL bound how long an answer is kept,
	// whatever its TTL says (as Postfix's postscreen_dnsbl_min_ttl and
	// _max_ttl); 0 means 1 minute and 1 hour. A TTL with the top bit set
	// counts as 0 (RFC 2181 §8).
	CacheMinTTL time.Duration
	CacheMaxTTL time.Duration
	// CacheNegativeMaxTTL bounds how long "not listed" is kept; it comes
	// from the SOA of the negative answer (RFC 2308 §5) and is also at
	// least CacheMinTTL. 0 means 10 minutes: a new listing should take
	// effect soon.
	CacheNegativeMaxTTL time.Duration

	// HealthInterval is the period of RunHealthChecks; 0 means 15 minutes.
	HealthInterval time.Duration

	// Logger receives health check results (Warn, Info) and lookup
	// errors (Debug); nil discards.
	Logger *slog.Logger
	// Now is the cache's clock; time.Now when nil.
	Now func() time.Time
	// Exchanger sends queries; nil means miekg/dns's Client with Net.
	// With an Exchanger and no Resolvers, the Exchanger is given "" as the
	// server.
	Exchanger Exchanger
}

// Checker asks DNS lists about addresses and domains. It is immutable
// (build a new one to reload) and safe for concurrent use; its cache and
// zone health are shared by all callers.
type Checker struct {
	ipZones     []*zone
	domainZones []*zone
	threshold   float64
	servers     []string
	retries     int
	minTTL      time.Duration
	maxTTL      time.Duration
	negMaxTTL   time.Duration
	interval    time.Duration
	log         *slog.Logger
	now         func() time.Time
	ex          Exchanger
	cache       *cache

	mu      sync.Mutex
	flights map[cacheKey]*flight
}

// New validates cfg and builds a Checker. Zone names are lower-cased and
// lose their trailing dot; matchers, weights, templates and resolver
// addresses are checked. It reads /etc/resolv.conf when Resolvers is empty
// and no Exchanger is given.
func New(cfg Config) (*Checker, error) {
	c := &Checker{
		threshold: cfg.Threshold,
		retries:   cfg.Retries,
		minTTL:    orDefault(cfg.CacheMinTTL, DefaultCacheMinTTL),
		maxTTL:    orDefault(cfg.CacheMaxTTL, DefaultCacheMaxTTL),
		negMaxTTL: orDefault(cfg.CacheNegativeMaxTTL, DefaultCacheNegativeMaxTTL),
		interval:  orDefault(cfg.HealthInterval, DefaultHealthInterval),
		log:       orDiscard(cfg.Logger),
		now:       cfg.Now,
		ex:        cfg.Exchanger,
		flights:   make(map[cacheKey]*flight),
	}
	switch {
	case math.IsNaN(c.threshold) || math.IsInf(c.threshold, 0) || c.threshold < 0:
		return nil, fmt.Errorf("%w: threshold %v", ErrConfig, cfg.Threshold)
	case c.threshold == 0:
		c.threshold = DefaultThreshold
	}
	switch {
	case c.retries == 0:
		c.retries = DefaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if cfg.Timeout < 0 || cfg.CacheMinTTL < 0 || cfg.CacheMaxTTL < 0 || cfg.CacheNegativeMaxTTL < 0 || cfg.HealthInterval < 0 {
		return nil, fmt.Errorf("%w: negative duration", ErrConfig)
	}
	if c.minTTL > c.maxTTL || c.minTTL > c.negMaxTTL {
		return nil, fmt.Errorf("%w: CacheMinTTL %v is above CacheMaxTTL %v or CacheNegativeMaxTTL %v",
			ErrConfig, c.minTTL, c.maxTTL, c.negMaxTTL)
	}
	if c.now == nil {
		c.now = time.Now
	}
	cacheSize := cfg.CacheSize
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	c.cache = newCache(cacheSize)

	timeout := orDefault(cfg.Timeout, DefaultTimeout)
	if len(cfg.Zones) == 0 {
		return nil, fmt.Errorf("%w: no zones", ErrConfig)
	}
	seen := make(map[string]bool)
	maxTimeout := timeout
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
		maxTimeout = max(maxTimeout, cz.timeout)
		if cz.kind == IPZone {
			c.ipZones = append(c.ipZones, cz)
		} else {
			c.domainZones = append(c.domainZones, cz)
		}
	}

	if c.ex != nil && cfg.Net != "" {
		return nil, fmt.Errorf("%w: Net applies to the default Exchanger only", ErrConfig)
	}
	if c.ex == nil {
		network := cfg.Net
		if network == "" {
			network = "udp"
		}
		if network != "udp" && network != "tcp" {
			return nil, fmt.Errorf("%w: Net %q (want udp or tcp)", ErrConfig, cfg.Net)
		}
		c.ex = newClientExchanger(network, maxTimeout)
	}
	for _, r := range cfg.Resolvers {
		s, err := normalizeResolver(r)
		if err != nil {
			return nil, err
		}
		c.servers = append(c.servers, s)
	}
	if len(c.servers) == 0 {
		if cfg.Exchanger != nil {
			c.servers = []string{""}
		} else {
			rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
			if err != nil {
				return nil, fmt.Errorf("%w: no Resolvers and /etc/resolv.conf: %v", ErrConfig, err)
			}
			for _, s := range rc.Servers {
				if ns, err := normalizeResolver(net.JoinHostPort(s, rc.Port)); err == nil {
					c.servers = append(c.servers, ns)
				}
			}
			if len(c.servers) == 0 {
				return nil, fmt.Errorf("%w: no Resolvers and none in /etc/resolv.conf", ErrConfig)
			}
		}
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
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
	now := c.now()
	for i, z := range zones {
		if o, ok := c.fromCache(z, s, now); ok {
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
	interrupted := false
	for i, o := range outs {
		z := zones[i]
		switch {
		case o.err != nil:
			if errors.Is(o.err, context.Canceled) || errors.Is(o.err, context.DeadlineExceeded) {
				interrupted = true
			}
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
	if interrupted {
		return res, fmt.Errorf("dnsbl: check interrupted: %w", context.Cause(ctx))
	}
	return res, nil
}

// fromCache builds a zone's outcome from cached answers only.
func (c *Checker) fromCache(z *zone, s subject, now time.Time) (outcome, bool) {
	if z.broken() {
		return outcome{err: z.brokenErr()}, true
	}
	qname, ok := s.queryName(z)
	if !ok {
		return outcome{}, true
	}
	a, ok := c.cache.get(cacheKey{qname, dns.TypeA}, now)
	if !ok {
		return outcome{}, false
	}
	hit, err := z.evaluate(a.addrs)
	if err != nil || hit == nil {
		return outcome{err: err}, true
	}
	if z.txt {
		t, ok := c.cache.get(cacheKey{qname, dns.TypeTXT}, now)
		if !ok {
			return outcome{}, false
		}
		hit.TXT = t.txt
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
	a, err := c.resolve(ctx, z, qname, dns.TypeA)
	if err != nil {
		return outcome{err: err}
	}
	hit, err := z.evaluate(a.addrs)
	if err != nil || hit == nil {
		return outcome{err: err}
	}
	if z.txt {
		// The reason text is optional: a failed TXT query leaves it empty.
		if t, err := c.resolve(ctx, z, qname, dns.TypeTXT); err == nil {
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

// flight is one query in progress; callers asking the same question wait
// for it instead of asking again.
type flight struct {
	done chan struct{}
	ans  answer
	err  error
}

// resolve returns the answer to (qname, qtype) from the cache or the
// DNS. Concurrent callers share one query, which runs to its own timeouts
// whatever happens to the caller that started it.
func (c *Checker) resolve(ctx context.Context, z *zone, qname string, qtype uint16) (answer, error) {
	key := cacheKey{qname, qtype}
	if a, ok := c.cache.get(key, c.now()); ok {
		return a, nil
	}
	c.mu.Lock()
	f, ok := c.flights[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		c.flights[key] = f
		qctx := context.WithoutCancel(ctx)
		go func() {
			f.ans, f.err = c.query(qctx, z.timeout, qname, qtype)
			if f.err == nil && f.ans.cacheable {
				c.cache.put(key, f.ans, c.now().Add(c.cacheTTL(f.ans)))
			}
			c.mu.Lock()
			delete(c.flights, key)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.ans, f.err
	case <-ctx.Done():
		return answer{}, ctx.Err()
	}
}

// cacheTTL bounds the TTL the zone gave.
func (c *Checker) cacheTTL(a answer) time.Duration {
	ttl := a.ttl
	if ttl > math.MaxInt32 {
		ttl = 0 // RFC 2181 §8
	}
	d := time.Duration(ttl) * time.Second
	hi := c.maxTTL
	if a.negative {
		hi = c.negMaxTTL
	}
	return min(max(d, c.minTTL), hi)
}

// query asks the resolvers in turn, (1+retries) attempts in all. Only
// lookup errors are retried: a bad answer is the zone's answer.
func (c *Checker) query(ctx context.Context, timeout time.Duration, qname string, qtype uint16) (answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	var err error
	for attempt := 0; attempt <= c.retries; attempt++ {
		server := c.servers[attempt%len(c.servers)]
		var a answer
		a, err = c.attempt(ctx, timeout, m, server, qname, qtype)
		if err == nil || !errors.Is(err, ErrLookup) {
			return a, err
		}
		m.Id = dns.Id() // a late answer to the last attempt must not pass for this one
	}
	return answer{}, err
}

func (c *Checker) attempt(ctx context.Context, timeout time.Duration, m *dns.Msg, server, qname string, qtype uint16) (answer, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := c.ex.Exchange(actx, m, server)
	if err != nil {
		if actx.Err() != nil {
			return answer{}, fmt.Errorf("%w: %s %s: timeout after %v", ErrLookup, server, trimDot(qname), timeout)
		}
		return answer{}, fmt.Errorf("%w: %s %s: %v", ErrLookup, server, trimDot(qname), err)
	}
	if r == nil {
		return answer{}, fmt.Errorf("%w: %s %s: no response", ErrLookup, server, trimDot(qname))
	}
	if r.Id != m.Id {
		return answer{}, fmt.Errorf("%w: %s %s: response ID mismatch", ErrLookup, server, trimDot(qname))
	}
	a, err := decodeAnswer(qname, qtype, r)
	if err != nil {
		return answer{}, fmt.Errorf("%w (%s %s)", err, server, trimDot(qname))
	}
	return a, nil
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }
