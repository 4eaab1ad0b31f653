package ratelimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ioTimeout only keeps a broken test from hanging.
const ioTimeout = 10 * time.Second

// server accepts from l and keeps every connection it gets, greeting each
// with a banner, until l is closed.
type server struct {
	l     net.Listener
	conns chan net.Conn
	mu    sync.Mutex
	err   error // what ended Accept
	errs  int   // how often Accept returned an error
	done  chan struct{}
}

func serve(t *testing.T, l net.Listener) *server {
	t.Helper()
	s := &server{l: l, conns: make(chan net.Conn, 100), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				s.mu.Lock()
				s.err, s.errs = err, s.errs+1
				s.mu.Unlock()
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(ioTimeout))
			_, _ = io.WriteString(c, "220 test ESMTP\r\n")
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-s.done
		close(s.conns)
		for c := range s.conns {
			_ = c.Close()
		}
	})
	return s
}

// next returns the next connection the server accepted.
func (s *server) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(ioTimeout):
		t.Fatal("server accepted nothing")
		return nil
	}
}

// dial connects and returns the first line the client reads, and the
// connection.
func dial(t *testing.T, addr string) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimRight(line, "\r\n"), c
}

// refusedThenEOF checks a refused client: the 421 line, then EOF.
func refusedThenEOF(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	all, err := io.ReadAll(c)
	require.NoError(t, err, "the server closed after the reply")
	return strings.TrimRight(string(all), "\r\n")
}

func listen(t *testing.T, cfg ListenerConfig) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := NewListener(inner, cfg)
	require.NoError(t, err)
	return l
}

func TestListenerConcurrency(t *testing.T) {
	var logs logBuf
	l := listen(t, ListenerConfig{
		ClientConn: func(ip netip.Addr) (int, bool) {
			require.True(t, ip.Is4(), "the lookup gets the unmapped client address")
			return 2, true
		},
		Hostname: "mx.example.test",
		Logger:   logs.Logger(),
	})
	s := serve(t, l)
	addr := l.Addr().String()

	b1, _ := dial(t, addr)
	b2, _ := dial(t, addr)
	assert.Equal(t, "220 test ESMTP", b1)
	assert.Equal(t, "220 test ESMTP", b2)
	c1, c2 := s.next(t), s.next(t)
	assert.IsType(t, &Conn{}, c1)
	assert.Equal(t, 2, l.OpenConns(mustAddr("127.0.0.1")))

	// The third is refused with Postfix's reply and closed.
	assert.Equal(t, "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1", refusedThenEOF(t, addr))
	assert.Equal(t, "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1", refusedThenEOF(t, addr))

	// Closing one server-side connection frees its slot; closing it again
	// frees nothing more.
	require.NoError(t, c1.Close())
	assert.Error(t, c1.Close(), "the second Close is the socket's own error")
	assert.Equal(t, 1, l.OpenConns(mustAddr("127.0.0.1")))
	b3, _ := dial(t, addr)
	assert.Equal(t, "220 test ESMTP", b3)
	c3 := s.next(t)
	assert.Equal(t, "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1", refusedThenEOF(t, addr))

	st := l.Stats()
	assert.Equal(t, 2, st.Open)
	assert.Equal(t, uint64(3), st.Accepted)
	assert.Equal(t, uint64(3), st.ConnRefused)
	assert.Zero(t, st.RateRefused)

	// Refusals were never Accept errors.
	s.mu.Lock()
	assert.Zero(t, s.errs)
	s.mu.Unlock()

	recs := logs.Records(t, "connection refused")
	require.Len(t, recs, 3)
	assert.Equal(t, "127.0.0.1", recs[0]["remote_ip"])
	assert.Equal(t, "connect", recs[0]["stage"])
	assert.Equal(t, "ratelimit", recs[0]["filter"])
	assert.Equal(t, "tempfail", recs[0]["action"])
	assert.EqualValues(t, 421, recs[0]["code"])
	assert.Contains(t, recs[0]["reason"], "ClientConn 2")

	require.NoError(t, c2.Close())
	require.NoError(t, c3.Close())
	assert.Equal(t, 0, l.Stats().Open)
	assert.Equal(t, 0, l.OpenConns(mustAddr("127.0.0.1")))
	l.mu.Lock()
	assert.Empty(t, l.open, "no entry is left for a client without connections")
	l.mu.Unlock()

	// After Close, Accept returns the inner listener's error, unwrapped.
	require.NoError(t, l.Close())
	<-s.done
	s.mu.Lock()
	assert.ErrorIs(t, s.err, net.ErrClosed)
	assert.Equal(t, 1, s.errs)
	s.mu.Unlock()
}

func TestListenerRate(t *testing.T) {
	clk := newClock()
	limit := 2
	var mu sync.Mutex
	l := listen(t, ListenerConfig{
		ClientRate: func(netip.Addr) (int, bool) {
			mu.Lock()
			defer mu.Unlock()
			return limit, true
		},
		RateWindow: time.Minute,
		Now:        clk.Now,
	})
	s := serve(t, l)
	addr := l.Addr().String()

	for range 2 {
		b, _ := dial(t, addr)
		assert.Equal(t, "220 test ESMTP", b)
		_ = s.next(t)
	}
	assert.Equal(t, "421 4.7.0 Error: connection rate limit exceeded for 127.0.0.1", refusedThenEOF(t, addr))
	// 2 per minute is one every 30 s.
	clk.Advance(29 * time.Second)
	assert.Contains(t, refusedThenEOF(t, addr), "421 4.7.0")
	clk.Advance(time.Second)
	b, _ := dial(t, addr)
	assert.Equal(t, "220 test ESMTP", b)
	_ = s.next(t)
	assert.Contains(t, refusedThenEOF(t, addr), "421 4.7.0")

	// ClientRate 0 means unlimited (sendmail): a reloaded map lifts it.
	mu.Lock()
	limit = 0
	mu.Unlock()
	for range 5 {
		b, _ := dial(t, addr)
		assert.Equal(t, "220 test ESMTP", b)
		_ = s.next(t)
	}
	st := l.Stats()
	assert.Equal(t, uint64(8), st.Accepted)
	assert.Equal(t, uint64(3), st.RateRefused)
	assert.Equal(t, 1, st.Keys)
	assert.Zero(t, st.Open, "no concurrency limit: connections are not wrapped or counted")
}

func TestListenerDefaultsAndExemptions(t *testing.T) {
	// No entry for the client: the defaults apply; an entry of 0 exempts.
	l := listen(t, ListenerConfig{
		ClientConn:        func(ip netip.Addr) (int, bool) { return 0, ip.IsLoopback() },
		DefaultClientConn: 1,
	})
	s := serve(t, l)
	for range 3 {
		b, _ := dial(t, l.Addr().String())
		assert.Equal(t, "220 test ESMTP", b)
		_ = s.next(t)
	}
	assert.Equal(t, 3, l.Stats().Open, "counted even while unlimited, so a reload is exact")

	l2 := listen(t, ListenerConfig{DefaultClientConn: 1})
	s2 := serve(t, l2)
	b, _ := dial(t, l2.Addr().String())
	assert.Equal(t, "220 test ESMTP", b)
	c := s2.next(t)
	assert.Contains(t, refusedThenEOF(t, l2.Addr().String()), "421 4.7.0 Error: too many connections")
	require.NoError(t, c.Close())
	b, _ = dial(t, l2.Addr().String())
	assert.Equal(t, "220 test ESMTP", b)
}

func TestListenerConcurrencyBeforeRate(t *testing.T) {
	clk := newClock()
	l := listen(t, ListenerConfig{DefaultClientConn: 1, DefaultClientRate: 2, Now: clk.Now})
	s := serve(t, l)
	addr := l.Addr().String()
	_, _ = dial(t, addr)
	c := s.next(t)
	// Refused for concurrency: no rate token is spent on these.
	for range 3 {
		assert.Contains(t, refusedThenEOF(t, addr), "too many connections")
	}
	require.NoError(t, c.Close())
	_, _ = dial(t, addr)
	c = s.next(t)
	require.NoError(t, c.Close())
	// Both tokens used now: refused for the rate, and the slot it took
	// for the moment is given back.
	assert.Contains(t, refusedThenEOF(t, addr), "connection rate limit exceeded")
	assert.Equal(t, 0, l.Stats().Open)
	assert.Equal(t, uint64(3), l.Stats().ConnRefused)
	assert.Equal(t, uint64(1), l.Stats().RateRefused)
}

// A client that resets before its 421 is written costs Accept nothing.
func TestListenerClientGoneBeforeReply(t *testing.T) {
	l := listen(t, ListenerConfig{DefaultClientConn: 1})
	s := serve(t, l)
	addr := l.Addr().String()
	_, _ = dial(t, addr)
	c := s.next(t)
	for range 20 {
		rc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, rc.(*net.TCPConn).SetLinger(0))
		require.NoError(t, rc.Close()) // RST
	}
	// Connections are accepted in order: once a later client has its
	// 421, every reset one was dealt with, and Accept did not stop.
	assert.Contains(t, refusedThenEOF(t, addr), "too many connections")
	assert.GreaterOrEqual(t, l.Stats().ConnRefused, uint64(1))
	require.NoError(t, c.Close())
	b, _ := dial(t, addr)
	assert.Equal(t, "220 test ESMTP", b)
	s.mu.Lock()
	assert.Zero(t, s.errs)
	s.mu.Unlock()
}

func TestListenerIPv6Class(t *testing.T) {
	inner, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	var seen netip.Addr
	var mu sync.Mutex
	l, err := NewListener(inner, ListenerConfig{ClientConn: func(ip netip.Addr) (int, bool) {
		mu.Lock()
		seen = ip
		mu.Unlock()
		return 1, true
	}})
	require.NoError(t, err)
	s := serve(t, l)
	_, _ = dial(t, l.Addr().String())
	_ = s.next(t)
	assert.Contains(t, refusedThenEOF(t, l.Addr().String()), "too many connections from ::1")
	mu.Lock()
	assert.Equal(t, mustAddr("::1"), seen)
	mu.Unlock()
	assert.Equal(t, 1, l.OpenConns(mustAddr("::2")), "::1 and ::2 are one /64")
}

// A listener on a Unix socket has no client addresses: nothing is limited.
func TestListenerNonIP(t *testing.T) {
	inner, err := net.Listen("unix", t.TempDir()+"/s")
	require.NoError(t, err)
	l, err := NewListener(inner, ListenerConfig{DefaultClientConn: 1, DefaultClientRate: 1})
	require.NoError(t, err)
	s := serve(t, l)
	for range 3 {
		c, err := net.Dial("unix", l.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_ = s.next(t)
	}
	assert.Equal(t, uint64(3), l.Stats().Accepted)
}

func TestConnCloseWrite(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	l := &Listener{open: map[string]int{"k": 1}}
	l.openGauge.Store(1)
	c := &Conn{Conn: a, l: l, key: "k"}
	assert.ErrorIs(t, c.CloseWrite(), errors.ErrUnsupported)
	assert.Equal(t, a, c.NetConn())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
	assert.Equal(t, 0, l.Stats().Open, "released once under concurrent Close")
}

// probeListener hands out connections that run a function as their
// socket closes.
type probeListener struct {
	net.Listener
	onClose func()
}

func (p probeListener) Accept() (net.Conn, error) {
	c, err := p.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return probeConn{Conn: c, onClose: p.onClose}, nil
}

type probeConn struct {
	net.Conn
	onClose func()
}

func (p probeConn) Close() error { p.onClose(); return p.Conn.Close() }

// A slot is free before the socket closes: a client that has seen its
// connection end may connect again at once.
func TestListenerSlotFreeBeforeSocketCloses(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var l *Listener
	openAtClose := -1
	l, err = NewListener(probeListener{Listener: inner, onClose: func() { openAtClose = l.OpenConns(mustAddr("127.0.0.1")) }},
		ListenerConfig{ClientConn: func(netip.Addr) (int, bool) { return 1, true }})
	require.NoError(t, err)
	s := serve(t, l)
	dial(t, l.Addr().String())
	require.NoError(t, s.next(t).Close())
	assert.Equal(t, 0, openAtClose)
}
