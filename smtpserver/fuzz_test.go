package smtpserver

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pipeListener hands out in-memory connections, so the fuzzer drives the
// real server without sockets.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// tcpPipe gives both ends TCP addresses, as the server expects.
type tcpPipe struct{ net.Conn }

func (tcpPipe) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4321} }
func (tcpPipe) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// FuzzDialog feeds arbitrary client bytes to the server: it must never
// panic or hang, and must close the session when the client is done.
func FuzzDialog(f *testing.F) {
	seeds := []string{
		"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nBDAT 5 LAST\r\nabcdeQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<d@e.f> NOTIFY=SUCCESS ORCPT=rfc822;x+40y\r\nDATA\r\nx\n.\nMAIL FROM:<evil>\r\n.\r\n",
		"EHLO x\r\nAUTH PLAIN AHUAcA==\r\nAUTH LOGIN\r\ndQ==\r\ncA==\r\nSTARTTLS\r\n",
		"\x00\x01\x02\r\n\r\n\n\n" + "NOOP\r\nRSET\r\nVRFY x\r\nEXPN y\r\nHELP\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 3\r\nabcBDAT x\r\nRSET\r\nBDAT 0 LAST\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	h := &memHandoff{}
	srv, err := New(Config{Hostname: "fuzz.test", Handoff: h, Auth: passwords{"u": "p"}, AllowInsecureAuth: true,
		MaxMessageBytes: 4096, CommandTimeout: 2 * time.Second, ErrorSleep: -1})
	require.NoError(f, err)
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(l)
	defer srv.Close()

	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		l.conns <- tcpPipe{server}
		readDone := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client)
			close(readDone)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(in)
		client.Write([]byte("\r\n.\r\nQUIT\r\n"))
		client.Close()
		<-readDone
		// Whatever state the dialogue was left in, the session must end
		// once the client is gone.
		deadline := time.Now().Add(10 * time.Second)
		for srv.openSessions() > 0 {
			if time.Now().After(deadline) {
				t.Fatal("session did not end")
			}
			time.Sleep(time.Millisecond)
		}
	})
}
