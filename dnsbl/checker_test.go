package dnsbl

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver"
)

func TestQueryName(t *testing.T) {
	for _, tc := range []struct {
		ip, zone, want string
	}{
		{"192.0.2.99", "zen.spamhaus.org", "99.2.0.192.zen.spamhaus.org."},
		{"127.0.0.2", "ZEN.Spamhaus.ORG.", "2.0.0.127.zen.spamhaus.org."},
		{"10.0.0.1", "bl.test", "1.0.0.10.bl.test."},
		{"255.255.255.255", "bl.test", "255.255.255.255.bl.test."},
		{"::ffff:192.0.2.1", "bl.test", "1.2.0.192.bl.test."}, // mapped: queried as IPv4
		// RFC 5782 §2.4's example.
		{"2001:db8:1:2:3:4:567:89ab", "ugly.example.com",
			"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."},
		{"::1", "bl.test", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.test."},
	} {
		got, err := QueryName(mustAddr(tc.ip), tc.zone)
		require.NoError(t, err, tc.ip)
		assert.Equal(t, tc.want, got, tc.ip)
	}
	_, err := QueryName(netip.Addr{}, "bl.test")
	assert.ErrorIs(t, err, ErrInvalidAddress)
	_, err = QueryName(mustAddr("192.0.2.1"), "bad zone")
	assert.ErrorIs(t, err, ErrConfig)

	got, err := DomainQueryName("Spam.Example.", "DBL.test.")
	require.NoError(t, err)
	assert.Equal(t, "spam.example.dbl.test.", got)
	for _, bad := range []string{"", "[192.0.2.1]", "192.0.2.1", "a..b", "exämple.com", "a b.com", string(make([]byte, 250)) + ".com"} {
		_, err := DomainQueryName(bad, "dbl.test")
		assert.ErrorIs(t, err, ErrInvalidDomain, "%q", bad)
	}
}

func TestParseMatcher(t *testing.T) {
	for _, tc := range []struct {
		src      string
		match    []string
		nonMatch []string
	}{
		{"127.0.0.2", []string{"127.0.0.2"}, []string{"127.0.0.3", "127.0.1.2"}},
		{"127.0.0.2, 127.0.0.4-127.0.0.7", []string{"127.0.0.2", "127.0.0.4", "127.0.0.7"}, []string{"127.0.0.3", "127.0.0.8"}},
		{"127.0.1.0/24", []string{"127.0.1.0", "127.0.1.255"}, []string{"127.0.2.0"}},
		{"&0x04", []string{"127.0.0.4", "127.0.0.6", "127.0.0.255"}, []string{"127.0.0.2", "127.0.0.8"}},
		{"&8,&0b10", []string{"127.0.0.8", "127.0.0.2", "127.0.0.10"}, []string{"127.0.0.4", "127.0.0.1"}},
		{"127.0.0.0/8", []string{"127.0.0.0", "127.255.255.255"}, []string{"::1"}},
	} {
		m, err := ParseMatcher(tc.src)
		require.NoError(t, err, tc.src)
		assert.Equal(t, tc.src, m.String())
		for _, a := range tc.match {
			assert.True(t, m.Match(mustAddr(a)), "%s should match %s", tc.src, a)
		}
		for _, a := range tc.nonMatch {
			assert.False(t, m.Match(mustAddr(a)), "%s should not match %s", tc.src, a)
		}
	}
	for _, bad := range []string{"", "127.0.0.2,", "10.0.0.2", "127.0.0.7-127.0.0.4", "&0", "&x", "&0x1ffffffff",
		"0.0.0.0/0", "::1", "127.0.0.0/4", "127.0.0.2-", "foo"} {
		_, err := ParseMatcher(bad)
		assert.ErrorIs(t, err, ErrConfig, "%q", bad)
	}
	assert.False(t, Matcher{}.Match(mustAddr("127.0.0.2")))
}

func TestNewValidates(t *testing.T) {
	ok := []Zone{{Name: "bl.test"}}
	for name, cfg := range map[string]Config{
		"no zones":              {},
		"empty zone name":       {Zones: []Zone{{}}},
		"zone is an address":    {Zones: []Zone{{Name: "127.0.0.1"}}},
		"bad zone char":         {Zones: []Zone{{Name: "bl test"}}},
		"duplicate zone":        {Zones: []Zone{{Name: "bl.test"}, {Name: "BL.test."}}},
		"bad match":             {Zones: []Zone{{Name: "bl.test", Match: "10.0.0.1"}}},
		"bad error match":       {Zones: []Zone{{Name: "bl.test", ErrorMatch: "x"}}},
		"codes and match":       {Zones: []Zone{{Name: "bl.test", Match: "127.0.0.2", Codes: []Code{{Match: "127.0.0.3"}}}}},
		"code without match":    {Zones: []Zone{{Name: "bl.test", Codes: []Code{{Weight: 2}}}}},
		"NaN weight":            {Zones: []Zone{{Name: "bl.test", Weight: nan()}}},
		"negative threshold":    {Zones: ok, Threshold: -1},
		"bad reply template":    {Zones: []Zone{{Name: "bl.test", Reply: "blocked {hots}"}}},
		"unclosed template":     {Zones: []Zone{{Name: "bl.test", Reply: "blocked {ip"}}},
		"bad kind":              {Zones: []Zone{{Name: "bl.test", Kind: 7}}},
		"bad policy":            {Zones: []Zone{{Name: "bl.test", OnError: 9}}},
		"negative timeout":      {Zones: ok, Timeout: -1},
		"negative zone timeout": {Zones: []Zone{{Name: "bl.test", Timeout: -1}}},
		"IP zone too long":      {Zones: []Zone{{Name: longName(200)}}},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}

	res, err := resolver.New(resolver.Config{Servers: []string{"127.0.0.1"}})
	require.NoError(t, err)
	c, err := New(Config{Zones: []Zone{{Name: "BL.Test."}, {Name: "bl.test", Kind: DomainZone, Timeout: time.Second}},
		Resolver: res})
	require.NoError(t, err)
	assert.Same(t, res, c.res)
	assert.Equal(t, 1.0, c.Threshold())
	assert.Equal(t, "bl.test", c.ipZones[0].name)
	assert.Zero(t, c.ipZones[0].timeout, "no bound beyond the resolver's")
	assert.Equal(t, time.Second, c.domainZones[0].timeout)

	// No Resolver: one from /etc/resolv.conf.
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		c, err := New(Config{Zones: ok})
		require.NoError(t, err)
		assert.IsType(t, &resolver.Resolver{}, c.res)
	}
}

func nan() float64 { z := 0.0; return z / z }

func longName(n int) string {
	b := make([]byte, 0, n)
	for len(b) < n {
		b = append(b, "abcdefghi."...)
	}
	return string(b[:n-1]) + "x"
}

// The core table: one zone, one answer, what the check makes of it.
func TestCheckIPAnswers(t *testing.T) {
	s := startDNS(t)
	const zoneName = "bl.test"
	ip := func(i int) string { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String() }
	name := func(i int) string { return qn(ip(i), zoneName) }

	s.listA(name(1), 300, "127.0.0.2")
	// 2: not in the zone: NXDOMAIN
	s.set(name(3), dns.TypeA, response{rcode: dns.RcodeServerFailure})
	s.set(name(4), dns.TypeA, response{silent: true})
	s.listA(name(5), 300, "127.255.255.254")
	s.listA(name(6), 300, "127.255.255.252")
	s.listA(name(7), 300, "198.51.100.7") // a lapsed zone's wildcard
	s.set(name(8), dns.TypeA, response{answer: []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: name(8), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{"listed"}}}})
	s.set(name(9), dns.TypeA, response{answer: []dns.RR{&dns.CNAME{
		Hdr: dns.RR_Header{Name: name(9), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: "elsewhere.example."}}})
	s.set(name(10), dns.TypeA, response{answer: append([]dns.RR{&dns.CNAME{
		Hdr:    dns.RR_Header{Name: name(10), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300},
		Target: "listed.bl.test."}}, aRRs("listed.bl.test.", 300, "127.0.0.3")...)})
	s.set(name(11), dns.TypeA, response{answer: aRRs("other.bl.test.", 300, "127.0.0.2")}) // not our name
	s.set(name(12), dns.TypeA, response{rcode: dns.RcodeRefused})
	s.set(name(13), dns.TypeA, response{}) // NOERROR, no records: NODATA
	s.listA(name(14), 300, "127.0.0.10")   // outside Match
	s.listA(name(15), 300, "127.0.0.2", "127.255.255.255")
	s.set(name(16), dns.TypeA, response{answer: []dns.RR{&dns.AAAA{
		Hdr: dns.RR_Header{Name: name(16), Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 300}, AAAA: netip.MustParseAddr("::1").AsSlice()}}})

	type want struct {
		listed   bool
		tempFail bool
		err      error
		answers  []string
	}
	cases := []struct {
		name string
		i    int
		want want
	}{
		{"listed", 1, want{listed: true, answers: []string{"127.0.0.2"}}},
		{"NXDOMAIN is not listed", 2, want{}},
		{"SERVFAIL", 3, want{tempFail: true, err: ErrLookup}},
		{"timeout", 4, want{tempFail: true, err: ErrLookup}},
		{"127.255.255.254 public resolver", 5, want{tempFail: true, err: ErrBadAnswer}},
		{"127.255.255.252 typo", 6, want{tempFail: true, err: ErrBadAnswer}},
		{"answer outside 127/8", 7, want{tempFail: true, err: ErrBadAnswer}},
		{"TXT instead of A answers nothing", 8, want{}},
		{"dangling CNAME instead of A", 9, want{}},
		{"CNAME chain to A", 10, want{listed: true, answers: []string{"127.0.0.3"}}},
		{"A for another name", 11, want{}},
		{"REFUSED", 12, want{tempFail: true, err: ErrLookup}},
		{"NODATA", 13, want{}},
		{"code outside Match", 14, want{}},
		{"listing mixed with a refusal code", 15, want{tempFail: true, err: ErrBadAnswer}},
		{"AAAA instead of A answers nothing", 16, want{}},
	}
	for _, policy := range allPolicies {
		c := newChecker(t, s, Config{Timeout: 200 * time.Millisecond,
			Zones: []Zone{{Name: zoneName, Match: "127.0.0.2-127.0.0.9", OnError: policy}}})
		for _, tc := range cases {
			t.Run(policy.String()+"/"+tc.name, func(t *testing.T) {
				r, err := c.CheckIP(bg, mustAddr(ip(tc.i)))
				require.NoError(t, err)
				assert.Equal(t, tc.want.listed, r.Listed)
				closed := policy == postern.OnErrorTempFail || policy == postern.OnErrorReject
				assert.Equal(t, tc.want.tempFail && closed, r.Failed)
				if r.Failed {
					assert.Equal(t, policy, r.OnError)
				} else {
					assert.Equal(t, postern.OnErrorDefault, r.OnError)
				}
				if tc.want.err != nil {
					require.Len(t, r.Errors, 1)
					assert.ErrorIs(t, r.Errors[0], tc.want.err)
					assert.Equal(t, zoneName, r.Errors[0].Zone)
					assert.Equal(t, policy.Or(postern.OnErrorAccept), r.Errors[0].Policy, "resolved: fails open by default")
					assert.Empty(t, r.Hits, "an error is never a listing")
					assert.Zero(t, r.Score)
				} else {
					assert.Empty(t, r.Errors)
				}
				var got []string
				for _, h := range r.Hits {
					for _, a := range h.Answers {
						got = append(got, a.String())
					}
				}
				assert.Equal(t, tc.want.answers, got)
			})
		}
	}
}

func TestReplyTextAndTXT(t *testing.T) {
	s := startDNS(t)
	n := qn("192.0.2.1", "bl.test")
	s.listA(n, 300, "127.0.0.2")
	s.listTXT(n, 300, "See https://bl.test/q?192.0.2.1\r\n550 injected")
	s.listA(qn("192.0.2.1", "plain.test"), 300, "127.0.0.4")
	s.listTXT(qn("192.0.2.1", "plain.test"), 300, "never asked")
	s.listA(qn("192.0.2.1", "custom.test"), 300, "127.0.0.5")
	s.set(qn("192.0.2.1", "custom.test"), dns.TypeTXT, response{rcode: dns.RcodeServerFailure})

	c := newChecker(t, s, Config{Zones: []Zone{
		{Name: "bl.test", TXT: true},
		{Name: "plain.test"},
		{Name: "custom.test", TXT: true, Reply: "[{ip}] is on {zone} ({answer}): {txt}"},
	}})
	r, err := c.CheckIP(bg, mustAddr("192.0.2.1"))
	require.NoError(t, err)
	require.Len(t, r.Hits, 3)
	assert.Equal(t, "See https://bl.test/q?192.0.2.1??550 injected", r.Hits[0].TXT, "control bytes cannot reach the reply")
	assert.Equal(t, "Client host [192.0.2.1] blocked using bl.test; See https://bl.test/q?192.0.2.1??550 injected", r.Hits[0].Text)
	assert.Equal(t, "Client host [192.0.2.1] blocked using plain.test", r.Hits[1].Text)
	assert.Equal(t, "[192.0.2.1] is on custom.test (127.0.0.5)", r.Hits[2].Text, "failed TXT: empty, separator dropped")
	assert.Equal(t, 0, s.queries(qn("192.0.2.1", "plain.test"), dns.TypeTXT), "TXT only when configured")
	assert.Equal(t, 3.0, r.Score)
	top, ok := r.Top()
	require.True(t, ok)
	assert.Equal(t, "bl.test", top.Zone)

	// Not listed: no TXT query.
	_, err = c.CheckIP(bg, mustAddr("192.0.2.2"))
	require.NoError(t, err)
	assert.Equal(t, 0, s.queries(qn("192.0.2.2", "bl.test"), dns.TypeTXT), "TXT only when listed")
}

func TestSanitizeTXT(t *testing.T) {
	for in, want := range map[string]string{
		`plain text`:           "plain text",
		`quote \" and \\ back`: `quote " and \ back`,
		`a\010b\013c`:          "a?b?c",
		`caf\195\169`:          "caf??",
		`\999x`:                "?x",
		"  padded  ":           "padded",
		`trailing\`:            `trailing\`,
	} {
		assert.Equal(t, want, sanitizeTXT(in), in)
	}
	long := sanitizeTXT(string(make([]byte, 1000)))
	assert.LessOrEqual(t, len(long), maxTXT)
}

func TestWeightsCodesAndThreshold(t *testing.T) {
	s := startDNS(t)
	ip := "192.0.2.50"
	s.listA(qn(ip, "zen.test"), 300, "127.0.0.4", "127.0.0.10")
	s.listA(qn(ip, "multi.test"), 300, "127.0.0.12") // bits 0x08 and 0x04
	s.listA(qn(ip, "minor.test"), 300, "127.0.0.2")

	c := newChecker(t, s, Config{Threshold: 5, Zones: []Zone{
		{Name: "zen.test", Codes: []Code{
			{Match: "127.0.0.2-127.0.0.9", Weight: 2},   // SBL, XBL
			{Match: "127.0.0.10-127.0.0.11", Weight: 1}, // PBL
			{Match: "127.0.0.3", Weight: 10},            // not answered
		}},
		{Name: "multi.test", Codes: []Code{{Match: "&0x08", Weight: 1}, {Match: "&0x04", Weight: 0.5}, {Match: "&0x02", Weight: 7}}},
		{Name: "minor.test", Weight: 0.25},
	}})
	r, err := c.CheckIP(bg, mustAddr(ip))
	require.NoError(t, err)
	require.Len(t, r.Hits, 3)
	assert.Equal(t, 3.0, r.Hits[0].Weight)
	assert.Equal(t, 1.5, r.Hits[1].Weight)
	assert.Equal(t, 0.25, r.Hits[2].Weight)
	assert.Equal(t, 4.75, r.Score)
	assert.False(t, r.Listed, "4.75 < 5")
	assert.Equal(t, 5.0, r.Threshold)
	assert.Equal(t, "192.0.2.50 not listed (score 4.75 < 5): zen.test=127.0.0.4,127.0.0.10 multi.test=127.0.0.12 minor.test=127.0.0.2", r.String())
}

func TestDNSWLOverride(t *testing.T) {
	s := startDNS(t)
	ip := "192.0.2.77"
	s.listA(qn(ip, "bl.test"), 300, "127.0.0.2")
	s.listA(qn(ip, "wl.test"), 300, "127.0.10.2")
	s.listA(qn("192.0.2.78", "bl.test"), 300, "127.0.0.2")
	s.listA(qn("192.0.2.79", "wl.test"), 300, "127.0.0.255") // dnswl.org: refused

	c := newChecker(t, s, Config{Zones: []Zone{
		{Name: "bl.test"},
		{Name: "wl.test", Match: "127.0.0.0/16", ErrorMatch: "127.0.0.255", Weight: -5},
	}})
	r, err := c.CheckIP(bg, mustAddr(ip))
	require.NoError(t, err)
	assert.False(t, r.Listed)
	assert.Equal(t, -4.0, r.Score)
	assert.True(t, r.Whitelisted())
	assert.Len(t, r.Hits, 2)
	_, ok := r.Top()
	assert.True(t, ok, "the block list hit is still reported")

	r, err = c.CheckIP(bg, mustAddr("192.0.2.78"))
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.False(t, r.Whitelisted())

	r, err = c.CheckIP(bg, mustAddr("192.0.2.79"))
	require.NoError(t, err)
	assert.False(t, r.Whitelisted())
	require.Len(t, r.Errors, 1)
	assert.ErrorIs(t, r.Errors[0], ErrBadAnswer)
}

// TempFail is set only when the failed zone could have changed the
// outcome.
func TestTempFailOnlyWhenItMatters(t *testing.T) {
	s := startDNS(t)
	ip := "192.0.2.66"
	s.listA(qn(ip, "listed.test"), 300, "127.0.0.2")
	for _, z := range []string{"down.test", "wldown.test", "minordown.test"} {
		s.set(qn(ip, z), dns.TypeA, response{rcode: dns.RcodeServerFailure})
	}
	const (
		tf = postern.OnErrorTempFail
		rj = postern.OnErrorReject
		ac = postern.OnErrorAccept
	)
	for _, tc := range []struct {
		name   string
		zones  []Zone
		listed bool
		failed postern.ErrorPolicy // OnErrorDefault: not Failed
	}{
		{"blocking zone down, nothing else", []Zone{{Name: "down.test", OnError: tf}}, false, tf},
		{"blocking zone down, reject policy", []Zone{{Name: "down.test", OnError: rj}}, false, rj},
		{"blocking zone down, default policy", []Zone{{Name: "down.test"}}, false, 0},
		{"blocking zone down, accept policy", []Zone{{Name: "down.test", OnError: ac}}, false, 0},
		{"minor zone down cannot reach threshold", []Zone{{Name: "minordown.test", Weight: 0.5, OnError: tf}}, false, 0},
		{"minor reject zone down cannot reach threshold", []Zone{{Name: "minordown.test", Weight: 0.5, OnError: rj}}, false, 0},
		{"blocking zone down but already listed", []Zone{{Name: "listed.test"}, {Name: "down.test", OnError: rj}}, true, 0},
		{"allow list down while listed", []Zone{{Name: "listed.test"}, {Name: "wldown.test", Weight: -2, OnError: tf}}, true, tf},
		{"allow list down while listed, reject", []Zone{{Name: "listed.test"}, {Name: "wldown.test", Weight: -2, OnError: rj}}, true, rj},
		{"allow list down, default policy", []Zone{{Name: "listed.test"}, {Name: "wldown.test", Weight: -2}}, true, 0},
		{"allow list down, not listed", []Zone{{Name: "wldown.test", Weight: -2, OnError: rj}}, false, 0},
		{"reject outranks tempfail", []Zone{{Name: "down.test", OnError: tf}, {Name: "minordown.test", Weight: 0.5, OnError: rj}}, false, rj},
		{"a reject allow list does not decide for a blocking zone",
			[]Zone{{Name: "down.test", OnError: tf}, {Name: "wldown.test", Weight: -2, OnError: rj}}, false, tf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(t, s, Config{Zones: tc.zones})
			r, err := c.CheckIP(bg, mustAddr(ip))
			require.NoError(t, err)
			assert.Equal(t, tc.listed, r.Listed)
			assert.Equal(t, tc.failed != 0, r.Failed)
			assert.Equal(t, tc.failed, r.OnError)
		})
	}
}

func TestCheckDomainRHSBL(t *testing.T) {
	s := startDNS(t)
	s.listA("spammer.example.dbl.test.", 300, "127.0.1.2")
	s.listTXT("spammer.example.dbl.test.", 300, "https://dbl.test/spammer.example")
	s.listA("192.0.2.1.dbl.test.", 300, "127.0.1.2") // never asked: IPs are not domains
	c := newChecker(t, s, Config{Zones: []Zone{
		{Name: "bl.test"},
		{Name: "DBL.test.", Kind: DomainZone, Match: "127.0.1.2-127.0.1.99", TXT: true},
	}})
	r, err := c.CheckDomain(bg, "Spammer.Example.")
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.Equal(t, "spammer.example", r.Domain)
	require.Len(t, r.Hits, 1)
	assert.Equal(t, "dbl.test", r.Hits[0].Zone)
	assert.Equal(t, "Domain spammer.example blocked using dbl.test; https://dbl.test/spammer.example", r.Hits[0].Text)
	assert.Equal(t, 0, s.queries(qn("192.0.2.1", "bl.test"), dns.TypeA), "domain checks ask domain zones only")

	r, err = c.CheckDomain(bg, "clean.example")
	require.NoError(t, err)
	assert.False(t, r.Listed)
	assert.Equal(t, 1, s.queries("clean.example.dbl.test.", dns.TypeA))

	for _, bad := range []string{"", "[192.0.2.1]", "192.0.2.1", "ünï.example", "a..b"} {
		_, err := c.CheckDomain(bg, bad)
		assert.ErrorIs(t, err, ErrInvalidDomain, bad)
	}
	// Too long once the zone is added: skipped, not an error.
	long := longName(250)
	r, err = c.CheckDomain(bg, long)
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
	assert.Empty(t, r.Errors)
}

func TestIPv6AndMapped(t *testing.T) {
	s := startDNS(t)
	v6 := "2001:db8::25"
	s.listA(qn(v6, "bl.test"), 300, "127.0.0.2")
	s.listA("9.9.0.192.bl.test.", 300, "127.0.0.3")
	c := newChecker(t, s, Config{Zones: []Zone{{Name: "bl.test"}}})

	r, err := c.CheckIP(bg, mustAddr(v6))
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.Equal(t, 1, s.queries("5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test.", dns.TypeA))

	r, err = c.CheckIP(bg, mustAddr("::ffff:192.0.9.9"))
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.Equal(t, mustAddr("192.0.9.9"), r.IP, "unmapped")
	assert.Equal(t, []netip.Addr{mustAddr("127.0.0.3")}, r.Hits[0].Answers)

	_, err = c.CheckIP(bg, netip.Addr{})
	assert.ErrorIs(t, err, ErrInvalidAddress)
}

func TestCacheHonoursTTL(t *testing.T) {
	s := startDNS(t)
	clock := newClock()
	listed, clean := qn("192.0.2.10", "bl.test"), qn("192.0.2.11", "bl.test")
	s.listA(listed, 120, "127.0.0.2")
	s.listTXT(listed, 120, "reason")
	s.SetNegativeTTL(90, false) // the negative answers' SOA
	c := newChecker(t, s, Config{Resolver: newResolver(t, s, resolver.Config{Now: clock.Now}),
		Zones: []Zone{{Name: "bl.test", TXT: true}}})

	check := func(ip string, listed bool) {
		t.Helper()
		r, err := c.CheckIP(bg, mustAddr(ip))
		require.NoError(t, err)
		require.Equal(t, listed, r.Listed)
		if listed {
			require.Equal(t, "reason", r.Hits[0].TXT)
		}
	}
	for range 3 {
		check("192.0.2.10", true)
		check("192.0.2.11", false)
	}
	assert.Equal(t, 1, s.queries(listed, dns.TypeA))
	assert.Equal(t, 1, s.queries(listed, dns.TypeTXT))
	assert.Equal(t, 1, s.queries(clean, dns.TypeA))

	clock.Advance(89 * time.Second)
	check("192.0.2.11", false)
	assert.Equal(t, 1, s.queries(clean, dns.TypeA), "negative answer kept for the SOA minimum")
	clock.Advance(time.Second)
	check("192.0.2.11", false)
	assert.Equal(t, 2, s.queries(clean, dns.TypeA), "and no longer")

	clock.Advance(29 * time.Second) // 119 s
	check("192.0.2.10", true)
	assert.Equal(t, 1, s.queries(listed, dns.TypeA))
	clock.Advance(time.Second) // 120 s
	check("192.0.2.10", true)
	assert.Equal(t, 2, s.queries(listed, dns.TypeA))
	assert.Equal(t, 2, s.queries(listed, dns.TypeTXT))
}

func TestCacheClampsTTL(t *testing.T) {
	s := startDNS(t)
	clock := newClock()
	huge, msb, zero := qn("192.0.2.20", "bl.test"), qn("192.0.2.21", "bl.test"), qn("192.0.2.22", "bl.test")
	s.listA(huge, 1<<31-1, "127.0.0.2") // 68 years
	s.listA(msb, 1<<32-1, "127.0.0.2")  // top bit set: 0 (RFC 2181 §8)
	s.listA(zero, 0, "127.0.0.2")
	s.SetNegativeTTL(1<<30, false) // absurd negative TTL
	c := newChecker(t, s, Config{Resolver: newResolver(t, s, resolver.Config{Now: clock.Now, MinTTL: 30 * time.Second,
		MaxTTL: 10 * time.Minute, NegativeMaxTTL: 5 * time.Minute}), Zones: []Zone{{Name: "bl.test"}}})
	clean := qn("192.0.2.23", "bl.test")

	ask := func() {
		for _, ip := range []string{"192.0.2.20", "192.0.2.21", "192.0.2.22", "192.0.2.23"} {
			_, err := c.CheckIP(bg, mustAddr(ip))
			require.NoError(t, err)
		}
	}
	counts := func() []int {
		return []int{s.queries(huge, dns.TypeA), s.queries(msb, dns.TypeA), s.queries(zero, dns.TypeA), s.queries(clean, dns.TypeA)}
	}
	ask()
	assert.Equal(t, []int{1, 1, 1, 1}, counts())
	clock.Advance(29 * time.Second)
	ask()
	assert.Equal(t, []int{1, 1, 1, 1}, counts(), "small TTLs raised to CacheMinTTL")
	clock.Advance(time.Second) // 30 s
	ask()
	assert.Equal(t, []int{1, 2, 2, 1}, counts())
	clock.Advance(270 * time.Second) // 300 s
	ask()
	assert.Equal(t, []int{1, 3, 3, 2}, counts(), "negative answers capped at CacheNegativeMaxTTL")
	clock.Advance(300 * time.Second) // 600 s
	ask()
	assert.Equal(t, []int{2, 4, 4, 3}, counts(), "positive answers capped at CacheMaxTTL")
}

func TestCacheBoundAndNoSOA(t *testing.T) {
	bare := startDNS(t)
	bare.SetNegativeTTL(0, true)
	noSOA := qn("192.0.2.30", "bl.test")
	c := newChecker(t, bare, Config{Zones: []Zone{{Name: "bl.test"}}})
	for range 2 {
		_, err := c.CheckIP(bg, mustAddr("192.0.2.30"))
		require.NoError(t, err)
	}
	assert.Equal(t, 2, bare.queries(noSOA, dns.TypeA), "NXDOMAIN without SOA is not cached (RFC 2308 §5)")

	s := startDNS(t)
	res := newResolver(t, s, resolver.Config{CacheSize: 3})
	c = newChecker(t, s, Config{Resolver: res, Zones: []Zone{{Name: "bl.test"}}})
	for i := range 10 {
		_, err := c.CheckIP(bg, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
		require.NoError(t, err)
	}
	assert.Equal(t, 3, res.CacheLen())

	off := newChecker(t, s, Config{Resolver: newResolver(t, s, resolver.Config{CacheSize: -1}), Zones: []Zone{{Name: "bl.test"}}})
	before := s.total()
	for range 3 {
		_, err := off.CheckIP(bg, mustAddr("192.0.2.200"))
		require.NoError(t, err)
	}
	assert.Equal(t, before+3, s.total(), "no cache")
}

func TestTruncatedFallsBackToTCP(t *testing.T) {
	s := startDNS(t)
	n := qn("192.0.2.40", "bl.test")
	s.set(n, dns.TypeA, response{truncUDP: true, answer: aRRs(n, 300, "127.0.0.2")})
	c := newChecker(t, s, Config{Zones: []Zone{{Name: "bl.test"}}})
	r, err := c.CheckIP(bg, mustAddr("192.0.2.40"))
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.Equal(t, 2, s.queries(n, dns.TypeA), "UDP, then TCP")
	assert.Equal(t, 1, s.TCPQueries())

	tcp := newChecker(t, s, Config{Resolver: newResolver(t, s, resolver.Config{Net: "tcp", CacheSize: -1}),
		Zones: []Zone{{Name: "bl.test"}}})
	r, err = tcp.CheckIP(bg, mustAddr("192.0.2.40"))
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.Equal(t, 2, s.TCPQueries())
}

// Garbage on the wire is a lookup error with the zone's policy, never a
// listing.
func TestGarbledResponses(t *testing.T) {
	echoID := func(junk []byte) func([]byte) []byte {
		return func(req []byte) []byte {
			if len(req) < 2 {
				return nil
			}
			return append([]byte{req[0], req[1]}, junk...)
		}
	}
	// A truncated copy of a real listing, and a header that promises an
	// answer record it does not carry.
	listing := func(req []byte) []byte {
		q := new(dns.Msg)
		if q.Unpack(req) != nil {
			return nil
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = aRRs(q.Question[0].Name, 300, "127.0.0.2")
		b, _ := m.Pack()
		return b
	}
	for _, tc := range []struct {
		name  string
		reply func([]byte) []byte
	}{
		{"random junk, wrong ID", func([]byte) []byte { return []byte("\x13\x37 this is not DNS at all") }},
		{"junk after the right ID", echoID([]byte{0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff})},
		{"listing cut short", func(req []byte) []byte {
			b := listing(req)
			return b[:len(b)-3]
		}},
		{"header only, claims an answer", func(req []byte) []byte {
			b := listing(req)
			return b[:12]
		}},
		{"listing with the response bit cleared", func(req []byte) []byte {
			b := listing(req)
			b[2] &^= 0x80
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testutil.RawUDP(t, tc.reply)
			for _, policy := range allPolicies {
				res := newResolver(t, nil, resolver.Config{Servers: []string{addr}, Timeout: 150 * time.Millisecond})
				c := newChecker(t, nil, Config{Resolver: res, Zones: []Zone{{Name: "bl.test", OnError: policy}}})
				r, err := c.CheckIP(bg, mustAddr("192.0.2.1"))
				require.NoError(t, err)
				assert.False(t, r.Listed)
				assert.Empty(t, r.Hits)
				require.Len(t, r.Errors, 1)
				assert.ErrorIs(t, r.Errors[0], ErrLookup)
				assert.Equal(t, policy == postern.OnErrorTempFail || policy == postern.OnErrorReject, r.Failed)
			}
		})
	}
}

// The resolver asks the next server when one does not answer.
func TestRetriesNextResolver(t *testing.T) {
	s := startDNS(t)
	n := qn("192.0.2.5", "bl.test")
	s.listA(n, 300, "127.0.0.2")
	dead := testutil.RawUDP(t, func([]byte) []byte { return nil })
	res := newResolver(t, s, resolver.Config{Servers: []string{dead, s.Addr}, Timeout: 100 * time.Millisecond})
	c := newChecker(t, nil, Config{Resolver: res, Zones: []Zone{{Name: "bl.test"}}})
	r, err := c.CheckIP(bg, mustAddr("192.0.2.5"))
	require.NoError(t, err)
	assert.True(t, r.Listed)
	assert.Equal(t, 1, s.queries(n, dns.TypeA))
}

// Three zones, each answering after 200 ms: the check takes 200 ms, not
// 600.
func TestZonesAskedConcurrently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 200 * time.Millisecond
		res := &memResolver{delay: delay}
		var zones []Zone
		for _, z := range []string{"a.test", "b.test", "c.test"} {
			res.listA(qn("192.0.2.9", z), "127.0.0.2")
			zones = append(zones, Zone{Name: z, Weight: 0.4})
		}
		c, err := New(Config{Resolver: res, Timeout: 2 * time.Second, Zones: zones})
		require.NoError(t, err)
		start := time.Now()
		r, err := c.CheckIP(bg, mustAddr("192.0.2.9"))
		require.NoError(t, err)
		assert.Len(t, r.Hits, 3)
		assert.True(t, r.Listed, "1.2 >= 1")
		assert.Equal(t, delay, time.Since(start), "zones are asked concurrently")
	})
}

// Concurrent checks of one address share one query per zone.
func TestConcurrentChecksShareQueries(t *testing.T) {
	s := startDNS(t)
	n := qn("192.0.2.8", "bl.test")
	s.set(n, dns.TypeA, response{delay: 100 * time.Millisecond, answer: aRRs(n, 300, "127.0.0.2")})
	c := newChecker(t, s, Config{Timeout: 2 * time.Second, Zones: []Zone{{Name: "bl.test"}}})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			r, err := c.CheckIP(bg, mustAddr("192.0.2.8"))
			assert.NoError(t, err)
			assert.True(t, r.Listed)
		})
	}
	wg.Wait()
	assert.Equal(t, 1, s.queries(n, dns.TypeA))
}

func TestContextCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := &memResolver{delay: 400 * time.Millisecond}
		res.listA(qn("192.0.2.7", "slow.test"), "127.0.0.2")
		c, err := New(Config{Resolver: res, Timeout: 3 * time.Second, Zones: []Zone{{Name: "slow.test", OnError: postern.OnErrorTempFail}}})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		r, err := c.CheckIP(ctx, mustAddr("192.0.2.7"))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 50*time.Millisecond, time.Since(start), "the check ends with its context")
		assert.False(t, r.Listed)
		assert.True(t, r.Failed)
		assert.Equal(t, postern.OnErrorTempFail, r.OnError)
	})
}

func TestHealthCheck(t *testing.T) {
	s := startDNS(t)
	// good.test passes; everyone.test lists 127.0.0.1 (lists everyone);
	// dead.test lists nothing; refused.test answers 127.255.255.254;
	// down.test times out; dom.test is a domain list.
	s.listA(qn("127.0.0.2", "good.test"), 300, "127.0.0.2")
	s.listA(qn("127.0.0.2", "everyone.test"), 300, "127.0.0.2")
	s.listA(qn("127.0.0.1", "everyone.test"), 300, "127.0.0.2")
	s.listA(qn("127.0.0.2", "refused.test"), 300, "127.255.255.254")
	s.set(qn("127.0.0.2", "down.test"), dns.TypeA, response{silent: true})
	s.listA("test.dom.test.", 300, "127.0.1.2")
	for _, z := range []string{"good.test", "everyone.test", "dead.test", "refused.test", "down.test"} {
		s.listA(qn("192.0.2.1", z), 300, "127.0.0.2")
	}
	var logs syncBuffer
	clock := newClock()
	c := newChecker(t, s, Config{Timeout: 150 * time.Millisecond, Now: clock.Now, Logger: newTextLogger(&logs), Zones: []Zone{
		{Name: "good.test"},
		{Name: "everyone.test", OnError: postern.OnErrorTempFail},
		{Name: "dead.test"},
		{Name: "refused.test"},
		{Name: "down.test"},
		{Name: "unchecked.test", NoHealthCheck: true},
		{Name: "dom.test", Kind: DomainZone},
	}})
	hs := c.CheckHealth(bg)
	require.Len(t, hs, 7)
	byZone := map[string]ZoneHealth{}
	for _, h := range hs {
		byZone[h.Zone] = h
	}
	assert.False(t, byZone["good.test"].Broken)
	assert.Equal(t, clock.Now(), byZone["good.test"].Checked)
	assert.True(t, byZone["everyone.test"].Broken)
	assert.Contains(t, byZone["everyone.test"].Reason, "127.0.0.1 is listed")
	assert.True(t, byZone["dead.test"].Broken)
	assert.Contains(t, byZone["dead.test"].Reason, "127.0.0.2 is not listed")
	assert.True(t, byZone["refused.test"].Broken)
	assert.Contains(t, byZone["refused.test"].Reason, "public/open resolver")
	assert.False(t, byZone["down.test"].Broken, "a check that cannot decide changes nothing")
	assert.ErrorIs(t, byZone["down.test"].Err, ErrLookup)
	assert.False(t, byZone["unchecked.test"].Broken)
	assert.False(t, byZone["dom.test"].Broken)
	assert.Equal(t, 1, s.queries("invalid.dom.test.", dns.TypeA))
	assert.Contains(t, logs.String(), "dnsbl zone failed its health check; its answers are ignored")
	assert.Contains(t, logs.String(), "zone=everyone.test")
	assert.Equal(t, hs, c.Health())

	before := s.queries(qn("192.0.2.1", "everyone.test"), dns.TypeA)
	r, err := c.CheckIP(bg, mustAddr("192.0.2.1"))
	require.NoError(t, err)
	assert.Equal(t, before, s.queries(qn("192.0.2.1", "everyone.test"), dns.TypeA), "a broken zone is not asked")
	var hitZones, errZones []string
	for _, h := range r.Hits {
		hitZones = append(hitZones, h.Zone)
	}
	for _, e := range r.Errors {
		errZones = append(errZones, e.Zone)
		assert.ErrorIs(t, e, ErrZoneBroken)
	}
	assert.Equal(t, []string{"good.test", "down.test"}, hitZones)
	assert.Equal(t, []string{"everyone.test", "dead.test", "refused.test"}, errZones)
	assert.True(t, r.Listed)

	// The zone is repaired: the next check clears it.
	s.set(qn("127.0.0.1", "everyone.test"), dns.TypeA, response{rcode: dns.RcodeNameError})
	c.CheckHealth(bg)
	assert.False(t, c.Health()[1].Broken)
	assert.Contains(t, logs.String(), "passed its health check")
}

// RunHealthChecks checks at once, then every HealthInterval, and returns
// when its context ends: a zone that lists its test point again is asked
// again after the next interval, not before.
func TestRunHealthChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := &memResolver{}
		c, err := New(Config{Resolver: res, HealthInterval: time.Hour, Zones: []Zone{{Name: "dead.test"}}})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(bg)
		done := make(chan struct{})
		go func() { c.RunHealthChecks(ctx); close(done) }()
		synctest.Wait()
		assert.True(t, c.Health()[0].Broken, "checked at once")
		assert.Equal(t, 2, res.exchanges(), "both test points")

		res.listA(qn("127.0.0.2", "dead.test"), "127.0.0.2")
		time.Sleep(time.Hour - time.Second)
		synctest.Wait()
		assert.True(t, c.Health()[0].Broken, "not checked again before the interval")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.False(t, c.Health()[0].Broken, "checked again after it")
		assert.Equal(t, 4, res.exchanges())

		cancel()
		<-done
	})
}

// memResolver answers from memory, for tests in a synctest bubble:
// NXDOMAIN but for the names given A records, after delay.
type memResolver struct {
	delay time.Duration
	mu    sync.Mutex
	addrs map[string][]string
	n     int
}

func (m *memResolver) listA(name string, addrs ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addrs == nil {
		m.addrs = map[string][]string{}
	}
	m.addrs[dns.Fqdn(name)] = addrs
}

func (m *memResolver) exchanges() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

func (m *memResolver) Exchange(ctx context.Context, name string, qtype uint16) (resolver.Answer, error) {
	select {
	case <-time.After(m.delay):
	case <-ctx.Done():
		return resolver.Answer{}, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	a := resolver.Answer{Name: dns.Fqdn(name), Type: qtype, Canonical: dns.Fqdn(name), Rcode: dns.RcodeNameError}
	if addrs, ok := m.addrs[a.Name]; ok && qtype == dns.TypeA {
		a.Rcode, a.Records = dns.RcodeSuccess, aRRs(name, 60, addrs...)
	}
	return a, nil
}

func (m *memResolver) Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error) {
	return m.Exchange(ctx, name, qtype)
}

func (m *memResolver) Cached(string, uint16) (resolver.Answer, bool) { return resolver.Answer{}, false }

func TestRender(t *testing.T) {
	ip, ans := mustAddr("192.0.2.1"), mustAddr("127.0.0.2")
	for _, tc := range []struct {
		tmpl, txt, want string
	}{
		{defaultIPReply, "why", "Client host [192.0.2.1] blocked using bl.test; why"},
		{defaultIPReply, "", "Client host [192.0.2.1] blocked using bl.test"},
		{"{zone} says {answer} - {txt}", "", "bl.test says 127.0.0.2"},
		{"{txt} ({zone})", "", " (bl.test)"},
		{"{domain}|{ip}|{zone}|{answer}|{txt}", "t", "d.example|192.0.2.1|bl.test|127.0.0.2|t"},
		{"no placeholders", "t", "no placeholders"},
	} {
		assert.Equal(t, tc.want, render(tc.tmpl, ip, "d.example", "bl.test", ans, tc.txt), tc.tmpl)
	}
	assert.Equal(t, "Domain d.example blocked using dbl.test",
		render(defaultDomainReply, netip.Addr{}, "d.example", "dbl.test", ans, ""))
}

// allPolicies are the values of Zone.OnError, the default first.
var allPolicies = []postern.ErrorPolicy{postern.OnErrorDefault, postern.OnErrorAccept, postern.OnErrorTempFail, postern.OnErrorReject}

func TestNames(t *testing.T) {
	assert.Equal(t, "ip", IPZone.String())
	assert.Equal(t, "domain", DomainZone.String())
	assert.Equal(t, "kind(9)", Kind(9).String())
}
