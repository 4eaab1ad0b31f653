package access

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// bigMap builds a 10,000-line map of the kinds of keys sites have: sender
// and recipient addresses, domains, user names, IPv4 networks in sendmail
// and CIDR form, IPv6 prefixes and GreetPause exemptions.
func bigMap(tb testing.TB) *Map {
	tb.Helper()
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		switch i % 10 {
		case 0:
			fmt.Fprintf(&b, "From:user%d@d%d.example.com REJECT\n", i, i)
		case 1:
			fmt.Fprintf(&b, "To:rcpt%d@d%d.example.net DISCARD\n", i, i)
		case 2:
			fmt.Fprintf(&b, "spam%d.example.org REJECT\n", i)
		case 3:
			fmt.Fprintf(&b, "user%d@ ERROR:5.7.1:550 go away %d\n", i, i)
		case 4:
			fmt.Fprintf(&b, "Connect:10.%d.%d RELAY\n", i/256%256, i%256)
		case 5:
			fmt.Fprintf(&b, "Connect:172.%d.%d.0/24 REJECT\n", 16+i/256%16, i%256)
		case 6:
			fmt.Fprintf(&b, "Connect:IPv6:2001:db8:%x REJECT\n", i)
		case 7:
			fmt.Fprintf(&b, "GreetPause:192.168.%d.%d 0\n", i/256%256, i%256)
		case 8:
			fmt.Fprintf(&b, "Connect:host%d.example.jp OK\n", i)
		case 9:
			fmt.Fprintf(&b, "To:d%d.example.jp RELAY\n", i)
		}
	}
	m, _, err := Parse(strings.NewReader(b.String()), "bench")
	if err != nil {
		tb.Fatal(err)
	}
	if m.Len() != 10000 {
		tb.Fatalf("map has %d entries", m.Len())
	}
	return m
}

func BenchmarkLookupAddr(b *testing.B) {
	m := bigMap(b)
	for _, bc := range []struct{ name, tag, addr string }{
		{"full-hit", "From", "user5000@d5000.example.com"},
		{"user-hit", "From", "user5003@elsewhere.example"},
		{"parent-domain-hit", "From", "x@a.b.spam5002.example.org"},
		{"plus-detail", "To", "rcpt5001+tag@d5001.example.net"},
		{"miss", "From", "someone@mail.nowhere.example.com"},
		{"to-domain-relay", "To", "alice@d5009.example.jp"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.LookupAddr(bc.tag, bc.addr)
			}
		})
	}
}

func BenchmarkLookupClient(b *testing.B) {
	m := bigMap(b)
	for _, bc := range []struct {
		name, tag string
		ip        netip.Addr
		host      string
	}{
		{"ipv4-net-hit", "Connect", netip.MustParseAddr("10.19.140.7"), ""},
		{"ipv4-cidr-hit", "Connect", netip.MustParseAddr("172.19.137.9"), ""},
		{"ipv6-hit", "Connect", netip.MustParseAddr("2001:db8:1b5e::1"), ""},
		{"name-hit", "Connect", netip.MustParseAddr("198.51.100.1"), "host5008.example.jp"},
		{"name-and-ip-miss", "Connect", netip.MustParseAddr("198.51.100.1"), "mail.isp.example.com"},
		{"greetpause", "GreetPause", netip.MustParseAddr("192.168.19.143"), "mx.example.org"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.LookupClient(bc.tag, bc.ip, bc.host)
			}
		})
	}
}

func BenchmarkParse10k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		bigMap(b)
	}
}
