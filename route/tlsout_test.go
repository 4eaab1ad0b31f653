package route

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/dane"
	"github.com/postern/postern/route/mtasts"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
	"github.com/postern/postern/route/tlsrpt"
)

// tlsMX serves domain with MX mx.<domain> at 192.0.2.<n>, which
// testNetDialer reaches at 127.0.0.<n>:port, where a sink with cert (or
// without TLS for nil) listens.
func tlsMX(t *testing.T, d *dnstest.Server, port int, domain string, n int, cert *tls.Certificate) *sink {
	t.Helper()
	addRR(t, d, domain+". 300 IN MX 10 mx."+domain+".", "mx."+domain+". 300 IN A 192.0.2."+strconv.Itoa(n))
	cfg := sinkConfig{}
	if cert != nil {
		cfg.tls = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	return startSink(t, net.JoinHostPort("127.0.0."+strconv.Itoa(n), strconv.Itoa(port)), cfg)
}

func mxTransport(t *testing.T, d *dnstest.Server, port int, trustAD bool, cfg TransportConfig) *Transport {
	t.Helper()
	res := testResolver(t, d, resolver.Config{TrustAD: trustAD})
	r := newTestRouter(t, d, RouterConfig{Resolver: res, Port: uint16(port)})
	cfg.Dialer = testNetDialer
	return newTestTransport(t, r, cfg)
}

// DANE: a validating resolver (AD) and a TLSA 3 1 1 record of the MX's
// key: delivered, authenticated; a record of another key: deferred with
// the reason; an unsigned zone, or a resolver not trusted: opportunistic.
func TestDANE(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, time24h, "mx.signed.example")
	other := ca.issue(t, time24h, "other.example")
	port := freePortOn(t, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
	d := startDNS(t)
	good := tlsMX(t, d, port, "signed.example", 2, &cert)
	bad := tlsMX(t, d, port, "wrongkey.signed.example", 3, &cert)
	plain := tlsMX(t, d, port, "unsigned.example", 4, &cert)
	tlsMX(t, d, port, "bogus.signed.example", 5, &cert)
	tlsa := func(host string, c tls.Certificate) string {
		return "_" + strconv.Itoa(port) + "._tcp." + host + ". 300 IN TLSA " + dane.NewRecord(c.Leaf, 3, 1, 1).String()
	}
	addRR(t, d, tlsa("mx.signed.example", cert), tlsa("mx.wrongkey.signed.example", other), tlsa("mx.unsigned.example", cert))
	d.Secure("signed.example")
	d.Set("_"+strconv.Itoa(port)+"._tcp.mx.bogus.signed.example", dns.TypeTLSA, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	rpt := &rptLog{}
	tr := mxTransport(t, d, port, true, TransportConfig{TLS: TLSDane, TLSReporter: rpt})

	res := tr.Deliver(bg, delivery("a@sender.test", "b@signed.example"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, "TLS 1.3 authenticated by DANE", res[0].TLS)
	require.Len(t, good.messages(), 1)

	res = tr.Deliver(bg, delivery("a@sender.test", "b@wrongkey.signed.example"))
	assert.Equal(t, 451, res[0].Reply.Code)
	assert.Equal(t, "4.7.5", res[0].Reply.Enhanced.String())
	assert.Contains(t, res[0].Reply.Text(), "does not meet DANE: dane: no TLSA record matches")
	assert.Empty(t, bad.messages())

	res = tr.Deliver(bg, delivery("a@sender.test", "b@bogus.signed.example"))
	assert.Equal(t, 451, res[0].Reply.Code)
	assert.Contains(t, res[0].Reply.Text(), "TLSA lookup for mx.bogus.signed.example failed, so it is not used")

	res = tr.Deliver(bg, delivery("a@sender.test", "b@unsigned.example"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, "TLS 1.3 unverified", res[0].TLS, "no AD: opportunistic")
	assert.Len(t, plain.messages(), 1)

	untrusted := mxTransport(t, d, port, false, TransportConfig{TLS: TLSDane})
	res = untrusted.Deliver(bg, delivery("a@sender.test", "b@wrongkey.signed.example"))
	require.Equal(t, 250, res[0].Reply.Code, "an AD bit not trusted is not believed: %s", res[0].Reply.Error())
	assert.Equal(t, "TLS 1.3 unverified", res[0].TLS)

	var kinds []string
	for _, r := range rpt.all() {
		kinds = append(kinds, r.Domain+" "+r.PolicyType+" "+r.Failure)
	}
	assert.Equal(t, []string{"signed.example tlsa ", "wrongkey.signed.example tlsa tlsa-invalid",
		"bogus.signed.example no-policy-found dnssec-invalid", "unsigned.example no-policy-found "}, kinds)
}

// stsServer serves MTA-STS policies by host name over HTTPS on
// loopback, with a certificate from ca.
func stsServer(t *testing.T, ca *testCA, policies map[string]string) *httptest.Server {
	t.Helper()
	var names []string
	for d := range policies {
		names = append(names, "mta-sts."+d)
	}
	cert := ca.issue(t, time24h, names...)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		p, ok := policies[strings.TrimPrefix(host, "mta-sts.")]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(p))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func stsPolicy(mode, mx string) string {
	return "version: STSv1\nmode: " + mode + "\nmx: " + mx + "\nmax_age: 86400\n"
}

// MTA-STS: enforce with an MX certificate no trusted CA issued:
// deferred; enforce with a good one: delivered, verified; testing with
// the bad one: delivered, and counted as a failure in the TLS-RPT
// report, which a validator accepts.
func TestMTASTS(t *testing.T) {
	ca := newTestCA(t)
	rogue := newTestCA(t)
	port := freePortOn(t, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
	d := startDNS(t)
	good := tlsMX(t, d, port, "good.example", 2, ptr(ca.issue(t, time24h, "mx.good.example")))
	bad := tlsMX(t, d, port, "bad.example", 3, ptr(rogue.issue(t, time24h, "mx.bad.example")))
	testing := tlsMX(t, d, port, "testing.example", 4, ptr(rogue.issue(t, time24h, "mx.testing.example")))
	unlisted := tlsMX(t, d, port, "unlisted.example", 5, ptr(ca.issue(t, time24h, "mx.unlisted.example")))
	policies := map[string]string{"good.example": stsPolicy("enforce", "mx.good.example"), "bad.example": stsPolicy("enforce", "mx.bad.example"),
		"testing.example": stsPolicy("testing", "*.testing.example"), "unlisted.example": stsPolicy("enforce", "mail.unlisted.example")}
	hs := stsServer(t, ca, policies)
	for dom := range policies {
		addRR(t, d, "mta-sts."+dom+". 300 IN A 127.0.0.1")
		d.AddTXT("_mta-sts."+dom, "v=STSv1; id=2026120801;")
	}
	res := testResolver(t, d, resolver.Config{})
	stsClient, err := mtasts.New(mtasts.Config{Resolver: res, RootCAs: ca.pool, Port: uint16(hs.Listener.Addr().(*net.TCPAddr).Port), CacheDir: t.TempDir()})
	require.NoError(t, err)
	day := time.Now().UTC()
	rptDir := t.TempDir()
	var mu sync.Mutex
	var reports [][]byte
	d.AddTXT("_smtp._tls.testing.example", "v=TLSRPTv1; rua=mailto:tlsrpt@testing.example")
	reporter, err := tlsrpt.New(tlsrpt.Config{Dir: rptDir, Resolver: res, From: "tlsrpt@relay.test", Submitter: "relay.test",
		Submit: func(_ context.Context, _ string, _ []string, msg []byte) error {
			mu.Lock()
			reports = append(reports, msg)
			mu.Unlock()
			return nil
		}})
	require.NoError(t, err)
	r := newTestRouter(t, d, RouterConfig{Resolver: res, Port: uint16(port)})
	tr := newTestTransport(t, r, TransportConfig{Dialer: testNetDialer, MTASTS: stsClient, TLSReporter: reporter,
		TLSConfig: &tls.Config{RootCAs: ca.pool}})

	out := tr.Deliver(bg, delivery("a@sender.test", "b@bad.example"))
	assert.Equal(t, 451, out[0].Reply.Code)
	assert.Equal(t, "4.7.5", out[0].Reply.Enhanced.String())
	assert.Contains(t, out[0].Reply.Text(), "does not meet the MTA-STS policy of bad.example: x509: certificate signed by unknown authority")
	assert.Empty(t, bad.messages())

	out = tr.Deliver(bg, delivery("a@sender.test", "b@good.example"))
	require.Equal(t, 250, out[0].Reply.Code, out[0].Reply.Error())
	assert.Equal(t, "TLS 1.3 verified by MTA-STS (good.example)", out[0].TLS)
	assert.Len(t, good.messages(), 1)

	out = tr.Deliver(bg, delivery("a@sender.test", "b@unlisted.example"))
	assert.Equal(t, "451 4.7.5 MX host mx.unlisted.example is not listed in the MTA-STS policy of unlisted.example", out[0].Reply.Error())
	assert.Empty(t, unlisted.messages())

	out = tr.Deliver(bg, delivery("a@sender.test", "b@testing.example"))
	require.Equal(t, 250, out[0].Reply.Code, out[0].Reply.Error())
	assert.Contains(t, out[0].TLS, "unverified (MTA-STS testing: x509: certificate signed by unknown authority")
	assert.Len(t, testing.messages(), 1)

	require.NoError(t, reporter.Send(bg, day))
	require.Len(t, reports, 1, "only testing.example asks for reports")
	js := reportOf(t, reports[0])
	require.NoError(t, tlsrpt.Validate(js))
	var rep tlsrpt.Report
	require.NoError(t, jsonUnmarshal(js, &rep))
	require.Len(t, rep.Policies, 1)
	p := rep.Policies[0]
	assert.Equal(t, tlsrpt.PolicyDesc{Type: "sts", Domain: "testing.example", MXHost: []string{"*.testing.example"},
		Strings: []string{"version: STSv1", "mode: testing", "mx: *.testing.example", "max_age: 86400"}}, p.Policy)
	assert.Equal(t, tlsrpt.Summary{Successful: 0, Failure: 1}, p.Summary)
	require.Len(t, p.FailureDetails, 1)
	assert.Equal(t, tlsrpt.ResultCertificateNotTrusted, p.FailureDetails[0].ResultType)
	assert.Equal(t, "mx.testing.example", p.FailureDetails[0].ReceivingMXHostname)
	assert.Equal(t, "192.0.2.4", p.FailureDetails[0].ReceivingIP)
}

func ptr[T any](v T) *T { return &v }

// A Postfix policy map read unchanged, each level exercised against
// real sessions.
func TestTLSPolicyMapLevels(t *testing.T) {
	ca := newTestCA(t)
	port := freePortOn(t, "127.0.0.2", "127.0.0.3")
	d := startDNS(t)
	names := []string{"mx.none.example", "mx.may.example", "mx.verify.example", "mx.secure.example", "mx.dane.example", "mx.daneonly.example"}
	tlsSink := startSink(t, net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), sinkConfig{tls: &tls.Config{Certificates: []tls.Certificate{ca.issue(t, time24h, names...)}}})
	plainSink := startSink(t, net.JoinHostPort("127.0.0.3", strconv.Itoa(port)), sinkConfig{})
	for _, n := range []string{"none", "may", "verify", "secure", "dane", "daneonly"} {
		addRR(t, d, n+".example. 300 IN MX 10 mx."+n+".example.", "mx."+n+".example. 300 IN A 192.0.2.2")
	}
	// badsecure.example's MX is a host whose certificate is valid, but
	// not under badsecure.example: verify would pass, secure must not.
	addRR(t, d, "badsecure.example. 300 IN MX 10 mx.verify.example.", "encrypt.example. 300 IN MX 10 mx.encrypt.example.",
		"mx.encrypt.example. 300 IN A 192.0.2.3")
	m, err := ParseTLSPolicyMap(strings.NewReader(`# Postfix smtp_tls_policy_maps
none.example       none
may.example        may
encrypt.example    encrypt
verify.example     verify
secure.example     secure
badsecure.example  secure
dane.example       dane
daneonly.example   dane-only
`), "tls_policy")
	require.NoError(t, err)
	tr := mxTransport(t, d, port, true, TransportConfig{TLSPolicies: m, TLSConfig: &tls.Config{RootCAs: ca.pool}})
	for _, tc := range []struct {
		domain string
		reply  string
		tls    string
	}{
		{"none.example", "250", "none"},
		{"may.example", "250", "TLS 1.3 unverified"},
		{"encrypt.example", "451 4.7.4 TLS is required by TLS level encrypt (policy map), but was not offered", ""},
		{"verify.example", "250", "TLS 1.3 verified (verify, policy map)"},
		{"secure.example", "250", "TLS 1.3 verified (secure, policy map)"},
		{"badsecure.example", "451 4.7.5 TLS with mx.verify.example[192.0.2.2]:" + strconv.Itoa(port) + " does not meet TLS level secure (policy map): certificate name does not match", ""},
		{"dane.example", "250", "TLS 1.3 unverified"},
		{"daneonly.example", "451 4.7.5 no DNSSEC-validated TLSA records for mx.daneonly.example, and the TLS level is dane-only", ""},
	} {
		res := tr.Deliver(bg, delivery("a@sender.test", "b@"+tc.domain))
		assert.True(t, strings.HasPrefix(res[0].Reply.Error(), tc.reply), "%s: %s", tc.domain, res[0].Reply.Error())
		assert.Equal(t, tc.tls, res[0].TLS, tc.domain)
	}
	got := map[string]bool{}
	for _, msg := range tlsSink.messages() {
		got[strings.TrimPrefix(msg.To[0], "b@")] = msg.TLS
	}
	assert.Equal(t, map[string]bool{"none.example": false, "may.example": true, "verify.example": true, "secure.example": true, "dane.example": true}, got)
	assert.Empty(t, plainSink.messages())
}

// A TLS report goes despite the policy (RFC 8460 §3) and is not
// reported itself.
func TestTLSReportIgnoresPolicy(t *testing.T) {
	port := freePortOn(t, "127.0.0.3")
	d := startDNS(t)
	sk := tlsMX(t, d, port, "encrypt.example", 3, nil)
	m, err := ParseTLSPolicyMap(strings.NewReader("encrypt.example encrypt\n"), "tls_policy")
	require.NoError(t, err)
	rpt := &rptLog{}
	tr := mxTransport(t, d, port, false, TransportConfig{TLSPolicies: m, TLSReporter: rpt})
	dl := delivery("tlsrpt@relay.test", "tlsrpt@encrypt.example")
	dl.Envelope.TLSReport = true
	res := tr.Deliver(bg, dl)
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Len(t, sk.messages(), 1)
	assert.Empty(t, rpt.all())
}
