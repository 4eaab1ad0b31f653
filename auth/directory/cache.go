package directory

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// cache keeps lookup answers for their TTL (found entries for CacheTTL,
// "no such entry" for NegativeTTL), least recently used first out, and
// lets concurrent lookups of one key share one search. Failures are
// never kept.
type cache struct {
	size int
	now  func() time.Time

	mu     sync.Mutex
	ll     *list.List
	items  map[string]*list.Element
	flight map[string]*flight
}

type cacheItem struct {
	key     string
	entry   *Entry // nil: no such entry
	expires time.Time
}

type flight struct {
	done  chan struct{}
	entry *Entry
	err   error
}

func newCache(size int, now func() time.Time) *cache {
	return &cache{size: size, now: now, ll: list.New(), items: map[string]*list.Element{}, flight: map[string]*flight{}}
}

// get returns a live answer for key.
func (c *cache) get(key string) (e *Entry, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*cacheItem)
	if !c.now().Before(it.expires) {
		return nil, false // kept for stale; see stale
	}
	c.ll.MoveToFront(el)
	return it.entry, true
}

// stale returns an answer for key even past its TTL: for a caller that
// prefers an old entry to none while the directory is down.
func (c *cache) stale(key string) (*Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	return el.Value.(*cacheItem).entry, true
}

func (c *cache) put(key string, e *Entry, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	it := &cacheItem{key: key, entry: e, expires: c.now().Add(ttl)}
	if el, ok := c.items[key]; ok {
		el.Value = it
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(it)
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheItem).key)
	}
}

// do runs fn once for concurrent callers of one key. The search runs
// detached from the first caller's context (bounded by the directory's
// Timeout): a client that hangs up does not fail the others waiting.
func (c *cache) do(ctx context.Context, key string, fn func(context.Context) (*Entry, error)) (*Entry, error) {
	c.mu.Lock()
	f, running := c.flight[key]
	if !running {
		f = &flight{done: make(chan struct{})}
		c.flight[key] = f
	}
	c.mu.Unlock()
	if !running {
		go func() {
			f.entry, f.err = fn(context.WithoutCancel(ctx))
			c.mu.Lock()
			delete(c.flight, key)
			c.mu.Unlock()
			close(f.done)
		}()
	}
	select {
	case <-f.done:
		return f.entry, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
