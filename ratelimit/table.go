package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the keys an in-memory table holds when the config
// says 0: at roughly 200 bytes a key, about 20 MB.
const DefaultMaxKeys = 100_000

// Tables with fewer keys than this use one shard, so small bounds (and
// tests) get an exact LRU; larger ones use tableShards to spread the lock.
const (
	shardThreshold = 4096
	tableShards    = 16
	// sweepPerInsert is how many least-recently-used entries an insert
	// looks at for dead state (expired, or a full idle bucket).
	sweepPerInsert = 2
	// evictScan is how far from the LRU end a full shard looks for a dead
	// entry before it evicts a live one.
	evictScan = 8
)

type entryKind uint8

const (
	kindBucket entryKind = iota + 1
	kindCounter
	kindHold
)

// entry is one key's state, linked into its shard's LRU list.
type entry struct {
	key        string
	prev, next *entry
	kind       entryKind
	lim        *rate.Limiter // kindBucket
	n          int64         // kindCounter
	expires    time.Time     // kindCounter, kindHold
}

// dead reports whether dropping e changes nothing: an expired counter or
// hold, or a bucket that has refilled (a full bucket is a fresh one).
func (e *entry) dead(now time.Time) bool {
	if e.kind == kindBucket {
		return e.lim.TokensAt(now) >= float64(e.lim.Burst())
	}
	return !now.Before(e.expires)
}

type shard struct {
	mu         sync.Mutex
	m          map[string]*entry
	head, tail *entry // head is the most recently used
	max        int
}

// table is a bounded map of per-key limiter state with least-recently-used
// eviction. Each insert first drops dead entries from the LRU end, so
// idle keys go without a sweeper goroutine; when the bound is reached the
// least recently used live entry is evicted (that key starts afresh,
// which forgives a client: keep MaxKeys above the number of active
// sources).
type table struct {
	seed    maphash.Seed
	shards  []shard
	mask    uint64
	evicted atomic.Uint64
	expired atomic.Uint64
}

func newTable(maxKeys int) *table {
	n := 1
	if maxKeys >= shardThreshold {
		n = tableShards
	}
	t := &table{seed: maphash.MakeSeed(), shards: make([]shard, n), mask: uint64(n - 1)}
	for i := range t.shards {
		s := &t.shards[i]
		s.max = maxKeys / n
		if i < maxKeys%n {
			s.max++
		}
		s.m = make(map[string]*entry)
	}
	return t
}

func (t *table) shard(key string) *shard {
	if len(t.shards) == 1 {
		return &t.shards[0]
	}
	return &t.shards[maphash.String(t.seed, key)&t.mask]
}

// TableStats describes an in-memory table.
type TableStats struct {
	// Keys is the number of keys held now.
	Keys int
	// Evicted counts live keys dropped to stay within MaxKeys.
	Evicted uint64
	// Expired counts dead keys dropped (expired, or a full idle bucket).
	Expired uint64
}

func (t *table) stats() TableStats {
	st := TableStats{Evicted: t.evicted.Load(), Expired: t.expired.Load()}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Keys += len(s.m)
		s.mu.Unlock()
	}
	return st
}

// The list operations below run with s.mu held.

func (s *shard) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.next = s.head
	if s.head != nil {
		s.head.prev = e
	}
	s.head = e
	if s.tail == nil {
		s.tail = e
	}
}

// get returns key's entry and marks it most recently used.
func (s *shard) get(key string) *entry {
	e := s.m[key]
	if e != nil && s.head != e {
		s.unlink(e)
		s.pushFront(e)
	}
	return e
}

func (s *shard) remove(e *entry) {
	s.unlink(e)
	delete(s.m, e.key)
}

// insert adds a new entry for key, making room first.
func (s *shard) insert(t *table, key string, now time.Time) *entry {
	for i := 0; i < sweepPerInsert && s.tail != nil && s.tail.dead(now); i++ {
		s.remove(s.tail)
		t.expired.Add(1)
	}
	for len(s.m) >= s.max && s.tail != nil {
		s.makeRoom(t, now)
	}
	e := &entry{key: key}
	s.m[key] = e
	s.pushFront(e)
	return e
}

// makeRoom drops one entry: a dead one near the LRU end if there is one
// (a hold or a drained bucket may sit at the very end while refilled
// buckets wait just above it), else the least recently used.
func (s *shard) makeRoom(t *table, now time.Time) {
	e := s.tail
	for i := 0; i < evictScan && e != nil; i, e = i+1, e.prev {
		if e.dead(now) {
			s.remove(e)
			t.expired.Add(1)
			return
		}
	}
	s.remove(s.tail)
	t.evicted.Add(1)
}

// take takes n tokens from key's bucket of rate r.
func (t *table) take(key string, r Rate, n int, now time.Time) Result {
	if r.Unlimited() {
		return Result{Allowed: true, Remaining: math.MaxInt}
	}
	lim, burst := r.limit(), r.Count
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(key)
	switch {
	case e == nil:
		e = s.insert(t, key, now)
		fallthrough
	case e.kind != kindBucket:
		e.kind, e.lim, e.n, e.expires = kindBucket, rate.NewLimiter(lim, burst), 0, time.Time{}
	case e.lim.Limit() != lim || e.lim.Burst() != burst:
		// The limit changed (an access map reload): keep the tokens.
		e.lim.SetLimitAt(now, lim)
		e.lim.SetBurstAt(now, burst)
	}
	if e.lim.AllowN(now, n) {
		return Result{Allowed: true, Remaining: int(e.lim.TokensAt(now))}
	}
	missing := float64(n) - e.lim.TokensAt(now)
	return Result{RetryAfter: secondsToDuration(missing / float64(lim))}
}

// incr adds one to key's fixed-window counter.
func (t *table) incr(key string, window time.Duration, now time.Time) int64 {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		e = s.insert(t, key, now)
	}
	if e.kind != kindCounter || !now.Before(e.expires) {
		e.kind, e.lim, e.n, e.expires = kindCounter, nil, 0, now.Add(window)
	}
	e.n++
	return e.n
}

// count reads key's fixed-window counter; 0 when it has none.
func (t *table) count(key string, now time.Time) int64 {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key] // reading a statistic does not make the key recent
	if e == nil || e.kind != kindCounter || !now.Before(e.expires) {
		return 0
	}
	return e.n
}

func (t *table) hold(key string, ttl time.Duration, now time.Time) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(key)
	if e == nil {
		e = s.insert(t, key, now)
	}
	e.kind, e.lim, e.n, e.expires = kindHold, nil, 1, now.Add(ttl)
}

func (t *table) held(key string, now time.Time) (bool, time.Duration) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(key) // a held source that keeps knocking stays recent
	if e == nil || e.kind != kindHold {
		return false, 0
	}
	if !now.Before(e.expires) {
		s.remove(e)
		t.expired.Add(1)
		return false, 0
	}
	return true, e.expires.Sub(now)
}

func (t *table) del(key string) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[key]; e != nil {
		s.remove(e)
	}
}
