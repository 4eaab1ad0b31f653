package smtpserver

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

// TestShutdownClosesStalledSessions: a client stalled after RCPT and one
// stalled inside DATA do not keep Shutdown past its deadline; their
// connections are closed, Serve returns ErrServerClosed, and Close
// afterwards (and again) is quiet.
func TestShutdownClosesStalledSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := New(Config{Hostname: "mx.test", Handoff: &memHandoff{}, ErrorSleep: -1})
		require.NoError(t, err)
		l := testutil.NewPipeListener("127.0.0.1:25")
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		afterRcpt := dialPipe(t, l)
		afterRcpt.greet()
		expect(t, afterRcpt.cmd("MAIL FROM:<a@example.net>"), "250")
		expect(t, afterRcpt.cmd("RCPT TO:<b@example.test>"), "250")
		inData := dialPipe(t, l)
		inData.greet()
		expect(t, inData.cmd("MAIL FROM:<a@example.net>"), "250")
		expect(t, inData.cmd("RCPT TO:<b@example.test>"), "250")
		expect(t, inData.cmd("DATA"), "354")
		inData.send("Subject: half a message\r\n\r\nand then nothing")

		const grace = 30 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		assert.ErrorIs(t, srv.Shutdown(ctx), context.DeadlineExceeded)
		assert.Equal(t, grace, time.Since(start), "Shutdown waits for them until its deadline")
		for _, c := range []*client{afterRcpt, inData} {
			assert.True(t, c.closed(), "a stalled session is closed when Shutdown's deadline passes")
		}
		assert.ErrorIs(t, <-served, ErrServerClosed)
		assert.NoError(t, srv.Close())
		assert.NoError(t, srv.Close())
		synctest.Wait()
		assert.Zero(t, srv.openSessions(), "the sessions' goroutines end")
		assert.ErrorIs(t, srv.Serve(l), ErrServerClosed, "a closed server serves no more")
	})
}

// TestCloseWithoutShutdown: Close alone ends a session stalled in DATA.
func TestCloseWithoutShutdown(t *testing.T) {
	srv, err := New(Config{Hostname: "mx.test", Handoff: &memHandoff{}, ErrorSleep: -1})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c := dial(t, l.Addr().String())
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@example.net>"), "250")
	expect(t, c.cmd("RCPT TO:<b@example.test>"), "250")
	expect(t, c.cmd("DATA"), "354")
	c.send("Subject: x\r\n")
	require.NoError(t, srv.Close())
	assert.True(t, c.closed())
	assert.ErrorIs(t, <-served, ErrServerClosed)
}

// TestServeClosedFirst: when go-smtp is closed before the listener's
// Accept fails (the order Shutdown and Close cannot choose), Serve still
// returns ErrServerClosed, never nil.
func TestServeClosedFirst(t *testing.T) {
	srv, err := New(Config{Hostname: "mx.test", Handoff: &memHandoff{}})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c := dial(t, l.Addr().String())
	c.greet() // Serve is accepting
	require.NoError(t, srv.smtp.Close())
	assert.ErrorIs(t, <-served, ErrServerClosed)
	srv.Close()
}
