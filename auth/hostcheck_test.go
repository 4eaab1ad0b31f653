package auth

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestParseHELO(t *testing.T) {
	a := netip.MustParseAddr
	for in, want := range map[string]HELO{
		"Mail.Example.ORG":              {Name: "mail.example.org"},
		"mail.example.org.":             {Name: "mail.example.org"},
		"[192.0.2.1]":                   {Addr: a("192.0.2.1"), Literal: true},
		"[IPv6:2001:db8::1]":            {Addr: a("2001:db8::1"), Literal: true},
		"[ipv6:::ffff:192.0.2.1]":       {Addr: a("192.0.2.1"), Literal: true},
		"[2001:db8::1]":                 {Literal: true}, // IPv6 needs its tag
		"[IPv6:192.0.2.1]":              {Literal: true},
		"[192.0.2.256]":                 {Literal: true},
		"[fe80::1%eth0]":                {Literal: true},
		"192.0.2.1":                     {Addr: a("192.0.2.1")},
		"2001:db8::1":                   {Addr: a("2001:db8::1")},
		"fe80::1%lo":                    {},
		"":                              {},
		"a b":                           {},
		"1.2.3":                         {},
		"localhost":                     {Name: "localhost"},
		strings.Repeat("a.", 130) + "b": {},
	} {
		assert.Equal(t, want, ParseHELO(in), in)
	}
}

func FuzzParseHELO(f *testing.F) {
	for _, s := range []string{"mail.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]", "192.0.2.1", "[", "[]",
		"[IPv6:]", "localhost.", "[IPv6:::ffff:1.2.3.4]", "\x00", "é.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := ParseHELO(s)
		if h.Addr.IsValid() && h.Name != "" {
			t.Fatalf("%q: both an address and a name", s)
		}
		if h.Addr.Is4In6() || h.Addr.Zone() != "" {
			t.Fatalf("%q: address %v not unmapped or zoned", s, h.Addr)
		}
		if h.Name != "" {
			// A name is a host name, in the one form hostName gives, and
			// is safe in a log line or a reply.
			n, ok := hostName(h.Name)
			if !ok || n != h.Name || strings.ContainsAny(h.Name, " \r\n()[];\"\\") {
				t.Fatalf("%q: bad name %q", s, h.Name)
			}
		}
		if h.Literal != (len(strings.TrimSpace(s)) >= 2 && strings.HasPrefix(strings.TrimSpace(s), "[") && strings.HasSuffix(strings.TrimSpace(s), "]")) {
			t.Fatalf("%q: Literal %v", s, h.Literal)
		}
	})
}

func TestParseHostCheck(t *testing.T) {
	var all HostCheck
	for _, n := range []string{"helo_resolves", "HELO_NOT_US", " helo_literal", "client_ptr", "client_name"} {
		c, err := ParseHostCheck(n)
		require.NoError(t, err, n)
		all |= c
	}
	assert.Equal(t, "helo_resolves,helo_not_us,helo_literal,client_ptr,client_name", all.String())
	assert.Equal(t, "none", HostCheck(0).String())
	_, err := ParseHostCheck("reject_unknown_client")
	assert.ErrorIs(t, err, ErrConfig)
}

func hostConn(ip, helo string) *postern.Conn {
	return &postern.Conn{ID: "c1", Remote: netip.AddrPortFrom(netip.MustParseAddr(ip), 40000),
		Local: netip.MustParseAddrPort("203.0.113.25:25"), HELO: helo}
}

func TestHostFilterHELO(t *testing.T) {
	s := startDNS(t)
	s.a("mail.example.org", "198.51.100.7")
	s.mx("mxonly.example.org", 10, "mail.example.org")
	s.setServfail("flaky.example.org")
	lb := &logBuf{newLogBuffer()}
	f, err := NewHostFilter(HostFilterConfig{Checks: CheckHELOResolves | CheckHELONotUs | CheckHELOLiteral,
		Resolver: s.resolver(), Timeout: 5 * time.Second, OwnNames: []string{"MX.Example.NET.", "example.net"},
		OwnAddrs: []netip.Addr{netip.MustParseAddr("::ffff:203.0.113.26")}, Logger: lb.Logger()})
	require.NoError(t, err)
	assert.Equal(t, "host-checks", f.Name())
	for _, tc := range []struct {
		ip, helo, want string
	}{
		{"198.51.100.7", "mail.example.org", ""},
		{"198.51.100.7", "mxonly.example.org", ""},
		{"198.51.100.7", "[198.51.100.7]", ""},
		{"2001:db8::7", "[IPv6:2001:db8::7]", ""},
		{"198.51.100.7", "nowhere.example.org", "550 5.7.1 Helo command rejected: Host not found"},
		{"198.51.100.7", "flaky.example.org", "450 4.7.1"},
		{"198.51.100.7", "x y", "550 5.7.1 Helo command rejected: need a fully-qualified host name"},
		{"198.51.100.7", "[192.0.2.1]", "550 5.7.1 Helo command rejected: address literal does not match your address 198.51.100.7"},
		{"198.51.100.7", "192.0.2.1", "550 5.7.1 Helo command rejected: address literal does not match"},
		{"198.51.100.7", "[2001:db8::1]", "550 5.7.1 Helo command rejected: need a fully-qualified host name"}, // a malformed literal is no name
		{"198.51.100.7", "mx.example.net", "550 5.7.1 Helo command rejected: you are not me"},
		{"198.51.100.7", "EXAMPLE.NET.", "550 5.7.1 Helo command rejected: you are not me"},
		{"198.51.100.7", "localhost", "550 5.7.1 Helo command rejected: you are not me"},
		{"198.51.100.7", "[203.0.113.25]", "550 5.7.1 Helo command rejected: you are not me"},
		{"198.51.100.7", "203.0.113.26", "550 5.7.1 Helo command rejected: you are not me"},
	} {
		t.Run(tc.helo, func(t *testing.T) {
			v, err := f.CheckHelo(bg, hostConn(tc.ip, tc.helo))
			require.NoError(t, err)
			if tc.want == "" {
				assert.Equal(t, postern.Pass, v)
				return
			}
			require.True(t, v.Final(), "%+v", v)
			assert.True(t, strings.HasPrefix(v.ReplyAt(postern.StageHelo).Error(), tc.want), v.ReplyAt(postern.StageHelo).Error())
		})
	}
	// localhost from a loopback client is what it says.
	v, _ := f.CheckHelo(bg, hostConn("127.0.0.1", "localhost"))
	assert.Equal(t, postern.Pass, v)
	// Trusted clients greet as they like.
	c := hostConn("198.51.100.7", "[192.0.2.1]")
	c.Trusted = true
	v, _ = f.CheckHelo(bg, c)
	assert.Equal(t, postern.Pass, v)
	recs := lb.Records(t, "host check refused")
	require.NotEmpty(t, recs)
	assert.Equal(t, "helo", recs[0]["stage"])
	// Client checks are off: any reverse DNS outcome passes.
	c = hostConn("198.51.100.7", "x")
	c.ClientResolve = postern.ResolveFail
	v, _ = f.CheckConnect(bg, c)
	assert.Equal(t, postern.Pass, v)
}

func TestHostFilterClient(t *testing.T) {
	ptr, err := NewHostFilter(HostFilterConfig{Checks: CheckClientPTR})
	require.NoError(t, err)
	name, err := NewHostFilter(HostFilterConfig{Checks: CheckClientName})
	require.NoError(t, err)
	for _, tc := range []struct {
		r        postern.ClientResolve
		ptr, nam string // expected reply prefixes; "" passes
	}{
		{postern.ResolveOK, "", ""},
		{postern.ResolveNone, "", ""},
		{postern.ResolveForged, "", "554 5.7.25 Cannot find your host name: bogus.example does not resolve to 198.51.100.9"},
		{postern.ResolveFail, "554 5.7.25 Cannot find your host name: no PTR record for 198.51.100.9",
			"554 5.7.25 Cannot find your host name: no PTR record"},
		{postern.ResolveTemp, "421 4.7.25", "421 4.7.25"},
	} {
		t.Run(tc.r.String(), func(t *testing.T) {
			for _, x := range []struct {
				f    *HostFilter
				want string
			}{{ptr, tc.ptr}, {name, tc.nam}} {
				c := hostConn("198.51.100.9", "mail.example.org")
				c.ClientResolve, c.ClientPTR = tc.r, "bogus.example"
				v, err := x.f.CheckConnect(bg, c)
				require.NoError(t, err)
				if x.want == "" {
					assert.Equal(t, postern.Pass, v)
					continue
				}
				assert.True(t, strings.HasPrefix(v.ReplyAt(postern.StageConnect).Error(), x.want), v.ReplyAt(postern.StageConnect).Error())
				// A trusted client is never refused.
				c.Trusted = true
				v, _ = x.f.CheckConnect(bg, c)
				assert.Equal(t, postern.Pass, v)
			}
		})
	}
	// A name that is no host name stays out of the reply.
	c := hostConn("198.51.100.9", "x")
	c.ClientResolve, c.ClientPTR = postern.ResolveForged, "evil\r\n250 ok"
	v, _ := name.CheckConnect(bg, c)
	assert.Equal(t, "554 5.7.25 Cannot find your host name: your PTR name does not resolve to 198.51.100.9", v.ReplyAt(postern.StageConnect).Error())
	// HELO checks are off here.
	v, _ = ptr.CheckHelo(bg, hostConn("198.51.100.9", "[192.0.2.1]"))
	assert.Equal(t, postern.Pass, v)
	_, err = NewHostFilter(HostFilterConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewHostFilter(HostFilterConfig{Checks: CheckClientPTR, Timeout: -1})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestVerifyFilterIPRev(t *testing.T) {
	vs := newVerifySetup(t)
	f := vs.filter(t, VerifyFilterConfig{})
	c := newConn("192.0.2.1")
	c.SetClientHost(postern.ClientHost{Resolve: postern.ResolveOK, Name: "mail.example.com", PTR: "mail.example.com"})
	_, _, out := vs.run(t, f, c, "alice@example.com", vs.signed)
	assert.Contains(t, authResultsOf(t, out), "iprev=pass policy.iprev=192.0.2.1 (mail.example.com);")

	c = newConn("192.0.2.1")
	c.SetClientHost(postern.ClientHost{Resolve: postern.ResolveForged, PTR: "bogus.example.gr.jp"})
	_, _, out = vs.run(t, f, c, "alice@example.com", vs.signed)
	assert.Contains(t, authResultsOf(t, out), `iprev=fail reason="PTR name bogus.example.gr.jp does not resolve to the address" policy.iprev=192.0.2.1;`)

	// No lookup, no iprev result.
	_, _, out = vs.run(t, f, newConn("192.0.2.1"), "alice@example.com", vs.signed)
	assert.NotContains(t, authResultsOf(t, out), "iprev")
}

// FuzzParseHostCheck: a check name either parses to one check whose
// String reads back the same, or is an ErrConfig.
func FuzzParseHostCheck(f *testing.F) {
	for _, s := range []string{"helo_resolves", "CLIENT_NAME", " client_ptr ", "", "helo", "none"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseHostCheck(s)
		if err != nil {
			if !errors.Is(err, ErrConfig) || c != 0 {
				t.Fatalf("%q: %v %v", s, c, err)
			}
			return
		}
		if c == 0 || c&(c-1) != 0 || !strings.EqualFold(c.String(), strings.TrimSpace(s)) {
			t.Fatalf("%q: %v", s, c)
		}
	})
}
