package resolver

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver/dnstest"
)

// BenchmarkLookup compares a cached lookup, an uncached one (a real UDP
// exchange with the test server on loopback) and a bare miekg/dns
// exchange of the same question, in the same run.
func BenchmarkLookup(b *testing.B) {
	srv := dnstest.Start(b)
	srv.AddA("host.bench.test", "192.0.2.1")
	b.Run("cached", func(b *testing.B) {
		r := newResolver(b, srv, Config{Timeout: 2 * time.Second})
		_, err := r.Lookup(bg, "host.bench.test", dns.TypeA)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Lookup(bg, "host.bench.test", dns.TypeA); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		r := newResolver(b, srv, Config{Timeout: 2 * time.Second, CacheSize: -1})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Lookup(bg, "host.bench.test", dns.TypeA); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miekg-exchange", func(b *testing.B) {
		cl := &dns.Client{Timeout: 2 * time.Second}
		b.ReportAllocs()
		for b.Loop() {
			q := new(dns.Msg)
			q.SetQuestion("host.bench.test.", dns.TypeA)
			q.SetEdns0(UDPSize, false)
			if _, _, err := cl.Exchange(q, srv.Addr); err != nil {
				b.Fatal(err)
			}
		}
	})
}
