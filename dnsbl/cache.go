package dnsbl

import (
	"container/list"
	"sync"
	"time"
)

type cacheKey struct {
	name  string // the fully qualified query name, lower case
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     answer
	expires time.Time
}

// cache is a bounded LRU of answers that expire by their TTL. The clock is
// the caller's, so tests move time instead of sleeping.
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

// get returns a live entry. A nil cache holds nothing.
func (c *cache) get(k cacheKey, now time.Time) (answer, bool) {
	if c == nil {
		return answer{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return answer{}, false
	}
	c.lru.MoveToFront(el)
	return e.ans, true
}

// put stores a until expires, evicting the least recently used entry when
// the cache is full.
func (c *cache) put(k cacheKey, a answer, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.ans, e.expires = a, expires
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
	c.m[k] = c.lru.PushFront(&cacheEntry{key: k, ans: a, expires: expires})
}

// len returns the number of entries, live or not yet evicted.
func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
