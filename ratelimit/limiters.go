package ratelimit

import (
	"fmt"
	"time"
)

// LimitersConfig configures Limiters. The zero value holds up to
// DefaultMaxKeys keys on the system clock.
type LimitersConfig struct {
	// MaxKeys bounds the keys held; 0 means DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Limiters is a set of golang.org/x/time/rate token buckets, one per key,
// in memory. Keys that went idle long enough for their bucket to refill
// are dropped as new keys arrive (a full bucket is the same as a fresh
// one), and at most MaxKeys are held: past that the least recently used
// key is evicted. It is safe for concurrent use.
type Limiters struct {
	t   *table
	now func() time.Time
}

// NewLimiters validates cfg and returns an empty set.
func NewLimiters(cfg LimitersConfig) (*Limiters, error) {
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("%w: negative MaxKeys %d", ErrConfig, cfg.MaxKeys)
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	return &Limiters{t: newTable(cfg.MaxKeys), now: orNow(cfg.Now)}, nil
}

func orNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// Allow takes one token from key's bucket of rate r and reports whether
// there was one. A refused call takes nothing. The zero Rate always
// allows. When r differs from the rate the bucket had (a configuration
// reload), the bucket keeps its tokens and continues at r.
func (l *Limiters) Allow(key string, r Rate) bool {
	return l.t.take(key, r, 1, l.now()).Allowed
}

// AllowN takes n tokens at once, or none.
func (l *Limiters) AllowN(key string, r Rate, n int) Result {
	return l.t.take(key, r, n, l.now())
}

// Len returns the number of keys held.
func (l *Limiters) Len() int { return l.t.stats().Keys }

// Stats returns the table's counters.
func (l *Limiters) Stats() TableStats { return l.t.stats() }
