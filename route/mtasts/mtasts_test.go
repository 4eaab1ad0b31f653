package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

const enforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: *.mx.example.net\r\nmax_age: 86400\r\n"

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(enforce)
	require.NoError(t, err)
	assert.Equal(t, ModeEnforce, p.Mode)
	assert.Equal(t, []string{"mx1.example.net", "*.mx.example.net"}, p.MX)
	assert.Equal(t, 24*time.Hour, p.MaxAge)
	assert.Equal(t, []string{"version: STSv1", "mode: enforce", "mx: mx1.example.net", "mx: *.mx.example.net", "max_age: 86400"}, p.Lines())

	p, err = ParsePolicy("version: STSv1\nmode: none\nmax_age: 0\nextension: ignored\n")
	require.NoError(t, err)
	assert.Equal(t, ModeNone, p.Mode)

	p, err = ParsePolicy("version: STSv1\nmode: testing\nmode: enforce\nmx: MX.Example.NET.\nmax_age:31557600")
	require.NoError(t, err)
	assert.Equal(t, ModeTesting, p.Mode, "the first of a repeated key counts")
	assert.Equal(t, []string{"mx.example.net"}, p.MX)

	for _, bad := range []string{
		"",
		"mode: enforce\nmx: a.example\nmax_age: 1\n",                 // no version
		"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", // version
		"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",  // mode
		"version: STSv1\nmode: enforce\nmax_age: 1\n",                // no mx
		"version: STSv1\nmode: enforce\nmx: a.example\n",             // no max_age
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
		"version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a b.example\nmax_age: 1\n",
		"version: STSv1\nno colon here\n",
	} {
		_, err := ParsePolicy(bad)
		assert.ErrorIs(t, err, ErrSyntax, "%q", bad)
	}
}

func TestParseRecord(t *testing.T) {
	r, err := ParseRecord("v=STSv1; id=20160831085700Z;")
	require.NoError(t, err)
	assert.Equal(t, "20160831085700Z", r.ID)
	r, err = ParseRecord("v=STSv1;id=abc; ext=1")
	require.NoError(t, err)
	assert.Equal(t, "abc", r.ID)
	for _, bad := range []string{"", "v=STSv2; id=1", "id=1; v=STSv1", "v=STSv1", "v=STSv1; id=", "v=STSv1; id=a-b",
		"v=STSv1; id=" + strings.Repeat("a", 33), "v=STSv1; junk"} {
		_, err := ParseRecord(bad)
		assert.ErrorIs(t, err, ErrSyntax, "%q", bad)
	}
}

func TestMatchMX(t *testing.T) {
	p, err := ParsePolicy(enforce)
	require.NoError(t, err)
	for host, ok := range map[string]bool{"mx1.example.net": true, "MX1.example.net.": true, "a.mx.example.net": true,
		"mx.example.net": false, "a.b.mx.example.net": false, "mx2.example.net": false, "example.net": false} {
		assert.Equal(t, ok, p.MatchMX(host), host)
	}
}

// policyServer is an HTTPS policy host for domain on loopback, with a
// certificate for mta-sts.<domain> from a CA the returned pool trusts.
type policyServer struct {
	srv   *httptest.Server
	pool  *x509.CertPool
	hits  atomic.Int64
	mu    sync.Mutex
	reply func(w http.ResponseWriter)
}

func newPolicyServer(t *testing.T, certName string, body string) *policyServer {
	t.Helper()
	ps := &policyServer{}
	ps.set(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(body))
	})
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		ps.hits.Add(1)
		ps.mu.Lock()
		f := ps.reply
		ps.mu.Unlock()
		f(w)
	}))
	cert, pool := testCert(t, certName)
	ps.pool = pool
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *policyServer) set(f func(w http.ResponseWriter)) {
	ps.mu.Lock()
	ps.reply = f
	ps.mu.Unlock()
}

func (ps *policyServer) port() uint16 {
	return uint16(ps.srv.Listener.Addr().(*net.TCPAddr).Port)
}

func testCert(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, pool
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClient(t *testing.T, srv *dnstest.Server, ps *policyServer, dir string, clk *clock) *Client {
	t.Helper()
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, CacheSize: -1, Attempts: 1, Timeout: time.Second})
	require.NoError(t, err)
	c, err := New(Config{Resolver: res, CacheDir: dir, RootCAs: ps.pool, Port: ps.port(), Now: clk.now, FetchTimeout: 5 * time.Second})
	require.NoError(t, err)
	return c
}

func TestGetAndCache(t *testing.T) {
	ctx := context.Background()
	srv := dnstest.Start(t, "mta-sts.example.net. A 127.0.0.1\n")
	srv.AddTXT("_mta-sts.example.net", "v=STSv1; id=1;")
	ps := newPolicyServer(t, "mta-sts.example.net", enforce)
	clk := &clock{t: time.Now()}
	dir := t.TempDir()
	c := newClient(t, srv, ps, dir, clk)

	r := c.Get(ctx, "Example.NET.")
	require.NotNil(t, r.Policy, "%v", r.Err)
	assert.Equal(t, ModeEnforce, r.Policy.Mode)
	assert.Equal(t, "1", r.Policy.ID)
	assert.False(t, r.Cached)
	assert.EqualValues(t, 1, ps.hits.Load())

	r = c.Get(ctx, "example.net")
	assert.True(t, r.Cached, "same id: no fetch")
	assert.EqualValues(t, 1, ps.hits.Load())

	// A restart: a new client on the same directory knows the policy.
	c = newClient(t, srv, ps, dir, clk)
	r = c.Get(ctx, "example.net")
	require.NotNil(t, r.Policy)
	assert.True(t, r.Cached)
	assert.EqualValues(t, 1, ps.hits.Load())

	// DNS fails, then the record vanishes: the cached policy stays in force.
	srv.Set("_mta-sts.example.net", dns.TypeTXT, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	r = c.Get(ctx, "example.net")
	require.NotNil(t, r.Policy)
	assert.True(t, r.Cached)
	assert.Error(t, r.Err)
	srv.Set("_mta-sts.example.net", dns.TypeTXT, dnstest.Reply{})
	srv.Remove("_mta-sts.example.net", dns.TypeTXT)
	r = c.Get(ctx, "example.net")
	require.NotNil(t, r.Policy, "no record: the cached policy until it expires")

	// A new id fetches the new policy; a failed fetch keeps the old.
	srv.AddTXT("_mta-sts.example.net", "v=STSv1; id=2;")
	ps.set(func(w http.ResponseWriter) { http.Error(w, "down", http.StatusInternalServerError) })
	r = c.Get(ctx, "example.net")
	require.NotNil(t, r.Policy)
	assert.Equal(t, "1", r.Policy.ID)
	assert.Error(t, r.Err)
	ps.set(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(strings.Replace(enforce, "enforce", "testing", 1)))
	})
	r = c.Get(ctx, "example.net")
	require.NotNil(t, r.Policy)
	assert.Equal(t, "2", r.Policy.ID)
	assert.Equal(t, ModeTesting, r.Policy.Mode)

	// Past max_age a policy is gone; discovery failing then leaves none.
	clk.add(25 * time.Hour)
	ps.set(func(w http.ResponseWriter) { http.Error(w, "down", http.StatusServiceUnavailable) })
	r = c.Get(ctx, "example.net")
	assert.Nil(t, r.Policy, "an expired policy is never used")
	assert.Equal(t, FailureFetch, r.Failure)
	assert.Nil(t, c.Cached("example.net"))
}

func TestGetFailures(t *testing.T) {
	ctx := context.Background()
	srv := dnstest.Start(t, "mta-sts.example.net. A 127.0.0.1\n")
	srv.AddTXT("_mta-sts.example.net", "v=STSv1; id=1;")
	for _, tc := range []struct {
		name, certName string
		reply          func(w http.ResponseWriter)
		failure        string
	}{
		{"redirect", "mta-sts.example.net", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example/policy")
			w.WriteHeader(http.StatusFound)
		}, FailureFetch},
		{"media type", "mta-sts.example.net", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(enforce))
		}, FailureInvalid},
		{"too large", "mta-sts.example.net", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(enforce + strings.Repeat("x: y\n", MaxPolicySize/5+1)))
		}, FailureInvalid},
		{"syntax", "mta-sts.example.net", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("version: STSv1\nmode: sometimes\n"))
		}, FailureInvalid},
		{"certificate for another name", "www.example.net", nil, FailureWebPKI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := newPolicyServer(t, tc.certName, enforce)
			if tc.reply != nil {
				ps.set(tc.reply)
			}
			c := newClient(t, srv, ps, "", &clock{t: time.Now()})
			r := c.Get(ctx, "example.net")
			assert.Nil(t, r.Policy)
			assert.Equal(t, tc.failure, r.Failure, "%v", r.Err)
		})
	}

	// Two v=STSv1 records: no policy, nothing fetched (RFC 8461 §3.1).
	srv.AddTXT("_mta-sts.example.net", "v=STSv1; id=2;")
	ps := newPolicyServer(t, "mta-sts.example.net", enforce)
	r := newClient(t, srv, ps, "", &clock{t: time.Now()}).Get(ctx, "example.net")
	assert.Nil(t, r.Policy)
	assert.Zero(t, ps.hits.Load())
}
