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
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

var bg = context.Background()

// response is what the test server answers for one (name, type).
type response struct {
	rcode  int
	answer []dns.RR
	ns     []dns.RR
	delay  time.Duration
	// silent never answers.
	silent bool
	// truncUDP answers over UDP with TC set and no records, so the client
	// must ask again over TCP.
	truncUDP bool
}

// testDNS is an in-process authoritative server for test zones, on UDP
// and TCP of the same loopback port. Names it does not know get NXDOMAIN
// with an SOA whose MINIMUM is soaMin.
type testDNS struct {
	addr string

	mu     sync.Mutex
	names  map[string]response
	counts map[string]int
	tcp    int
	soaMin uint32
}

func startDNS(t testing.TB) *testDNS {
	t.Helper()
	s := &testDNS{names: make(map[string]response), counts: make(map[string]int), soaMin: 300}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			break
		}
		pc.Close()
		require.Less(t, i, 20, "no port free on both UDP and TCP: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

func key(name string, qtype uint16) string {
	return strings.ToLower(dns.Fqdn(name)) + "/" + dns.TypeToString[qtype]
}

func (s *testDNS) set(name string, qtype uint16, r response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[key(name, qtype)] = r
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

func soa(zone string, ttl, minimum uint32) *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns." + dns.Fqdn(zone), Mbox: "hostmaster." + dns.Fqdn(zone), Serial: 1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minimum}
}

// queries returns how many times (name, type) was asked.
func (s *testDNS) queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key(name, qtype)]
}

func (s *testDNS) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

func (s *testDNS) tcpQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcp
}

func (s *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		return
	}
	q := r.Question[0]
	k := key(q.Name, q.Qtype)
	tcp := w.LocalAddr().Network() == "tcp"
	s.mu.Lock()
	s.counts[k]++
	if tcp {
		s.tcp++
	}
	rep, ok := s.names[k]
	soaMin := s.soaMin
	s.mu.Unlock()
	if rep.delay > 0 {
		time.Sleep(rep.delay)
	}
	if rep.silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa(zoneOf(q.Name), 3600, soaMin)}
	case rep.truncUDP && !tcp:
		m.Truncated = true
	default:
		m.Rcode, m.Answer, m.Ns = rep.rcode, rep.answer, rep.ns
	}
	w.WriteMsg(m)
}

// zoneOf guesses the zone of a test name: its last two labels.
func zoneOf(name string) string {
	labels := dns.SplitDomainName(name)
	if len(labels) < 2 {
		return name
	}
	return strings.Join(labels[len(labels)-2:], ".") + "."
}

// fakeClock is the cache's clock.
type fakeClock = testutil.Clock

func newClock() *fakeClock { return testutil.NewClock() }

// newChecker builds a Checker asking s, with a short timeout and no
// retries unless cfg says otherwise.
func newChecker(t testing.TB, s *testDNS, cfg Config) *Checker {
	t.Helper()
	if cfg.Resolvers == nil && s != nil {
		cfg.Resolvers = []string{s.addr}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 300 * time.Millisecond
	}
	if cfg.Retries == 0 {
		cfg.Retries = -1
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

// rawUDP is a UDP "server" that answers every packet with what reply
// makes of it (nil: no answer).
func rawUDP(t testing.TB, reply func(req []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(append([]byte(nil), buf[:n]...)); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	return pc.LocalAddr().String()
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

func (s *testDNS) setSOAMin(v uint32) {
	s.mu.Lock()
	s.soaMin = v
	s.mu.Unlock()
}
