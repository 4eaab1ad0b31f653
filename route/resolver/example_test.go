package resolver_test

import (
	"context"
	"fmt"

	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

func Example() {
	srv, err := dnstest.NewServer()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	srv.MustAddZone(`
$ORIGIN example.org.
@    MX    10 mail
mail A     192.0.2.25
www  CNAME mail
`)

	// In production: resolver.New(resolver.Config{}) asks the servers of
	// /etc/resolv.conf; a local validating resolver is best.
	r, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	a, err := r.Lookup(ctx, "www.example.org", dns.TypeA)
	if err != nil {
		panic(err)
	}
	fmt.Println(a.Canonical, a.Records[0].(*dns.A).A, a.TTL)

	a, _ = r.Lookup(ctx, "nowhere.example.org", dns.TypeA)
	fmt.Println("NXDOMAIN:", a.NXDomain())

	// The net.Resolver method set, for SPF and DKIM libraries.
	mx, _ := r.LookupMX(ctx, "example.org")
	fmt.Println(mx[0].Host, mx[0].Pref)

	// Asked again, the answer comes from the cache.
	r.Lookup(ctx, "www.example.org", dns.TypeA)
	fmt.Println("queries:", srv.Queries("www.example.org", dns.TypeA))
	// Output:
	// mail.example.org. 192.0.2.25 5m0s
	// NXDOMAIN: true
	// mail.example.org. 10
	// queries: 1
}
