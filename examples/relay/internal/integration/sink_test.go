package integration

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// sink is a downstream SMTP server (go-smtp) that keeps what it receives,
// with the envelope, and answers RCPT as told.
type sink struct {
	addr string
	srv  *smtp.Server
	l    net.Listener

	mu    sync.Mutex
	got   []sunk
	rcpt  func(addr string) *smtp.SMTPError // nil: accept
	wires []*bytes.Buffer                   // per connection, every byte read, as sent
}

type sunk struct {
	From  string
	Rcpts []string
	Mail  smtp.MailOptions
	Data  []byte
}

// MessageID returns the Message-ID of a received message.
func (s sunk) MessageID() string {
	m, err := mail.ReadMessage(bytes.NewReader(s.Data))
	if err != nil {
		return ""
	}
	return m.Header.Get("Message-ID")
}

// startSink listens on addr ("127.0.0.1:0" for any port).
func startSink(t *testing.T, addr string) *sink {
	t.Helper()
	return startSinkTLS(t, addr, nil)
}

// startSinkTLS is startSink with STARTTLS offered under cfg (none when
// nil).
func startSinkTLS(t *testing.T, addr string, cfg *tls.Config) *sink {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := &sink{addr: l.Addr().String()}
	s.l = tapListener{Listener: l, s: s}
	l = s.l
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.test"
	s.srv.TLSConfig = cfg
	s.srv.AllowInsecureAuth = true
	s.srv.EnableDSN = true
	s.srv.EnableSMTPUTF8 = true
	// Killed relays leave reset connections behind; that is the point
	// of those tests, not news.
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	go s.srv.Serve(l)
	t.Cleanup(s.stop)
	return s
}

func (s *sink) stop() { s.srv.Close() }

// sent returns, per connection, the bytes the sink has read so far,
// exactly as its clients sent them (commands and message text,
// dot-stuffing and line ends).
func (s *sink) sent() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, w := range s.wires {
		out = append(out, bytes.Clone(w.Bytes()))
	}
	return out
}

// tapListener records what the sink reads.
type tapListener struct {
	net.Listener
	s *sink
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &bytes.Buffer{}
	l.s.mu.Lock()
	l.s.wires = append(l.s.wires, w)
	l.s.mu.Unlock()
	return tapConn{Conn: c, s: l.s, w: w}, nil
}

type tapConn struct {
	net.Conn
	s *sink
	w *bytes.Buffer
}

func (c tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.mu.Lock()
	c.w.Write(p[:n])
	c.s.mu.Unlock()
	return n, err
}

func (s *sink) setRcpt(f func(string) *smtp.SMTPError) {
	s.mu.Lock()
	s.rcpt = f
	s.mu.Unlock()
}

func (s *sink) received() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.got...)
}

// waitFor waits until n messages have arrived.
func (s *sink) waitFor(t *testing.T, n int, within time.Duration) []sunk {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.received()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink %s got %d messages, want %d", s.addr, len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s   *sink
	cur sunk
}

func (ss *sinkSession) AuthMechanisms() []string { return nil }
func (ss *sinkSession) Auth(string) (any, error) { return nil, smtp.ErrAuthUnsupported }

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.cur = sunk{From: from}
	if opts != nil {
		ss.cur.Mail = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	f := ss.s.rcpt
	ss.s.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	ss.cur.Rcpts = append(ss.cur.Rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.Data = b
	ss.s.mu.Lock()
	ss.s.got = append(ss.s.got, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

func (ss *sinkSession) Reset()        { ss.cur = sunk{} }
func (ss *sinkSession) Logout() error { return nil }

// freeAddr returns a loopback address nobody listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := l.Addr().String()
	l.Close()
	return a
}

// postfixSink runs Postfix's smtp-sink, dumping each message into a file
// under the returned directory.
func postfixSink(t *testing.T) (addr, dir string) {
	t.Helper()
	bin := need(t, "smtp-sink")
	// smtp-sink runs as nobody under root: the dump directory must be
	// reachable by it, which t.TempDir's private parent is not.
	dir, err := os.MkdirTemp("", "smtp-sink-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o777))
	addr = freeAddr(t)
	args := []string{"-d", filepath.Join(dir, "%H%M%S."), addr, "64"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, dir
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink did not start: %v %s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostPort turns "127.0.0.1:2526" into the mailertable form
// "[127.0.0.1]:2526".
func hostPort(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("[%s]:%s", h, p)
}

func maildirFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, string(filepath.Separator)+"new"+string(filepath.Separator)) {
			out = append(out, p)
		}
		return nil
	})
	return out
}
