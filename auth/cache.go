package auth

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"
)

// CacheConfig configures NewCachingResolver. The zero value caches answers
// for DefaultCacheTTL, at most DefaultCacheEntries of them.
type CacheConfig struct {
	// TTL is how long an answer, or a "no such record", is kept. The
	// standard library's resolver does not say a record's own TTL, so
	// this is a ceiling under the usual TTLs of SPF, DKIM and DMARC
	// records; DNS changes are seen at most TTL late. Default
	// DefaultCacheTTL.
	TTL time.Duration
	// MaxEntries bounds the cache; past it the oldest half is dropped.
	// Default DefaultCacheEntries.
	MaxEntries int
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
}

// Defaults of CacheConfig.
const (
	DefaultCacheTTL     = time.Minute
	DefaultCacheEntries = 10000
)

// NewCachingResolver wraps r (nil: net.DefaultResolver) with a small
// in-process cache of TXT, MX, address and PTR answers. Mail from one
// domain asks the same SPF, DKIM key and DMARC names again and again; each
// asked once a minute instead of once a message saves a round trip and a
// socket per query (the relay's benchmark found them a sixth of its CPU).
// Temporary failures are never cached, so a SERVFAIL is asked again. It
// is safe for concurrent use; concurrent misses for one name share one
// query.
func NewCachingResolver(r Resolver, cfg CacheConfig) Resolver {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultCacheTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultCacheEntries
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &cachingResolver{r: orDefaultResolver(r), cfg: cfg, m: map[cacheKey]*cacheEntry{}}
}

type cacheKey struct {
	kind byte // 't'xt, 'm'x, 'i'p, 'p'tr
	name string
}

type cacheEntry struct {
	done    chan struct{} // closed when the query finished
	val     any
	err     error
	expires time.Time
}

type cachingResolver struct {
	r   Resolver
	cfg CacheConfig
	mu  sync.Mutex
	m   map[cacheKey]*cacheEntry
}

// lookup returns the cached answer for k or asks q once.
func (c *cachingResolver) lookup(ctx context.Context, k cacheKey, q func() (any, error)) (any, error) {
	now := c.cfg.Clock()
	c.mu.Lock()
	e, ok := c.m[k]
	if ok {
		select {
		case <-e.done:
			if now.Before(e.expires) {
				c.mu.Unlock()
				return e.val, e.err
			}
			ok = false // expired: ask again
		default: // under way: wait for it
		}
	}
	if !ok {
		if len(c.m) >= c.cfg.MaxEntries {
			c.evict(now)
		}
		e = &cacheEntry{done: make(chan struct{})}
		c.m[k] = e
		c.mu.Unlock()
		e.val, e.err = q()
		e.expires = c.cfg.Clock().Add(c.cfg.TTL)
		if e.err != nil && !dnsNotFound(e.err) {
			// Timeouts and SERVFAIL are not answers: forget them.
			c.mu.Lock()
			if c.m[k] == e {
				delete(c.m, k)
			}
			c.mu.Unlock()
		}
		close(e.done)
		return e.val, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.val, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// evict drops the expired entries, and if that is not enough, about half
// of the rest. Called with mu held.
func (c *cachingResolver) evict(now time.Time) {
	for k, e := range c.m {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		default:
		}
	}
	if len(c.m) < c.cfg.MaxEntries {
		return
	}
	n := len(c.m) / 2
	for k := range c.m { // map order is random enough
		if n == 0 {
			break
		}
		delete(c.m, k)
		n--
	}
}

func (c *cachingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := c.lookup(ctx, cacheKey{'t', fqdn(name)}, func() (any, error) { return c.r.LookupTXT(ctx, name) })
	txt, _ := v.([]string)
	return slices.Clone(txt), err
}

func (c *cachingResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := c.lookup(ctx, cacheKey{'m', fqdn(name)}, func() (any, error) { return c.r.LookupMX(ctx, name) })
	mx, _ := v.([]*net.MX)
	out := make([]*net.MX, len(mx))
	for i, m := range mx {
		cp := *m
		out[i] = &cp
	}
	return out, err
}

func (c *cachingResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := c.lookup(ctx, cacheKey{'i', fqdn(host)}, func() (any, error) { return c.r.LookupIPAddr(ctx, host) })
	ips, _ := v.([]net.IPAddr)
	return slices.Clone(ips), err
}

func (c *cachingResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := c.lookup(ctx, cacheKey{'p', addr}, func() (any, error) { return c.r.LookupAddr(ctx, addr) })
	names, _ := v.([]string)
	return slices.Clone(names), err
}
