package greetpause

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// Conn is what Accept returns for an early talker in LogOnly mode: the
// client's connection, with the bytes it sent during the pause replayed to
// the first Read so the server sees the session intact. All other methods
// are the underlying connection's.
type Conn struct {
	net.Conn

	mu    sync.Mutex
	early []byte // not yet read; nil once replayed
}

// Read returns the replayed early bytes first, then reads from the
// connection.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.early) > 0 && len(p) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		if len(c.early) == 0 {
			c.early = nil
		}
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// NetConn returns the underlying connection (as crypto/tls.Conn does).
// Reading from it directly skips the replayed bytes.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the writing side if the underlying connection
// can (a *net.TCPConn can); otherwise it returns an error wrapping
// errors.ErrUnsupported.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("greetpause: %T has no CloseWrite: %w", c.Conn, errors.ErrUnsupported)
}
