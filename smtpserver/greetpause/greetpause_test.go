package greetpause

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

// ioTimeout only keeps a broken test from hanging; no test asserts it.
const ioTimeout = 10 * time.Second

const banner = "220 test ESMTP\r\n"

// testServer is a tiny server behind the Listener: it greets and then
// echoes every byte back until the client stops writing.
type testServer struct {
	l        net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	accepted []net.Conn
	err      error // what ended the Accept loop
}

func serve(t *testing.T, l net.Listener) *testServer {
	t.Helper()
	s := &testServer{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			s.accepted = append(s.accepted, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := io.WriteString(c, banner); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted)
}

func (s *testServer) conn(i int) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted[i]
}

func (s *testServer) loopErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func newListener(t *testing.T, cfg Config) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := New(inner, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

type client struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr net.Addr) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(ioTimeout)))
	return &client{Conn: c, r: bufio.NewReader(c)}
}

func (c *client) line(t *testing.T) string {
	t.Helper()
	s, err := c.r.ReadString('\n')
	require.NoError(t, err, "read so far: %q", s)
	return s
}

// closed asserts that the server closed the connection without sending
// anything more.
func (c *client) closed(t *testing.T) {
	t.Helper()
	n, err := c.r.Read(make([]byte, 64))
	require.Error(t, err)
	assert.Zero(t, n)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "connection still open: %v", err)
}

// eventually waits for cond, for the tests on real sockets.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, ioTimeout, 5*time.Millisecond, msg)
}

// waitPaused waits until n connections are held, on real sockets.
func waitPaused(t *testing.T, l *Listener, n int) {
	t.Helper()
	eventually(t, func() bool { return l.Stats().Paused == n }, "paused connections")
}

// settledPaused, in a synctest bubble, waits until every goroutine is
// blocked; then n connections must be held.
func settledPaused(t *testing.T, l *Listener, n int) {
	t.Helper()
	synctest.Wait()
	require.Equal(t, n, l.Stats().Paused, "paused connections")
}

// syncBuffer collects JSON log lines from concurrent goroutines.
type syncBuffer = testutil.LogBuffer

// bubbleLeakCheck is leakCheck in a synctest bubble: once every goroutine
// of the bubble is blocked, those the listener started must be gone.
// Only the bubble's goroutines are counted: runtime.NumGoroutine would
// also count those of earlier tests still ending outside it (-shuffle).
func bubbleLeakCheck(t *testing.T) func() {
	t.Helper()
	synctest.Wait()
	base, _ := bubbleGoroutines()
	return func() {
		t.Helper()
		synctest.Wait()
		if n, dump := bubbleGoroutines(); n > base {
			t.Fatalf("goroutine leak: %d running, %d before\n%s", n, base, dump)
		}
	}
}

// bubbleGoroutines counts the goroutines of the calling goroutine's
// synctest bubble, from the headers of a dump of all goroutines
// ("goroutine 7 [chan receive, synctest bubble 3]:").
func bubbleGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	self := string(buf[:runtime.Stack(buf, false)])
	i := strings.Index(self, "synctest bubble ")
	if i < 0 {
		return 0, self
	}
	j := strings.IndexAny(self[i:], "]")
	tag := self[i : i+j]
	all := string(buf[:runtime.Stack(buf, true)])
	n := 0
	for _, line := range strings.Split(all, "\n") {
		if strings.HasPrefix(line, "goroutine ") && strings.HasSuffix(line, tag+"]:") {
			n++
		}
	}
	return n, all
}

// leakCheck returns a function that fails the test if goroutines started
// after this call are still running a few seconds later.
func leakCheck(t *testing.T) func() {
	t.Helper()
	base := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d running, %d before\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
	}
}

func TestNewValidates(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer inner.Close()
	pause := func(netip.Addr) time.Duration { return time.Second }
	for _, tc := range []struct {
		name  string
		inner net.Listener
		cfg   Config
	}{
		{"nil inner", nil, Config{}},
		{"negative delay", inner, Config{Delay: -time.Second}},
		{"delay and pause", inner, Config{Delay: time.Second, Pause: pause}},
		{"negative max", inner, Config{MaxPaused: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(tc.inner, tc.cfg)
			require.ErrorIs(t, err, ErrConfig)
			assert.Nil(t, l)
			assert.True(t, strings.HasPrefix(err.Error(), "greetpause: "), err.Error())
		})
	}
}

func TestEarlyTalkerRejected(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
	}{
		{"ehlo", "EHLO spam.example\r\n"},
		{"one byte", "x"},
		{"nul and high bytes", "\x00\xff\xfe\r\n"},
		{"whole transaction", "EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + strings.Repeat("spam ", 200) + "\r\n.\r\nQUIT\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			var events []Event
			var mu sync.Mutex
			l := newListener(t, Config{
				Delay:  time.Hour, // detection must not wait for the pause
				Logger: logs.Logger(),
				Observer: func(e Event) {
					mu.Lock()
					events = append(events, e)
					mu.Unlock()
				},
			})
			srv := serve(t, l)

			c := dial(t, l.Addr())
			_, err := io.WriteString(c, tc.payload)
			require.NoError(t, err)
			assert.Equal(t, EarlyTalkerReply+"\r\n", c.line(t))
			c.closed(t)
			_ = c.Close() // ends the server's linger at once

			eventually(t, func() bool { return l.Stats().Paused == 0 }, "early talker released")
			st := l.Stats()
			assert.Equal(t, uint64(1), st.Rejected)
			assert.Zero(t, st.Passed)
			assert.Zero(t, srv.count(), "the server must never see an early talker")

			mu.Lock()
			require.Len(t, events, 1)
			assert.Equal(t, ActionReject, events[0].Action)
			assert.Equal(t, netip.MustParseAddr("127.0.0.1"), events[0].Remote.Addr())
			assert.Equal(t, time.Hour, events[0].Pause)
			mu.Unlock()

			recs := logs.Records(t, "")
			require.Len(t, recs, 1)
			assert.Equal(t, "greetpause", recs[0]["stage"])
			assert.Equal(t, "reject", recs[0]["action"])
			assert.Equal(t, "127.0.0.1", recs[0]["remote_ip"])
			assert.Equal(t, "INFO", recs[0]["level"])
			assert.NotEmpty(t, recs[0]["early_data"])
		})
	}
}

func TestPatientClientGetsBannerAfterPause(t *testing.T) {
	const pause = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"delay", Config{Delay: pause}},
		{"pause func", Config{Pause: func(netip.Addr) time.Duration { return pause }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, inner := newPipeListener(t, tc.cfg)
				srv := serve(t, l)

				start := time.Now()
				c := inner.dial(t)
				assert.Equal(t, banner, c.line(t))
				assert.Equal(t, pause, time.Since(start), "the banner comes when the pause ends")

				_, err := io.WriteString(c, "EHLO patient.example\r\n")
				require.NoError(t, err)
				assert.Equal(t, "EHLO patient.example\r\n", c.line(t), "deadline must be cleared for the server")

				assert.Equal(t, uint64(1), l.Stats().Passed)
				assert.Equal(t, 1, srv.count())
				assert.Same(t, inner.Server(0), srv.conn(0), "a passed connection is the inner listener's own")
			})
		})
	}
}

func TestExemptClientGetsBannerAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exempt time.Duration
	}{
		{"zero", 0},
		{"negative", -time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var exempt atomic.Bool
				var seen sync.Map
				l, inner := newPipeListener(t, Config{Pause: func(ip netip.Addr) time.Duration {
					seen.Store(ip, true)
					if exempt.Load() {
						return tc.exempt
					}
					return time.Hour
				}})
				serve(t, l)

				// A held client proves the pause is on while the exempt
				// client is greeted: the banner cannot come from a pause
				// that ended.
				start := time.Now()
				held := inner.dial(t)
				settledPaused(t, l, 1)
				exempt.Store(true)

				c := inner.dial(t)
				assert.Equal(t, banner, c.line(t))
				assert.Zero(t, time.Since(start), "no pause")
				st := l.Stats()
				assert.Equal(t, uint64(1), st.Exempt)
				assert.Equal(t, 1, st.Paused, "the other client is still held")
				assert.Zero(t, st.Passed)

				_, ok := seen.Load(netip.MustParseAddr("127.0.0.1"))
				assert.True(t, ok, "Pause gets the unmapped client IP")
				require.NoError(t, held.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
				_, err := held.r.ReadByte()
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "held client got something")
			})
		})
	}
}

func TestLogOnlyReplaysEarlyBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
	}{
		{"ehlo", "EHLO early.example\r\n"},
		{"binary", "\x00\xff\r\n\x1b[0m\xc3"},
		{"longer than the peek buffer", strings.Repeat("0123456789", 30) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			l := newListener(t, Config{Delay: time.Hour, LogOnly: true, Logger: logs.Logger()})
			srv := serve(t, l)

			c := dial(t, l.Addr())
			_, err := io.WriteString(c, tc.payload)
			require.NoError(t, err)
			assert.Equal(t, banner, c.line(t))
			got := make([]byte, len(tc.payload))
			_, err = io.ReadFull(c.r, got)
			require.NoError(t, err)
			assert.Equal(t, tc.payload, string(got), "the server must see every byte in order")

			st := l.Stats()
			assert.Equal(t, uint64(1), st.LogOnly)
			assert.Zero(t, st.Rejected)
			require.Equal(t, 1, srv.count())
			gc, ok := srv.conn(0).(*Conn)
			require.True(t, ok, "%T", srv.conn(0))
			_, ok = gc.NetConn().(*net.TCPConn)
			assert.True(t, ok)

			recs := logs.Records(t, "")
			require.Len(t, recs, 1)
			assert.Equal(t, "log-only", recs[0]["action"])
			assert.Equal(t, "127.0.0.1", recs[0]["remote_ip"])
			early, _ := recs[0]["early_data"].(string)
			require.NotEmpty(t, early)
			if utf8.ValidString(tc.payload) {
				assert.True(t, strings.HasPrefix(tc.payload, early), "early_data %q", early)
			}
		})
	}
}

func TestMaxPaused(t *testing.T) {
	for _, tc := range []struct {
		name         string
		passWhenFull bool
	}{
		{"reject with 421", false},
		{"pass without pause", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, inner := newPipeListener(t, Config{Delay: time.Hour, MaxPaused: 2, PassWhenFull: tc.passWhenFull})
				srv := serve(t, l)

				first := inner.dial(t)
				inner.dial(t)
				settledPaused(t, l, 2)

				c := inner.dial(t)
				if tc.passWhenFull {
					assert.Equal(t, banner, c.line(t))
					assert.Equal(t, uint64(1), l.Stats().Overflow)
					assert.Equal(t, 1, srv.count())
				} else {
					assert.Equal(t, BusyReply+"\r\n", c.line(t))
					c.closed(t)
					assert.Equal(t, uint64(1), l.Stats().Busy)
					assert.Zero(t, srv.count())
				}

				// A slot that frees up is used again.
				require.NoError(t, first.Close())
				settledPaused(t, l, 1)
				inner.dial(t)
				settledPaused(t, l, 2)
				st := l.Stats()
				assert.Equal(t, uint64(1), st.Hangups)
				assert.Equal(t, uint64(1), st.Busy+st.Overflow)
			})
		})
	}
}

func TestConcurrentClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// In the bubble the pause ends only once every client is blocked:
		// an early talker has surely written by then.
		const pause = 2 * time.Second
		const each = 15
		l, inner := newPipeListener(t, Config{Delay: pause})
		srv := serve(t, l)

		var wg sync.WaitGroup
		errs := make(chan error, 2*each)
		for i := range 2 * each {
			c := inner.connect()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				want := banner
				if i%2 == 0 {
					want = EarlyTalkerReply + "\r\n"
					if _, err := io.WriteString(c, "EHLO early\r\n"); err != nil {
						errs <- err
						return
					}
				}
				got, err := r.ReadString('\n')
				if err == nil && got != want {
					err = errors.New("got " + got + ", want " + want)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
		synctest.Wait()
		st := l.Stats()
		assert.Zero(t, st.Paused, "all released")
		assert.Equal(t, uint64(each), st.Rejected)
		assert.Equal(t, uint64(each), st.Passed)
		assert.Equal(t, each, srv.count())
	})
}

func TestCloseReleasesHeldConnections(t *testing.T) {
	done := leakCheck(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := New(inner, Config{Delay: time.Hour})
	require.NoError(t, err)
	srv := serve(t, l)

	var clients []*client
	for range 3 {
		clients = append(clients, dial(t, l.Addr()))
	}
	waitPaused(t, l, 3)

	require.NoError(t, l.Close())
	assert.NoError(t, l.Close(), "Close is idempotent")
	for _, c := range clients {
		c.closed(t)
		_ = c.Close()
	}
	c, err := l.Accept()
	assert.Nil(t, c)
	assert.ErrorIs(t, err, net.ErrClosed)
	srv.wg.Wait()
	assert.ErrorIs(t, srv.loopErr(), net.ErrClosed)

	st := l.Stats()
	assert.Equal(t, uint64(3), st.Closed)
	assert.Zero(t, st.Paused)
	assert.Zero(t, st.Hangups)
	_, err = net.Dial("tcp", inner.Addr().String())
	assert.Error(t, err, "inner listener closed")
	done()
}

func TestCloseWhileWaitingForAccept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := bubbleLeakCheck(t)
		l, inner := newPipeListener(t, Config{Delay: 20 * time.Millisecond})

		// Nobody calls Accept: the clients wait out the pause and then
		// wait for a hand-off that never comes.
		c1 := inner.dial(t)
		c2 := inner.dial(t)
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, uint64(2), l.Stats().Passed)
		require.NoError(t, l.Close())
		c1.closed(t)
		c2.closed(t)
		assert.Zero(t, l.Stats().Paused)
		done()
	})
}

func TestAcceptSurvivesHangups(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset bool
	}{
		{"close", false},
		{"reset", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first client gets a long pause so that it surely hangs up
			// inside it; the second a short one.
			var calls atomic.Int32
			var logs syncBuffer
			l := newListener(t, Config{Logger: logs.Logger(), Pause: func(netip.Addr) time.Duration {
				if calls.Add(1) == 1 {
					return time.Hour
				}
				return 100 * time.Millisecond
			}})
			srv := serve(t, l)

			gone := dial(t, l.Addr())
			waitPaused(t, l, 1)
			if tc.reset {
				require.NoError(t, gone.Conn.(*net.TCPConn).SetLinger(0))
			}
			require.NoError(t, gone.Close())
			eventually(t, func() bool { return l.Stats().Hangups == 1 }, "hangup seen")

			c := dial(t, l.Addr())
			assert.Equal(t, banner, c.line(t))
			assert.NoError(t, srv.loopErr(), "Accept must not fail for one connection")
			assert.Equal(t, 1, srv.count())
			recs := logs.Records(t, "")
			require.NotEmpty(t, recs)
			assert.Equal(t, "hangup", recs[0]["action"])
		})
	}
}

// fakeListener feeds Accept from a channel.
type fakeListener struct {
	results chan acceptResult
	closed  chan struct{}
	once    sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newFake() *fakeListener {
	return &fakeListener{results: make(chan acceptResult, 16), closed: make(chan struct{})}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	select {
	case r := <-f.results:
		return r.c, r.err
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *fakeListener) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// newPipeListener wraps a listener in memory, for tests in a synctest
// bubble.
func newPipeListener(t *testing.T, cfg Config) (*Listener, *pipeInner) {
	t.Helper()
	inner := &pipeInner{testutil.NewPipeListener("127.0.0.1:25")}
	l, err := New(inner, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, inner
}

type pipeInner struct{ *testutil.PipeListener }

// connect makes a connection for Accept and returns the client's end.
func (p pipeInner) connect() net.Conn {
	c, err := p.Dial()
	if err != nil {
		panic(err) // the listener is open for the whole test
	}
	return c
}

func (p pipeInner) dial(t *testing.T) *client {
	t.Helper()
	c := p.connect()
	t.Cleanup(func() { _ = c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestTemporaryAcceptErrorsAreRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"econnaborted", &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}},
		{"emfile", &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}},
		{"enobufs", os.NewSyscallError("accept4", syscall.ENOBUFS)},
		{"timeout", timeoutError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake()
				l, err := New(f, Config{Pause: func(netip.Addr) time.Duration { return 0 }})
				require.NoError(t, err)
				defer l.Close()
				for range 3 {
					f.results <- acceptResult{err: tc.err}
				}
				a, b := net.Pipe()
				defer b.Close()
				f.results <- acceptResult{c: a}

				start := time.Now()
				c, err := l.Accept()
				require.NoError(t, err)
				assert.Same(t, a, c)
				assert.Equal(t, uint64(3), l.Stats().AcceptErrors)
				assert.Equal(t, minBackoff+2*minBackoff+4*minBackoff, time.Since(start), "backing off, doubling")
				_ = c.Close()
			})
		})
	}
}

func TestPermanentAcceptErrorEndsAccept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := bubbleLeakCheck(t)
		f := newFake()
		l, err := New(f, Config{Delay: time.Hour})
		require.NoError(t, err)

		// A held pipe connection: not an IP address, still paused.
		a, b := net.Pipe()
		defer b.Close()
		f.results <- acceptResult{c: a}
		settledPaused(t, l, 1)

		boom := errors.New("boom")
		f.results <- acceptResult{err: boom}
		c, err := l.Accept()
		assert.Nil(t, c)
		require.ErrorIs(t, err, boom)
		assert.True(t, strings.HasPrefix(err.Error(), "greetpause: "), err.Error())

		// The held connection is released: nobody will accept it.
		_, err = b.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF)
		require.NoError(t, l.Close())
		assert.Equal(t, uint64(1), l.Stats().Closed)
		done()
	})
}

func TestEarlyTalkerOnPipe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// net.Pipe has no CloseWrite and no IP address; the reply still
		// goes out.
		f := newFake()
		l, err := New(f, Config{Delay: time.Hour})
		require.NoError(t, err)
		defer l.Close()
		a, b := net.Pipe()
		defer b.Close()
		f.results <- acceptResult{c: a}
		go func() { _, _ = b.Write([]byte("HELO x\r\n")) }()
		line, err := bufio.NewReader(b).ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, EarlyTalkerReply+"\r\n", line)
		_ = b.Close()
		synctest.Wait()
		st := l.Stats()
		assert.Equal(t, uint64(1), st.Rejected)
		assert.Zero(t, st.Paused)
	})
}

func TestConnReplay(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &Conn{Conn: a, early: []byte("abc")}
	defer c.Close()
	go func() { _, _ = b.Write([]byte("def")) }()

	buf := make([]byte, 2)
	n, err := c.Read(buf[:0])
	require.NoError(t, err)
	assert.Zero(t, n)
	var got []byte
	for len(got) < 6 {
		n, err := c.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	assert.Equal(t, "abcdef", string(got))
	assert.Same(t, a, c.NetConn())
	assert.ErrorIs(t, c.CloseWrite(), errors.ErrUnsupported)
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{
		ActionPass: "pass", ActionExempt: "exempt", ActionReject: "reject", ActionLogOnly: "log-only",
		ActionBusy: "busy", ActionOverflow: "overflow", ActionHangup: "hangup", ActionClosed: "closed",
		ActionKnown: "known", Action(200): "action(200)",
	} {
		assert.Equal(t, want, a.String())
	}
}

func TestAddrPort(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want netip.AddrPort
	}{
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 25}, netip.MustParseAddrPort("192.0.2.1:25")},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 587}, netip.MustParseAddrPort("[2001:db8::1]:587")},
		{&net.UDPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1}, netip.MustParseAddrPort("192.0.2.2:1")},
		{&net.UnixAddr{Name: "/run/smtp.sock", Net: "unix"}, netip.AddrPort{}},
		{nil, netip.AddrPort{}},
	} {
		assert.Equal(t, tc.want, addrPort(tc.addr), "%v", tc.addr)
	}
	assert.Equal(t, "", ipString(netip.Addr{}), "no \"invalid IP\" in logs")
}

// A client Known knows is handed over as soon as the lookup answers, a
// slow lookup holding nobody else up; a client it does not know waits the
// whole pause.
func TestKnownClientSkipsPause(t *testing.T) {
	release := make(chan struct{})
	var asked atomic.Int32
	var events []Event
	var mu sync.Mutex
	l := newListener(t, Config{Delay: time.Hour,
		Known: func(ctx context.Context, ip netip.Addr) bool {
			asked.Add(1)
			select {
			case <-release: // a store that answers when the test says
			case <-ctx.Done():
				return false
			}
			return ip == netip.MustParseAddr("127.0.0.1")
		},
		Observer: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	srv := serve(t, l)

	c := dial(t, l.Addr())
	waitPaused(t, l, 1)
	eventually(t, func() bool { return asked.Load() == 1 }, "Known asked")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := c.r.ReadByte()
	var ne net.Error
	require.ErrorAs(t, err, &ne, "no banner before the lookup answers")
	require.NoError(t, c.SetDeadline(time.Now().Add(ioTimeout)))

	close(release)
	assert.Equal(t, banner, c.line(t))
	_, err = io.WriteString(c, "EHLO known.example\r\n")
	require.NoError(t, err)
	assert.Equal(t, "EHLO known.example\r\n", c.line(t), "the deadline the lookup set is cleared")
	st := l.Stats()
	assert.EqualValues(t, 1, st.Known)
	assert.Zero(t, st.Passed)
	_, ok := srv.conn(0).(*net.TCPConn)
	assert.True(t, ok, "the inner listener's own connection: %T", srv.conn(0))
	mu.Lock()
	require.Len(t, events, 1)
	assert.Equal(t, ActionKnown, events[0].Action)
	assert.Equal(t, time.Hour, events[0].Pause)
	mu.Unlock()
}

func TestUnknownClientWaitsThePause(t *testing.T) {
	const pause = 200 * time.Millisecond
	for _, tc := range []struct {
		name  string
		known func(context.Context, netip.Addr) bool
	}{
		{"answers no", func(context.Context, netip.Addr) bool { return false }},
		// A lookup that never answers ends with the pause.
		{"never answers", func(ctx context.Context, _ netip.Addr) bool { <-ctx.Done(); return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newListener(t, Config{Delay: pause, Known: tc.known})
			serve(t, l)
			start := time.Now()
			c := dial(t, l.Addr())
			assert.Equal(t, banner, c.line(t))
			assert.GreaterOrEqual(t, time.Since(start), pause)
			st := l.Stats()
			assert.EqualValues(t, 1, st.Passed)
			assert.Zero(t, st.Known)
		})
	}
}

// A client that talks while the lookup runs is an early talker, known or
// not; closing the listener ends the lookups it waits for.
func TestKnownEarlyTalkerAndClose(t *testing.T) {
	done := leakCheck(t)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := New(inner, Config{Delay: time.Hour,
		Known: func(ctx context.Context, _ netip.Addr) bool { <-ctx.Done(); return true }})
	require.NoError(t, err)
	srv := serve(t, l)
	c := dial(t, l.Addr())
	waitPaused(t, l, 1)
	_, err = io.WriteString(c, "EHLO early.example\r\n")
	require.NoError(t, err)
	assert.Equal(t, EarlyTalkerReply+"\r\n", c.line(t))
	require.NoError(t, c.Close())
	waitPaused(t, l, 0)
	assert.EqualValues(t, 1, l.Stats().Rejected)

	held := dial(t, l.Addr())
	waitPaused(t, l, 1)
	require.NoError(t, l.Close())
	held.closed(t)
	_ = held.Close()
	srv.wg.Wait()
	assert.EqualValues(t, 1, l.Stats().Closed)
	done()
}
