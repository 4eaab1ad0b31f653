package resolver

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver/dnstest"
)

// seedResponses are responses a server could send, packed.
func seedResponses(t testing.TB) [][]byte {
	var out [][]byte
	for _, z := range []struct {
		q   string
		t   uint16
		rrs []string
		ns  []string
		rc  int
	}{
		{q: "a.test.", t: dns.TypeA, rrs: []string{"a.test. 60 A 192.0.2.1"}},
		{q: "a.test.", t: dns.TypeA, rrs: []string{"a.test. 60 CNAME b.test.", "b.test. 30 A 192.0.2.2", "c.test. 1 A 192.0.2.3"}},
		{q: "a.test.", t: dns.TypeA, rrs: []string{"a.test. 60 CNAME b.test.", "b.test. 60 CNAME a.test."}},
		{q: "a.test.", t: dns.TypeTXT, rrs: []string{`A.TEST. 4294967295 TXT "x" "y"`}},
		{q: "a.test.", t: dns.TypeMX, ns: []string{"test. 300 SOA ns.test. h.test. 1 2 3 4 60"}, rc: dns.RcodeNameError},
		{q: "a.test.", t: dns.TypeMX, rrs: []string{"a.test. 60 MX 0 ."}},
	} {
		m := new(dns.Msg)
		m.SetQuestion(z.q, z.t)
		m.Response, m.Rcode = true, z.rc
		for _, s := range z.rrs {
			rr, err := dns.NewRR(s)
			require.NoError(t, err)
			m.Answer = append(m.Answer, rr)
		}
		for _, s := range z.ns {
			rr, err := dns.NewRR(s)
			require.NoError(t, err)
			m.Ns = append(m.Ns, rr)
		}
		b, err := m.Pack()
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

// checkAnswer asserts what every decoded answer must be.
func checkAnswer(t *testing.T, a Answer) {
	t.Helper()
	if len(a.Aliases) > maxCNAME {
		t.Fatalf("%d aliases", len(a.Aliases))
	}
	if a.Canonical != a.Name && (len(a.Aliases) == 0 || a.Aliases[len(a.Aliases)-1] != a.Canonical) {
		t.Fatalf("canonical %q is not the chain's end %q", a.Canonical, a.Aliases)
	}
	for _, rr := range a.Records {
		if rr.Header().Rrtype != a.Type || !strings.EqualFold(rr.Header().Name, a.Canonical) {
			t.Fatalf("record %v does not answer %s %s", rr, typeName(a.Type), a.Canonical)
		}
	}
	if a.TTL < 0 || a.TTL > (1<<31-1)*time.Second {
		t.Fatalf("TTL %v", a.TTL)
	}
	if a.Rcode != dns.RcodeSuccess && a.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %d", a.Rcode)
	}
}

// FuzzDecode reads hostile responses: whatever a server sends, the
// answer holds only records of the type asked owned by the chain's end.
func FuzzDecode(f *testing.F) {
	for _, b := range seedResponses(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil || len(m.Question) != 1 {
			return
		}
		qname, err := canonicalName(m.Question[0].Name)
		if err != nil {
			return
		}
		if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
			return // once lets only these through
		}
		a, err := decode(qname, m.Question[0].Qtype, m)
		if err == nil {
			checkAnswer(t, a)
		}
	})
}

// FuzzHostileServer puts arbitrary bytes on the wire as the answer to a
// real query (its ID patched in): the resolver never panics, and what it
// accepts is a well-formed answer.
func FuzzHostileServer(f *testing.F) {
	for _, b := range seedResponses(f) {
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0x81, 0x80})
	addr, answer := testutil.ReplayDNS(f)
	r, err := New(Config{Servers: []string{addr}, Timeout: 50 * time.Millisecond, Attempts: 1, CacheSize: -1})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, b []byte) {
		answer(b)
		for _, q := range []uint16{dns.TypeA, dns.TypeTXT, dns.TypeMX} {
			a, err := r.Exchange(bg, "a.test", q)
			if err == nil {
				checkAnswer(t, a)
				if a.Name != "a.test." || a.Type != q {
					t.Fatalf("answer to %s %s", a.Name, typeName(a.Type))
				}
			}
		}
	})
}

// FuzzTXTAgreesWithNet is differential: a TXT record of any octets,
// served by dnstest, reads the same through LookupTXT (miekg/dns's
// presentation form undone) as through the standard library's resolver.
func FuzzTXTAgreesWithNet(f *testing.F) {
	f.Add("v=spf1 -all", "")
	f.Add(`quote" back\slash`, "second\x00\xff")
	f.Add(strings.Repeat("k", 600), "\\065")
	srv := dnstest.Start(f)
	ours, err := New(Config{Servers: []string{srv.Addr}, CacheSize: -1})
	require.NoError(f, err)
	std := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr)
	}}
	f.Fuzz(func(t *testing.T, a, b string) {
		srv.Remove("txt.fuzz.test", 0)
		srv.AddTXT("txt.fuzz.test", a)
		if b != "" {
			srv.AddTXT("txt.fuzz.test", b)
		}
		want, err := std.LookupTXT(bg, "txt.fuzz.test.")
		if err != nil {
			return // too large for one message, or refused by net
		}
		got, err := ours.LookupTXT(bg, "txt.fuzz.test")
		if err != nil {
			t.Fatalf("net read %q, resolver failed: %v", want, err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("resolver read %q, net %q", got, want)
		}
	})
}
