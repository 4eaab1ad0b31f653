package smtpserver

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeCounter counts the writes the server makes on its connections.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &l.writes}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// Replies are held while the client's next command is already read and
// written when the server would wait (RFC 2920 §3.1): the lines of the
// EHLO reply and the replies to a pipelined group leave in one write
// each, and the 221 written just before the server closes still leaves.
func TestRepliesCoalesced(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &writeCounter{Listener: inner}
	h := &memHandoff{}
	serveOn(t, l, Config{Handoff: h})
	c := dial(t, inner.Addr().String())

	ehlo := c.greet()
	require.Greater(t, len(ehlo.Lines), 5)
	assert.EqualValues(t, 2, l.writes.Load(), "banner, then the whole EHLO reply")

	c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<bad>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n")
	for _, want := range []string{"250", "250", "501 5.5.2", "250", "354"} {
		expect(t, c.reply(), want)
	}
	assert.EqualValues(t, 3, l.writes.Load(), "the group's five replies in one write")

	c.send("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	expect(t, c.reply(), "250 2.0.0 Ok: queued")
	expect(t, c.reply(), "221")
	assert.True(t, c.closed())
	assert.EqualValues(t, 4, l.writes.Load(), "queued and 221 together, before the close")
	require.Len(t, h.all(), 1)
}

// A flood of pipelined commands is answered in bounded pieces, in order.
func TestHeldRepliesBounded(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &writeCounter{Listener: inner}
	serveOn(t, l, Config{Handoff: &memHandoff{}})
	c := dial(t, inner.Addr().String())
	c.greet()
	n := 2000
	c.send(strings.Repeat("NOOP\r\n", n))
	for range n {
		expect(t, c.reply(), "250")
	}
	w := l.writes.Load() - 2
	assert.Greater(t, w, int64(1), "more than one write for %d replies", n)
	assert.Less(t, w, int64(n/10), "replies coalesced")
}
