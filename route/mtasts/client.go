package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern"
	"github.com/postern/postern/route/resolver"
)

// Defaults of Config.
const (
	DefaultFetchTimeout = 30 * time.Second
	// MaxPolicySize bounds a policy fetched (RFC 8461 §3.3 suggests 64
	// KiB).
	MaxPolicySize = 64 << 10
	// maxMemory bounds the policies kept in memory.
	maxMemory = 10000
)

// Failures of discovery, by their RFC 8460 result types.
const (
	FailureFetch   = "sts-policy-fetch-error"
	FailureInvalid = "sts-policy-invalid"
	FailureWebPKI  = "sts-webpki-invalid"
)

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("mtasts: invalid configuration")

// Resolver is how the Client asks the DNS; *resolver.Resolver implements
// it.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error)
}

// Config configures a Client. Resolver is required.
type Config struct {
	Resolver Resolver
	// CacheDir keeps fetched policies across restarts; "" keeps them in
	// memory only. It is made (0700) if missing.
	CacheDir string
	// RootCAs verify the policy hosts' certificates; nil: the system's.
	RootCAs *x509.CertPool
	// FetchTimeout bounds one fetch, connection included
	// (DefaultFetchTimeout).
	FetchTimeout time.Duration
	// Port is the HTTPS port of policy hosts (443; tests use others).
	Port uint16
	// Dialer connects to a policy host's address; default net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives a line per fetch and per failure; nil discards.
	Logger *slog.Logger
}

// Client finds and keeps MTA-STS policies. It is safe for concurrent
// use; concurrent Gets of one domain share one fetch.
type Client struct {
	res     Resolver
	dir     string
	roots   *x509.CertPool
	timeout time.Duration
	port    uint16
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	now     func() time.Time
	log     *slog.Logger

	mu      sync.Mutex
	mem     map[string]*Policy
	domains map[string]*sync.Mutex // one discovery per domain at a time
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Resolver == nil {
		return nil, fmt.Errorf("%w: no Resolver", ErrConfig)
	}
	if cfg.FetchTimeout < 0 {
		return nil, fmt.Errorf("%w: negative FetchTimeout", ErrConfig)
	}
	c := &Client{res: cfg.Resolver, dir: cfg.CacheDir, roots: cfg.RootCAs, timeout: cfg.FetchTimeout,
		port: cfg.Port, dial: cfg.Dialer, now: cfg.Now, log: cfg.Logger,
		mem: map[string]*Policy{}, domains: map[string]*sync.Mutex{}}
	if c.timeout == 0 {
		c.timeout = DefaultFetchTimeout
	}
	if c.port == 0 {
		c.port = 443
	}
	if c.dial == nil {
		d := &net.Dialer{}
		c.dial = d.DialContext
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = postern.DiscardLogger()
	}
	if c.dir != "" {
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: CacheDir: %w", ErrConfig, err)
		}
	}
	return c, nil
}

// Result is the policy in force for a domain.
type Result struct {
	// Policy is nil when the domain has no usable policy.
	Policy *Policy
	// Cached is set when Policy came from the cache because discovery
	// failed or found the same id.
	Cached bool
	// Failure is the RFC 8460 result type of a failed discovery that left
	// the domain without a policy; Err says what failed (also when a
	// cached policy stood in).
	Failure string
	Err     error
}

// Get returns the policy in force for domain (see the package
// documentation). It blocks while a policy is fetched, at most
// Config.FetchTimeout.
func (c *Client) Get(ctx context.Context, domain string) Result {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !validPattern(domain) || strings.HasPrefix(domain, "*") {
		return Result{}
	}
	lock := c.domainLock(domain)
	lock.Lock()
	defer lock.Unlock()
	cached := c.cached(domain)
	rec, err := c.record(ctx, domain)
	switch {
	case err != nil && cached != nil:
		return Result{Policy: cached, Cached: true, Err: err}
	case err != nil:
		return Result{Err: err}
	case rec == nil && cached != nil:
		return Result{Policy: cached, Cached: true}
	case rec == nil:
		return Result{}
	case cached != nil && cached.ID == rec.ID:
		return Result{Policy: cached, Cached: true}
	}
	p, failure, err := c.fetch(ctx, domain)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "MTA-STS policy fetch failed", slog.String("domain", domain),
			slog.String("result", failure), slog.String("error", err.Error()), slog.Bool("cached", cached != nil))
		if cached != nil {
			return Result{Policy: cached, Cached: true, Err: err}
		}
		return Result{Failure: failure, Err: err}
	}
	p.Domain, p.ID, p.Fetched = domain, rec.ID, c.now()
	c.store(&p)
	c.log.LogAttrs(ctx, slog.LevelInfo, "MTA-STS policy fetched", slog.String("domain", domain),
		slog.String("id", p.ID), slog.String("mode", string(p.Mode)), slog.Duration("max_age", p.MaxAge))
	return Result{Policy: &p}
}

func (c *Client) domainLock(domain string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.domains[domain]
	if l == nil {
		if len(c.domains) > maxMemory {
			clear(c.domains) // held locks stay with their holders
		}
		l = &sync.Mutex{}
		c.domains[domain] = l
	}
	return l
}

// record finds the domain's "_mta-sts" TXT record: nil when it has
// none (or not exactly one that parses, RFC 8461 §3.1), an error when
// the DNS failed.
func (c *Client) record(ctx context.Context, domain string) (*Record, error) {
	a, err := c.res.Lookup(ctx, "_mta-sts."+domain, dns.TypeTXT)
	if err != nil {
		return nil, fmt.Errorf("mtasts: TXT _mta-sts.%s: %w", domain, err)
	}
	var found []string
	for _, rr := range a.Records {
		if t, ok := rr.(*dns.TXT); ok {
			s := strings.Join(t.Txt, "")
			if strings.HasPrefix(s, "v=STSv1") {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		return nil, nil
	}
	r, err := ParseRecord(found[0])
	if err != nil {
		return nil, nil
	}
	return &r, nil
}

// cached returns the unexpired policy kept for domain, from memory or
// disk.
func (c *Client) cached(domain string) *Policy {
	c.mu.Lock()
	p := c.mem[domain]
	c.mu.Unlock()
	if p == nil && c.dir != "" {
		p = c.load(domain)
		if p != nil {
			c.remember(p)
		}
	}
	if p == nil || !c.now().Before(p.Expires()) {
		return nil
	}
	return p
}

func (c *Client) remember(p *Policy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.mem) >= maxMemory {
		for k := range c.mem { // drop an arbitrary one
			delete(c.mem, k)
			break
		}
	}
	c.mem[p.Domain] = p
}

// store keeps a new policy in memory and on disk.
func (c *Client) store(p *Policy) {
	c.remember(p)
	if c.dir != "" {
		if err := c.save(p); err != nil {
			c.log.Warn("MTA-STS policy not saved", "domain", p.Domain, "error", err)
		}
	}
}

// Cached returns the unexpired policy kept for domain without asking
// anything; nil if there is none.
func (c *Client) Cached(domain string) *Policy {
	return c.cached(strings.ToLower(strings.TrimSuffix(domain, ".")))
}

// tlsError reports a certificate failure of the policy host.
func tlsError(err error) bool {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}
