package greetpause

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrConfig is returned (wrapped) by New for an invalid configuration.
var ErrConfig = errors.New("greetpause: invalid config")

const (
	// DefaultDelay is the pause when Config.Delay and Config.Pause are both
	// unset. RFC 5321 §4.5.3.2.1 has clients wait 5 minutes for the greeting,
	// so any real MTA sits through it; Postfix postscreen waits 6 s.
	DefaultDelay = 5 * time.Second

	// DefaultMaxPaused is the bound on connections held at once when
	// Config.MaxPaused is 0: about 35 MiB of memory at ~3.5 KiB each.
	DefaultMaxPaused = 10000

	// EarlyTalkerReply is sent to a client that talked before the greeting,
	// before the connection is closed.
	EarlyTalkerReply = "554 5.5.1 Protocol error: talked before greeting"

	// BusyReply is sent to a client that arrives while MaxPaused
	// connections are held (unless Config.PassWhenFull is set). Postfix
	// postscreen also answers 421 when its limits are hit; the client
	// retries later.
	BusyReply = "421 4.7.0 Too many connections, try again later"
)

const (
	// replyTimeout bounds writing a one-line reply; a fresh socket takes it
	// at once, so this only guards against a stuck peer.
	replyTimeout = time.Second
	// lingerTimeout and lingerLimit bound the draining of an early talker
	// after its 554: closing a socket with unread input sends a RST, which
	// can destroy the reply before the client reads it.
	lingerTimeout = time.Second
	lingerLimit   = 64 << 10
	// Backoff for temporary Accept errors (EMFILE, ECONNABORTED …), as
	// net/http does.
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Config configures a Listener. The zero value is a 5 s pause for every
// client, at most 10,000 clients held at once, early talkers rejected.
type Config struct {
	// Delay is the pause for every client when Pause is nil; 0 means
	// DefaultDelay. Set Pause instead to vary it per client; setting both
	// is an error, so a Delay is never silently ignored.
	Delay time.Duration

	// Pause, if set, returns the pause for a client from its IP address
	// (IPv4 unmapped from IPv6; the zero Addr when the listener's addresses
	// are not IP). Return 0 (or less) to exempt the client: its connection
	// is handed over at once. This is where sendmail's "GreetPause:" access
	// entries and trusted networks plug in. Pause runs on the accept loop,
	// so it must be quick and must not block (an in-memory lookup).
	Pause func(remote netip.Addr) time.Duration

	// Known, if set, is asked about each client held in the pause, on a
	// goroutine of its own while the pause runs, so a lookup that takes
	// a network round trip (a pass cache in Redis) holds nobody up: true
	// ends the pause at once and the client is handed over
	// (ActionKnown), as postscreen lets the clients on its temporary
	// allowlist straight through. ctx ends with the pause. A client that
	// talks before the answer is an early talker all the same. Exempt
	// clients (pause 0) and clients over MaxPaused are not asked.
	Known func(ctx context.Context, remote netip.Addr) bool

	// LogOnly is the rollout mode: an early talker is logged and counted
	// but handed over at once, and the bytes it sent are replayed to the
	// server's first Read.
	LogOnly bool

	// MaxPaused bounds the connections held at once (in the pause, or
	// waiting for Accept after it); 0 means DefaultMaxPaused. A client
	// arriving when the bound is reached is answered BusyReply and closed,
	// or handed over without a pause if PassWhenFull is set.
	MaxPaused int

	// PassWhenFull hands clients over without a pause when MaxPaused is
	// reached, instead of answering 421. It trades the protection for
	// availability: under a flood, the server then meets every client.
	PassWhenFull bool

	// Logger receives one record per connection that is not simply passed
	// (Debug for pass and exempt, Info for early talkers and hangups, Warn
	// for busy and accept errors), with stage=greetpause, remote_ip and
	// action. nil discards.
	Logger *slog.Logger

	// Observer, if set, is called once per connection with its outcome
	// (metrics). It runs on the accept loop or the connection's goroutine,
	// must be quick, and must not call Close.
	Observer func(Event)
}

// Action is the outcome for one connection.
type Action uint8

const (
	// ActionPass: the client waited out the pause in silence and was
	// handed over.
	ActionPass Action = iota
	// ActionExempt: the pause was 0; handed over at once.
	ActionExempt
	// ActionReject: the client talked early; answered EarlyTalkerReply and
	// closed.
	ActionReject
	// ActionLogOnly: the client talked early; handed over anyway because
	// Config.LogOnly is set.
	ActionLogOnly
	// ActionBusy: MaxPaused connections were held; answered BusyReply and
	// closed.
	ActionBusy
	// ActionOverflow: MaxPaused connections were held; handed over without
	// a pause because Config.PassWhenFull is set.
	ActionOverflow
	// ActionHangup: the client closed or reset the connection during the
	// pause.
	ActionHangup
	// ActionClosed: the listener was closed during the pause; the
	// connection was closed.
	ActionClosed
	// ActionKnown: Config.Known knew the client; the pause ended early
	// and it was handed over.
	ActionKnown

	numActions
)

var actionNames = [numActions]string{"pass", "exempt", "reject", "log-only", "busy", "overflow", "hangup", "closed", "known"}

// String returns the name used in logs ("pass", "reject", …).
func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Event describes the outcome for one connection.
type Event struct {
	Action Action
	Remote netip.AddrPort
	// Pause is the pause the client was given (0 when exempt or not held).
	Pause time.Duration
	// Waited is how long the client was held before the outcome.
	Waited time.Duration
}

// Stats are counters since New. Paused is a gauge; the rest only grow.
type Stats struct {
	// Paused is the number of connections held now: in the pause, or
	// waiting for Accept after it.
	Paused int
	// Passed, Exempt, Rejected, LogOnly, Busy, Overflow, Hangups, Closed
	// and Known count connections by their Action.
	Passed   uint64
	Exempt   uint64
	Rejected uint64
	LogOnly  uint64
	Busy     uint64
	Overflow uint64
	Hangups  uint64
	Closed   uint64
	Known    uint64
	// AcceptErrors counts temporary errors of the inner listener, which
	// were retried.
	AcceptErrors uint64
}

// Listener is a net.Listener that holds each new connection for a pause
// before Accept returns it, and drops clients that talk during the pause.
// It is safe for concurrent use.
type Listener struct {
	inner        net.Listener
	pause        func(netip.Addr) time.Duration
	known        func(context.Context, netip.Addr) bool
	delay        time.Duration
	logOnly      bool
	maxPaused    int64
	passWhenFull bool
	log          *slog.Logger
	observer     func(Event)
	earlyReply   []byte
	busyReply    []byte

	ready chan net.Conn  // unbuffered: a conn is the server's once received
	done  chan struct{}  // closed by shutdown
	wg    sync.WaitGroup // the accept loop and every per-conn goroutine
	once  sync.Once      // closes inner
	cerr  error          // inner.Close's result, set in once
	held  atomic.Int64   // Stats.Paused
	count [numActions]atomic.Uint64
	aerrs atomic.Uint64

	mu     sync.Mutex
	closed bool
	err    error // what Accept returns after shutdown; set before done closes
	head   *held // connections blocked in I/O, which shutdown must wake
}

// held is one connection in the pause. It is the only per-connection
// allocation besides the goroutine; the read buffer lives here so the
// goroutine's stack stays at its minimum size.
type held struct {
	c          net.Conn
	prev, next *held
	remote     netip.AddrPort
	start      time.Time
	pause      time.Duration
	buf        [32]byte // the early talker's first bytes, for the log and LogOnly replay

	// With Config.Known: the lookup's end, and what it found, which
	// settle reads once the pause is over.
	cancel  context.CancelFunc
	mu      sync.Mutex
	settled bool
	isKnown bool
}

// New wraps inner and starts accepting from it at once. Close the Listener
// (not inner) to stop.
func New(inner net.Listener, cfg Config) (*Listener, error) {
	if inner == nil {
		return nil, fmt.Errorf("%w: nil inner listener", ErrConfig)
	}
	if cfg.Delay < 0 {
		return nil, fmt.Errorf("%w: negative Delay %v", ErrConfig, cfg.Delay)
	}
	if cfg.Delay != 0 && cfg.Pause != nil {
		return nil, fmt.Errorf("%w: set Delay or Pause, not both", ErrConfig)
	}
	if cfg.MaxPaused < 0 {
		return nil, fmt.Errorf("%w: negative MaxPaused %d", ErrConfig, cfg.MaxPaused)
	}
	l := &Listener{
		inner:        inner,
		pause:        cfg.Pause,
		known:        cfg.Known,
		delay:        cfg.Delay,
		logOnly:      cfg.LogOnly,
		maxPaused:    int64(cfg.MaxPaused),
		passWhenFull: cfg.PassWhenFull,
		log:          cfg.Logger,
		observer:     cfg.Observer,
		earlyReply:   []byte(EarlyTalkerReply + "\r\n"),
		busyReply:    []byte(BusyReply + "\r\n"),
		ready:        make(chan net.Conn),
		done:         make(chan struct{}),
	}
	if l.delay == 0 {
		l.delay = DefaultDelay
	}
	if l.maxPaused == 0 {
		l.maxPaused = DefaultMaxPaused
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("stage", "greetpause")
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

// Accept returns the next connection that waited out its pause in silence,
// was exempt, or (in LogOnly mode) talked early. It never returns an error
// for a single connection, so a server's Serve loop keeps going; it returns
// net.ErrClosed after Close, or the inner listener's permanent error
// (wrapped). Connections are the inner listener's own (a *net.TCPConn stays
// one), except LogOnly early talkers, which come as *Conn.
//
// Exempt clients are handed over by the accept loop itself: while nobody
// calls Accept, new connections wait in the kernel's backlog, as they
// would without the wrapper, and the clients already in the pause carry on.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close closes the inner listener and every connection still held, waits
// for the listener's goroutines to end, and makes Accept return
// net.ErrClosed. Connections already returned by Accept are not touched.
// Only the first call does this and returns the inner listener's Close
// error; later calls return nil.
func (l *Listener) Close() error {
	first := false
	l.once.Do(func() {
		first = true
		l.shutdown(net.ErrClosed)
		l.cerr = l.inner.Close()
	})
	l.wg.Wait()
	if first {
		return l.cerr
	}
	return nil
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats returns the counters.
func (l *Listener) Stats() Stats {
	return Stats{
		Paused:       int(l.held.Load()),
		Passed:       l.count[ActionPass].Load(),
		Exempt:       l.count[ActionExempt].Load(),
		Rejected:     l.count[ActionReject].Load(),
		LogOnly:      l.count[ActionLogOnly].Load(),
		Busy:         l.count[ActionBusy].Load(),
		Overflow:     l.count[ActionOverflow].Load(),
		Hangups:      l.count[ActionHangup].Load(),
		Closed:       l.count[ActionClosed].Load(),
		Known:        l.count[ActionKnown].Load(),
		AcceptErrors: l.aerrs.Load(),
	}
}

// shutdown ends the listener with err for Accept: it closes done and every
// held connection, which wakes their goroutines.
func (l *Listener) shutdown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.err = err
	close(l.done)
	for h := l.head; h != nil; h = h.next {
		_ = h.c.Close()
	}
}

func (l *Listener) isDone() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// loop accepts from inner until it fails for good.
func (l *Listener) loop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.isDone() {
				return
			}
			if !temporary(err) {
				l.log.Error("accept failed", "action", "stop", "error", err)
				l.shutdown(fmt.Errorf("greetpause: accept: %w", err))
				return
			}
			l.aerrs.Add(1)
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			l.log.Warn("accept failed, retrying", "action", "retry", "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		l.admit(c)
	}
}

// temporary reports whether an Accept error is worth retrying: the
// listener is fine but this connection or this moment is not (aborted
// handshake, out of file descriptors or buffers).
func temporary(err error) bool {
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

// admit decides for a new connection on the accept loop: hand over, answer
// busy, or hold it in the pause on its own goroutine.
func (l *Listener) admit(c net.Conn) {
	start := time.Now()
	remote := addrPort(c.RemoteAddr())
	pause := l.delay
	if l.pause != nil {
		pause = max(l.pause(remote.Addr()), 0)
	}
	if pause == 0 {
		l.record(ActionExempt, remote, 0, 0, slog.LevelDebug)
		l.handOff(c)
		return
	}
	if l.held.Load() >= l.maxPaused {
		if l.passWhenFull {
			l.record(ActionOverflow, remote, pause, 0, slog.LevelWarn)
			l.handOff(c)
			return
		}
		l.record(ActionBusy, remote, pause, 0, slog.LevelWarn)
		_ = c.SetWriteDeadline(time.Now().Add(replyTimeout))
		_, _ = c.Write(l.busyReply)
		_ = c.Close()
		return
	}
	// The pause ends at a read deadline, enforced by the runtime's poller:
	// no timer or extra goroutine of our own.
	h := &held{c: c, remote: remote, start: start, pause: pause}
	if err := c.SetReadDeadline(start.Add(pause)); err != nil {
		l.closeHeld(h, err)
		return
	}
	if !l.track(h) {
		_ = c.Close()
		return
	}
	// The lookup's context exists before hold starts: settle cancels it.
	var ctx context.Context
	if l.known != nil {
		ctx, h.cancel = context.WithDeadline(context.Background(), start.Add(pause))
	}
	l.held.Add(1)
	l.wg.Add(1)
	go l.hold(h)
	if ctx != nil {
		l.wg.Add(1)
		go l.ask(ctx, h)
	}
}

// ask asks Config.Known about a held client; a client it knows has its
// pause cut short: the read deadline, set to now, wakes the held Read.
func (l *Listener) ask(ctx context.Context, h *held) {
	defer l.wg.Done()
	// An answer after the pause ended (its context is done) counts for
	// nothing: the client waited it out and is a pass, not a known one.
	if !l.known(ctx, h.remote.Addr()) || ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.settled {
		h.isKnown = true
		_ = h.c.SetReadDeadline(time.Now())
	}
}

// hold waits out the pause in one small read, parked in the poller: a
// held connection costs about what a bare goroutine blocked in Read does.
func (l *Listener) hold(h *held) {
	n, err := h.c.Read(h.buf[:])
	l.settle(h, n, err)
}

// settle handles the end of the pause. A timeout means the client stayed
// silent.
func (l *Listener) settle(h *held, n int, err error) {
	defer l.wg.Done()
	defer l.held.Add(-1)
	h.mu.Lock()
	h.settled = true
	known := h.isKnown
	h.mu.Unlock()
	if h.cancel != nil {
		h.cancel()
	}
	switch {
	case n > 0:
		l.early(h, n)
	case isTimeout(err) && known:
		l.patient(h, ActionKnown)
	case isTimeout(err):
		l.patient(h, ActionPass)
	default:
		l.gone(h, err)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (l *Listener) patient(h *held, a Action) {
	l.untrack(h)
	if l.isDone() {
		l.closeHeld(h, nil)
		return
	}
	// The server owns deadlines from here on.
	if err := h.c.SetReadDeadline(time.Time{}); err != nil {
		l.gone(h, err)
		return
	}
	l.record(a, h.remote, h.pause, time.Since(h.start), slog.LevelDebug)
	l.handOff(h.c)
}

// early handles a client that sent n bytes (in h.buf) during the pause.
func (l *Listener) early(h *held, n int) {
	waited := time.Since(h.start)
	data := slog.String("early_data", string(h.buf[:n]))
	if l.logOnly {
		l.untrack(h)
		l.record(ActionLogOnly, h.remote, h.pause, waited, slog.LevelInfo, data)
		if err := h.c.SetReadDeadline(time.Time{}); err != nil {
			l.gone(h, err)
			return
		}
		l.handOff(&Conn{Conn: h.c, early: append([]byte(nil), h.buf[:n]...)})
		return
	}
	l.record(ActionReject, h.remote, h.pause, waited, slog.LevelInfo, data)
	c := h.c
	_ = c.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := c.Write(l.earlyReply); err == nil {
		// FIN after the reply, then read what the client still sends so
		// that Close does not turn into a RST that eats the reply.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
		buf := make([]byte, 512)
		for total := 0; total < lingerLimit; {
			m, err := c.Read(buf)
			total += m
			if err != nil {
				break
			}
		}
	}
	l.untrack(h)
	_ = c.Close()
}

// gone handles a read error during the pause: the client left, or Close
// closed the connection.
func (l *Listener) gone(h *held, err error) {
	l.untrack(h)
	l.closeHeld(h, err)
}

func (l *Listener) closeHeld(h *held, err error) {
	_ = h.c.Close()
	if l.isDone() {
		l.record(ActionClosed, h.remote, h.pause, time.Since(h.start), slog.LevelDebug)
		return
	}
	l.record(ActionHangup, h.remote, h.pause, time.Since(h.start), slog.LevelInfo, slog.Any("error", err))
}

// handOff gives c to Accept, or closes it if the listener closes first.
func (l *Listener) handOff(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// record records the outcome for one connection: counter, observer, log.
func (l *Listener) record(a Action, remote netip.AddrPort, pause, waited time.Duration, level slog.Level, extra ...slog.Attr) {
	l.count[a].Add(1)
	if l.observer != nil {
		l.observer(Event{Action: a, Remote: remote, Pause: pause, Waited: waited})
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	attrs := append([]slog.Attr{
		slog.String("remote_ip", ipString(remote.Addr())),
		slog.String("action", a.String()),
		slog.Duration("pause", pause),
		slog.Duration("waited", waited),
	}, extra...)
	l.log.LogAttrs(ctx, level, "greet pause", attrs...)
}

// track registers h so that shutdown can close it; false if already shut
// down.
func (l *Listener) track(h *held) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	h.next = l.head
	if l.head != nil {
		l.head.prev = h
	}
	l.head = h
	return true
}

// untrack removes h; it may be called more than once.
func (l *Listener) untrack(h *held) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.prev != nil {
		h.prev.next = h.next
	} else if l.head == h {
		l.head = h.next
	} else {
		return // not in the list
	}
	if h.next != nil {
		h.next.prev = h.prev
	}
	h.prev, h.next = nil, nil
}

// ipString is "" rather than "invalid IP" for a non-IP client.
func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}

// addrPort returns a's IP and port, with IPv4 unmapped from IPv6; the zero
// value for non-IP addresses.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
