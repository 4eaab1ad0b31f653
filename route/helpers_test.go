package route

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

var bg = context.Background()

// ---- DNS ----

// startDNS serves DNS for a test on loopback.
func startDNS(t testing.TB) *dnstest.Server { return dnstest.Start(t) }

// addRR adds records in zone-file syntax, one a string.
func addRR(t testing.TB, d *dnstest.Server, records ...string) {
	t.Helper()
	require.NoError(t, d.AddZone(strings.Join(records, "\n")))
}

// testResolver asks d ("127.0.0.1:1", where nothing answers, for nil).
func testResolver(t testing.TB, d *dnstest.Server, cfg resolver.Config) *resolver.Resolver {
	t.Helper()
	cfg.Servers = []string{"127.0.0.1:1"}
	if d != nil {
		cfg.Servers = []string{d.Addr}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	r, err := resolver.New(cfg)
	require.NoError(t, err)
	return r
}

// ---- certificates ----

// testCA makes a self-signed certificate for names (127.0.0.1 included
// as an IP SAN) and a pool that trusts it.
func testCert(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// ---- SMTP sink ----

type received struct {
	From   string
	To     []string
	Data   string
	Mail   smtp.MailOptions
	Rcpt   []smtp.RcptOptions
	TLS    bool
	HELO   string
	Resets int
}

// sinkConfig tunes a test server.
type sinkConfig struct {
	// rcpt answers RCPT; nil accepts.
	rcpt func(to string) error
	// data answers the end of data; nil accepts.
	data func(r *received) error
	// lmtp answers per recipient after data (LMTP only).
	lmtp func(to string) error
	// block, if set, is waited on in Data (a server that hangs).
	block   chan struct{}
	tls     *tls.Config
	dsn     bool
	utf8    bool
	isLMTP  bool
	maxSize int64
	// discard keeps no messages (benchmarks).
	discard    bool
	requireTLS bool
}

// sink is a go-smtp server on loopback that records what it receives.
type sink struct {
	cfg  sinkConfig
	addr string
	port int
	// dial reaches a sink in memory (startPipeSink).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	srv  *smtp.Server
	ln   *countListener
	mu   sync.Mutex
	msgs []received
}

// countListener counts accepted connections and can cut them all.
type countListener struct {
	net.Listener
	accepts atomic.Int64
	mu      sync.Mutex
	conns   []net.Conn
	lines   []string
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.Add(1)
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
		c = &tapConn{Conn: c, l: l}
	}
	return c, err
}

// commands returns the plain-text lines clients sent.
func (l *countListener) commands() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *countListener) count(cmd string) int {
	n := 0
	for _, c := range l.commands() {
		if strings.EqualFold(c, cmd) {
			n++
		}
	}
	return n
}

// tapConn records the lines a client sends.
type tapConn struct {
	net.Conn
	l   *countListener
	buf []byte
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.buf = append(c.buf, p[:n]...)
	for {
		i := bytes.IndexByte(c.buf, '\n')
		if i < 0 {
			break
		}
		c.l.mu.Lock()
		c.l.lines = append(c.l.lines, strings.TrimRight(string(c.buf[:i]), "\r"))
		c.l.mu.Unlock()
		c.buf = c.buf[i+1:]
	}
	return n, err
}

// cut closes every connection accepted so far (a server that dropped its
// idle clients).
func (l *countListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func startSink(t testing.TB, addr string, cfg sinkConfig) *sink {
	t.Helper()
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	l, err := net.Listen(network, addr)
	require.NoError(t, err)
	return serveSink(t, l, cfg)
}

// startPipeSink starts a sink in memory, for tests in a synctest bubble:
// a Transport reaches it at [127.0.0.1]:25 with Dialer s.dial.
func startPipeSink(t testing.TB, cfg sinkConfig) *sink {
	t.Helper()
	l := testutil.NewPipeListener("127.0.0.1:25")
	s := serveSink(t, l, cfg)
	s.dial = l.DialContext
	return s
}

// serveSink serves a sink on l until the test ends.
func serveSink(t testing.TB, l net.Listener, cfg sinkConfig) *sink {
	s := &sink{cfg: cfg, ln: &countListener{Listener: l}, addr: l.Addr().String()}
	if ta, ok := l.Addr().(*net.TCPAddr); ok {
		s.port = ta.Port
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	srv.Domain = "sink.test"
	srv.LMTP = cfg.isLMTP
	srv.TLSConfig = cfg.tls
	srv.EnableDSN = cfg.dsn
	srv.EnableSMTPUTF8 = cfg.utf8
	srv.EnableREQUIRETLS = cfg.requireTLS
	srv.MaxMessageBytes = cfg.maxSize
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = srv
	go srv.Serve(s.ln)
	t.Cleanup(func() {
		if cfg.block != nil {
			select {
			case <-cfg.block:
			default:
				close(cfg.block)
			}
		}
		srv.Close()
	})
	return s
}

func (s *sink) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

func (s *sink) accepts() int64 { return s.ln.accepts.Load() }

type sinkSession struct {
	s   *sink
	c   *smtp.Conn
	cur received
}

func (ss *sinkSession) Reset() { ss.cur = received{} }

func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.cur = received{From: from, HELO: ss.c.Hostname()}
	if opts != nil {
		ss.cur.Mail = *opts
	}
	_, ss.cur.TLS = ss.c.TLSConnectionState()
	return nil
}

func (ss *sinkSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.s.cfg.rcpt != nil {
		if err := ss.s.cfg.rcpt(to); err != nil {
			return err
		}
	}
	ss.cur.To = append(ss.cur.To, to)
	if opts != nil {
		ss.cur.Rcpt = append(ss.cur.Rcpt, *opts)
	} else {
		ss.cur.Rcpt = append(ss.cur.Rcpt, smtp.RcptOptions{})
	}
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.cfg.block != nil {
		<-ss.s.cfg.block
		return errors.New("too late")
	}
	ss.cur.Data = string(b)
	if ss.s.cfg.data != nil {
		if err := ss.s.cfg.data(&ss.cur); err != nil {
			return err
		}
	}
	if !ss.s.cfg.discard {
		ss.s.mu.Lock()
		ss.s.msgs = append(ss.s.msgs, ss.cur)
		ss.s.mu.Unlock()
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as SINK1"}
}

func (ss *sinkSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.Data = string(b)
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	ss.s.mu.Unlock()
	for _, to := range ss.cur.To {
		var e error
		if ss.s.cfg.lmtp != nil {
			e = ss.s.cfg.lmtp(to)
		}
		status.SetStatus(to, e)
	}
	return nil
}

func smtpErr(code int, esc [3]int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(esc), Message: msg}
}

// ---- misbehaving servers ----

// rawServer accepts connections and runs script on each.
func rawServer(t testing.TB, addr string, script func(c net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	return l.Addr().String(), serveRaw(t, l, script)
}

// serveRaw runs script on every connection l accepts until the test ends,
// and counts them.
func serveRaw(t testing.TB, l net.Listener, script func(c net.Conn)) *atomic.Int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			wg.Go(func() {
				defer c.Close()
				stop := context.AfterFunc(ctxFromDone(done), func() { c.Close() })
				defer stop()
				script(c)
			})
		}
	}()
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	return &n
}

func ctxFromDone(done chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-done; cancel() }()
	return ctx
}

// readLine reads one command line from a raw client.
func readLine(c net.Conn) (string, error) {
	var b bytes.Buffer
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return b.String(), err
		}
		if one[0] == '\n' {
			return strings.TrimRight(b.String(), "\r"), nil
		}
		b.WriteByte(one[0])
	}
}

// scriptedSMTP answers like a server until a command starts with
// failAt, and then runs bad.
func scriptedSMTP(failAt string, bad func(c net.Conn)) func(c net.Conn) {
	return func(c net.Conn) {
		io.WriteString(c, "220 raw.test ESMTP\r\n")
		for {
			line, err := readLine(c)
			if err != nil {
				return
			}
			if failAt != "" && strings.HasPrefix(strings.ToUpper(line), failAt) {
				bad(c)
				return
			}
			switch {
			case strings.HasPrefix(strings.ToUpper(line), "EHLO"):
				io.WriteString(c, "250-raw.test\r\n250 8BITMIME\r\n")
			case strings.HasPrefix(strings.ToUpper(line), "QUIT"):
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				io.WriteString(c, "250 ok\r\n")
			}
		}
	}
}

// ---- deliveries ----

const testMessage = "From: a@sender.test\r\nTo: b@example.net\r\nSubject: test\r\n\r\nHello.\r\n"

func delivery(from string, rcpts ...string) *queue.Delivery {
	d := &queue.Delivery{ID: "Q1", Envelope: &queue.Envelope{From: from}, Attempt: 1,
		Message: strings.NewReader(testMessage), Size: int64(len(testMessage))}
	for _, r := range rcpts {
		d.Recipients = append(d.Recipients, queue.Recipient{Addr: r})
	}
	d.Envelope.Recipients = d.Recipients
	return d
}

func mustTable(t testing.TB, text string) *Table {
	t.Helper()
	tb, err := ParseMailertable(strings.NewReader(text), "mailertable")
	require.NoError(t, err)
	return tb
}

// hostPort returns "[host]:port" mailertable syntax for a listener
// address.
func hostPort(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return "[" + h + "]:" + p
}

// freePortOn returns a port free on every one of the loopback addresses.
func freePortOn(t testing.TB, ips ...string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", ips[0]+":0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		var others []net.Listener
		for _, ip := range ips[1:] {
			o, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			others = append(others, o)
		}
		l.Close()
		for _, o := range others {
			o.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no common free port")
	return 0
}
