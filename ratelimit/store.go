package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// Store holds the counters that may be shared by several relay
// instances: token buckets, fixed-window counters and holds. MemoryStore
// keeps them in the process; ratelimit/redisstore keeps them in Redis,
// where every update is one atomic script or command.
//
// Keys are built by the callers ("harvest:hold:ip:192.0.2.0/24"); a store
// may add its own prefix. Errors mean the store could not be asked, and
// should wrap ErrStoreUnavailable; the filters then fail open or closed as
// configured. Implementations must be safe for concurrent use.
type Store interface {
	// Take takes n tokens from key's bucket of rate r (GCRA: the same
	// answers as a golang.org/x/time/rate.Limiter with limit
	// r.Count/r.Per and burst r.Count). A refused call takes nothing.
	Take(ctx context.Context, key string, r Rate, n int) (Result, error)
	// Incr adds one to key's counter and returns the new count. The
	// counter is a fixed window: it starts at the first Incr and is gone
	// window later, whatever happened in between.
	Incr(ctx context.Context, key string, window time.Duration) (int64, error)
	// Count returns key's counter as Incr left it, without changing it:
	// 0 when there is none or its window has ended.
	Count(ctx context.Context, key string) (int64, error)
	// Hold sets a flag on key for ttl, replacing any earlier hold.
	Hold(ctx context.Context, key string, ttl time.Duration) error
	// Held reports whether key's flag is set, and for how much longer.
	Held(ctx context.Context, key string) (held bool, left time.Duration, err error)
	// Delete removes key, whatever it holds.
	Delete(ctx context.Context, key string) error
}

// MemoryConfig configures a MemoryStore. The zero value holds up to
// DefaultMaxKeys keys on the system clock.
type MemoryConfig struct {
	// MaxKeys bounds the keys held; 0 means DefaultMaxKeys. Past the
	// bound the least recently used key is evicted.
	MaxKeys int
	// Now is the clock; time.Now when nil. Tests inject one to move time
	// without sleeping.
	Now func() time.Time
}

// MemoryStore is the in-process Store: what one relay instance uses when
// nothing is shared. Buckets are golang.org/x/time/rate limiters. Expired
// counters and holds, and refilled buckets, are dropped as new keys
// arrive; the number of keys is bounded. It never fails.
type MemoryStore struct {
	t   *table
	now func() time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore validates cfg and returns an empty store.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("%w: negative MaxKeys %d", ErrConfig, cfg.MaxKeys)
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	return &MemoryStore{t: newTable(cfg.MaxKeys), now: orNow(cfg.Now)}, nil
}

// newDefaultStore is the store of a component configured without one: an
// in-memory store of DefaultMaxKeys on the component's clock.
func newDefaultStore(now func() time.Time) *MemoryStore {
	return &MemoryStore{t: newTable(DefaultMaxKeys), now: now}
}

// Take implements Store.
func (m *MemoryStore) Take(_ context.Context, key string, r Rate, n int) (Result, error) {
	return m.t.take(key, r, n, m.now()), nil
}

// Incr implements Store.
func (m *MemoryStore) Incr(_ context.Context, key string, window time.Duration) (int64, error) {
	return m.t.incr(key, window, m.now()), nil
}

// Count implements Store.
func (m *MemoryStore) Count(_ context.Context, key string) (int64, error) {
	return m.t.count(key, m.now()), nil
}

// Hold implements Store.
func (m *MemoryStore) Hold(_ context.Context, key string, ttl time.Duration) error {
	m.t.hold(key, ttl, m.now())
	return nil
}

// Held implements Store.
func (m *MemoryStore) Held(_ context.Context, key string) (bool, time.Duration, error) {
	held, left := m.t.held(key, m.now())
	return held, left, nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, key string) error {
	m.t.del(key)
	return nil
}

// Stats returns the table's counters.
func (m *MemoryStore) Stats() TableStats { return m.t.stats() }
