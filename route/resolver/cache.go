package resolver

import (
	"container/list"
	"sync"
	"time"
)

type cacheKey struct {
	name  string // fully qualified, lower case
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     Answer
	stored  time.Time
	expires time.Time
}

// cache is a bounded LRU of answers that expire. The clock is the
// caller's, so tests move time instead of sleeping.
type cache struct {
	mu  sync.Mutex
	max int
	m   map[cacheKey]*list.Element
	lru list.List // front: most recently used; values are *cacheEntry
}

func newCache(max int) *cache {
	if max <= 0 {
		return nil
	}
	return &cache{max: max, m: make(map[cacheKey]*list.Element)}
}

// get returns a live entry, its TTL counted down. A nil cache holds
// nothing.
func (c *cache) get(k cacheKey, now time.Time) (Answer, bool) {
	if c == nil {
		return Answer{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return Answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return Answer{}, false
	}
	c.lru.MoveToFront(el)
	a := e.ans
	a.TTL = max(a.TTL-now.Sub(e.stored), 0)
	return a, true
}

// put keeps a for d from now, evicting the least recently used entry
// when the cache is full.
func (c *cache) put(k cacheKey, a Answer, now time.Time, d time.Duration) {
	if c == nil || d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.ans, e.stored, e.expires = a, now, now.Add(d)
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
	c.m[k] = c.lru.PushFront(&cacheEntry{key: k, ans: a, stored: now, expires: now.Add(d)})
}

// CacheLen returns the number of answers cached, live or not yet evicted.
func (r *Resolver) CacheLen() int {
	c := r.cache
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
