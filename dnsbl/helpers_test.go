package dnsbl

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

var bg = context.Background()

// response is how the test server answers one (name, type).
type response struct {
	rcode  int
	answer []dns.RR
	delay  time.Duration
	// silent never answers.
	silent bool
	// truncUDP answers over UDP with TC set and no records, so the client
	// must ask again over TCP.
	truncUDP bool
}

// testDNS is the DNS of the tests: a dnstest server (names it does not
// know get NXDOMAIN with an SOA whose MINIMUM is 300).
type testDNS struct{ *dnstest.Server }

func startDNS(t testing.TB) *testDNS { return &testDNS{dnstest.Start(t)} }

// set makes (name, qtype) answer as r says.
func (s *testDNS) set(name string, qtype uint16, r response) {
	s.Remove(name, qtype)
	s.Add(r.answer...)
	s.Set(name, qtype, dnstest.Reply{Rcode: r.rcode, Drop: r.silent, Delay: r.delay, TruncateUDP: r.truncUDP})
}

// listA makes name answer A records with ttl.
func (s *testDNS) listA(name string, ttl uint32, addrs ...string) {
	s.set(name, dns.TypeA, response{answer: aRRs(name, ttl, addrs...)})
}

func (s *testDNS) listTXT(name string, ttl uint32, text string) {
	s.set(name, dns.TypeTXT, response{answer: []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
		Txt: []string{text}}}})
}

func aRRs(name string, ttl uint32, addrs ...string) []dns.RR {
	var rrs []dns.RR
	for _, a := range addrs {
		rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A: net.ParseIP(a).To4()})
	}
	return rrs
}

// queries returns how many times (name, type) was asked.
func (s *testDNS) queries(name string, qtype uint16) int { return s.Queries(name, qtype) }

func (s *testDNS) total() int { return s.Queries("", 0) }

// fakeClock is the cache's clock.
type fakeClock = testutil.Clock

func newClock() *fakeClock { return testutil.NewClock() }

// newResolver asks s with a short timeout and one attempt unless cfg
// says otherwise.
func newResolver(t testing.TB, s *testDNS, cfg resolver.Config) *resolver.Resolver {
	t.Helper()
	if cfg.Servers == nil {
		cfg.Servers = []string{s.Addr}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 300 * time.Millisecond
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 1
	}
	r, err := resolver.New(cfg)
	require.NoError(t, err)
	return r
}

// newChecker builds a Checker asking s through newResolver unless cfg
// has a Resolver.
func newChecker(t testing.TB, s *testDNS, cfg Config) *Checker {
	t.Helper()
	if cfg.Resolver == nil {
		cfg.Resolver = newResolver(t, s, resolver.Config{})
	}
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// parseIPQueryName is the inverse of ipQueryName, written apart from it
// for the round-trip tests: it reads 4 decimal octets or 32 nibbles,
// reversed, before ".zone.".
func parseIPQueryName(name, zone string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, "."+zone+".")
	if !ok {
		return netip.Addr{}, false
	}
	labels := strings.Split(rest, ".")
	switch len(labels) {
	case 4:
		var b [4]byte
		for i, l := range labels {
			v, err := strconv.ParseUint(l, 10, 8)
			if err != nil || strconv.FormatUint(v, 10) != l {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	case 32:
		var sb strings.Builder
		for i := 31; i >= 0; i-- {
			l := labels[i]
			if len(l) != 1 || !strings.Contains("0123456789abcdef", l) {
				return netip.Addr{}, false
			}
			sb.WriteString(l)
			if i%4 == 0 && i > 0 {
				sb.WriteByte(':')
			}
		}
		a, err := netip.ParseAddr(sb.String())
		return a, err == nil
	}
	return netip.Addr{}, false
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func qn(ip, zone string) string {
	n, err := QueryName(mustAddr(ip), zone)
	if err != nil {
		panic(fmt.Sprint(ip, zone, err))
	}
	return n
}

type syncBuffer = testutil.SyncBuffer

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
