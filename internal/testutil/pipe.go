package testutil

import (
	"context"
	"net"
	"sync"
)

// PipeListener is a net.Listener in memory, for tests in a
// testing/synctest bubble, where time is fake and real sockets cannot be
// used: Dial connects over net.Pipe. Each connection's ends carry TCP
// addresses, the client's 127.0.0.1 at a port of its own, so the code
// under test sees what it would on loopback. Make it inside the bubble.
type PipeListener struct {
	addr    *net.TCPAddr
	backlog chan net.Conn
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	servers []net.Conn
}

// NewPipeListener returns a listener that says it listens on addr
// ("127.0.0.1:25"); it takes up to 64 connections nobody accepted yet, as
// a kernel's backlog would.
func NewPipeListener(addr string) *PipeListener {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic("testutil: PipeListener address " + addr + ": " + err.Error())
	}
	return &PipeListener{addr: a, backlog: make(chan net.Conn, 64), done: make(chan struct{})}
}

// Accept returns the next connection, or net.ErrClosed once closed.
func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.backlog:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Dial fail; connections made stay open.
func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the address given to NewPipeListener.
func (l *PipeListener) Addr() net.Addr { return l.addr }

// Dial connects a client and returns its end.
func (l *PipeListener) Dial() (net.Conn, error) {
	return l.DialContext(context.Background(), "tcp", l.addr.String())
}

// DialContext is Dial with a net.Dialer's signature, for a Config's
// Dialer; it ignores network and addr.
func (l *PipeListener) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	closed := &net.OpError{Op: "dial", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	select {
	case <-l.done:
		return nil, closed
	default:
	}
	server, client := net.Pipe()
	l.mu.Lock()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + len(l.servers)}
	sc := &pipeConn{Conn: server, local: l.addr, remote: remote}
	l.servers = append(l.servers, sc)
	l.mu.Unlock()
	select {
	case l.backlog <- sc:
		return &pipeConn{Conn: client, local: remote, remote: l.addr}, nil
	case <-l.done:
	case <-ctx.Done():
	}
	server.Close()
	client.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, closed
}

// Server returns the server's end of the i-th connection dialled.
func (l *PipeListener) Server(i int) net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.servers[i]
}

// pipeConn is one end of a pipe with TCP addresses.
type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }
