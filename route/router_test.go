package route

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

func newTestRouter(t testing.TB, d *dnstest.Server, cfg RouterConfig) *Router {
	t.Helper()
	if cfg.Resolver == nil {
		cfg.Resolver = testResolver(t, d, resolver.Config{})
	}
	r, err := NewRouter(cfg)
	require.NoError(t, err)
	return r
}

func targetStrings(p Plan) []string {
	var out []string
	for _, t := range p.Targets {
		out = append(out, t.String())
	}
	return out
}

func resolveDomain(t *testing.T, r *Router, domain string) (Plan, error) {
	t.Helper()
	rt, err := r.Route("user@" + domain)
	require.NoError(t, err)
	return r.Resolve(bg, rt)
}

func requireFailure(t *testing.T, err error, code int, esc string, sentinel error) *Failure {
	t.Helper()
	var f *Failure
	require.True(t, errors.As(err, &f), "%v", err)
	assert.Equal(t, code, f.Reply.Code, f.Reply.Error())
	assert.Equal(t, esc, f.Reply.Enhanced.String())
	assert.ErrorIs(t, err, sentinel)
	return f
}

func TestMXPreferenceOrder(t *testing.T) {
	d := startDNS(t)
	addRR(t, d,
		"example.net. 300 IN MX 20 mx2.example.net.",
		"example.net. 300 IN MX 10 mx1.example.net.",
		"example.net. 300 IN MX 30 mx3.example.net.",
		"mx1.example.net. 300 IN A 192.0.2.1",
		"mx1.example.net. 300 IN AAAA 2001:db8::1",
		"mx2.example.net. 300 IN A 192.0.2.2",
		"mx3.example.net. 300 IN A 192.0.2.3",
	)
	r := newTestRouter(t, d, RouterConfig{})
	p, err := resolveDomain(t, r, "Example.NET")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"mx1.example.net[192.0.2.1]:25", "mx1.example.net[2001:db8::1]:25",
		"mx2.example.net[192.0.2.2]:25", "mx3.example.net[192.0.2.3]:25",
	}, targetStrings(p))
	assert.Equal(t, 10, p.Targets[0].Pref)
	assert.False(t, p.SelfMX)

	r4 := newTestRouter(t, d, RouterConfig{Network: "ip4", Port: 2525})
	p, err = resolveDomain(t, r4, "example.net")
	require.NoError(t, err)
	assert.Equal(t, []string{"mx1.example.net[192.0.2.1]:2525", "mx2.example.net[192.0.2.2]:2525", "mx3.example.net[192.0.2.3]:2525"}, targetStrings(p))
	r6 := newTestRouter(t, d, RouterConfig{Network: "ip6"})
	p, err = resolveDomain(t, r6, "example.net")
	require.NoError(t, err)
	assert.Equal(t, []string{"mx1.example.net[2001:db8::1]:25"}, targetStrings(p))
}

func TestMXEqualPreferenceShuffled(t *testing.T) {
	d := startDNS(t)
	addRR(t, d,
		"example.net. 300 IN MX 5 first.example.net.",
		"example.net. 300 IN MX 10 a.example.net.",
		"example.net. 300 IN MX 10 b.example.net.",
		"example.net. 300 IN MX 10 c.example.net.",
		"first.example.net. 300 IN A 192.0.2.10",
		"a.example.net. 300 IN A 192.0.2.1",
		"b.example.net. 300 IN A 192.0.2.2",
		"c.example.net. 300 IN A 192.0.2.3",
	)
	hosts := func(rand func(int) int) []string {
		r := newTestRouter(t, d, RouterConfig{Rand: rand, Network: "ip4"})
		p, err := resolveDomain(t, r, "example.net")
		require.NoError(t, err)
		var out []string
		for _, tg := range p.Targets {
			out = append(out, strings.TrimSuffix(tg.Host, ".example.net"))
		}
		return out
	}
	// Fisher-Yates with j == i keeps the order; with j == 0 it rotates.
	assert.Equal(t, []string{"first", "a", "b", "c"}, hosts(func(n int) int { return n - 1 }))
	assert.Equal(t, []string{"first", "b", "c", "a"}, hosts(func(int) int { return 0 }))
	// A broken source cannot break the order of preferences.
	assert.Equal(t, "first", hosts(func(int) int { return 99 })[0])
}

func TestImplicitMX(t *testing.T) {
	d := startDNS(t)
	addRR(t, d, "nomx.example. 300 IN A 192.0.2.7", "nomx.example. 300 IN TXT \"v=spf1 -all\"")
	r := newTestRouter(t, d, RouterConfig{})
	p, err := resolveDomain(t, r, "nomx.example")
	require.NoError(t, err)
	assert.Equal(t, []string{"nomx.example[192.0.2.7]:25"}, targetStrings(p))

	addRR(t, d, "noaddr.example. 300 IN TXT \"nothing\"")
	_, err = resolveDomain(t, r, "noaddr.example")
	requireFailure(t, err, 550, "5.4.4", ErrNoAddress)
}

func TestNullMX(t *testing.T) {
	d := startDNS(t)
	addRR(t, d, "nomail.example. 300 IN MX 0 .", "nomail.example. 300 IN A 192.0.2.9")
	r := newTestRouter(t, d, RouterConfig{FallbackRelays: []string{"[192.0.2.200]"}})
	_, err := resolveDomain(t, r, "nomail.example")
	f := requireFailure(t, err, 556, "5.1.10", ErrNullMX)
	assert.True(t, f.Reply.Permanent())

	// A "." next to real exchangers is ignored.
	addRR(t, d, "mixed.example. 300 IN MX 0 .", "mixed.example. 300 IN MX 10 mx.mixed.example.", "mx.mixed.example. 300 IN A 192.0.2.11")
	p, err := resolveDomain(t, r, "mixed.example")
	require.NoError(t, err)
	assert.Equal(t, []string{"mx.mixed.example[192.0.2.11]:25"}, targetStrings(p))
}

func TestNXDomainAndServfail(t *testing.T) {
	d := startDNS(t)
	d.Set("broken.example", dns.TypeMX, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	addRR(t, d, "badmx.example. 300 IN MX 10 mx.badmx.example.")
	d.Set("mx.badmx.example", dns.TypeA, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	d.Set("mx.badmx.example", dns.TypeAAAA, dnstest.Reply{Rcode: dns.RcodeServerFailure})
	d.Set("slow.example", dns.TypeMX, dnstest.Reply{Drop: true})
	r := newTestRouter(t, d, RouterConfig{Resolver: testResolver(t, d, resolver.Config{Timeout: 200 * time.Millisecond, Attempts: 1})})

	_, err := resolveDomain(t, r, "does-not-exist.example")
	f := requireFailure(t, err, 550, "5.1.2", ErrNoDomain)
	assert.True(t, f.Reply.Permanent())

	_, err = resolveDomain(t, r, "broken.example")
	f = requireFailure(t, err, 451, "4.4.3", ErrDNS)
	assert.Contains(t, f.Reply.Text(), "SERVFAIL")

	_, err = resolveDomain(t, r, "badmx.example")
	requireFailure(t, err, 451, "4.4.3", ErrDNS)

	_, err = resolveDomain(t, r, "slow.example")
	requireFailure(t, err, 451, "4.4.3", ErrDNS)

	// MX host that does not exist: permanent.
	addRR(t, d, "ghost.example. 300 IN MX 10 nowhere.ghost.example.")
	_, err = resolveDomain(t, r, "ghost.example")
	requireFailure(t, err, 550, "5.4.4", ErrNoAddress)
}

func TestInternationalisedDomain(t *testing.T) {
	d := startDNS(t)
	addRR(t, d, "xn--bcher-kva.example. 300 IN MX 10 mx.xn--bcher-kva.example.", "mx.xn--bcher-kva.example. 300 IN A 192.0.2.50")
	r := newTestRouter(t, d, RouterConfig{})
	p, err := resolveDomain(t, r, "Bücher.example")
	require.NoError(t, err)
	assert.Equal(t, []string{"mx.xn--bcher-kva.example[192.0.2.50]:25"}, targetStrings(p))
}

func TestCNAMEMX(t *testing.T) {
	d := startDNS(t)
	addRR(t, d,
		"example.org. 300 IN MX 10 alias.example.org.",
		"alias.example.org. 300 IN CNAME real.example.org.",
		"real.example.org. 300 IN A 192.0.2.20",
		// the domain itself an alias of one with MX records
		"aka.example. 300 IN CNAME example.org.",
	)
	var logs testutil.LogBuffer
	r := newTestRouter(t, d, RouterConfig{Logger: logs.Logger()})
	p, err := resolveDomain(t, r, "example.org")
	require.NoError(t, err)
	assert.Equal(t, []string{"alias.example.org[192.0.2.20]:25"}, targetStrings(p))
	recs := logs.Records(t, "MX host is an alias (CNAME); following it")
	require.Len(t, recs, 1)
	assert.Equal(t, "alias.example.org", recs[0]["mx"])

	p, err = resolveDomain(t, r, "aka.example")
	require.NoError(t, err)
	assert.Equal(t, []string{"alias.example.org[192.0.2.20]:25"}, targetStrings(p))
}

func TestNumericMX(t *testing.T) {
	d := startDNS(t)
	addRR(t, d, "numeric.example. 300 IN MX 10 192.0.2.30.")
	var logs testutil.LogBuffer
	r := newTestRouter(t, d, RouterConfig{Logger: logs.Logger()})
	_, err := resolveDomain(t, r, "numeric.example")
	f := requireFailure(t, err, 451, "4.4.4", ErrNoAddress)
	assert.Contains(t, f.Reply.Text(), "numeric IP")
	assert.Len(t, logs.Records(t, "MX host is a numeric IP address; ignored"), 1)

	r = newTestRouter(t, d, RouterConfig{AllowNumericMX: true})
	p, err := resolveDomain(t, r, "numeric.example")
	require.NoError(t, err)
	assert.Equal(t, []string{"[192.0.2.30]:25"}, targetStrings(p))
}

func TestMXAddressLimit(t *testing.T) {
	d := startDNS(t)
	for i, h := range []string{"a", "b", "c", "d"} {
		addRR(t, d, "many.example. 300 IN MX "+string(rune('1'+i))+"0 "+h+".many.example.",
			h+".many.example. 300 IN A 192.0.2."+string(rune('1'+i)),
			h+".many.example. 300 IN A 198.51.100."+string(rune('1'+i)))
	}
	p, err := resolveDomain(t, newTestRouter(t, d, RouterConfig{}), "many.example")
	require.NoError(t, err)
	require.Len(t, p.Targets, DefaultMXAddressLimit)
	assert.Equal(t, "c.many.example", p.Targets[4].Host)
	p, err = resolveDomain(t, newTestRouter(t, d, RouterConfig{MXAddressLimit: 2}), "many.example")
	require.NoError(t, err)
	assert.Equal(t, []string{"a.many.example[192.0.2.1]:25", "a.many.example[198.51.100.1]:25"}, targetStrings(p))
	p, err = resolveDomain(t, newTestRouter(t, d, RouterConfig{MXAddressLimit: -1}), "many.example")
	require.NoError(t, err)
	assert.Len(t, p.Targets, 8)
}

func TestMXLoopsBackToMyself(t *testing.T) {
	d := startDNS(t)
	addRR(t, d,
		"ours.example. 300 IN MX 10 relay1.ours.example.",
		"ours.example. 300 IN MX 20 relay2.ours.example.",
		"relay1.ours.example. 300 IN A 198.51.100.25",
		"relay2.ours.example. 300 IN A 198.51.100.26",
		"backup.example. 300 IN MX 10 store.backup.example.",
		"backup.example. 300 IN MX 20 relay1.ours.example.",
		"backup.example. 300 IN MX 30 other.backup.example.",
		"store.backup.example. 300 IN A 192.0.2.40",
		"other.backup.example. 300 IN A 192.0.2.41",
	)
	byName := newTestRouter(t, d, RouterConfig{LocalNames: []string{"Relay1.ours.example."}, FallbackRelays: []string{"[192.0.2.99]"}})
	byAddr := newTestRouter(t, d, RouterConfig{LocalAddrs: []string{"198.51.100.0/27"}, FallbackRelays: []string{"[192.0.2.99]"}})
	for name, r := range map[string]*Router{"name": byName, "addr": byAddr} {
		t.Run(name, func(t *testing.T) {
			p, err := resolveDomain(t, r, "ours.example")
			f := requireFailure(t, err, 554, "5.4.6", ErrMailLoop)
			assert.True(t, f.Reply.Permanent())
			assert.True(t, p.SelfMX)

			// Backup MX: only the more preferred exchanger, and no
			// fallback relay.
			p, err = resolveDomain(t, r, "backup.example")
			require.NoError(t, err)
			assert.Equal(t, []string{"store.backup.example[192.0.2.40]:25"}, targetStrings(p))
			assert.True(t, p.SelfMX)
		})
	}
	// A bracketed host that is us.
	r := newTestRouter(t, nil, RouterConfig{Mailertable: mustTable(t, "loop.example esmtp:[198.51.100.25]\n"), LocalAddrs: []string{"198.51.100.25"}})
	_, err := resolveDomain(t, r, "loop.example")
	requireFailure(t, err, 554, "5.4.6", ErrMailLoop)
}

func TestRoute(t *testing.T) {
	mt := mustTable(t, "nix.co.jj esmtp:[192.168.1.1]\n.nix.co.jj esmtp:\nlocal.example local:\nredir.example smtp:postmaster@[10.0.0.1]\n")
	r := newTestRouter(t, nil, RouterConfig{
		Mailertable: mt, FallbackRelays: []string{"[relay2.example]", "relay3.example:2525"},
		RelayDomains: []string{"nix.co.jj", ".nix.co.jj"},
	})
	tests := []struct {
		addr, dest, rcpt string
		src              Source
		fallback         bool
	}{
		{"u@nix.co.jj", "esmtp:[192.168.1.1]", "u@nix.co.jj", FromMailertable, false},
		{"u@sub.nix.co.jj", "esmtp:sub.nix.co.jj", "u@sub.nix.co.jj", FromMailertable, false},
		{"u@local.example", "local:", "u@local.example", FromMailertable, false},
		{"u@redir.example", "smtp:postmaster@[10.0.0.1]", "postmaster@[10.0.0.1]", FromMailertable, true},
		{"U@Example.NET", "mx:example.net", "U@Example.NET", FromMX, true},
		{"u@[192.0.2.5]", "esmtp:[192.0.2.5]", "u@[192.0.2.5]", FromMX, true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			rt, err := r.Route(tt.addr)
			require.NoError(t, err)
			assert.Equal(t, tt.dest, rt.Dest)
			assert.Equal(t, tt.rcpt, rt.Rcpt)
			assert.Equal(t, tt.src, rt.Source)
			assert.Equal(t, tt.fallback, rt.Fallback != nil)
		})
	}
	for _, bad := range []string{"nodomain", "user@", "u@bad domain", "u@-x.example"} {
		_, err := r.Route(bad)
		assert.ErrorIs(t, err, ErrBadAddress, bad)
	}

	smart := newTestRouter(t, nil, RouterConfig{Mailertable: mt, SmartHost: "[smarthost.isp.example]:587"})
	rt, err := smart.Route("u@example.net")
	require.NoError(t, err)
	assert.Equal(t, FromSmartHost, rt.Source)
	assert.Equal(t, "relay:[smarthost.isp.example]:587", rt.Dest)
	rt, err = smart.Route("u@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, FromMailertable, rt.Source)
	smart2 := newTestRouter(t, nil, RouterConfig{SmartHost: "esmtp:[10.1.1.1]"})
	rt, err = smart2.Route("u@example.net")
	require.NoError(t, err)
	assert.Equal(t, "esmtp:[10.1.1.1]", rt.Dest)
}

func TestRouterConfigErrors(t *testing.T) {
	for name, cfg := range map[string]RouterConfig{
		"network":   {Network: "tcp"},
		"smarthost": {SmartHost: "esmtp:[bad"},
		"fallback":  {FallbackRelays: []string{"local:"}},
		"relay":     {RelayDomains: []string{"bad..domain"}},
		"names":     {LocalNames: []string{"x y"}},
		"addrs":     {LocalAddrs: []string{"not-an-ip"}},
	} {
		_, err := NewRouter(cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
	// No Resolver: one from /etc/resolv.conf.
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		r, err := NewRouter(RouterConfig{})
		require.NoError(t, err)
		assert.IsType(t, &resolver.Resolver{}, r.dns)
	}
}

func TestResolveLiteralAndNetwork(t *testing.T) {
	r := newTestRouter(t, nil, RouterConfig{Network: "ip4"})
	p, err := r.ResolveHosts(bg, KindSMTP, []Host{{Name: "192.0.2.1", Addr: netip.MustParseAddr("192.0.2.1"), NoMX: true}})
	require.NoError(t, err)
	assert.Equal(t, []string{"[192.0.2.1]:25"}, targetStrings(p))
	_, err = r.ResolveHosts(bg, KindSMTP, []Host{{Name: "2001:db8::1", Addr: netip.MustParseAddr("2001:db8::1"), NoMX: true}})
	requireFailure(t, err, 550, "5.4.4", ErrNoAddress)
	p, err = r.ResolveHosts(bg, KindLMTP, []Host{{Name: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), NoMX: true}})
	require.NoError(t, err)
	assert.Equal(t, []string{"[10.0.0.1]:24"}, targetStrings(p))
}

// TestRouteOrder: sendmail's order, mailertable, local delivery, smart
// host, MX.
func TestRouteOrder(t *testing.T) {
	mt := mustTable(t, "routed.example esmtp:[192.0.2.10]\n.sub.local.example esmtp:[192.0.2.11]\n")
	r := newTestRouter(t, nil, RouterConfig{Mailertable: mt, LocalDomains: []string{"Local.Example", "routed.example"},
		SmartHost: "[smart.example]"})
	for _, tc := range []struct {
		addr string
		src  Source
		dest string
	}{
		{"u@routed.example", FromMailertable, "esmtp:[192.0.2.10]"}, // the mailertable wins over local
		{"u@LOCAL.example.", FromLocal, "local:"},
		{"u@a.sub.local.example", FromMailertable, "esmtp:[192.0.2.11]"},
		{"u@other.local.example", FromSmartHost, "relay:[smart.example]"}, // local domains are exact
		{"u@remote.example", FromSmartHost, "relay:[smart.example]"},
	} {
		rt, err := r.Route(tc.addr)
		require.NoError(t, err, tc.addr)
		assert.Equal(t, tc.src, rt.Source, tc.addr)
		assert.Equal(t, tc.dest, rt.Dest, tc.addr)
	}
	lmtp := newTestRouter(t, nil, RouterConfig{LocalDomains: []string{"local.example"}, LocalHop: "lmtp:unix:/run/dovecot/lmtp"})
	rt, err := lmtp.Route("u@local.example")
	require.NoError(t, err)
	assert.Equal(t, KindLMTP, rt.Hop.Kind)
	assert.Equal(t, FromLocal, rt.Source)
	rt, err = lmtp.Route("u@remote.example")
	require.NoError(t, err)
	assert.Equal(t, "mx:remote.example", rt.Dest)
	for _, bad := range []RouterConfig{{LocalHop: "esmtp:"}, {LocalHop: "bogus:x"}, {LocalDomains: []string{"bad..example"}}} {
		_, err := NewRouter(bad)
		assert.ErrorIs(t, err, ErrConfig, "%+v", bad)
	}
}
