package smtpserver

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postern/postern"
)

// Descriptors AutoMaxConnections keeps back for everything but client
// connections (the queue, the spool, logs, DNS, outbound deliveries,
// scanners), and how many descriptors it counts per connection: the socket,
// and at times a spool file, a scanner or DNS socket of its own.
const (
	fdHeadroom    = 100
	fdPerConn     = 2
	minAutoConns  = 10
	refuseTimeout = time.Second // writing the 421 to a fresh socket
)

// AutoMaxConnections is the default of Config.MaxConnections and
// ConnLimitConfig.Max: (RLIMIT_NOFILE - 100) / 2, at least 10, so
// connections run out before file descriptors do. Where the limit cannot
// be read it is 10,000.
func AutoMaxConnections() int {
	n, ok := fileLimit()
	if !ok {
		return 10000
	}
	return autoConns(n)
}

func autoConns(nofile uint64) int {
	return max((int(min(nofile, 1<<40))-fdHeadroom)/fdPerConn, minAutoConns)
}

// ConnLimitConfig configures a ConnLimit.
type ConnLimitConfig struct {
	// Max is the most connections open at once; 0 means
	// AutoMaxConnections(); negative means no limit (the descriptor
	// reserve still answers clients when descriptors run out).
	Max int
	// Hostname, if set, starts the text of the 421 replies.
	Hostname string
	// Logger receives one Info line per refused connection (stage=connect,
	// action=tempfail, code=421); nil discards.
	Logger *slog.Logger
}

// ConnLimitStats are a ConnLimit's counters.
type ConnLimitStats struct {
	// Open is the number of connections handed out and not yet closed.
	Open int
	// Refused counts connections answered 421 4.7.0 at the limit;
	// Exhausted those answered 421 4.3.2 when the process was out of file
	// descriptors.
	Refused, Exhausted uint64
}

// ConnLimit caps the connections open at once over all the listeners it
// wraps: a global limit, where ratelimit.Listener limits each client.
// Over the limit a client is answered "421 4.7.0 <host> Error: too many
// connections, try again later" and closed before anything is read (RFC
// 5321 §3.1). Its listeners never stop for a lack of file descriptors
// (EMFILE, ENFILE): they free a descriptor kept in reserve, accept the
// waiting client, answer it "421 4.3.2", close it and take the reserve
// again; other temporary errors are retried with a backoff.
//
// Put its listener first, on the socket, so every connection that holds
// a descriptor counts: also those a greet pause holds or a per-client
// limit refuses. It is safe for concurrent use.
type ConnLimit struct {
	max  int // 0: none
	host string
	log  *slog.Logger

	open               atomic.Int64
	refused, exhausted atomic.Uint64

	mu      sync.Mutex // guards reserve
	reserve *os.File   // nil once closed, or when it could not be had
	closed  bool
}

// NewConnLimit makes a limit and takes its reserve descriptor; Close gives
// it back.
func NewConnLimit(cfg ConnLimitConfig) *ConnLimit {
	c := &ConnLimit{max: cfg.Max, host: cfg.Hostname, log: cfg.Logger}
	switch {
	case c.max == 0:
		c.max = AutoMaxConnections()
	case c.max < 0:
		c.max = 0
	}
	if c.log == nil {
		c.log = postern.DiscardLogger()
	}
	c.reserve, _ = os.Open(os.DevNull)
	return c
}

// Max returns the limit in force; 0 means none.
func (c *ConnLimit) Max() int { return c.max }

// Stats returns the counters.
func (c *ConnLimit) Stats() ConnLimitStats {
	return ConnLimitStats{Open: int(c.open.Load()), Refused: c.refused.Load(), Exhausted: c.exhausted.Load()}
}

// Close gives back the reserve descriptor. Listeners keep counting, but
// no longer answer clients when descriptors run out.
func (c *ConnLimit) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.reserve == nil {
		return nil
	}
	err := c.reserve.Close()
	c.reserve = nil
	return err
}

// Listener wraps inner. Its Accept returns only admitted connections, as
// net.Conns whose Close frees the slot; it returns an error only when
// inner fails for good (after Close: net.ErrClosed).
func (c *ConnLimit) Listener(inner net.Listener) net.Listener {
	return &limitListener{Listener: inner, cl: c, done: make(chan struct{})}
}

func (c *ConnLimit) acquire() bool {
	if c.max == 0 {
		c.open.Add(1)
		return true
	}
	for {
		n := c.open.Load()
		if n >= int64(c.max) {
			return false
		}
		if c.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (c *ConnLimit) reply(code int, esc postern.EnhancedCode, text string) postern.Reply {
	if c.host != "" {
		text = c.host + " " + text
	}
	return postern.NewReply(code, esc, text)
}

// refuse answers nc and closes it.
func (c *ConnLimit) refuse(nc net.Conn, rep postern.Reply, reason string) {
	c.log.Info("connection refused", "remote_ip", addrPort(nc.RemoteAddr()).Addr().String(), "stage", "connect",
		"action", postern.TempFail.String(), "code", rep.Code, "reason", reason)
	_ = nc.SetWriteDeadline(time.Now().Add(refuseTimeout))
	_, _ = io.WriteString(nc, rep.Wire())
	_ = nc.Close()
}

// answerExhausted frees the reserve descriptor to accept one waiting
// client on inner, tells it 421 and takes the reserve back. It reports
// whether a client was answered.
func (c *ConnLimit) answerExhausted(inner net.Listener) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.reserve == nil {
		// Lost to another open last time; try again.
		if c.reserve, _ = os.Open(os.DevNull); c.reserve == nil {
			return false
		}
	}
	c.reserve.Close()
	c.reserve = nil
	// The client that made accept fail is waiting, so this returns at
	// once; a deadline guards against another listener having taken it.
	if dl, ok := inner.(interface{ SetDeadline(time.Time) error }); ok {
		_ = dl.SetDeadline(time.Now().Add(100 * time.Millisecond))
		defer dl.SetDeadline(time.Time{})
	}
	nc, err := inner.Accept()
	if err == nil {
		c.exhausted.Add(1)
		c.refuse(nc, c.reply(421, postern.ESC(4, 3, 2), "Error: out of resources, try again later"),
			"out of file descriptors")
	}
	c.reserve, _ = os.Open(os.DevNull)
	return err == nil
}

type limitListener struct {
	net.Listener
	cl   *ConnLimit
	done chan struct{}
	once sync.Once
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if isClosed(l.done) {
				return nil, net.ErrClosed
			}
			if !temporaryAccept(err) {
				return nil, err
			}
			if outOfFiles(err) && l.cl.answerExhausted(l.Listener) {
				continue
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.cl.log.Warn("accept failed, retrying", "stage", "connect", "error", err, "retry_in", delay.String())
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if !l.cl.acquire() {
			l.cl.refused.Add(1)
			l.cl.refuse(nc, l.cl.reply(421, postern.ESC(4, 7, 0), "Error: too many connections, try again later"),
				"global connection limit reached")
			continue
		}
		return &limitConn{Conn: nc, cl: l.cl}, nil
	}
}

func isClosed(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// limitConn frees its slot on the first Close.
type limitConn struct {
	net.Conn
	cl       *ConnLimit
	released atomic.Bool
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.released.CompareAndSwap(false, true) {
		c.cl.open.Add(-1)
	}
	return err
}

// NetConn returns the accepted connection (as crypto/tls.Conn does).
func (c *limitConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes when the accepted connection can (greet pause and
// per-client limits refuse politely with it).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// outOfFiles reports an accept that failed for want of a file descriptor.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// temporaryAccept reports an accept error worth retrying: the listener is
// fine, one connection or a resource was not.
func temporaryAccept(err error) bool {
	var te interface{ Temporary() bool }
	if errors.As(err, &te) && te.Temporary() {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range [...]syscall.Errno{syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EMFILE,
		syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
