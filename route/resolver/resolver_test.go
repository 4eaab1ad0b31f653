package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver/dnstest"
)

var bg = context.Background()

// newResolver asks srv with a short timeout and one attempt unless cfg
// says otherwise.
func newResolver(t testing.TB, srv *dnstest.Server, cfg Config) *Resolver {
	t.Helper()
	if cfg.Servers == nil {
		cfg.Servers = []string{srv.Addr}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 300 * time.Millisecond
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 1
	}
	r, err := New(cfg)
	require.NoError(t, err)
	return r
}

const testZone = `
$ORIGIN example.test.
@        SOA  ns hostmaster 1 3600 600 86400 120
@        MX   20 mx2
@        MX   10 mx1
mx1      A    192.0.2.1
mx1      AAAA 2001:db8::1
mx2      A    192.0.2.2
www      CNAME web
web      CNAME mx1
txt      TXT  "v=spf1 " "-all"
txt      TXT  "second"
empty    TXT  ""
`

func TestLookup(t *testing.T) {
	srv := dnstest.Start(t, testZone)
	r := newResolver(t, srv, Config{})
	for name, tc := range map[string]struct {
		name     string
		qtype    uint16
		rcode    int
		records  []string
		canon    string
		aliases  []string
		ttlAbove time.Duration
	}{
		"A":                  {name: "mx1.example.test", qtype: dns.TypeA, records: []string{"192.0.2.1"}},
		"AAAA":               {name: "MX1.Example.Test.", qtype: dns.TypeAAAA, records: []string{"2001:db8::1"}},
		"MX in answer order": {name: "example.test", qtype: dns.TypeMX, records: []string{"20 mx2.example.test.", "10 mx1.example.test."}},
		"CNAME chain":        {name: "www.example.test", qtype: dns.TypeA, records: []string{"192.0.2.1"}, canon: "mx1.example.test.", aliases: []string{"web.example.test.", "mx1.example.test."}},
		"CNAME asked":        {name: "www.example.test", qtype: dns.TypeCNAME, records: []string{"web.example.test."}},
		"no data":            {name: "mx2.example.test", qtype: dns.TypeAAAA},
		"NXDOMAIN":           {name: "nowhere.example.test", qtype: dns.TypeA, rcode: dns.RcodeNameError},
		"NXDOMAIN via alias": {name: "gone.example.test", qtype: dns.TypeA, rcode: dns.RcodeNameError},
		"empty non-terminal": {name: "test", qtype: dns.TypeA},
		"TXT":                {name: "txt.example.test", qtype: dns.TypeTXT, records: []string{`"v=spf1 " "-all"`, `"second"`}},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "NXDOMAIN via alias" {
				srv.AddCNAME("gone.example.test", "missing.example.test")
				tc.canon, tc.aliases = "missing.example.test.", []string{"missing.example.test."}
			}
			a, err := r.Lookup(bg, tc.name, tc.qtype)
			require.NoError(t, err)
			assert.Equal(t, strings.ToLower(dns.Fqdn(tc.name)), a.Name)
			assert.Equal(t, tc.qtype, a.Type)
			assert.Equal(t, tc.rcode, a.Rcode)
			var got []string
			for _, rr := range a.Records {
				got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
			}
			assert.Equal(t, tc.records, got)
			if tc.canon == "" {
				tc.canon = a.Name
			}
			assert.Equal(t, tc.canon, a.Canonical)
			assert.Equal(t, tc.aliases, a.Aliases)
			assert.Equal(t, a.Rcode == dns.RcodeNameError, a.NXDomain())
			assert.Equal(t, len(tc.records) == 0, a.NoData())
			assert.False(t, a.AD, "nothing is secure")
			assert.NotNil(t, a.Msg)
		})
	}
}

// An alias the server did not chase (an authoritative answer for a CNAME
// into another zone) is followed with a second query.
func TestLookupFollowsUnfinishedChain(t *testing.T) {
	srv := dnstest.Start(t, `
alias.one.test. CNAME alias.two.test.
alias.two.test. CNAME host.three.test.
host.three.test. A 192.0.2.9
loop1.test. CNAME loop2.test.
loop2.test. CNAME loop1.test.
`)
	srv.Set("alias.one.test", 0, dnstest.Reply{NoChase: true})
	srv.Set("alias.two.test", 0, dnstest.Reply{NoChase: true})
	r := newResolver(t, srv, Config{})
	a, err := r.Lookup(bg, "alias.one.test", dns.TypeA)
	require.NoError(t, err)
	require.Len(t, a.Records, 1)
	assert.Equal(t, "192.0.2.9", a.Records[0].(*dns.A).A.String())
	assert.Equal(t, []string{"alias.two.test.", "host.three.test."}, a.Aliases)
	assert.Equal(t, "host.three.test.", a.Canonical)
	assert.Equal(t, 3, srv.Queries("", dns.TypeA))

	// A loop the server reports is SERVFAIL; one built across queries
	// is caught by the resolver.
	_, err = r.Lookup(bg, "loop1.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrServerFailure)
	srv.Set("loop1.test", 0, dnstest.Reply{NoChase: true})
	srv.Set("loop2.test", 0, dnstest.Reply{NoChase: true})
	_, err = r.Lookup(bg, "loop1.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrBadResponse)
}

func TestTruncatedAnswerComesOverTCP(t *testing.T) {
	srv := dnstest.Start(t)
	long := strings.Repeat("0123456789", 300) // 3000 octets: more than UDPSize
	srv.AddTXT("big.test", long)
	srv.AddA("forced.test", "192.0.2.7")
	srv.Set("forced.test", dns.TypeA, dnstest.Reply{TruncateUDP: true})
	r := newResolver(t, srv, Config{CacheSize: -1})

	txts, err := r.LookupTXT(bg, "big.test")
	require.NoError(t, err)
	assert.Equal(t, []string{long}, txts)
	assert.Equal(t, 1, srv.TCPQueries())

	a, err := r.Lookup(bg, "forced.test", dns.TypeA)
	require.NoError(t, err)
	assert.Len(t, a.Records, 1)
	assert.Equal(t, 2, srv.TCPQueries())

	tcp := newResolver(t, srv, Config{Net: "tcp", CacheSize: -1})
	_, err = tcp.Lookup(bg, "forced.test", dns.TypeA)
	require.NoError(t, err)
	assert.Equal(t, 3, srv.Queries("forced.test", dns.TypeA), "TCP only: one query, no UDP first")
	assert.Equal(t, 3, srv.TCPQueries())
}

func TestFailures(t *testing.T) {
	srv := dnstest.Start(t, testZone)
	srv.Set("servfail.test", 0, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	srv.Set("refused.test", dns.TypeA, dnstest.Reply{Rcode: dns.RcodeRefused})
	srv.Set("silent.test", 0, dnstest.Reply{Drop: true})
	r := newResolver(t, srv, Config{Timeout: 100 * time.Millisecond})

	_, err := r.Lookup(bg, "servfail.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrServerFailure)
	assert.ErrorContains(t, err, "SERVFAIL")
	_, err = r.Lookup(bg, "refused.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrServerFailure)
	assert.ErrorContains(t, err, "REFUSED")
	_, err = r.Lookup(bg, "silent.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrTimeout)

	// Failures are not cached: the next lookup asks again.
	n := srv.Queries("servfail.test", 0)
	_, err = r.Lookup(bg, "servfail.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrServerFailure)
	assert.Equal(t, n+1, srv.Queries("servfail.test", 0))

	// A name that is not one is never sent.
	for _, bad := range []string{"", "a..b", ".a", strings.Repeat("a", 64) + ".test", strings.Repeat("abcdefghi.", 26)} {
		_, err = r.Lookup(bg, bad, dns.TypeA)
		assert.ErrorIs(t, err, ErrName, "%q", bad)
	}
	// A closed port is a network error (ICMP port unreachable).
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := pc.LocalAddr().String()
	pc.Close()
	dead := newResolver(t, nil, Config{Servers: []string{closed}})
	_, err = dead.Lookup(bg, "mx1.example.test", dns.TypeA)
	assert.True(t, errors.Is(err, ErrNetwork) || errors.Is(err, ErrTimeout), "%v", err)
}

// Each server in turn, Attempts rounds: a failing server is passed over.
func TestFailover(t *testing.T) {
	bad := dnstest.Start(t)
	bad.Set("host.test", 0, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	good := dnstest.Start(t)
	good.AddA("host.test", "192.0.2.3")
	silent := dnstest.Start(t)
	silent.Set("host.test", 0, dnstest.Reply{Drop: true})

	r := newResolver(t, nil, Config{Servers: []string{silent.Addr, bad.Addr, good.Addr}, Timeout: 100 * time.Millisecond})
	a, err := r.Lookup(bg, "host.test", dns.TypeA)
	require.NoError(t, err)
	assert.Len(t, a.Records, 1)
	assert.Equal(t, []int{1, 1, 1}, []int{silent.Queries("", 0), bad.Queries("", 0), good.Queries("", 0)})

	r2 := newResolver(t, nil, Config{Servers: []string{bad.Addr}, Attempts: 3})
	_, err = r2.Lookup(bg, "host.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrServerFailure)
	assert.Equal(t, 4, bad.Queries("", 0), "3 attempts more")
}

// A server that does not know EDNS is asked again without it.
func TestNoEDNSServer(t *testing.T) {
	srv := dnstest.Start(t)
	srv.AddA("old.test", "192.0.2.4")
	srv.Set("old.test", 0, dnstest.Reply{NoEDNS: true})
	r := newResolver(t, srv, Config{})
	a, err := r.Lookup(bg, "old.test", dns.TypeA)
	require.NoError(t, err)
	assert.Len(t, a.Records, 1)
	assert.Equal(t, 2, srv.Queries("old.test", dns.TypeA))
}

// The caller's context ends the wait at once; the exchange goes on for
// the callers that share it.
func TestContext(t *testing.T) {
	srv := dnstest.Start(t)
	srv.AddA("slow.test", "192.0.2.5")
	srv.Set("slow.test", 0, dnstest.Reply{Delay: 200 * time.Millisecond})
	r := newResolver(t, srv, Config{Timeout: 2 * time.Second})

	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := r.Lookup(ctx, "slow.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrTimeout)
	assert.ErrorIs(t, err, context.Canceled)

	ctx, cancel = context.WithTimeout(bg, 10*time.Millisecond)
	defer cancel()
	_, err = r.Lookup(ctx, "slow.test", dns.TypeA)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	// The exchange the first caller started finishes for the next one.
	a, err := r.Lookup(bg, "slow.test", dns.TypeA)
	require.NoError(t, err)
	assert.Len(t, a.Records, 1)
	assert.Equal(t, 1, srv.Queries("slow.test", 0))

	_, err = r.Exchange(ctx, "slow.test", dns.TypeA)
	assert.ErrorIs(t, err, ErrTimeout, "Exchange runs within ctx")
}

func TestSharedExchange(t *testing.T) {
	srv := dnstest.Start(t)
	srv.AddA("popular.test", "192.0.2.6")
	srv.Set("popular.test", 0, dnstest.Reply{Delay: 100 * time.Millisecond})
	r := newResolver(t, srv, Config{Timeout: 2 * time.Second, CacheSize: -1})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			a, err := r.Lookup(bg, "popular.test", dns.TypeA)
			assert.NoError(t, err)
			assert.Len(t, a.Records, 1)
		})
	}
	wg.Wait()
	assert.Equal(t, 1, srv.Queries("popular.test", 0))
}

func TestCache(t *testing.T) {
	srv := dnstest.Start(t, `
$ORIGIN cache.test.
@      SOA ns hostmaster 1 3600 600 86400 90
short  10    A 192.0.2.1
mid    600   A 192.0.2.2
long   86400 A 192.0.2.3
alias  30    CNAME mid
`)
	clock := testutil.NewClock()
	r := newResolver(t, srv, Config{Now: clock.Now, MinTTL: 30 * time.Second, MaxTTL: 10 * time.Minute,
		NegativeMaxTTL: time.Minute})
	ask := func(name string) Answer {
		t.Helper()
		a, err := r.Lookup(bg, name, dns.TypeA)
		require.NoError(t, err)
		return a
	}
	for _, n := range []string{"short", "mid", "long", "alias", "nx", "mid"} {
		ask(n + ".cache.test")
	}
	counts := func() []int {
		var out []int
		for _, n := range []string{"short", "mid", "long", "alias", "nx"} {
			out = append(out, srv.Queries(n+".cache.test", dns.TypeA))
		}
		return out
	}
	assert.Equal(t, []int{1, 1, 1, 1, 1}, counts())
	assert.Equal(t, 5, r.CacheLen())

	clock.Advance(20 * time.Second)
	a := ask("mid.cache.test")
	assert.Equal(t, 580*time.Second, a.TTL, "TTL counted down in the cache")
	a = ask("alias.cache.test")
	assert.Equal(t, 10*time.Second, a.TTL, "the alias's TTL is the chain's smallest")
	ask("short.cache.test")
	assert.Equal(t, []int{1, 1, 1, 1, 1}, counts(), "TTL 10 raised to MinTTL 30")
	a, ok := r.Cached("nx.cache.test", dns.TypeA)
	require.True(t, ok)
	assert.True(t, a.NXDomain())

	clock.Advance(15 * time.Second) // 35 s
	ask("short.cache.test")
	ask("alias.cache.test")
	assert.Equal(t, []int{2, 1, 1, 2, 1}, counts())

	clock.Advance(30 * time.Second) // 65 s: the negative answer (SOA 90) is capped at a minute
	ask("nx.cache.test")
	assert.Equal(t, []int{2, 1, 1, 2, 2}, counts())

	clock.Advance(10 * time.Minute) // MaxTTL bounds the day-long TTL
	ask("long.cache.test")
	assert.Equal(t, 2, srv.Queries("long.cache.test", dns.TypeA))

	_, ok = r.Cached("never.cache.test", dns.TypeA)
	assert.False(t, ok)
	assert.Zero(t, srv.Queries("never.cache.test", 0), "Cached asks nothing")

	// Exchange neither reads nor fills the cache.
	before := srv.Queries("mid.cache.test", 0)
	_, err := r.Exchange(bg, "mid.cache.test", dns.TypeA)
	require.NoError(t, err)
	_, err = r.Exchange(bg, "fresh.cache.test", dns.TypeA)
	require.NoError(t, err)
	assert.Equal(t, before+1, srv.Queries("mid.cache.test", 0))
	_, ok = r.Cached("fresh.cache.test", dns.TypeA)
	assert.False(t, ok)
}

// A negative answer without SOA gives no TTL: it is not kept (RFC 2308
// §5); with a cache bound of 0 nothing is kept at all.
func TestNegativeWithoutSOA(t *testing.T) {
	srv := dnstest.Start(t)
	srv.SetNegativeTTL(0, true)
	r := newResolver(t, srv, Config{})
	for range 2 {
		a, err := r.Lookup(bg, "nx.test", dns.TypeA)
		require.NoError(t, err)
		assert.True(t, a.NXDomain())
	}
	assert.Equal(t, 2, srv.Queries("nx.test", 0))
}

func TestCacheEviction(t *testing.T) {
	srv := dnstest.Start(t)
	for _, n := range []string{"a", "b", "c", "d"} {
		srv.AddA(n+".test", "192.0.2.1")
	}
	r := newResolver(t, srv, Config{CacheSize: 3})
	for _, n := range []string{"a", "b", "c", "a", "d", "a", "b"} {
		_, err := r.Lookup(bg, n+".test", dns.TypeA)
		require.NoError(t, err)
	}
	assert.Equal(t, 3, r.CacheLen())
	// b was the least recently used when d came: asked twice.
	assert.Equal(t, []int{1, 2, 1, 1}, []int{srv.Queries("a.test", 0), srv.Queries("b.test", 0),
		srv.Queries("c.test", 0), srv.Queries("d.test", 0)})
}

func TestAuthenticatedData(t *testing.T) {
	srv := dnstest.Start(t, `
mx.signed.test.     A     192.0.2.1
alias.signed.test.  CNAME mx.plain.test.
mx.plain.test.      A     192.0.2.2
`)
	srv.Secure("signed.test")
	r := newResolver(t, srv, Config{})
	for name, want := range map[string]bool{
		"mx.signed.test":    true,
		"nx.signed.test":    true, // a validated denial
		"alias.signed.test": false,
		"mx.plain.test":     false,
	} {
		a, err := r.Lookup(bg, name, dns.TypeA)
		require.NoError(t, err)
		assert.Equal(t, want, a.AD, name)
	}
}

func TestNetResolverMethods(t *testing.T) {
	srv := dnstest.Start(t, testZone)
	srv.AddTXT("raw.test", "quote\" backslash\\ tab\t byte\xff")
	srv.AddPTR("192.0.2.1", "mx1.example.test", "other.example.test")
	srv.AddPTR("2001:db8::1", "mx1.example.test")
	srv.Set("servfail.test", 0, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	srv.Set("silent.test", 0, dnstest.Reply{Drop: true})
	srv.AddA("half.test", "192.0.2.8")
	srv.Set("half.test", dns.TypeAAAA, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	r := newResolver(t, srv, Config{Timeout: 100 * time.Millisecond})

	txt, err := r.LookupTXT(bg, "txt.example.test")
	require.NoError(t, err)
	assert.Equal(t, []string{"v=spf1 -all", "second"}, txt, "a record's strings are joined")
	txt, err = r.LookupTXT(bg, "raw.test")
	require.NoError(t, err)
	assert.Equal(t, []string{"quote\" backslash\\ tab\t byte\xff"}, txt, "octets, not presentation form")
	txt, err = r.TXTFunc(bg)("empty.example.test")
	require.NoError(t, err)
	assert.Equal(t, []string{""}, txt)

	mx, err := r.LookupMX(bg, "example.test")
	require.NoError(t, err)
	assert.Equal(t, []*net.MX{{Host: "mx1.example.test.", Pref: 10}, {Host: "mx2.example.test.", Pref: 20}}, mx)

	ips, err := r.LookupIPAddr(bg, "www.example.test")
	require.NoError(t, err)
	assert.Equal(t, []net.IPAddr{{IP: net.ParseIP("192.0.2.1").To4()}, {IP: net.ParseIP("2001:db8::1")}}, ips)
	addrs, err := r.LookupNetIP(bg, "ip6", "mx1.example.test")
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("2001:db8::1")}, addrs)
	addrs, err = r.LookupNetIP(bg, "ip4", "192.0.2.77")
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("192.0.2.77")}, addrs, "an address is its own answer")

	names, err := r.LookupAddr(bg, "192.0.2.1")
	require.NoError(t, err)
	assert.Equal(t, []string{"mx1.example.test.", "other.example.test."}, names)
	names, err = r.LookupAddr(bg, "2001:db8::1")
	require.NoError(t, err)
	assert.Equal(t, []string{"mx1.example.test."}, names)

	for name, tc := range map[string]struct {
		err                           error
		call                          func() error
		notFound, temporary, timedOut bool
	}{
		"NXDOMAIN": {err: ErrNXDomain, notFound: true, call: func() error { _, err := r.LookupTXT(bg, "nx.example.test"); return err }},
		"no data":  {err: ErrNoData, notFound: true, call: func() error { _, err := r.LookupMX(bg, "mx1.example.test"); return err }},
		"no address": {err: ErrNoData, notFound: true, call: func() error {
			_, err := r.LookupIPAddr(bg, "example.test")
			return err
		}},
		"bad name": {err: ErrName, notFound: true, call: func() error { _, err := r.LookupTXT(bg, "a..b"); return err }},
		"SERVFAIL": {err: ErrServerFailure, temporary: true, call: func() error { _, err := r.LookupTXT(bg, "servfail.test"); return err }},
		"timeout":  {err: ErrTimeout, temporary: true, timedOut: true, call: func() error { _, err := r.LookupAddr(bg, "192.0.2.99"); return err }},
		"half an answer is none": {err: ErrServerFailure, temporary: true, call: func() error {
			_, err := r.LookupIPAddr(bg, "half.test")
			return err
		}},
		"bad address": {err: ErrName, call: func() error { _, err := r.LookupAddr(bg, "not-an-ip"); return err }},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "timeout" {
				srv.Set(dnstest.Reverse("192.0.2.99"), 0, dnstest.Reply{Drop: true})
			}
			err := tc.call()
			// The libraries test the type without errors.As.
			de, ok := err.(*net.DNSError)
			require.True(t, ok, "%T %v", err, err)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, tc.notFound, de.IsNotFound)
			assert.Equal(t, tc.temporary, de.Temporary())
			assert.Equal(t, tc.timedOut, de.Timeout())
		})
	}
}

func TestConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad server":       {Servers: []string{"dns.example"}},
		"negative timeout": {Servers: []string{"127.0.0.1"}, Timeout: -1},
		"negative attempt": {Servers: []string{"127.0.0.1"}, Attempts: -1},
		"bad net":          {Servers: []string{"127.0.0.1"}, Net: "quic"},
		"min above max":    {Servers: []string{"127.0.0.1"}, MinTTL: 2 * time.Hour},
		"min above neg":    {Servers: []string{"127.0.0.1"}, MinTTL: 20 * time.Minute, MaxTTL: time.Hour},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
	r, err := New(Config{Servers: []string{"127.0.0.1", "[::1]:5353", "::ffff:192.0.2.1"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1:53", "[::1]:5353", "192.0.2.1:53"}, r.Servers())
	assert.Equal(t, DefaultTimeout, r.timeout)
	assert.Equal(t, DefaultAttempts, r.attempts)
	assert.Equal(t, DefaultMinTTL, r.minTTL)

	// Without servers, /etc/resolv.conf's.
	if _, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
		r, err := New(Config{})
		require.NoError(t, err)
		assert.NotEmpty(t, r.Servers())
	}
	r, err = New(Config{Servers: []string{"127.0.0.1"}, MinTTL: -1})
	require.NoError(t, err)
	assert.Zero(t, r.minTTL, "a negative MinTTL keeps TTLs as they are")
}
