package dnsbl_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/postern/postern"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

func Example() {
	// A DNS server on loopback answering for bl.example: 192.0.2.99 and
	// the test point 127.0.0.2 are listed, with a TXT record.
	srv, err := dnstest.NewServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	srv.MustAddZone(`
$ORIGIN bl.example.
99.2.0.192 A   127.0.0.2
99.2.0.192 TXT "https://bl.example/?ip=192.0.2.99"
2.0.0.127  A   127.0.0.2
`)
	ctx := context.Background()

	// In production: a local recursive resolver, shared with the other
	// DNS users of the program.
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ck, err := dnsbl.New(dnsbl.Config{
		Resolver: res,
		Zones: []dnsbl.Zone{
			{Name: "BL.Example.", TXT: true, OnError: postern.OnErrorTempFail},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range ck.CheckHealth(ctx) {
		fmt.Println("health:", h.Zone, "broken:", h.Broken)
	}
	for _, ip := range []string{"192.0.2.99", "192.0.2.1"} {
		res, err := ck.CheckIP(ctx, netip.MustParseAddr(ip))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(res)
	}

	// As a filter at the connect stage.
	f, _ := dnsbl.NewFilter(dnsbl.FilterConfig{Checker: ck})
	conn := &postern.Conn{Remote: netip.MustParseAddrPort("192.0.2.99:49152")}
	v, _ := f.CheckConnect(ctx, conn)
	fmt.Println(v.Reply.Error())
	// Output:
	// health: bl.example broken: false
	// 192.0.2.99 listed (score 1 >= 1): bl.example=127.0.0.2
	// 192.0.2.1 not listed (score 0 < 1)
	// 554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using bl.example; https://bl.example/?ip=192.0.2.99
}

func ExampleParseMatcher() {
	m, err := dnsbl.ParseMatcher("127.0.0.2, 127.0.0.4-127.0.0.7, &0x08")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, code := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.24"} {
		fmt.Println(code, m.Match(netip.MustParseAddr(code)))
	}
	// Output:
	// 127.0.0.2 true
	// 127.0.0.3 false
	// 127.0.0.5 true
	// 127.0.0.24 true
}

func ExampleQueryName() {
	for _, ip := range []string{"192.0.2.99", "2001:db8::1"} {
		name, _ := dnsbl.QueryName(netip.MustParseAddr(ip), "zen.spamhaus.org")
		fmt.Println(name)
	}
	// Output:
	// 99.2.0.192.zen.spamhaus.org.
	// 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org.
}
