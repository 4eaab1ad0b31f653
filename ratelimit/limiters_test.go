package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLimitersAllow(t *testing.T) {
	clk := newClock()
	l, err := NewLimiters(LimitersConfig{Now: clk.Now})
	require.NoError(t, err)
	r := Rate{Count: 3, Per: time.Minute} // a token every 20 s

	steps := []struct {
		advance time.Duration
		key     string
		want    bool
	}{
		{0, "a", true},
		{0, "a", true},
		{0, "a", true},
		{0, "a", false},                // bucket empty
		{0, "b", true},                 // keys are separate
		{19 * time.Second, "a", false}, // not quite a token yet
		{time.Second, "a", true},       // 20 s: one token back
		{0, "a", false},                // and used
		{10 * time.Minute, "a", true},  // long idle: full again …
		{0, "a", true},                 //
		{0, "a", true},                 //
		{0, "a", false},                // … but no more than Count
		{-time.Hour, "a", false},       // a clock stepping back gives nothing
		{time.Hour + time.Minute, "a", true},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		assert.Equal(t, s.want, l.Allow(s.key, r), "step %d", i)
	}

	res := l.AllowN("c", r, 2)
	assert.True(t, res.Allowed)
	assert.Equal(t, 1, res.Remaining)
	res = l.AllowN("c", r, 2)
	assert.False(t, res.Allowed)
	assert.Equal(t, 20*time.Second, res.RetryAfter, "one token missing: one interval")
	res = l.AllowN("c", r, 1)
	assert.True(t, res.Allowed, "a refused AllowN took nothing")

	// Idle full buckets may have been swept by the inserts above
	// (depending on the shard each key hashes to), so compare counts.
	keys := l.Len()
	assert.True(t, l.Allow("z", Rate{}), "zero rate is unlimited")
	assert.Equal(t, keys, l.Len(), "unlimited calls create no key")
}

func TestLimitersRateChangeKeepsTokens(t *testing.T) {
	clk := newClock()
	l, err := NewLimiters(LimitersConfig{Now: clk.Now})
	require.NoError(t, err)
	r2 := Rate{Count: 2, Per: time.Minute}
	assert.True(t, l.Allow("k", r2))
	assert.True(t, l.Allow("k", r2))
	assert.False(t, l.Allow("k", r2))
	// The access map now says 10 per minute: the bucket is not refilled
	// by the change, but refills at the new rate (one per 6 s).
	r10 := Rate{Count: 10, Per: time.Minute}
	assert.False(t, l.Allow("k", r10))
	clk.Advance(6 * time.Second)
	assert.True(t, l.Allow("k", r10))
	assert.False(t, l.Allow("k", r10))
}

func TestLimitersEvictionBound(t *testing.T) {
	clk := newClock()
	const maxKeys = 50
	l, err := NewLimiters(LimitersConfig{MaxKeys: maxKeys, Now: clk.Now})
	require.NoError(t, err)
	r := Rate{Count: 1, Per: time.Hour}
	for i := range 1000 {
		l.Allow(fmt.Sprintf("k%d", i), r)
		require.LessOrEqual(t, l.Len(), maxKeys)
	}
	st := l.Stats()
	assert.Equal(t, maxKeys, st.Keys)
	assert.Equal(t, uint64(1000-maxKeys), st.Evicted, "live buckets were evicted to stay in bound")

	// The least recently used key goes first: touch k950 so it survives
	// the next 49 inserts while k951 does not.
	assert.False(t, l.Allow("k950", r), "k950 is still limited")
	for i := range maxKeys - 1 {
		l.Allow(fmt.Sprintf("n%d", i), r)
	}
	assert.False(t, l.Allow("k950", r), "recently used: kept, still empty")
	assert.True(t, l.Allow("k951", r), "least recently used: evicted, so fresh")
}

func TestLimitersIdleFullBucketsDropped(t *testing.T) {
	clk := newClock()
	l, err := NewLimiters(LimitersConfig{MaxKeys: 1000, Now: clk.Now})
	require.NoError(t, err)
	r := Rate{Count: 5, Per: time.Minute}
	for i := range 100 {
		l.Allow(fmt.Sprintf("old%d", i), r)
	}
	require.Equal(t, 100, l.Len())
	// After a minute every old bucket is full again: equivalent to no
	// bucket. New keys sweep them from the LRU end, two per insert.
	clk.Advance(time.Minute)
	for i := range 60 {
		l.Allow(fmt.Sprintf("new%d", i), r)
	}
	st := l.Stats()
	assert.Equal(t, 60, st.Keys, "all 100 idle keys swept by 60 inserts")
	assert.Equal(t, uint64(100), st.Expired)
	assert.Zero(t, st.Evicted, "nothing live was dropped")
}

func TestLimitersShardedBound(t *testing.T) {
	l, err := NewLimiters(LimitersConfig{MaxKeys: 5000})
	require.NoError(t, err)
	require.Len(t, l.t.shards, tableShards)
	r := Rate{Count: 1, Per: time.Hour}
	for i := range 20000 {
		l.Allow(fmt.Sprintf("k%d", i), r)
	}
	assert.LessOrEqual(t, l.Len(), 5000)
	assert.Greater(t, l.Len(), 4900, "the shards together hold about MaxKeys")
}

func TestLimitersConcurrent(t *testing.T) {
	clk := newClock()
	l, err := NewLimiters(LimitersConfig{MaxKeys: 64, Now: clk.Now})
	require.NoError(t, err)
	r := Rate{Count: 100, Per: time.Hour}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for range 50 {
				if l.Allow("shared", r) {
					n++
				}
				l.Allow(fmt.Sprintf("g%d", g), r)
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, 100, allowed, "exactly Count tokens shared by 8 goroutines")
}

func TestConfigErrors(t *testing.T) {
	_, err := NewLimiters(LimitersConfig{MaxKeys: -1})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewMemoryStore(MemoryConfig{MaxKeys: -1})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewFilter(FilterConfig{})
	assert.ErrorIs(t, err, ErrConfig, "a filter that limits nothing")
	_, err = NewFilter(FilterConfig{Messages: Rate{Count: 1}})
	assert.ErrorIs(t, err, ErrConfig, "1 per zero time")
	_, err = NewFilter(FilterConfig{Recipients: Rate{Count: -1, Per: time.Second}})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewGuard(GuardConfig{Threshold: -1})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewGuard(GuardConfig{HoldTime: -time.Second})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewGuard(GuardConfig{Class: Class{V4: 40}})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewGuard(GuardConfig{UnknownCodes: nil})
	assert.NoError(t, err)
	_, err = NewAuthLimiter(AuthConfig{MaxFailures: -3})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewAuthLimiter(AuthConfig{Block: -time.Minute})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewListener(nil, ListenerConfig{})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m, err := NewMemoryStore(MemoryConfig{Now: clk.Now})
	require.NoError(t, err)

	// Fixed window: counts from the first Incr, gone a window later.
	for want := int64(1); want <= 3; want++ {
		n, err := m.Incr(ctx, "c", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, want, n)
		clk.Advance(10 * time.Second)
	}
	n, _ := m.Count(ctx, "c")
	assert.Equal(t, int64(3), n, "Count reads without counting")
	n, _ = m.Count(ctx, "nothing")
	assert.Zero(t, n)
	clk.Advance(30 * time.Second) // 60 s after the first
	n, _ = m.Count(ctx, "c")
	assert.Zero(t, n, "the window ended")
	n, _ = m.Incr(ctx, "c", time.Minute)
	assert.Equal(t, int64(1), n, "a new window")

	held, _, _ := m.Held(ctx, "h")
	assert.False(t, held)
	require.NoError(t, m.Hold(ctx, "h", time.Minute))
	clk.Advance(15 * time.Second)
	held, left, _ := m.Held(ctx, "h")
	assert.True(t, held)
	assert.Equal(t, 45*time.Second, left)
	require.NoError(t, m.Hold(ctx, "h", time.Minute), "a new hold replaces the old")
	clk.Advance(50 * time.Second)
	held, _, _ = m.Held(ctx, "h")
	assert.True(t, held)
	clk.Advance(10 * time.Second)
	held, _, _ = m.Held(ctx, "h")
	assert.False(t, held, "expired by itself")

	require.NoError(t, m.Hold(ctx, "h", time.Minute))
	require.NoError(t, m.Delete(ctx, "h"))
	held, _, _ = m.Held(ctx, "h")
	assert.False(t, held)

	res, err := m.Take(ctx, "t", Rate{Count: 2, Per: time.Second}, 1)
	require.NoError(t, err)
	assert.Equal(t, Result{Allowed: true, Remaining: 1}, res)

	// A key reused as another kind starts afresh rather than misreading.
	n, _ = m.Incr(ctx, "t", time.Minute)
	assert.Equal(t, int64(1), n)
	held, _, _ = m.Held(ctx, "t")
	assert.False(t, held)
}

func TestRate(t *testing.T) {
	assert.True(t, Rate{}.Unlimited())
	assert.Equal(t, "unlimited", Rate{}.String())
	r := Rate{Count: 30, Per: time.Minute}
	assert.Equal(t, "30/1m0s", r.String())
	assert.Equal(t, 2*time.Second, r.Interval())
	assert.Zero(t, Rate{}.Interval())
}

// At the bound, dead entries near the LRU end go before live ones: a
// harvest hold at the very end survives while refilled buckets above it
// make the room.
func TestTablePrefersDeadOverLive(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	m, err := NewMemoryStore(MemoryConfig{MaxKeys: 4, Now: clk.Now})
	require.NoError(t, err)
	require.NoError(t, m.Hold(ctx, "hold", time.Hour)) // least recently used
	r := Rate{Count: 1, Per: time.Second}
	for _, k := range []string{"b1", "b2", "b3"} {
		_, _ = m.Take(ctx, k, r, 1)
	}
	clk.Advance(2 * time.Second) // the buckets are full again: dead; the hold is not
	for _, k := range []string{"n1", "n2", "n3"} {
		_, _ = m.Take(ctx, k, r, 1)
	}
	held, _, _ := m.Held(ctx, "hold")
	assert.True(t, held, "the live hold was not evicted")
	st := m.Stats()
	assert.Equal(t, 4, st.Keys)
	assert.Zero(t, st.Evicted)
	assert.Equal(t, uint64(3), st.Expired)

	// With nothing dead, the least recently used goes; Held refreshed the
	// hold, so b-keys go first.
	for _, k := range []string{"x1", "x2", "x3"} {
		_, _ = m.Take(ctx, k, r, 1)
	}
	held, _, _ = m.Held(ctx, "hold")
	assert.True(t, held)
	assert.Equal(t, uint64(3), m.Stats().Evicted)
}
