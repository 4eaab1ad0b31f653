package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// DefaultRateWindow is sendmail's default ConnectionRateWindowSize: a
// ClientRate of N allows N connections per minute.
const DefaultRateWindow = 60 * time.Second

// ListenerFilterName is the filter name in the Listener's log lines.
const ListenerFilterName = "ratelimit"

// replyTimeout bounds writing the 421 to a refused client; a fresh socket
// takes it at once, so this only guards against a stuck peer.
const replyTimeout = time.Second

// ListenerConfig configures a Listener. The zero value limits nothing:
// set a lookup or a default.
type ListenerConfig struct {
	// ClientRate returns the most connections a client may open per
	// RateWindow, and whether an entry applies; 0 means unlimited (as
	// sendmail's "ClientRate:" access entries, whose lookup
	// access.Map.ClientRate has this signature). It runs on the accept
	// path and must be quick (an in-memory lookup).
	ClientRate func(ip netip.Addr) (int, bool)
	// DefaultClientRate applies when ClientRate is nil or has no entry;
	// 0 means unlimited.
	DefaultClientRate int
	// RateWindow is sendmail's ConnectionRateWindowSize; 0 means
	// DefaultRateWindow.
	RateWindow time.Duration

	// ClientConn returns the most connections a client may hold open at
	// once, and whether an entry applies; 0 means unlimited (sendmail's
	// "ClientConn:", access.Map.ClientConn).
	ClientConn func(ip netip.Addr) (int, bool)
	// DefaultClientConn applies when ClientConn is nil or has no entry;
	// 0 means unlimited.
	DefaultClientConn int

	// Class is the source that is counted; the zero value counts IPv4
	// addresses and IPv6 /64s. The lookups get the client's own address.
	Class Class
	// MaxKeys bounds the rate buckets held in memory; 0 means
	// DefaultMaxKeys.
	MaxKeys int
	// Hostname, if set, starts the 421 text, as Postfix's
	// "421 4.7.0 mx.example.org Error: too many connections from …".
	Hostname string
	// Logger receives one Info line per refused connection (stage=connect,
	// filter=ratelimit, remote_ip, action, code, reason); nil discards.
	Logger *slog.Logger
	// Now is the clock of the rate buckets; time.Now when nil.
	Now func() time.Time
}

// ListenerStats are a Listener's counters. Open is a gauge.
type ListenerStats struct {
	// Open is the number of connections handed out and not yet closed
	// (tracked only when a concurrency limit is configured).
	Open int
	// Accepted counts connections handed to the server.
	Accepted uint64
	// RateRefused and ConnRefused count connections answered 421 for
	// the connection rate and the concurrency limit.
	RateRefused uint64
	ConnRefused uint64
	// Keys is the number of rate buckets held in memory.
	Keys int
}

// Listener is a net.Listener that answers "421 4.7.0" and closes
// connections over a client's connection rate or concurrency limit, so
// the server behind it never sees them. Accept returns only admitted
// connections and never an error for one connection. It is safe for
// concurrent use.
type Listener struct {
	inner       net.Listener
	rateLookup  func(netip.Addr) (int, bool)
	rateDefault int
	window      time.Duration
	connLookup  func(netip.Addr) (int, bool)
	connDefault int
	class       Class
	host        string
	log         *slog.Logger
	lims        *Limiters // nil when no rate limit is configured
	trackConns  bool

	mu   sync.Mutex
	open map[string]int

	accepted, rateRefused, connRefused atomic.Uint64
	openGauge                          atomic.Int64
}

// NewListener wraps inner. Close the Listener (or inner) to stop.
//
// Put it first, in front of a greet pause and the server's connect stage:
// a refused client then costs nothing further, and a connection held in a
// greet pause holds its concurrency slot.
func NewListener(inner net.Listener, cfg ListenerConfig) (*Listener, error) {
	if inner == nil {
		return nil, fmt.Errorf("%w: nil inner listener", ErrConfig)
	}
	if cfg.DefaultClientRate < 0 || cfg.DefaultClientConn < 0 {
		return nil, fmt.Errorf("%w: negative default client rate or connection limit", ErrConfig)
	}
	if err := checkPositive("RateWindow", cfg.RateWindow); err != nil {
		return nil, err
	}
	if err := cfg.Class.validate("listener"); err != nil {
		return nil, err
	}
	l := &Listener{
		inner: inner, rateLookup: cfg.ClientRate, rateDefault: cfg.DefaultClientRate, window: cfg.RateWindow,
		connLookup: cfg.ClientConn, connDefault: cfg.DefaultClientConn, class: cfg.Class,
		host: cfg.Hostname, log: cmp.Or(cfg.Logger, postern.DiscardLogger()),
	}
	if l.window == 0 {
		l.window = DefaultRateWindow
	}
	if l.rateLookup != nil || l.rateDefault > 0 {
		lims, err := NewLimiters(LimitersConfig{MaxKeys: cfg.MaxKeys, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		l.lims = lims
	}
	// Count every connection whenever a concurrency limit may apply, so
	// the counts are right when a reloaded map sets a limit.
	if l.connLookup != nil || l.connDefault > 0 {
		l.trackConns = true
		l.open = make(map[string]int)
	}
	return l, nil
}

// Accept returns the next admitted connection. Refused ones are answered
// and closed inside Accept, which then waits for the next. Errors of the
// inner listener are returned unchanged (not wrapped), so a server's
// Serve loop still recognises temporary ones and retries, and sees
// net.ErrClosed after Close.
//
// When a concurrency limit is configured the connection comes as a *Conn,
// whose Close frees its slot; otherwise it is the inner listener's own.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		if ac := l.admit(c); ac != nil {
			l.accepted.Add(1)
			return ac, nil
		}
	}
}

// Close closes the inner listener. Connections already accepted stay
// open and keep their slots until closed.
func (l *Listener) Close() error { return l.inner.Close() }

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats returns the counters.
func (l *Listener) Stats() ListenerStats {
	st := ListenerStats{
		Open:        int(l.openGauge.Load()),
		Accepted:    l.accepted.Load(),
		RateRefused: l.rateRefused.Load(),
		ConnRefused: l.connRefused.Load(),
	}
	if l.lims != nil {
		st.Keys = l.lims.Len()
	}
	return st
}

// OpenConns returns the number of open connections counted for ip's
// network (0 when no concurrency limit is configured).
func (l *Listener) OpenConns(ip netip.Addr) int {
	key := IPKey(ip, l.class)
	if !l.trackConns || key == "" {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[key]
}

func lookup(f func(netip.Addr) (int, bool), def int, ip netip.Addr) int {
	if f != nil {
		if n, ok := f(ip); ok {
			return max(n, 0)
		}
	}
	return def
}

// admit returns the connection to hand out, or nil after refusing it.
func (l *Listener) admit(c net.Conn) net.Conn {
	ip := remoteIP(c.RemoteAddr())
	key := IPKey(ip, l.class)
	if key == "" {
		return c // not an IP client: nothing to count by
	}
	// The slot first: a client refused for concurrency does not spend a
	// rate token on a connection it never got.
	if l.trackConns {
		limit := lookup(l.connLookup, l.connDefault, ip)
		l.mu.Lock()
		n := l.open[key]
		if limit > 0 && n >= limit {
			l.mu.Unlock()
			l.connRefused.Add(1)
			l.refuse(c, ip, l.reply("Error: too many connections from "+ip.String()),
				fmt.Sprintf("ratelimit: %d concurrent connections from %s (ClientConn %d)", n, key, limit))
			return nil
		}
		l.open[key] = n + 1
		l.mu.Unlock()
		l.openGauge.Add(1)
	}
	if l.lims != nil {
		if n := lookup(l.rateLookup, l.rateDefault, ip); n > 0 {
			r := Rate{Count: n, Per: l.window}
			if res := l.lims.AllowN(key, r, 1); !res.Allowed {
				if l.trackConns {
					l.release(key)
				}
				l.rateRefused.Add(1)
				l.refuse(c, ip, l.reply("Error: connection rate limit exceeded for "+ip.String()),
					fmt.Sprintf("ratelimit: %s exceeded its connection rate %s (ClientRate %d); next in %s",
						key, r, n, res.RetryAfter.Round(time.Millisecond)))
				return nil
			}
		}
	}
	if l.trackConns {
		return &Conn{Conn: c, l: l, key: key}
	}
	return c
}

func (l *Listener) reply(text string) postern.Reply {
	if l.host != "" {
		text = l.host + " " + text
	}
	return postern.NewReply(421, postern.ESC(4, 7, 0), text)
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	if n := l.open[key]; n > 1 {
		l.open[key] = n - 1
	} else {
		delete(l.open, key) // the map holds only clients with open connections
	}
	l.mu.Unlock()
	l.openGauge.Add(-1)
}

// refuse logs, answers rep and closes c. The client has not been greeted
// and a well-behaved one has sent nothing, so the close sends FIN after
// the reply, not a reset.
func (l *Listener) refuse(c net.Conn, ip netip.Addr, rep postern.Reply, reason string) {
	ctx := context.Background()
	logged := l.log.Enabled(ctx, slog.LevelInfo)
	if logged {
		l.log.LogAttrs(ctx, slog.LevelInfo, "connection refused",
			slog.String("remote_ip", ipString(ip)),
			slog.String("stage", postern.StageConnect.String()),
			slog.String("filter", ListenerFilterName),
			slog.String("action", postern.TempFail.String()),
			slog.Int("code", rep.Code),
			slog.String("reason", reason))
	}
	_ = c.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err := io.WriteString(c, rep.Wire())
	_ = c.Close()
	if err != nil && logged {
		l.log.LogAttrs(ctx, slog.LevelDebug, "refusal not delivered", slog.String("remote_ip", ipString(ip)),
			slog.String("stage", postern.StageConnect.String()), slog.String("filter", ListenerFilterName),
			slog.Any("error", err))
	}
}

// Conn is a connection admitted under a concurrency limit: closing it
// frees the client's slot, once, however often Close is called.
type Conn struct {
	net.Conn
	l        *Listener
	key      string
	released atomic.Bool
}

// Close frees the connection's slot on the first call and closes it.
// The slot goes first, so a client that has seen its connection closed
// finds the slot free when it connects again.
func (c *Conn) Close() error {
	if c.released.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return c.Conn.Close()
}

// NetConn returns the underlying connection (as crypto/tls.Conn does).
// Closing it directly does not free the slot.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the writing side if the underlying connection can
// (a *net.TCPConn can); otherwise it returns an error wrapping
// errors.ErrUnsupported.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("ratelimit: %T has no CloseWrite: %w", c.Conn, errors.ErrUnsupported)
}

// remoteIP returns a's IP with IPv4 unmapped from IPv6; the zero Addr for
// non-IP addresses.
func remoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}
