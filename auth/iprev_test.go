package auth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func (s *testDNS) ptrOf(ip string, names ...string) {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		s.add(&dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: n})
	}
}

// queryLog counts the queries the server got for a name.
type queryLog struct{ s *testDNS }

func (s *testDNS) logQueries() queryLog {
	s.ResetCounts()
	return queryLog{s}
}

func (ql queryLog) count(name, qtype string) int { return ql.s.Queries(name, dns.StringToType[qtype]) }

func newIPRev(t *testing.T, cfg IPRevConfig) *IPRev {
	t.Helper()
	v, err := NewIPRev(cfg)
	require.NoError(t, err)
	return v
}

func TestIPRevOutcomes(t *testing.T) {
	s := startDNS(t)
	// Verified: PTR and A agree.
	s.ptrOf("198.51.100.7", "Mail.Example.ORG.")
	s.a("mail.example.org", "192.0.2.1", "198.51.100.7")
	// Several PTR names: the second one confirms.
	s.ptrOf("198.51.100.8", "other.example.net.", "mx.example.net.")
	s.a("other.example.net", "192.0.2.99")
	s.a("mx.example.net", "198.51.100.8")
	// The site 001 case: a PTR claiming bogus.example.gr.jp whose A
	// record is another host.
	s.ptrOf("198.51.100.9", "bogus.example.gr.jp.")
	s.a("bogus.example.gr.jp", "192.0.2.50")
	// A PTR name that does not exist at all.
	s.ptrOf("198.51.100.10", "gone.example.")
	// No PTR: 198.51.100.11. SERVFAIL and silence:
	rev12, _ := dns.ReverseAddr("198.51.100.12")
	s.setServfail(rev12)
	rev13, _ := dns.ReverseAddr("198.51.100.13")
	s.setTimeout(rev13)
	// The forward query fails temporarily: unknown for now, not forged.
	s.ptrOf("198.51.100.14", "flaky.example.")
	s.setServfail("flaky.example")
	// IPv6, confirmed by AAAA.
	s.ptrOf("2001:db8::25", "v6.example.")
	s.a("v6.example", "2001:db8::25")
	// Numbers are not host names.
	s.ptrOf("198.51.100.15", "198.51.100.15.")
	// "localhost" from outside: forged, and never asked of DNS.
	s.ptrOf("198.51.100.16", "localhost.")
	s.a("localhost", "198.51.100.16")
	s.ptrOf("198.51.100.17", "evil.localhost.")
	s.a("evil.localhost", "198.51.100.17")
	// "localhost" for a loopback address that /etc/hosts does not name.
	s.ptrOf("127.0.0.2", "localhost.")
	ql := s.logQueries()

	v := newIPRev(t, IPRevConfig{Resolver: s.resolver(), Timeout: 5 * time.Second})
	ok := postern.ResolveOK
	for _, tc := range []struct {
		ip   string
		want postern.ClientHost
	}{
		{"198.51.100.7", postern.ClientHost{Resolve: ok, Name: "mail.example.org", PTR: "mail.example.org"}},
		{"::ffff:198.51.100.7", postern.ClientHost{Resolve: ok, Name: "mail.example.org", PTR: "mail.example.org"}},
		{"198.51.100.8", postern.ClientHost{Resolve: ok, Name: "mx.example.net", PTR: "other.example.net"}},
		{"198.51.100.9", postern.ClientHost{Resolve: postern.ResolveForged, PTR: "bogus.example.gr.jp"}},
		{"198.51.100.10", postern.ClientHost{Resolve: postern.ResolveForged, PTR: "gone.example"}},
		{"198.51.100.11", postern.ClientHost{Resolve: postern.ResolveFail}},
		{"198.51.100.12", postern.ClientHost{Resolve: postern.ResolveTemp}},
		{"198.51.100.13", postern.ClientHost{Resolve: postern.ResolveTemp}},
		{"198.51.100.14", postern.ClientHost{Resolve: postern.ResolveTemp, PTR: "flaky.example"}},
		{"2001:db8::25", postern.ClientHost{Resolve: ok, Name: "v6.example", PTR: "v6.example"}},
		{"198.51.100.15", postern.ClientHost{Resolve: postern.ResolveFail}},
		{"198.51.100.16", postern.ClientHost{Resolve: postern.ResolveForged, PTR: "localhost"}},
		{"198.51.100.17", postern.ClientHost{Resolve: postern.ResolveForged, PTR: "evil.localhost"}},
		{"127.0.0.2", postern.ClientHost{Resolve: ok, Name: "localhost", PTR: "localhost"}},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			assert.Equal(t, tc.want, v.LookupClientHost(bg, netip.MustParseAddr(tc.ip)))
		})
	}
	assert.Zero(t, ql.count("localhost", "A")+ql.count("evil.localhost", "A"), "localhost names are never asked of DNS")
}

func TestIPRevHostileAnswers(t *testing.T) {
	s := startDNS(t)
	// Names that are not domain names: the standard resolver drops them.
	s.ptrOf("198.51.100.20", "bad\\032name.example.", "bad(x).example.")
	// A flood of PTR names: only the first DefaultIPRevNames are tried.
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("n%d.example.", i))
		s.a(fmt.Sprintf("n%d.example", i), "192.0.2.1")
	}
	s.ptrOf("198.51.100.21", names...)
	s.a("n11.example", "198.51.100.21") // beyond the bound
	// A name whose top-level label is a number.
	s.ptrOf("198.51.100.22", "mail.123.")
	s.a("mail.123", "198.51.100.22")
	ql := s.logQueries()

	v := newIPRev(t, IPRevConfig{Resolver: s.resolver(), Timeout: 5 * time.Second})
	assert.Equal(t, postern.ResolveFail, v.LookupClientHost(bg, netip.MustParseAddr("198.51.100.20")).Resolve)
	h := v.LookupClientHost(bg, netip.MustParseAddr("198.51.100.21"))
	assert.Equal(t, postern.ClientHost{Resolve: postern.ResolveForged, PTR: "n0.example"}, h)
	assert.Zero(t, ql.count("n10.example", "A")+ql.count("n11.example", "A"))
	assert.Equal(t, 1, ql.count("n9.example", "A"))
	assert.Equal(t, postern.ResolveFail, v.LookupClientHost(bg, netip.MustParseAddr("198.51.100.22")).Resolve)
}

func TestIPRevCache(t *testing.T) {
	s := startDNS(t)
	s.ptrOf("198.51.100.7", "mail.example.org.")
	s.a("mail.example.org", "198.51.100.7")
	s.ptrOf("198.51.100.9", "bogus.example.")
	rev12, _ := dns.ReverseAddr("198.51.100.12")
	s.setServfail(rev12)
	ql := s.logQueries()
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	v := newIPRev(t, IPRevConfig{Resolver: s.resolver(), Timeout: 5 * time.Second, Clock: clock})
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	ptrQueries := func(a string) int { r, _ := dns.ReverseAddr(a); return ql.count(r, "PTR") }

	perTemp := 0
	for i := range 3 {
		require.Equal(t, postern.ResolveOK, v.LookupClientHost(bg, ip("198.51.100.7")).Resolve)
		require.Equal(t, postern.ResolveForged, v.LookupClientHost(bg, ip("198.51.100.9")).Resolve)
		require.Equal(t, postern.ResolveTemp, v.LookupClientHost(bg, ip("198.51.100.12")).Resolve)
		if i == 0 {
			perTemp = ptrQueries("198.51.100.12") // the resolver retries a SERVFAIL
		}
	}
	assert.Equal(t, 1, ptrQueries("198.51.100.7"), "a verified name is kept")
	assert.Equal(t, 1, ptrQueries("198.51.100.9"), "a forged name is kept a while")
	assert.Equal(t, 3*perTemp, ptrQueries("198.51.100.12"), "a temporary failure is never kept")

	advance(DefaultIPRevNegativeTTL)
	v.LookupClientHost(bg, ip("198.51.100.7"))
	v.LookupClientHost(bg, ip("198.51.100.9"))
	assert.Equal(t, 1, ptrQueries("198.51.100.7"))
	assert.Equal(t, 2, ptrQueries("198.51.100.9"), "the negative TTL has passed")
	advance(DefaultIPRevTTL)
	v.LookupClientHost(bg, ip("198.51.100.7"))
	assert.Equal(t, 2, ptrQueries("198.51.100.7"), "the TTL has passed")

	// A fixed record is believed once the negative entry expired.
	assert.Equal(t, postern.ResolveForged, v.LookupClientHost(bg, ip("198.51.100.9")).Resolve)
	s.a("bogus.example", "198.51.100.9")
	assert.Equal(t, postern.ResolveForged, v.LookupClientHost(bg, ip("198.51.100.9")).Resolve)
	advance(DefaultIPRevNegativeTTL)
	assert.Equal(t, postern.ResolveOK, v.LookupClientHost(bg, ip("198.51.100.9")).Resolve)
}

// blockingResolver answers PTR queries only when released, counting them.
type blockingResolver struct {
	Resolver
	release chan struct{}
	ptr     atomic.Int32
}

func (b *blockingResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	b.ptr.Add(1)
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, &net.DNSError{Err: "timeout", Name: addr, IsTimeout: true}
	}
	return []string{"mail.example.org."}, nil
}

func (b *blockingResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return []net.IPAddr{{IP: net.ParseIP("198.51.100.7")}}, nil
}

func TestIPRevConcurrentLookupsShareOneQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &blockingResolver{release: make(chan struct{})}
		v := newIPRev(t, IPRevConfig{Resolver: r})
		ip := netip.MustParseAddr("198.51.100.7")
		const n = 50
		got := make([]postern.ClientHost, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i] = v.LookupClientHost(t.Context(), ip) })
		}
		synctest.Wait() // every caller waits on the one query
		assert.Equal(t, int32(1), r.ptr.Load())
		close(r.release)
		wg.Wait()
		for _, h := range got {
			assert.Equal(t, postern.ResolveOK, h.Resolve)
		}
	})
}

func TestIPRevCallerGivesUpLookupGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &blockingResolver{release: make(chan struct{})}
		v := newIPRev(t, IPRevConfig{Resolver: r, Timeout: time.Minute})
		ip := netip.MustParseAddr("198.51.100.7")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		// The caller's bound ends first: TEMP for it, no failure cached.
		assert.Equal(t, postern.ResolveTemp, v.LookupClientHost(ctx, ip).Resolve)
		close(r.release)
		synctest.Wait()
		// The query finished for whoever asks next.
		assert.Equal(t, postern.ResolveOK, v.LookupClientHost(t.Context(), ip).Resolve)
		assert.Equal(t, int32(1), r.ptr.Load())
	})
}

func TestIPRevTimeoutIsTemp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &blockingResolver{release: make(chan struct{})}
		v := newIPRev(t, IPRevConfig{Resolver: r, Timeout: 3 * time.Second})
		ip := netip.MustParseAddr("198.51.100.7")
		assert.Equal(t, postern.ResolveTemp, v.LookupClientHost(t.Context(), ip).Resolve)
		// TEMP is not kept: the next caller asks again.
		close(r.release)
		assert.Equal(t, postern.ResolveOK, v.LookupClientHost(t.Context(), ip).Resolve)
		assert.Equal(t, int32(2), r.ptr.Load())
	})
}

func TestIPRevCacheBound(t *testing.T) {
	s := startDNS(t)
	v := newIPRev(t, IPRevConfig{Resolver: s.resolver(), MaxEntries: 8})
	for i := range 40 {
		v.LookupClientHost(bg, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	assert.LessOrEqual(t, len(v.m), 8)
}

func TestIPRevConfig(t *testing.T) {
	for _, cfg := range []IPRevConfig{{Timeout: -1}, {TTL: -1}, {MaxNames: -1}, {MaxEntries: -1}} {
		_, err := NewIPRev(cfg)
		assert.ErrorIs(t, err, ErrConfig)
	}
	v := newIPRev(t, IPRevConfig{NegativeTTL: -1})
	assert.Equal(t, postern.ResolveFail, v.LookupClientHost(bg, netip.Addr{}).Resolve)
}

func TestIPRevStatus(t *testing.T) {
	assert.Equal(t, Pass, IPRevStatus(postern.ResolveOK))
	assert.Equal(t, Fail, IPRevStatus(postern.ResolveForged))
	assert.Equal(t, PermError, IPRevStatus(postern.ResolveFail))
	assert.Equal(t, TempError, IPRevStatus(postern.ResolveTemp))
	assert.Equal(t, Status(""), IPRevStatus(postern.ResolveNone))
}

func TestHostName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Mail.Example.ORG.", "mail.example.org", true},
		{"localhost", "localhost", true},
		{"_dmarc.x.example", "_dmarc.x.example", true},
		{"3com.example", "3com.example", true},
		{"1.2.3.4", "", false},
		{"mail.123", "", false},
		{"", "", false},
		{".", "", false},
		{"a..b", "", false},
		{".a.b", "", false},
		{"a b.example", "", false},
		{"a(b).example", "", false},
		{"é.example", "", false},
		{long + ".example", long + ".example", true},
		{long + "a.example", "", false},
		{strings.Repeat(long+".", 4)[:253], strings.Repeat(long+".", 4)[:253], true}, // 253 octets
		{strings.Repeat("ab.", 84) + "cd", "", false},                                // 254 octets
		{strings.Repeat("ab.", 83) + "cde", strings.Repeat("ab.", 83) + "cde", true}, // 252
	} {
		got, ok := hostName(tc.in)
		assert.Equal(t, tc.ok, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

// FuzzIPRevNames: what a hostile reverse zone puts in PTR records becomes
// either nothing or host names that are safe everywhere they go (the
// Received comment, Authentication-Results, logs, access lookups), and the
// Authentication-Results field that carries one still parses.
func FuzzIPRevNames(f *testing.F) {
	for _, s := range []string{"mail.example.org.", "MAIL.Example.Org", "1.2.3.4.", "a b.example.", "x);y.example",
		"localhost.", "_a.example", "", "..", "\x00.example", "é.example"} {
		f.Add(s, "other.example")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		names := ptrNames([]string{a, b, a}, 2)
		if len(names) > 2 {
			t.Fatalf("more than the bound: %q", names)
		}
		for i, n := range names {
			again, ok := hostName(n)
			if !ok || again != n || n != strings.ToLower(n) || strings.ContainsAny(n, " ()[];\"\\\r\n") {
				t.Fatalf("unsafe name %q", n)
			}
			for _, m := range names[:i] {
				if m == n {
					t.Fatalf("duplicate %q", n)
				}
			}
			v := FormatAuthResults("mx.example.net", AuthResults{IPRev: &IPRevResult{Status: Pass,
				IP: netip.MustParseAddr("192.0.2.1"), Name: n}})
			_, res, err := authres.Parse(strings.NewReplacer("\r\n", "", "\t", " ").Replace(v))
			if err != nil || len(res) != 1 {
				t.Fatalf("%q: %v %v", v, res, err)
			}
		}
	})
}
