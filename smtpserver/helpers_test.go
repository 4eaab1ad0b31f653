package smtpserver

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// memHandoff keeps rendered messages in memory (a unit-test fake; the relay
// tests use the real spool).
type memHandoff struct {
	mu   sync.Mutex
	msgs []handed
	err  error
}

type handed struct {
	conn *postern.Conn
	txn  *postern.Txn
	data []byte
}

func (h *memHandoff) Handoff(_ context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return "", h.err
	}
	var b bytes.Buffer
	if err := m.Render(&b); err != nil {
		return "", err
	}
	h.msgs = append(h.msgs, handed{conn: c, txn: t, data: b.Bytes()})
	return "Q" + t.ID, nil
}

func (h *memHandoff) all() []handed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]handed(nil), h.msgs...)
}

// startServer runs a Server on a loopback port and returns its address.
func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveOn(t, l, cfg), l.Addr().String()
}

// startPipeServer runs a Server on a listener in memory, for tests in a
// synctest bubble; dialPipe connects to it.
func startPipeServer(t testing.TB, cfg Config) (*Server, *testutil.PipeListener) {
	t.Helper()
	l := testutil.NewPipeListener("127.0.0.1:25")
	return serveOn(t, l, cfg), l
}

// serveOn runs a Server with cfg (named mx.test, no error sleep by
// default) on l until the test ends.
func serveOn(t testing.TB, l net.Listener, cfg Config) *Server {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	if cfg.ErrorSleep == 0 {
		cfg.ErrorSleep = -1
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return srv
}

func dialPipe(t testing.TB, l *testutil.PipeListener) *client {
	t.Helper()
	c, err := l.Dial()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// client is a raw SMTP client for dialog tests.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// reply reads one whole reply.
func (c *client) reply() postern.Reply {
	c.t.Helper()
	r, err := postern.ParseReply(c.br)
	require.NoError(c.t, err)
	return r
}

func (c *client) send(s string) {
	c.t.Helper()
	_, err := c.c.Write([]byte(s))
	require.NoError(c.t, err)
}

// cmd sends one command line and returns the reply.
func (c *client) cmd(line string) postern.Reply {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// expect checks that a reply starts with want ("250 2.1.0" or "250").
func expect(t testing.TB, r postern.Reply, want string) {
	t.Helper()
	got := r.Error()
	require.True(t, strings.HasPrefix(got, want), "want %q, got %q", want, got)
}

// greet reads the banner and says EHLO.
func (c *client) greet() postern.Reply {
	c.t.Helper()
	expect(c.t, c.reply(), "220")
	r := c.cmd("EHLO client.test")
	expect(c.t, r, "250")
	return r
}

// closed reports whether the server closed the connection.
func (c *client) closed() bool {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil
}
