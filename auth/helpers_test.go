package auth

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

var bg = context.Background()

// testDNS is the DNS of the tests: a dnstest server, which answers as a
// recursive resolver (CNAME chains followed, a loop is SERVFAIL; names
// without data NXDOMAIN, names with data of other types NODATA).
type testDNS struct{ *dnstest.Server }

func startDNS(t testing.TB) *testDNS { return &testDNS{dnstest.Start(t)} }

// resolver returns a Resolver for this server with a short per-query
// timeout, so TIMEOUT answers do not make tests slow, and no cache, so
// a test may change the records between checks.
func (s *testDNS) resolver() Resolver { return s.resolverTimeout(300 * time.Millisecond) }

func (s *testDNS) resolverTimeout(d time.Duration) Resolver {
	r, err := resolver.New(resolver.Config{Servers: []string{s.Addr}, Timeout: d, CacheSize: -1})
	if err != nil {
		panic(err)
	}
	return r
}

func fq(name string) string { return dns.CanonicalName(name) }

func (s *testDNS) add(rr dns.RR) { s.Add(rr) }

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: fq(name), Rrtype: t, Class: dns.ClassINET, Ttl: 300}
}

// txt adds one TXT record; text longer than 255 octets is split into
// several strings, as in a zone file.
func (s *testDNS) txt(name, text string) {
	s.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: SplitTXT(text)})
}

// txtStrings adds one TXT record made of the given strings.
func (s *testDNS) txtStrings(name string, strs ...string) {
	s.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: strs})
}

func (s *testDNS) a(name string, ips ...string) { s.AddA(name, ips...) }

func (s *testDNS) mx(name string, pref uint16, host string) { s.AddMX(name, pref, host) }

func (s *testDNS) ptr(name, target string) {
	s.add(&dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: fq(target)})
}

func (s *testDNS) cname(name, target string) { s.AddCNAME(name, target) }

func (s *testDNS) setServfail(name string) {
	s.Set(name, 0, dnstest.Reply{Rcode: dns.RcodeServerFailure})
}

// setTimeout makes queries for name of types it has no data of go
// unanswered.
func (s *testDNS) setTimeout(name string) {
	s.Set(name, 0, dnstest.Reply{Drop: true, NoDataOnly: true})
}

func (s *testDNS) setExists(name string) { s.Exists(name) }

func newLogBuffer() *testutil.LogBuffer { return &testutil.LogBuffer{} }
