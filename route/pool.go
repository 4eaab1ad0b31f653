package route

import (
	"sync"
	"time"
)

// pool keeps idle sessions per key (kind, address, host, TLS policy) for
// reuse. Each idle session has a timer that closes it after the idle
// timeout; get and the timer race under mu, and only one of them wins.
type pool struct {
	mu      sync.Mutex
	idle    map[string][]*session
	n       int
	closed  bool
	perKey  int
	max     int
	timeout time.Duration
	closeFn func(*session)
}

func newPool(perKey, max int, timeout time.Duration, closeFn func(*session)) *pool {
	return &pool{idle: map[string][]*session{}, perKey: perKey, max: max, timeout: timeout, closeFn: closeFn}
}

// get takes the most recently used idle session for key, or nil.
func (p *pool) get(key string) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	if len(list) == 0 {
		return nil
	}
	s := list[len(list)-1]
	list[len(list)-1] = nil
	if len(list) == 1 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list[:len(list)-1]
	}
	p.n--
	s.timer.Stop()
	return s
}

// put keeps s for reuse; false means the pool is full or closed and the
// caller must close s.
func (p *pool) put(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.n >= p.max || len(p.idle[s.key]) >= p.perKey {
		return false
	}
	p.idle[s.key] = append(p.idle[s.key], s)
	p.n++
	// The generation tells a timer that fires late (the session was taken
	// and put back meanwhile) that it is not its turn.
	s.gen++
	gen := s.gen
	s.timer = time.AfterFunc(p.timeout, func() {
		if p.remove(s, gen) {
			p.closeFn(s)
		}
	})
	return true
}

// remove takes s out of the pool if it is still idle there since the put
// of generation gen.
func (p *pool) remove(s *session, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.gen != gen {
		return false
	}
	list := p.idle[s.key]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			if len(list) == 0 {
				delete(p.idle, s.key)
			} else {
				p.idle[s.key] = list
			}
			p.n--
			return true
		}
	}
	return false
}

// drain closes the pool and returns its idle sessions.
func (p *pool) drain() []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var out []*session
	for _, list := range p.idle {
		for _, s := range list {
			s.timer.Stop()
			out = append(out, s)
		}
	}
	p.idle = map[string][]*session{}
	p.n = 0
	return out
}

// len returns the number of idle sessions.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
