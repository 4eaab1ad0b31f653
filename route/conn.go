package route

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/postern/postern"
)

// sessConn is the connection under go-smtp's client. go-smtp sets a
// deadline for each reply and clears it afterwards, and none at all while
// the message is written; sessConn keeps a hard limit under every
// deadline it is given (the attempt's context deadline, the bound on the
// data phase), and a cancelled context forces an immediate timeout. So no
// read or write outlives the attempt, whatever the peer does.
type sessConn struct {
	net.Conn

	mu       sync.Mutex
	rd, wr   time.Time // deadlines asked for
	ctxLimit time.Time
	phase    time.Time
	killed   bool
}

func (c *sessConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rd, c.wr = t, t
	return c.apply()
}

func (c *sessConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rd = t
	return c.apply()
}

func (c *sessConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wr = t
	return c.apply()
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// past is a deadline that has passed: it fails pending I/O at once.
var past = time.Unix(1, 0)

func (c *sessConn) apply() error {
	limit := earliest(c.ctxLimit, c.phase)
	rd, wr := earliest(c.rd, limit), earliest(c.wr, limit)
	if c.killed {
		rd, wr = past, past
	}
	if err := c.Conn.SetReadDeadline(rd); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(wr)
}

// bind puts the connection under ctx until the returned function is
// called: the context's deadline bounds all I/O, and cancelling it
// breaks off whatever I/O is in progress.
func (c *sessConn) bind(ctx context.Context) (unbind func()) {
	c.mu.Lock()
	c.ctxLimit, _ = ctx.Deadline()
	c.apply()
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.killed = true
		c.apply()
		c.mu.Unlock()
	})
	return func() {
		stop()
		c.mu.Lock()
		c.ctxLimit, c.phase = time.Time{}, time.Time{}
		c.apply()
		c.mu.Unlock()
	}
}

// setPhase bounds all I/O until t (zero: no bound but the context's).
func (c *sessConn) setPhase(t time.Time) {
	c.mu.Lock()
	c.phase = t
	c.apply()
	c.mu.Unlock()
}

// dead reports whether a cancelled context broke the connection.
func (c *sessConn) dead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.killed
}

// prefixConn returns pre before the connection's own bytes. After our own
// STARTTLS, a new go-smtp client on the TLS connection reads a greeting
// from it: the server sends none after TLS starts (RFC 3207 §4.2).
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// maxRawReply bounds a reply read by readRawReply.
const maxRawReply = 16 << 10

// oneByteReader reads one byte at a time, so a bufio.Reader over it never
// takes bytes past the end of the reply it was asked for: the TLS
// handshake that follows must see them.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// readRawReply reads one reply straight from the connection with
// postern's parser, for the commands go-smtp's client has no method for
// (STARTTLS on an established session, QUIT without a new EHLO).
func readRawReply(c net.Conn) (postern.Reply, error) {
	return postern.ParseReply(bufio.NewReaderSize(oneByteReader{io.LimitReader(c, maxRawReply)}, 16))
}

// rawCommand writes one command line and reads its reply a byte at a
// time, for commands after which the connection changes hands (STARTTLS).
func rawCommand(c net.Conn, line string) (postern.Reply, error) {
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		return postern.Reply{}, err
	}
	return readRawReply(c)
}

// lockstepCommand writes one command line and reads its reply in as few
// reads as it arrives in: for RSET and QUIT, after which the server sends
// nothing until it is asked again (RFC 5321 §4.3.1: no pipelining here),
// so no byte past the reply can be read and lost.
func lockstepCommand(c net.Conn, line string) (postern.Reply, error) {
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		return postern.Reply{}, err
	}
	return postern.ParseReply(bufio.NewReaderSize(io.LimitReader(c, maxRawReply), 512))
}
