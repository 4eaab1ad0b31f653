package dnstest_test

import (
	"fmt"

	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver/dnstest"
)

func Example() {
	srv, err := dnstest.NewServer() // in a test: dnstest.Start(t, zone)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.AddA("mx.example.net", "192.0.2.10", "2001:db8::10")
	srv.AddMX("example.net", 10, "mx.example.net")
	srv.AddPTR("192.0.2.10", "mx.example.net")
	srv.Set("broken.example.net", 0, dnstest.Reply{Rcode: dns.RcodeServerFailure})

	q := new(dns.Msg)
	q.SetQuestion("example.net.", dns.TypeMX)
	m, err := dns.Exchange(q, srv.Addr)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Answer[0].(*dns.MX).Mx)

	q.SetQuestion("broken.example.net.", dns.TypeA)
	m, _ = dns.Exchange(q, srv.Addr)
	fmt.Println(dns.RcodeToString[m.Rcode])
	fmt.Println(srv.Queries("", 0), "queries")
	// Output:
	// mx.example.net.
	// SERVFAIL
	// 2 queries
}
