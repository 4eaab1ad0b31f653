package proxyproto

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Conn is a balancer's connection with its header read: RemoteAddr and
// LocalAddr are the client's and the address it connected to, as the
// header names them (the connection's own for a LOCAL header). Reads
// return what the client sent after the header.
type Conn struct {
	net.Conn
	hdr           Header
	remote, local net.Addr

	mu      sync.Mutex
	pending []byte // read with the header, not yet returned
}

func newConn(c net.Conn, h Header, rest []byte) *Conn {
	pc := &Conn{Conn: c, hdr: h, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if !h.Local {
		pc.remote = net.TCPAddrFromAddrPort(unmap(h.Source))
		pc.local = net.TCPAddrFromAddrPort(unmap(h.Dest))
	}
	// The TLV values alias the header buffer: copy them out so it can go.
	for i, t := range pc.hdr.TLVs {
		pc.hdr.TLVs[i].Value = bytes.Clone(t.Value)
	}
	if len(rest) > 0 {
		pc.pending = bytes.Clone(rest)
	}
	return pc
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }

// Header returns the header the balancer sent.
func (c *Conn) Header() Header { return c.hdr }

// RemoteAddr is the client's address (a *net.TCPAddr), or the balancer's
// for a LOCAL header.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client connected to at the balancer, or
// the connection's own for a LOCAL header.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// Read returns the bytes read with the header first.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 && len(p) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// NetConn returns the balancer's connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the writing side if the connection can.
func (c *Conn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("proxyproto: %T has no CloseWrite: %w", c, errors.ErrUnsupported)
}

// guardConn is a connection from an address that is not a balancer's: its
// first bytes must not be a PROXY header. Until they show that, Read
// holds them back; a header closes the connection.
type guardConn struct {
	net.Conn
	l    *Listener
	peer netip.AddrPort

	mu      sync.Mutex
	checked bool
	seen    []byte // first bytes, while they could still start a header
}

// sigLen is the most bytes needed to tell a header from anything else.
const sigLen = 12

func (g *guardConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.checked {
		if len(g.seen) == 0 {
			return g.Conn.Read(p)
		}
		n := copy(p, g.seen)
		g.seen = g.seen[n:]
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		var b [sigLen]byte
		n, err := g.Conn.Read(b[:sigLen-len(g.seen)])
		g.seen = append(g.seen, b[:n]...)
		switch {
		case n > 0 && !IsPrefix(g.seen):
			g.checked = true
			m := copy(p, g.seen)
			g.seen = g.seen[m:]
			return m, nil
		case len(g.seen) >= sigLen || n > 0 && startsHeader(g.seen):
			g.l.unexpected.Add(1)
			g.l.log.Info("PROXY header from an address that is not a balancer", "action", "close",
				"remote_ip", g.peer.Addr().String())
			_ = g.Conn.Close()
			return 0, ErrUnexpectedHeader
		case err != nil:
			// The client left (or a deadline ran out) with fewer bytes
			// than decide: they are not a header, and not lost.
			if len(g.seen) > 0 {
				g.checked = true
				m := copy(p, g.seen)
				g.seen = g.seen[m:]
				return m, nil
			}
			return 0, err
		}
	}
}

// startsHeader: enough of a signature that no SMTP command begins so.
func startsHeader(b []byte) bool {
	return len(b) >= len(v1Prefix) && bytes.HasPrefix(b, v1Prefix) || len(b) >= sigLen && bytes.HasPrefix(b, v2Sig)
}

// CloseWrite shuts down the writing side if the connection can.
func (g *guardConn) CloseWrite() error { return closeWrite(g.Conn) }

// NetConn returns the connection.
func (g *guardConn) NetConn() net.Conn { return g.Conn }
