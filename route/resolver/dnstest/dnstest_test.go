package dnstest

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ask(t testing.TB, s *Server, name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	for _, o := range opts {
		o(q)
	}
	m, err := dns.Exchange(q, s.Addr)
	require.NoError(t, err)
	return m
}

func TestAnswers(t *testing.T) {
	s := Start(t, `
$ORIGIN zone.test.
$TTL 60
@      SOA  ns hostmaster 1 3600 600 86400 42
@      MX   10 mx
mx     A    192.0.2.1
alias  CNAME mx
loop1  CNAME loop2
loop2  CNAME loop1
a.b.c  TXT  "deep"
`)
	s.AddA("other.test", "192.0.2.2", "2001:db8::2")
	s.Exists("empty.test")
	for name, tc := range map[string]struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
		soa     string // owner of the SOA in the authority section
	}{
		"records":            {name: "mx.zone.test", qtype: dns.TypeA, answers: 1},
		"case insensitive":   {name: "MX.Zone.TEST", qtype: dns.TypeA, answers: 1},
		"both families":      {name: "other.test", qtype: dns.TypeAAAA, answers: 1},
		"CNAME followed":     {name: "alias.zone.test", qtype: dns.TypeA, answers: 2},
		"CNAME asked":        {name: "alias.zone.test", qtype: dns.TypeCNAME, answers: 1},
		"loop":               {name: "loop1.zone.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
		"no data":            {name: "mx.zone.test", qtype: dns.TypeMX, soa: "zone.test."},
		"NXDOMAIN in a zone": {name: "nx.zone.test", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: "zone.test."},
		"NXDOMAIN elsewhere": {name: "a.nx.test", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: "nx.test."},
		"empty non-terminal": {name: "b.c.zone.test", qtype: dns.TypeTXT, soa: "zone.test."},
		"exists":             {name: "empty.test", qtype: dns.TypeA, soa: "empty.test."},
	} {
		t.Run(name, func(t *testing.T) {
			m := ask(t, s, tc.name, tc.qtype)
			assert.Equal(t, tc.rcode, m.Rcode)
			assert.Len(t, m.Answer, tc.answers)
			assert.True(t, m.RecursionAvailable)
			if tc.soa == "" {
				assert.Empty(t, m.Ns)
				return
			}
			require.Len(t, m.Ns, 1)
			soa := m.Ns[0].(*dns.SOA)
			assert.Equal(t, tc.soa, soa.Hdr.Name)
			if tc.soa == "zone.test." {
				assert.Equal(t, uint32(42), soa.Minttl)
			} else {
				assert.Equal(t, uint32(DefaultNegativeTTL), soa.Minttl)
			}
		})
	}
	assert.Equal(t, 2, s.Queries("mx.zone.test", dns.TypeA))
	assert.Equal(t, 3, s.Queries("mx.zone.test", 0))
	assert.Equal(t, 11, s.Queries("", 0))
	assert.Equal(t, 2, s.Questions()[dns.Question{Name: "mx.zone.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET}])
	s.ResetCounts()
	assert.Zero(t, s.Queries("", 0))
}

func TestReplies(t *testing.T) {
	s := Start(t)
	s.AddA("host.test", "192.0.2.1")
	s.AddTXT("host.test", "text")
	s.AddCNAME("via.test", "host.test")

	s.Set("host.test", dns.TypeA, Reply{Rcode: dns.RcodeServerFailure})
	assert.Equal(t, dns.RcodeServerFailure, ask(t, s, "host.test", dns.TypeA).Rcode)
	assert.Equal(t, dns.RcodeServerFailure, ask(t, s, "via.test", dns.TypeA).Rcode, "also through an alias")
	assert.Len(t, ask(t, s, "host.test", dns.TypeTXT).Answer, 1, "other types answer")
	s.Set("host.test", dns.TypeA, Reply{})
	assert.Len(t, ask(t, s, "host.test", dns.TypeA).Answer, 1, "the zero Reply undoes it")

	s.Set("host.test", 0, Reply{Rcode: dns.RcodeRefused, NoDataOnly: true})
	assert.Len(t, ask(t, s, "host.test", dns.TypeA).Answer, 1)
	assert.Equal(t, dns.RcodeRefused, ask(t, s, "host.test", dns.TypeMX).Rcode)

	s.Set("via.test", 0, Reply{NoChase: true})
	m := ask(t, s, "via.test", dns.TypeA)
	require.Len(t, m.Answer, 1)
	assert.Equal(t, dns.TypeCNAME, m.Answer[0].Header().Rrtype)

	s.Set("host.test", dns.TypeA, Reply{TruncateUDP: true})
	m = ask(t, s, "host.test", dns.TypeA)
	assert.True(t, m.Truncated)
	assert.Empty(t, m.Answer)
	cl := &dns.Client{Net: "tcp"}
	q := new(dns.Msg)
	q.SetQuestion("host.test.", dns.TypeA)
	m, _, err := cl.Exchange(q, s.Addr)
	require.NoError(t, err)
	assert.Len(t, m.Answer, 1)
	assert.Equal(t, 1, s.TCPQueries())

	s.Set("host.test", dns.TypeA, Reply{NoEDNS: true})
	m = ask(t, s, "host.test", dns.TypeA, func(q *dns.Msg) { q.SetEdns0(1232, false) })
	assert.Equal(t, dns.RcodeFormatError, m.Rcode)
	assert.Nil(t, m.IsEdns0())
	assert.Len(t, ask(t, s, "host.test", dns.TypeA).Answer, 1, "without EDNS it answers")

	s.Set("host.test", dns.TypeA, Reply{Drop: true})
	short := &dns.Client{Timeout: 100 * time.Millisecond}
	_, _, err = short.Exchange(q, s.Addr)
	assert.Error(t, err, "no answer")
}

// Answers larger than the client's buffer are truncated over UDP.
func TestTruncation(t *testing.T) {
	s := Start(t)
	long := strings.Repeat("x", 1000)
	s.AddTXT("big.test", long, long)
	m := ask(t, s, "big.test", dns.TypeTXT)
	assert.True(t, m.Truncated, "512 octets without EDNS")
	m = ask(t, s, "big.test", dns.TypeTXT, func(q *dns.Msg) { q.SetEdns0(4096, false) })
	assert.False(t, m.Truncated)
	require.Len(t, m.Answer, 2)
	assert.Equal(t, []string{strings.Repeat("x", 255), strings.Repeat("x", 255), strings.Repeat("x", 255), strings.Repeat("x", 235)},
		m.Answer[0].(*dns.TXT).Txt)
}

func TestSecure(t *testing.T) {
	s := Start(t, "a.signed.test. A 192.0.2.1\nb.plain.test. A 192.0.2.2\n")
	s.Secure("signed.test")
	withAD := func(q *dns.Msg) { q.AuthenticatedData = true }
	withDO := func(q *dns.Msg) { q.SetEdns0(1232, true) }
	assert.True(t, ask(t, s, "a.signed.test", dns.TypeA, withAD).AuthenticatedData)
	assert.True(t, ask(t, s, "a.signed.test", dns.TypeA, withDO).AuthenticatedData)
	assert.False(t, ask(t, s, "a.signed.test", dns.TypeA).AuthenticatedData, "RFC 6840 §5.8: only when asked")
	assert.False(t, ask(t, s, "b.plain.test", dns.TypeA, withAD).AuthenticatedData)
}

func TestAddZoneErrors(t *testing.T) {
	s := Start(t)
	for _, bad := range []string{"a.test. A 999.1.1.1", "a.test. CH TXT x", "$INCLUDE /etc/passwd", "a.test. MX ten b.test."} {
		assert.Error(t, s.AddZone(bad), bad)
	}
	assert.Zero(t, len(s.rrs), "nothing added")
	assert.Panics(t, func() { s.MustAddZone("a.test. BOGUS x") })
	assert.Panics(t, func() { s.AddA("a.test", "not-an-ip") })
}

// FuzzAddZone loads zone text: it never panics, and every record it
// accepted is served under its name.
func FuzzAddZone(f *testing.F) {
	f.Add("$ORIGIN x.test.\n@ SOA ns h 1 2 3 4 5\nwww A 192.0.2.1\n")
	f.Add("a.test. 60 IN TXT \"v=spf1\" ( \"-all\" ) ; comment\n")
	f.Add("a.test. MX 10 b.test.\nb.test. AAAA 2001:db8::1\n")
	f.Add("$TTL 1h\nc.test. CNAME d.test.\n")
	s, err := NewServer()
	require.NoError(f, err)
	f.Cleanup(s.Close)
	cl := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	f.Fuzz(func(t *testing.T, text string) {
		s.mu.Lock()
		clear(s.rrs)
		s.mu.Unlock()
		if s.AddZone(text) != nil {
			return
		}
		s.mu.Lock()
		var rrs []dns.RR
		for _, l := range s.rrs {
			rrs = append(rrs, l...)
		}
		s.mu.Unlock()
		for i, rr := range rrs {
			if i == 3 {
				break
			}
			q := new(dns.Msg)
			q.SetQuestion(rr.Header().Name, rr.Header().Rrtype)
			m, _, err := cl.Exchange(q, s.Addr)
			if err != nil {
				continue // too large for one message, or not packable
			}
			if m.Rcode == dns.RcodeNameError {
				t.Fatalf("%v: NXDOMAIN for a record served", rr)
			}
		}
	})
}
