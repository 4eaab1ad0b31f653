package dane

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

func TestParseRecord(t *testing.T) {
	r, err := ParseRecord("3 1 1 0102030405060708090a0b0c0d0e0f10 1112131415161718191a1b1c1d1e1f20")
	require.NoError(t, err)
	assert.Equal(t, Record{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
		17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}}, r)
	assert.True(t, r.Usable())
	assert.Equal(t, "3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", r.String())
	for _, bad := range []string{"", "3 1 1", "3 1 1 zz", "256 1 1 00", "-1 1 1 00", "3 1 x 00", "3 1 1 0"} {
		_, err := ParseRecord(bad)
		assert.ErrorIs(t, err, ErrSyntax, bad)
	}
}

func TestUsable(t *testing.T) {
	d32, d64 := make([]byte, 32), make([]byte, 64)
	for _, tc := range []struct {
		r  Record
		ok bool
	}{
		{Record{3, 1, 1, d32}, true},
		{Record{2, 0, 2, d64}, true},
		{Record{3, 0, 0, []byte{1}}, true},
		{Record{1, 1, 1, d32}, false}, // PKIX-EE: not for SMTP
		{Record{0, 0, 1, d32}, false}, // PKIX-TA
		{Record{4, 1, 1, d32}, false},
		{Record{3, 2, 1, d32}, false},
		{Record{3, 1, 3, d32}, false},
		{Record{3, 1, 1, d64}, false}, // wrong digest length
		{Record{3, 1, 2, d32}, false},
		{Record{3, 1, 0, nil}, false},
	} {
		assert.Equal(t, tc.ok, tc.r.Usable(), "%v", tc.r)
	}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	good := newPKI(t, now.Add(-time.Hour), now.Add(time.Hour), "mx.example.net")
	expired := newPKI(t, now.Add(-72*time.Hour), now.Add(-48*time.Hour), "mx.example.net")
	other := newPKI(t, now.Add(-time.Hour), now.Add(time.Hour), "mx.example.net")
	names := []string{"mx.example.net"}

	for _, tc := range []struct {
		name    string
		chain   []*x509.Certificate
		records []Record
		names   []string
		err     error
	}{
		{"EE 3 1 1", good.chain(), []Record{NewRecord(good.leaf, 3, 1, 1)}, names, nil},
		{"EE 3 0 1", good.chain(), []Record{NewRecord(good.leaf, 3, 0, 1)}, names, nil},
		{"EE 3 1 2", good.chain(), []Record{NewRecord(good.leaf, 3, 1, 2)}, names, nil},
		{"EE 3 0 0", good.chain(), []Record{NewRecord(good.leaf, 3, 0, 0)}, names, nil},
		{"EE ignores names", good.chain(), []Record{NewRecord(good.leaf, 3, 1, 1)}, []string{"elsewhere.example"}, nil},
		{"EE ignores expiry", expired.chain(), []Record{NewRecord(expired.leaf, 3, 1, 1)}, names, nil},
		{"EE of another key", good.chain(), []Record{NewRecord(other.leaf, 3, 1, 1)}, names, ErrNoMatch},
		{"one of several", good.chain(), []Record{NewRecord(other.leaf, 3, 1, 1), NewRecord(good.leaf, 3, 1, 1)}, names, nil},
		{"TA 2 0 1", good.chain(), []Record{NewRecord(good.ca, 2, 0, 1)}, names, nil},
		{"TA 2 1 1", good.chain(), []Record{NewRecord(good.ca, 2, 1, 1)}, names, nil},
		{"TA checks names", good.chain(), []Record{NewRecord(good.ca, 2, 0, 1)}, []string{"mx.other.example"}, ErrName},
		{"TA dot name", good.chain(), []Record{NewRecord(good.ca, 2, 0, 1)}, []string{".example.net"}, nil},
		{"TA checks expiry", expired.chain(), []Record{NewRecord(expired.ca, 2, 0, 1)}, names, ErrExpired},
		{"TA of another CA", good.chain(), []Record{NewRecord(other.ca, 2, 0, 1)}, names, ErrNoMatch},
		{"TA not in the chain", []*x509.Certificate{good.leaf}, []Record{NewRecord(good.ca, 2, 0, 1)}, names, ErrNoMatch},
		{"another CA's chain", []*x509.Certificate{good.leaf, other.ca}, []Record{NewRecord(other.ca, 2, 0, 1)}, names, ErrNoMatch},
		{"PKIX-EE ignored", good.chain(), []Record{NewRecord(good.leaf, 1, 1, 1)}, names, ErrNoMatch},
		{"no records", good.chain(), nil, names, ErrNoMatch},
		{"no chain", nil, []Record{NewRecord(good.leaf, 3, 1, 1)}, names, ErrNoChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.chain, tc.records, tc.names, now)
			if tc.err == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tc.err)
			}
		})
	}
}

func TestMatchName(t *testing.T) {
	cert := func(cn string, names ...string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: names}
	}
	for _, tc := range []struct {
		cert *x509.Certificate
		refs []string
		ok   bool
	}{
		{cert("x", "mx.example.com"), []string{"MX.Example.COM."}, true},
		{cert("x", "mx.example.com"), []string{"example.com"}, false},
		{cert("x", "mx.example.com"), []string{".example.com"}, true},
		{cert("x", "example.com"), []string{".example.com"}, false},
		{cert("x", "*.example.com"), []string{"mx.example.com"}, true},
		{cert("x", "*.example.com"), []string{"a.mx.example.com"}, false},
		{cert("x", "*.example.com"), []string{"example.com"}, false},
		{cert("x", "*.example.com"), []string{".example.com"}, true},
		{cert("x", "*.com"), []string{"example.com"}, false},
		{cert("x", "m*.example.com"), []string{"mx.example.com"}, false},
		{cert("mx.example.com"), []string{"mx.example.com"}, true},                   // CN without SANs
		{cert("mx.example.com", "other.example"), []string{"mx.example.com"}, false}, // CN ignored with SANs
		{cert("x", "mx.example.com"), []string{"", ".", "a.example", "mx.example.com"}, true},
		{nil, []string{"mx.example.com"}, false},
	} {
		assert.Equal(t, tc.ok, MatchName(tc.cert, tc.refs), "%v %v", tc.cert, tc.refs)
	}
}

func dnsResolver(t *testing.T, srv *dnstest.Server, trust bool) *resolver.Resolver {
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, TrustAD: trust, Timeout: 2 * time.Second, Attempts: 1})
	require.NoError(t, err)
	return r
}

func TestLookup(t *testing.T) {
	now := time.Now()
	p := newPKI(t, now.Add(-time.Hour), now.Add(time.Hour), "mx.signed.example")
	ee := NewRecord(p.leaf, 3, 1, 1)
	srv := dnstest.Start(t, `
mx.signed.example.          A    192.0.2.1
_25._tcp.mx.signed.example. TLSA `+ee.String()+`
mx2.signed.example.         A    192.0.2.2
_25._tcp.mx2.signed.example. TLSA 1 1 1 `+ee.String()[6:]+`
mx3.signed.example.         A    192.0.2.3
alias.signed.example.       CNAME mx.signed.example.
mx4.signed.example.         A    192.0.2.4
mx.unsigned.example.        A    192.0.2.5
_25._tcp.mx.unsigned.example. TLSA `+ee.String()+`
bogus.signed.example.       A    192.0.2.6
`)
	srv.Secure("signed.example")
	srv.Set("_25._tcp.bogus.signed.example", dns.TypeTLSA, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	ctx := context.Background()
	res := dnsResolver(t, srv, true)

	got, err := Lookup(ctx, res, "mx.signed.example", 25)
	require.NoError(t, err)
	assert.Equal(t, Usable, got.Status)
	assert.Equal(t, []Record{ee}, got.Records)
	assert.Equal(t, []string{"mx.signed.example"}, got.Names)

	got, err = Lookup(ctx, res, "mx2.signed.example", 25)
	require.NoError(t, err)
	assert.Equal(t, Unusable, got.Status, "PKIX-EE only")

	got, err = Lookup(ctx, res, "mx3.signed.example", 25)
	require.NoError(t, err)
	assert.Equal(t, None, got.Status, "validated: no TLSA")

	got, err = Lookup(ctx, res, "alias.signed.example", 25)
	require.NoError(t, err)
	assert.Equal(t, Usable, got.Status, "the alias's target's records")
	assert.Equal(t, []string{"mx.signed.example", "alias.signed.example"}, got.Names)

	got, err = Lookup(ctx, res, "mx.unsigned.example", 25)
	require.NoError(t, err)
	assert.Equal(t, Insecure, got.Status, "no AD: DANE does not apply")

	_, err = Lookup(ctx, res, "bogus.signed.example", 25)
	assert.ErrorIs(t, err, ErrLookup, "a failed TLSA lookup is no licence for plain text")

	got, err = Lookup(ctx, dnsResolver(t, srv, false), "mx.signed.example", 25)
	require.NoError(t, err)
	assert.Equal(t, Insecure, got.Status, "an untrusted resolver's AD bit is not believed")
	assert.False(t, Trusted(dnsResolver(t, srv, false)))
}
