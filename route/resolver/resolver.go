package resolver

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern"
)

// Defaults of Config.
const (
	DefaultTimeout        = 2 * time.Second
	DefaultAttempts       = 2
	DefaultCacheSize      = 10000
	DefaultMinTTL         = time.Minute
	DefaultMaxTTL         = time.Hour
	DefaultNegativeMaxTTL = 10 * time.Minute
	// UDPSize is the EDNS0 buffer size offered (the DNS flag day 2020
	// value): larger answers come over TCP.
	UDPSize = 1232
)

// maxCNAME bounds a CNAME chain, within one response and across queries.
const maxCNAME = 8

// Config configures a Resolver. The zero value asks the nameservers of
// /etc/resolv.conf with the defaults above.
type Config struct {
	// Servers are the recursive resolvers asked, "addr:port" or "addr"
	// (port 53), in order. Empty: the nameservers of /etc/resolv.conf,
	// read by New. DNSBL operators refuse queries forwarded through
	// large public resolvers: use a local recursive resolver.
	Servers []string
	// Net is "udp" (the default: UDP with EDNS0, and TCP again when the
	// answer is truncated, RFC 7766 §5) or "tcp" (TCP only).
	Net string
	// Timeout bounds one attempt of one query to one server
	// (DefaultTimeout).
	Timeout time.Duration
	// Attempts is how many rounds over Servers a query makes before it
	// fails (DefaultAttempts), as resolv.conf's "attempts". A server
	// that answers NOERROR or NXDOMAIN ends the query; a timeout, an
	// error code (SERVFAIL, REFUSED) or a bad response moves on to the
	// next server. The worst case is thus Attempts × len(Servers) ×
	// Timeout.
	Attempts int

	// CacheSize bounds the answers kept (least recently used go first);
	// 0 means DefaultCacheSize, negative disables the cache.
	CacheSize int
	// MinTTL and MaxTTL bound how long an answer is kept whatever its
	// TTL says, as Postfix's postscreen_dnsbl_min_ttl and _max_ttl;
	// 0 means DefaultMinTTL and DefaultMaxTTL, a negative MinTTL keeps
	// TTLs as they are. A TTL with the top bit set counts as 0 (RFC 2181
	// §8).
	MinTTL time.Duration
	MaxTTL time.Duration
	// NegativeMaxTTL bounds how long "no such name" and "no such record"
	// are kept. Their TTL is the SOA's of the negative answer (RFC 2308
	// §5); an answer without SOA is not kept. 0 means
	// DefaultNegativeMaxTTL: a record published later is seen soon.
	NegativeMaxTTL time.Duration

	// Now is the cache's clock; time.Now when nil.
	Now func() time.Time
	// Logger receives a Debug line per failed query; nil discards.
	Logger *slog.Logger
}

// Resolver is a stub resolver that asks recursive resolvers, with an
// answer cache. It is safe for concurrent use; concurrent identical
// queries share one exchange. See the package documentation.
type Resolver struct {
	servers   []string
	udp, tcp  *dns.Client
	timeout   time.Duration
	attempts  int
	minTTL    time.Duration
	maxTTL    time.Duration
	negMaxTTL time.Duration
	now       func() time.Time
	log       *slog.Logger
	cache     *cache

	mu      sync.Mutex
	flights map[cacheKey]*flight
}

// New validates cfg and returns a Resolver. It reads /etc/resolv.conf
// when cfg.Servers is empty.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{
		timeout:   cmp.Or(cfg.Timeout, DefaultTimeout),
		attempts:  cfg.Attempts,
		minTTL:    cmp.Or(cfg.MinTTL, DefaultMinTTL),
		maxTTL:    cmp.Or(cfg.MaxTTL, DefaultMaxTTL),
		negMaxTTL: cmp.Or(cfg.NegativeMaxTTL, DefaultNegativeMaxTTL),
		now:       cfg.Now,
		log:       cfg.Logger,
		flights:   map[cacheKey]*flight{},
	}
	if cfg.Timeout < 0 || cfg.Attempts < 0 || cfg.MaxTTL < 0 || cfg.NegativeMaxTTL < 0 {
		return nil, fmt.Errorf("%w: negative Timeout, Attempts, MaxTTL or NegativeMaxTTL", ErrConfig)
	}
	if r.minTTL < 0 {
		r.minTTL = 0
	}
	if r.minTTL > r.maxTTL || r.minTTL > r.negMaxTTL {
		return nil, fmt.Errorf("%w: MinTTL %v is above MaxTTL %v or NegativeMaxTTL %v", ErrConfig, r.minTTL, r.maxTTL, r.negMaxTTL)
	}
	if r.attempts == 0 {
		r.attempts = DefaultAttempts
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = postern.DiscardLogger()
	}
	switch cfg.Net {
	case "", "udp":
		r.udp = &dns.Client{Net: "udp", Timeout: r.timeout}
	case "tcp":
	default:
		return nil, fmt.Errorf("%w: Net %q (want udp or tcp)", ErrConfig, cfg.Net)
	}
	// The context deadline set per attempt is what bounds a query; the
	// client timeout only backs it up.
	r.tcp = &dns.Client{Net: "tcp", Timeout: r.timeout}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	r.cache = newCache(size)
	var err error
	if r.servers, err = servers(cfg.Servers); err != nil {
		return nil, err
	}
	return r, nil
}

// servers normalises the server list, or reads /etc/resolv.conf.
func servers(list []string) ([]string, error) {
	var out []string
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: server %q is not an address or address:port", ErrConfig, s)
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53).String())
	}
	if len(out) > 0 {
		return out, nil
	}
	rc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("%w: no Servers and /etc/resolv.conf: %w", ErrConfig, err)
	}
	for _, s := range rc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, net.JoinHostPort(a.Unmap().String(), rc.Port))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no Servers and none in /etc/resolv.conf", ErrConfig)
	}
	return out, nil
}

// Servers returns the servers asked, "addr:port", in order.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// Answer is what the DNS says about one question. It is a value; its
// slices and records are shared with the cache and must not be modified.
type Answer struct {
	// Name is the name asked, lower case and fully qualified; Type the
	// type asked.
	Name string
	Type uint16
	// Rcode is dns.RcodeSuccess or dns.RcodeNameError (NXDOMAIN; after a
	// CNAME chain it is about the chain's last name, RFC 2308 §2.1).
	// Other codes are errors (ErrServerFailure).
	Rcode int
	// Records are the records of Type owned by Canonical, in answer
	// order. None with Rcode NOERROR is "no data" (RFC 2308 §2.2).
	Records []dns.RR
	// Canonical is the name the CNAME chain from Name ends at, Name when
	// there was none; Aliases are the names the chain went through after
	// Name (so Canonical is the last of them), RFC 1034 §3.6.2.
	Canonical string
	Aliases   []string
	// AD is the response's Authenticated Data bit (RFC 4035 §3.2.3), set
	// on every response of a chain. It is only as trustworthy as the
	// path to the servers: trust it only when they are validating
	// resolvers on this host or reached over a secured channel (RFC 4035
	// §4.9.3); DANE (RFC 7672) depends on it.
	AD bool
	// TTL is how long the answer stays valid: the smallest TTL of the
	// records and aliases, or for a negative answer its SOA's (RFC 2308
	// §5), less the time it spent in the cache. The cache bounds of
	// Config do not change it.
	TTL time.Duration
	// Msg is the response the answer was read from (the last one, when
	// following a chain took several queries).
	Msg *dns.Msg

	cacheable bool // the response gave a TTL to honour
	negative  bool
}

// NXDomain reports an answer saying the name does not exist.
func (a Answer) NXDomain() bool { return a.Rcode == dns.RcodeNameError }

// NoData reports an answer with no records of the type asked: NXDOMAIN,
// or a name without such records.
func (a Answer) NoData() bool { return len(a.Records) == 0 }

// Lookup asks for the records of name (a domain name, with or without
// the final dot, in ASCII: A-labels for internationalised names) of type
// qtype, from the cache when it holds a live answer, else from the
// servers. A CNAME chain the server left unfinished is followed with
// further queries. NXDOMAIN and "no data" are answers, not errors; an
// error wraps ErrName or one of the temporary failures (ErrTimeout,
// ErrNetwork, ErrServerFailure, ErrBadResponse).
//
// Concurrent lookups of one question share one exchange, which runs to
// its own timeouts whatever happens to the caller that started it; when
// ctx ends first, Lookup returns at once with an error wrapping
// ErrTimeout and ctx's error.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) (Answer, error) {
	return r.resolve(ctx, name, qtype, useCache)
}

// Exchange asks the servers as Lookup does, bypassing the cache in both
// directions: it neither reads nor stores answers, and runs within ctx.
// Health checks and probes use it.
func (r *Resolver) Exchange(ctx context.Context, name string, qtype uint16) (Answer, error) {
	return r.resolve(ctx, name, qtype, noCache)
}

// Cached returns the live cached answer to the question, if there is one,
// without asking anything.
func (r *Resolver) Cached(name string, qtype uint16) (Answer, bool) {
	a, err := r.resolve(context.Background(), name, qtype, cacheOnly)
	return a, err == nil
}

type mode uint8

const (
	useCache mode = iota
	noCache
	cacheOnly
)

// resolve answers a question and follows a CNAME chain that the server
// left unfinished.
func (r *Resolver) resolve(ctx context.Context, name string, qtype uint16, m mode) (Answer, error) {
	qname, err := canonicalName(name)
	if err != nil {
		return Answer{}, err
	}
	a, err := r.hop(ctx, qname, qtype, m)
	if err != nil {
		return Answer{}, err
	}
	last := a
	for dangling(last) {
		if len(a.Aliases) >= maxCNAME {
			return Answer{}, fmt.Errorf("%w: %s %s: CNAME chain longer than %d", ErrBadResponse, typeName(qtype), trimDot(qname), maxCNAME)
		}
		if last, err = r.hop(ctx, a.Canonical, qtype, m); err != nil {
			return Answer{}, err
		}
		if a.onChain(last.Aliases...) {
			return Answer{}, fmt.Errorf("%w: %s %s: CNAME loop", ErrBadResponse, typeName(qtype), trimDot(qname))
		}
		a = a.extend(last)
	}
	return a, nil
}

// dangling reports a chain the response did not finish: aliases, no
// records, and no SOA saying the last name really has none.
func dangling(a Answer) bool {
	if a.Rcode != dns.RcodeSuccess || len(a.Records) > 0 || len(a.Aliases) == 0 {
		return false
	}
	for _, rr := range a.Msg.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return false
		}
	}
	return true
}

func (a Answer) onChain(names ...string) bool {
	for _, n := range names {
		if n == a.Name {
			return true
		}
		for _, al := range a.Aliases {
			if n == al {
				return true
			}
		}
	}
	return false
}

// extend appends the answer about a's canonical name to a.
func (a Answer) extend(b Answer) Answer {
	a.Rcode, a.Records, a.Canonical, a.Msg = b.Rcode, b.Records, b.Canonical, b.Msg
	a.Aliases = append(append([]string(nil), a.Aliases...), b.Aliases...)
	a.AD = a.AD && b.AD
	a.TTL = min(a.TTL, b.TTL)
	a.negative = b.negative
	a.cacheable = a.cacheable && b.cacheable
	return a
}

// hop answers one question with one exchange (or from the cache).
func (r *Resolver) hop(ctx context.Context, qname string, qtype uint16, m mode) (Answer, error) {
	if m == noCache {
		return r.ask(ctx, qname, qtype)
	}
	key := cacheKey{qname, qtype}
	if a, ok := r.cache.get(key, r.now()); ok {
		return a, nil
	}
	if m == cacheOnly {
		return Answer{}, errNotCached
	}
	r.mu.Lock()
	f, ok := r.flights[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		r.flights[key] = f
		// The exchange belongs to every caller waiting for it: it runs
		// to its own timeouts, not the first caller's context.
		go r.fly(context.WithoutCancel(ctx), key, f)
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.ans, f.err
	case <-ctx.Done():
		return Answer{}, ctxErr(ctx, qname, qtype)
	}
}

// flight is one exchange in progress.
type flight struct {
	done chan struct{}
	ans  Answer
	err  error
}

func (r *Resolver) fly(ctx context.Context, key cacheKey, f *flight) {
	f.ans, f.err = r.ask(ctx, key.name, key.qtype)
	if f.err == nil && f.ans.cacheable {
		r.cache.put(key, f.ans, r.now(), r.keep(f.ans))
	}
	r.mu.Lock()
	delete(r.flights, key)
	r.mu.Unlock()
	close(f.done)
}

// keep is how long the cache keeps a: its TTL within the bounds.
func (r *Resolver) keep(a Answer) time.Duration {
	hi := r.maxTTL
	if a.negative {
		hi = r.negMaxTTL
	}
	return min(max(a.TTL, r.minTTL), hi)
}

func ctxErr(ctx context.Context, qname string, qtype uint16) error {
	return fmt.Errorf("%w: %s %s: %w", ErrTimeout, typeName(qtype), trimDot(qname), context.Cause(ctx))
}

// canonicalName checks name and returns it lower case and fully
// qualified, in the presentation form miekg/dns gives names it reads off
// the wire (so "a'b." and "a\\'b." are one name).
func canonicalName(name string) (string, error) {
	n := lower(dns.Fqdn(name))
	if name == "" || len(n) > 254 || n != "." && strings.HasPrefix(n, ".") || strings.Contains(n, "..") {
		return "", fmt.Errorf("%w: %q", ErrName, name)
	}
	if plain(n) {
		if _, ok := dns.IsDomainName(n); !ok {
			return "", fmt.Errorf("%w: %q", ErrName, name)
		}
		return n, nil
	}
	var buf [256]byte
	off, err := dns.PackDomainName(n, buf[:], 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("%w: %q", ErrName, name)
	}
	n, _, err = dns.UnpackDomainName(buf[:off], 0)
	if err != nil {
		return "", fmt.Errorf("%w: %q", ErrName, name)
	}
	return n, nil
}

// plain reports a name of letters, digits, '-', '_' and dots only, which
// needs no escaping.
func plain(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func trimDot(s string) string {
	if s == "." {
		return s
	}
	return strings.TrimSuffix(s, ".")
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}

// lower folds ASCII letters only: DNS names compare so (RFC 4343), and
// other octets must stay as they are.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
