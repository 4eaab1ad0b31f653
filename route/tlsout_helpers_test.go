package route

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/tlsrpt"
)

// testCA is a certificate authority for a test: the pool trusting it,
// and certificates it issues.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	n    atomic.Int64
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Postern Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	ca := &testCA{cert: c, key: key, pool: pool}
	ca.n.Store(1)
	return ca
}

// issue makes a server certificate for names, valid from now-1h for d.
func (ca *testCA) issue(t testing.TB, d time.Duration, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.n.Add(1)), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(d),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// ---- a smart host that wants a login ----

// authServer is a go-smtp server that requires STARTTLS before AUTH and
// AUTH before MAIL, as a provider's submission service does.
type authServer struct {
	addr  string
	ln    *countListener
	raw   *rawTap
	user  string
	pass  string
	mechs []string
	mu    sync.Mutex
	msgs  []received
	users []string // who sent each message
	mails atomic.Int64
}

// rawTap keeps every byte a client sent, to prove what went in clear.
type rawTap struct {
	mu  sync.Mutex
	buf []byte
}

func (r *rawTap) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}

type rawListener struct {
	net.Listener
	tap *rawTap
}

func (l *rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return &rawConn{Conn: c, tap: l.tap}, nil
}

type rawConn struct {
	net.Conn
	tap *rawTap
}

func (c *rawConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.tap.mu.Lock()
	c.tap.buf = append(c.tap.buf, p[:n]...)
	c.tap.mu.Unlock()
	return n, err
}

func startAuthServer(t testing.TB, cert *tls.Certificate, user, pass string, mechs ...string) *authServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := &authServer{user: user, pass: pass, mechs: mechs, raw: &rawTap{}}
	a.ln = &countListener{Listener: &rawListener{Listener: l, tap: a.raw}}
	a.addr = l.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &authSession{a: a, c: c}, nil }))
	srv.Domain = "smarthost.test"
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	} else {
		srv.AllowInsecureAuth = true
	}
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(a.ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

func (a *authServer) messages() ([]received, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]received(nil), a.msgs...), append([]string(nil), a.users...)
}

type authSession struct {
	a    *authServer
	c    *smtp.Conn
	user string
	cur  received
}

func (s *authSession) AuthMechanisms() []string { return s.a.mechs }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != s.a.user || pass != s.a.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return errors.New("identity mismatch")
			}
			return check(user, pass)
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// xoauth2Server reads an XOAUTH2 initial response.
type xoauth2Server struct {
	check func(user, token string) error
	done  bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.done {
		return nil, true, errors.New("xoauth2: unexpected response")
	}
	x.done = true
	f := strings.Split(string(resp), "\x01")
	if len(f) < 2 || !strings.HasPrefix(f[0], "user=") || !strings.HasPrefix(f[1], "auth=Bearer ") {
		return nil, true, errors.New("xoauth2: malformed")
	}
	return nil, true, x.check(strings.TrimPrefix(f[0], "user="), strings.TrimPrefix(f[1], "auth=Bearer "))
}

func (s *authSession) Mail(from string, _ *smtp.MailOptions) error {
	s.a.mails.Add(1)
	if s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.cur = received{From: from}
	_, s.cur.TLS = s.c.TLSConnectionState()
	return nil
}

func (s *authSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *authSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = string(b)
	s.a.mu.Lock()
	s.a.msgs = append(s.a.msgs, s.cur)
	s.a.users = append(s.a.users, s.user)
	s.a.mu.Unlock()
	return nil
}

func (s *authSession) Reset()        { s.cur = received{} }
func (s *authSession) Logout() error { return nil }

// ---- TLS-RPT results ----

type rptLog struct {
	mu  sync.Mutex
	res []tlsrpt.Result
}

func (r *rptLog) Record(x tlsrpt.Result) { r.mu.Lock(); r.res = append(r.res, x); r.mu.Unlock() }

func (r *rptLog) all() []tlsrpt.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tlsrpt.Result(nil), r.res...)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// reportOf returns the JSON of a TLS-RPT mail.
func reportOf(t *testing.T, msg []byte) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	require.NoError(t, err)
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		require.NoError(t, err)
		if p.Header.Get("Content-Type") == "application/tlsrpt+gzip" {
			zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
			require.NoError(t, err)
			js, err := io.ReadAll(zr)
			require.NoError(t, err)
			return js
		}
	}
}
