package dnsbl

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver"
)

const fuzzQName = "2.0.0.127.bl.test."

func packed(tb testing.TB, build func(m *dns.Msg)) []byte {
	q := new(dns.Msg)
	q.SetQuestion(fuzzQName, dns.TypeA)
	m := new(dns.Msg)
	m.SetReply(q)
	build(m)
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func soa(zone string, ttl, minimum uint32) *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns." + dns.Fqdn(zone), Mbox: "hostmaster." + dns.Fqdn(zone), Serial: 1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minimum}
}

// FuzzReadAnswer puts arbitrary bytes on the wire as the response to an
// A query for fuzzQName (the query's ID copied in), read by the real
// resolver and the Checker's reading of its answer. Nothing panics, and a
// listing is reported only if the packet is a NOERROR response to that
// question with an A record in 127.0.0.0/8, outside 127.255.255.0/24,
// owned by the name or by a CNAME target reached from it.
func FuzzReadAnswer(f *testing.F) {
	f.Add(packed(f, func(m *dns.Msg) { m.Answer = aRRs(fuzzQName, 300, "127.0.0.2") }))
	f.Add(packed(f, func(m *dns.Msg) { m.Answer = aRRs(fuzzQName, 300, "127.0.0.2", "127.0.0.4", "127.0.0.10") }))
	f.Add(packed(f, func(m *dns.Msg) { m.Answer = aRRs(fuzzQName, 300, "127.255.255.254") }))
	f.Add(packed(f, func(m *dns.Msg) { m.Answer = aRRs(fuzzQName, 300, "203.0.113.1") }))
	f.Add(packed(f, func(m *dns.Msg) { m.Answer = aRRs("other.bl.test.", 300, "127.0.0.2") }))
	f.Add(packed(f, func(m *dns.Msg) {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa("bl.test", 3600, 300)}
	}))
	f.Add(packed(f, func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure }))
	f.Add(packed(f, func(m *dns.Msg) {
		m.Answer = append([]dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: fuzzQName, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60},
			Target: "t.bl.test."}}, aRRs("t.bl.test.", 60, "127.0.0.3")...)
	}))
	f.Add(packed(f, func(m *dns.Msg) {
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: fuzzQName, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{"listed"}}}
	}))
	f.Add(packed(f, func(m *dns.Msg) {
		m.Truncated = true
		m.Answer = aRRs(fuzzQName, 300, "127.0.0.2")
	}))
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"))

	addr, answer := testutil.ReplayDNS(f)
	res, err := resolver.New(resolver.Config{Servers: []string{addr}, Timeout: 50 * time.Millisecond, Attempts: 1, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		answer(data)
		a, err := readAnswer(res.Exchange(bg, fuzzQName, dns.TypeA))
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			if len(a.addrs) > 0 {
				t.Fatalf("listed by a packet that does not parse: %v", a.addrs)
			}
			return
		}
		if err != nil {
			if len(a.addrs) > 0 {
				t.Fatalf("error %v with answers %v", err, a.addrs)
			}
			return
		}
		if len(a.addrs) == 0 {
			return
		}
		if !m.Response || m.Rcode != dns.RcodeSuccess || m.Truncated || len(m.Question) != 1 ||
			!strings.EqualFold(m.Question[0].Name, fuzzQName) || m.Question[0].Qtype != dns.TypeA {
			t.Fatalf("listed by a packet that does not answer the question: %v", m)
		}
		owners := reachable(m, fuzzQName)
		for _, ip := range a.addrs {
			if !ip.Is4() || ip.As4()[0] != 127 || (ip.As4()[1] == 255 && ip.As4()[2] == 255) {
				t.Fatalf("listed with %v", ip)
			}
			found := false
			for _, rr := range m.Answer {
				if rec, ok := rr.(*dns.A); ok && owners[strings.ToLower(rec.Hdr.Name)] && rec.Hdr.Class == dns.ClassINET {
					if got, ok := netip.AddrFromSlice(rec.A.To4()); ok && got == ip {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("answer %v is not an A record of %s in %v", ip, fuzzQName, m)
			}
		}
	})
}

// reachable returns the names reachable from name through the CNAME
// records of the answer section (lower case).
func reachable(m *dns.Msg, name string) map[string]bool {
	seen := map[string]bool{strings.ToLower(name): true}
	for changed := true; changed; {
		changed = false
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && seen[strings.ToLower(c.Hdr.Name)] && !seen[strings.ToLower(c.Target)] {
				seen[strings.ToLower(c.Target)] = true
				changed = true
			}
		}
	}
	return seen
}

// FuzzQueryName builds query names from arbitrary addresses (raw bytes or
// text) and zone names: never a panic, always a valid DNS name, and the
// name parses back to the same address.
func FuzzQueryName(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, "", "zen.spamhaus.org")
	f.Add([]byte{}, "2001:db8::1", "BL.Example.")
	f.Add([]byte{}, "::ffff:10.1.2.3", "bl.test")
	f.Add(netip.MustParseAddr("fe80::1").AsSlice(), "", "a.b")
	f.Add([]byte{0, 0, 0, 0}, "fe80::1%eth0", "x")
	f.Add([]byte{1, 2, 3}, "not an ip", "bad zone.")
	f.Add([]byte{127, 0, 0, 2}, "", strings.Repeat("a.", 100)+"z")
	f.Fuzz(func(t *testing.T, raw []byte, text, zone string) {
		var ips []netip.Addr
		if ip, ok := netip.AddrFromSlice(raw); ok {
			ips = append(ips, ip)
		}
		if ip, err := netip.ParseAddr(text); err == nil {
			ips = append(ips, ip)
		}
		z, zerr := normalizeName(zone)
		for _, ip := range ips {
			name, err := QueryName(ip, zone)
			if err != nil {
				if zerr == nil && len(z) <= maxIPZoneLen {
					t.Fatalf("QueryName(%v, %q): %v", ip, zone, err)
				}
				continue
			}
			if zerr != nil {
				t.Fatalf("QueryName(%v, %q) accepted a bad zone", ip, zone)
			}
			if _, ok := dns.IsDomainName(name); !ok || len(name) > 254 {
				t.Fatalf("QueryName(%v, %q) = %q: not a DNS name", ip, zone, name)
			}
			back, ok := parseIPQueryName(name, z)
			if !ok || back != ip.WithZone("").Unmap() {
				t.Fatalf("QueryName(%v, %q) = %q parses back to %v, %v", ip, zone, name, back, ok)
			}
		}
		name, err := DomainQueryName(text, zone)
		if err != nil {
			return
		}
		d, derr := normalizeName(text)
		if derr != nil || zerr != nil || name != d+"."+z+"." {
			t.Fatalf("DomainQueryName(%q, %q) = %q", text, zone, name)
		}
		if _, ok := dns.IsDomainName(name); !ok || len(name) > 254 {
			t.Fatalf("DomainQueryName(%q, %q) = %q: not a DNS name", text, zone, name)
		}
	})
}
