package proxyproto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrConfig is returned (wrapped) by NewListener for an invalid
// configuration.
var ErrConfig = errors.New("proxyproto: invalid config")

// ErrUnexpectedHeader is what a connection from an address that is not a
// balancer's returns from Read when it starts with a PROXY header: it is
// closed, since that client is trying to name an address of its choice.
var ErrUnexpectedHeader = errors.New("proxyproto: PROXY header from an address that is not a balancer")

// Defaults.
const (
	// DefaultTimeout bounds reading a header (Postfix's
	// smtpd_upstream_proxy_timeout): a balancer sends it at once.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxHeaderBytes bounds a header: a version 1 header is at
	// most 107 bytes; version 2 TLVs (TLS details, a cloud endpoint ID)
	// rarely pass a few hundred.
	DefaultMaxHeaderBytes = 2048
)

// Config configures a Listener.
type Config struct {
	// Balancers are the load balancers' addresses or networks. A
	// connection from one of them must start with a PROXY header (version
	// 1 or 2): the client's address it names is the connection's
	// RemoteAddr. A connection from any other address is served as it is
	// and must not send one. One of Balancers and IsBalancer is required.
	Balancers []netip.Prefix
	// IsBalancer, if set, is asked instead of Balancers (so a
	// configuration reload can change them). It runs on the accept loop:
	// an in-memory lookup. Setting both is an error.
	IsBalancer func(ip netip.Addr) bool
	// Timeout bounds reading a balancer's header; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxHeaderBytes bounds a header; 0 means DefaultMaxHeaderBytes, at
	// least 232 (a version 2 header with IPv6 addresses and a few TLVs).
	MaxHeaderBytes int
	// Logger receives refused connections (Warn for a balancer that sent
	// no valid header, Info for a header from another address) and each
	// header read (Debug), with stage=proxy; nil discards.
	Logger *slog.Logger
}

// Stats are a Listener's counters.
type Stats struct {
	// Proxied counts balancer connections with a header naming a client;
	// Local those with a LOCAL or UNKNOWN header (health checks); Direct
	// connections from other addresses.
	Proxied, Local, Direct uint64
	// Invalid counts balancer connections closed for a missing, broken,
	// oversized or late header; Unexpected connections from other
	// addresses closed for sending one.
	Invalid, Unexpected uint64
}

// Listener is a net.Listener that reads the PROXY protocol header of
// connections from the configured balancers and returns them with the
// client's address as RemoteAddr. Headers are read on a goroutine per
// connection, so a slow balancer holds up nobody else; Accept never
// returns an error for one connection. It is safe for concurrent use.
type Listener struct {
	inner      net.Listener
	isBalancer func(netip.Addr) bool
	timeout    time.Duration
	max        int
	log        *slog.Logger

	ready chan net.Conn
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	cerr  error

	mu     sync.Mutex
	err    error // what Accept returns after shutdown
	closed bool
	conns  map[net.Conn]struct{} // balancer connections whose header is being read

	proxied, local, direct, invalid, unexpected atomic.Uint64
}

// NewListener wraps inner and starts accepting from it. Close the
// Listener, not inner, to stop.
func NewListener(inner net.Listener, cfg Config) (*Listener, error) {
	switch {
	case inner == nil:
		return nil, fmt.Errorf("%w: nil inner listener", ErrConfig)
	case cfg.IsBalancer != nil && len(cfg.Balancers) > 0:
		return nil, fmt.Errorf("%w: set Balancers or IsBalancer, not both", ErrConfig)
	case cfg.IsBalancer == nil && len(cfg.Balancers) == 0:
		return nil, fmt.Errorf("%w: no balancer", ErrConfig)
	case cfg.Timeout < 0 || cfg.MaxHeaderBytes < 0:
		return nil, fmt.Errorf("%w: negative Timeout or MaxHeaderBytes", ErrConfig)
	case cfg.MaxHeaderBytes != 0 && cfg.MaxHeaderBytes < 232:
		return nil, fmt.Errorf("%w: MaxHeaderBytes %d is under 232", ErrConfig, cfg.MaxHeaderBytes)
	}
	l := &Listener{inner: inner, isBalancer: cfg.IsBalancer, timeout: cfg.Timeout, max: cfg.MaxHeaderBytes,
		log: cfg.Logger, ready: make(chan net.Conn), done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	if l.isBalancer == nil {
		nets := make([]netip.Prefix, len(cfg.Balancers))
		for i, p := range cfg.Balancers {
			if !p.IsValid() {
				return nil, fmt.Errorf("%w: invalid balancer network %v", ErrConfig, p)
			}
			nets[i] = p.Masked()
		}
		l.isBalancer = func(ip netip.Addr) bool {
			for _, p := range nets {
				if p.Contains(ip) {
					return true
				}
			}
			return false
		}
	}
	if l.timeout == 0 {
		l.timeout = DefaultTimeout
	}
	if l.max == 0 {
		l.max = DefaultMaxHeaderBytes
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("stage", "proxy")
	l.wg.Add(1)
	go l.loop()
	return l, nil
}

// Accept returns the next connection: a balancer's with its header read
// (a *Conn), or another address's (a connection that refuses a header).
// It returns net.ErrClosed after Close, or the inner listener's
// permanent error.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close closes the inner listener and the connections whose header is
// being read, and waits for the listener's goroutines.
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
	return Stats{Proxied: l.proxied.Load(), Local: l.local.Load(), Direct: l.direct.Load(),
		Invalid: l.invalid.Load(), Unexpected: l.unexpected.Load()}
}

func (l *Listener) shutdown(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed, l.err = true, err
	close(l.done)
	for c := range l.conns {
		_ = c.Close()
	}
}

func (l *Listener) loop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if !temporary(err) {
				l.log.Error("accept failed", "action", "stop", "error", err)
				l.shutdown(fmt.Errorf("proxyproto: accept: %w", err))
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
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

func temporary(err error) bool {
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

// admit hands a connection from another address over at once, guarded;
// a balancer's has its header read on a goroutine of its own.
func (l *Listener) admit(c net.Conn) {
	peer := addrPort(c.RemoteAddr())
	if !l.isBalancer(peer.Addr()) {
		l.direct.Add(1)
		l.handOff(&guardConn{Conn: c, l: l, peer: peer})
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go l.readHeader(c, peer)
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// readHeader reads a balancer's header within the timeout and the size
// bound; a connection without a valid one is closed (the protocol has no
// way to answer it).
func (l *Listener) readHeader(c net.Conn, peer netip.AddrPort) {
	defer l.wg.Done()
	pc, err := l.header(c)
	l.untrack(c)
	if err != nil {
		l.invalid.Add(1)
		l.log.Warn("PROXY header refused", "action", "close", "balancer", peer.Addr().String(), "error", err)
		_ = c.Close()
		return
	}
	if pc.hdr.Local {
		l.local.Add(1)
	} else {
		l.proxied.Add(1)
	}
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("PROXY header", "action", "pass", "balancer", peer.Addr().String(),
			"remote_ip", pc.RemoteAddr().String(), "version", pc.hdr.Version, "local", pc.hdr.Local)
	}
	l.handOff(pc)
}

// header reads one header within the size bound. Bytes that came in
// the same reads after it (a client that talked early) are kept for the
// connection's first Reads.
func (l *Listener) header(c net.Conn) (*Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(l.timeout)); err != nil {
		return nil, err
	}
	buf := make([]byte, l.max)
	filled := 0
	for {
		n, err := c.Read(buf[filled:])
		filled += n
		if n > 0 {
			h, used, perr := Parse(buf[:filled])
			switch {
			case perr == nil:
				if err := c.SetReadDeadline(time.Time{}); err != nil {
					return nil, err
				}
				return newConn(c, h, buf[used:filled]), nil
			case !errors.Is(perr, ErrShort):
				return nil, perr
			case filled == len(buf):
				return nil, fmt.Errorf("%w: header over %d bytes", ErrInvalid, l.max)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("proxyproto: reading the header: %w", err)
		}
	}
}

// handOff gives c to Accept, or closes it if the listener closes first.
func (l *Listener) handOff(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// addrPort returns a's IP and port, IPv4 unmapped; the zero value for
// non-IP addresses.
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
