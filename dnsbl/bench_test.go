package dnsbl

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver"
)

// benchZones serves three zones; the benchmark address is listed in one.
func benchChecker(b *testing.B, cacheSize int) *Checker {
	s := startDNS(b)
	s.listA(qn("192.0.2.1", "a.test"), 300, "127.0.0.2")
	// b.test does not list it: NXDOMAIN with an SOA (MINIMUM 300).
	return newChecker(b, s, Config{Resolver: newResolver(b, s, resolver.Config{CacheSize: cacheSize, Timeout: 2 * time.Second}),
		Zones: []Zone{{Name: "a.test"}, {Name: "b.test"}, {Name: "c.test", Weight: -1}}})
}

// BenchmarkCheckCached is a check whose three answers are all cached.
func BenchmarkCheckCached(b *testing.B) {
	c := benchChecker(b, 0)
	ip := mustAddr("192.0.2.1")
	if _, err := c.CheckIP(bg, ip); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.CheckIP(bg, ip)
		if err != nil || !r.Listed {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkCheckUncached asks the in-process server for three zones
// concurrently on every check.
func BenchmarkCheckUncached(b *testing.B) {
	c := benchChecker(b, -1)
	ip := mustAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.CheckIP(bg, ip)
		if err != nil || !r.Listed {
			b.Fatal(r, err)
		}
	}
}

// BenchmarkQueryNameIPv6 builds one IPv6 query name.
func BenchmarkQueryNameIPv6(b *testing.B) {
	ip := mustAddr("2001:db8::25")
	b.ReportAllocs()
	for b.Loop() {
		_ = ipQueryName(ip, "zen.spamhaus.org")
	}
}

// BenchmarkRawExchange is the reference for BenchmarkCheckUncached: one
// bare miekg/dns query to the same in-process server.
func BenchmarkRawExchange(b *testing.B) {
	s := startDNS(b)
	name := qn("192.0.2.1", "a.test")
	s.listA(name, 300, "127.0.0.2")
	cl := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := cl.Exchange(m, s.Addr); err != nil {
			b.Fatal(err)
		}
	}
}
