package route

import (
	"fmt"
	"strings"
	"testing"

	"github.com/postern/postern/route/resolver"
)

func benchTable(b *testing.B) *Table {
	var sb strings.Builder
	sb.WriteString(siteMailertable)
	for i := range 2000 {
		fmt.Fprintf(&sb, "domain%d.example esmtp:[10.0.%d.%d]\n.sub%d.example smtp:mx%d.example\n", i, i/256, i%256, i, i)
	}
	return mustTable(b, sb.String())
}

// BenchmarkMailertableLookup looks up an exact key, a subdomain found by
// walking up three labels, and a miss that ends at the catch-all, in a
// table of 4014 entries.
func BenchmarkMailertableLookup(b *testing.B) {
	tb := benchTable(b)
	for _, d := range []string{"domain1234.example", "a.b.c.sub77.example", "www.unknown.test"} {
		b.Run(d, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := tb.Lookup(d); !ok {
					b.Fatal("not found")
				}
			}
		})
	}
}

// BenchmarkRoute is a whole routing decision (no DNS).
func BenchmarkRoute(b *testing.B) {
	r := newTestRouter(b, nil, RouterConfig{Mailertable: benchTable(b), FallbackRelays: []string{"[relay2.example]"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Route("someone@a.b.c.sub77.example"); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDeliver(b *testing.B, cfg TransportConfig) {
	s := startSink(b, "127.0.0.1:0", sinkConfig{discard: true})
	tr := mtTransport(b, "example.net esmtp:"+hostPort(s.addr)+"\n", cfg)
	d := delivery("a@sender.test", "b@example.net")
	b.ReportAllocs()
	for b.Loop() {
		d.Message = strings.NewReader(testMessage)
		if res := tr.Deliver(bg, d); res[0].Reply.Code != 250 {
			b.Fatal(res[0].Reply.Error())
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(s.accepts()), "conns")
}

// BenchmarkDeliverReuse delivers one small message per iteration to an
// in-process go-smtp sink over a cached connection (RSET, EHLO, MAIL,
// RCPT, DATA per message).
func BenchmarkDeliverReuse(b *testing.B) { benchDeliver(b, TransportConfig{}) }

// BenchmarkDeliverNoReuse connects, greets and quits for every message.
func BenchmarkDeliverNoReuse(b *testing.B) { benchDeliver(b, TransportConfig{DisableConnCache: true}) }

// BenchmarkResolveMX resolves a domain by MX: the MX query, then the A
// and AAAA queries of its two hosts, against the test server on
// loopback; answers cached, or asked every time.
func BenchmarkResolveMX(b *testing.B) {
	d := startDNS(b)
	addRR(b, d, "bench.example. MX 10 mx1.bench.example.", "bench.example. MX 20 mx2.bench.example.",
		"mx1.bench.example. A 192.0.2.1", "mx2.bench.example. A 192.0.2.2")
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			r := newTestRouter(b, d, RouterConfig{Resolver: testResolver(b, d, resolver.Config{CacheSize: bc.cache})})
			rt, err := r.Route("user@bench.example")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				p, err := r.Resolve(bg, rt)
				if err != nil || len(p.Targets) != 2 {
					b.Fatal(p, err)
				}
			}
		})
	}
}
