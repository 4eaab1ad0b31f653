package auth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

func newSPF(t testing.TB, s *testDNS, timeout time.Duration) (*SPFChecker, *logBuf) {
	t.Helper()
	lb := &logBuf{newLogBuffer()}
	c, err := NewSPFChecker(SPFConfig{Resolver: s.resolver(), Timeout: timeout, Logger: lb.Logger()})
	require.NoError(t, err)
	return c, lb
}

type logBuf struct{ *testutil.LogBuffer }

// spfZone serves one domain per result.
func spfZone(t testing.TB) *testDNS {
	s := startDNS(t)
	s.txt("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
	s.txt("fail.test", "v=spf1 ip4:198.51.100.0/24 -all")
	s.txt("softfail.test", "v=spf1 ip4:198.51.100.0/24 ~all")
	s.txt("neutral.test", "v=spf1 ?all")
	s.a("none.test", "192.0.2.80") // exists, no SPF record
	s.setServfail("temperror.test")
	s.txt("permerror.test", "v=spf1 frobnicate ip4:192.0.2.0/24 -all")
	s.txt("mx.pass.test", "v=spf1 mx -all")
	s.mx("mx.pass.test", 10, "mail.pass.test")
	s.a("mail.pass.test", "192.0.2.25", "2001:db8::25")
	s.txt("helo.test", "v=spf1 a -all")
	s.a("helo.test", "192.0.2.1")
	s.txt("include.test", "v=spf1 include:pass.test -all")
	s.txt("redirect.test", "v=spf1 redirect=softfail.test")
	s.txt("macro.test", "v=spf1 exists:%{l}.%{d}.allow.test -all")
	s.a("alice.macro.test.allow.test", "127.0.0.2")
	return s
}

func TestSPFResults(t *testing.T) {
	s := spfZone(t)
	ck, _ := newSPF(t, s, 5*time.Second)
	client := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name       string
		ip         string
		helo, from string
		want       Status
		identity   string
		domain     string
	}{
		{"pass", "192.0.2.1", "mx.client.test", "bob@pass.test", Pass, IdentityMailFrom, "pass.test"},
		{"pass ipv4-mapped", "::ffff:192.0.2.1", "mx.client.test", "bob@pass.test", Pass, IdentityMailFrom, "pass.test"},
		{"fail", "", "mx.client.test", "bob@fail.test", Fail, IdentityMailFrom, "fail.test"},
		{"softfail", "", "mx.client.test", "bob@softfail.test", SoftFail, IdentityMailFrom, "softfail.test"},
		{"neutral", "", "mx.client.test", "bob@neutral.test", Neutral, IdentityMailFrom, "neutral.test"},
		{"none: no record", "", "mx.client.test", "bob@none.test", None, IdentityMailFrom, "none.test"},
		{"none: NXDOMAIN", "", "mx.client.test", "bob@nowhere.test", None, IdentityMailFrom, "nowhere.test"},
		{"temperror: SERVFAIL", "", "mx.client.test", "bob@temperror.test", TempError, IdentityMailFrom, "temperror.test"},
		{"permerror: unknown mechanism", "", "mx.client.test", "bob@permerror.test", PermError, IdentityMailFrom, "permerror.test"},
		{"mx over IPv6", "2001:db8::25", "x.test", "a@mx.pass.test", Pass, IdentityMailFrom, "mx.pass.test"},
		{"include", "", "x.test", "a@include.test", Pass, IdentityMailFrom, "include.test"},
		{"redirect", "", "x.test", "a@redirect.test", SoftFail, IdentityMailFrom, "redirect.test"},
		{"macro %{l}", "", "x.test", "alice@macro.test", Pass, IdentityMailFrom, "macro.test"},
		{"macro %{l} other user", "", "x.test", "mallory@macro.test", Fail, IdentityMailFrom, "macro.test"},
		{"case and trailing dot", "", "x.test", "Bob@PASS.test.", Pass, IdentityMailFrom, "pass.test"},
		// RFC 7208 §2.4: the null reverse path checks the HELO identity.
		{"null sender: HELO pass", "", "helo.test", "", Pass, IdentityHELO, "helo.test"},
		{"null sender: HELO fail", "", "fail.test", "", Fail, IdentityHELO, "fail.test"},
		// §4.3: no usable domain means none, without a lookup.
		{"null sender: HELO not FQDN", "", "localhost", "", None, IdentityHELO, "localhost"},
		{"null sender: HELO literal", "", "[192.0.2.1]", "", None, IdentityHELO, "[192.0.2.1]"},
		{"domain literal sender", "", "x.test", "a@[192.0.2.1]", None, IdentityMailFrom, "[192.0.2.1]"},
		{"empty label", "", "x.test", "a@pass..test", None, IdentityMailFrom, "pass..test"},
		{"label over 63", "", "x.test", "a@" + strings.Repeat("x", 64) + ".test", None, IdentityMailFrom, strings.Repeat("x", 64) + ".test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip := client
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			r := ck.Check(bg, ip, tc.helo, tc.from)
			assert.Equal(t, tc.want, r.Status, "problem: %s", r.Problem)
			assert.Equal(t, tc.identity, r.Identity)
			assert.Equal(t, tc.domain, r.Domain)
			assert.Equal(t, ip.Unmap(), r.ClientIP)
			if tc.want == TempError || tc.want == PermError {
				assert.NotEmpty(t, r.Problem)
			}
		})
	}
}

func TestSPFSenderForms(t *testing.T) {
	s := spfZone(t)
	ck, _ := newSPF(t, s, 5*time.Second)
	ip := netip.MustParseAddr("192.0.2.1")
	r := ck.Check(bg, ip, "helo.test", "")
	assert.Equal(t, "postmaster@helo.test", r.Sender)
	r = ck.Check(bg, ip, "helo.test", "@pass.test")
	assert.Equal(t, "postmaster@pass.test", r.Sender, "RFC 7208 §4.3: no local part means postmaster")
	r = ck.Check(bg, ip, "helo.test", `"a@b"@pass.test`)
	assert.Equal(t, Pass, r.Status)
	assert.Equal(t, "pass.test", r.Domain)
	r = ck.Check(bg, netip.Addr{}, "helo.test", "a@pass.test")
	assert.Equal(t, None, r.Status)
}

// Bad input: broken records, loops and lookup-limit abuse give the result
// RFC 7208 defines, a log line that says why, and never a hang.
func TestSPFBadInput(t *testing.T) {
	s := startDNS(t)
	s.txt("syntax.test", "v=spf1 ip4:192.0.2.300 -all")
	s.txt("badmask.test", "v=spf1 ip4:192.0.2.0/33 -all")
	s.txt("badmacro.test", "v=spf1 exists:%{z}.test -all")
	s.txt("tworecords.test", "v=spf1 -all")
	s.txt("tworecords.test", "v=spf1 +all")
	s.txt("tworedirects.test", "v=spf1 redirect=a.test redirect=b.test")
	s.txt("redirect-none.test", "v=spf1 redirect=nothing-here.test")
	s.txt("huge.test", "v=spf1 "+strings.Repeat("ip4:198.51.100.1 ", 200)+"-all")
	// §4.6.4: include loops and long chains run into the limit of 10.
	s.txt("loop-a.test", "v=spf1 include:loop-b.test -all")
	s.txt("loop-b.test", "v=spf1 include:loop-a.test -all")
	s.txt("self.test", "v=spf1 redirect=self.test")
	for i := range 12 {
		s.txt(fmt.Sprintf("chain%d.test", i), fmt.Sprintf("v=spf1 include:chain%d.test -all", i+1))
	}
	s.txt("chain12.test", "v=spf1 +all")
	s.txt("many.test", "v=spf1 "+strings.Repeat("a:x.many.test ", 11)+"-all")
	s.a("x.many.test", "198.51.100.9")
	s.txt("void.test", "v=spf1 a:v1.void.test a:v2.void.test a:v3.void.test -all")
	s.txt("mx11.test", "v=spf1 mx -all")
	for i := range 11 {
		s.mx("mx11.test", uint16(i), fmt.Sprintf("m%d.mx11.test", i))
	}
	s.txtStrings("nul.test", "v=spf1 ip4:192.0.2.1\x00 -all")

	ck, lb := newSPF(t, s, 5*time.Second)
	tests := []struct {
		from    string
		want    Status
		problem string
	}{
		{"a@syntax.test", PermError, "invalid"},
		{"a@badmask.test", PermError, "mask"},
		{"a@badmacro.test", PermError, "macro"},
		{"a@tworecords.test", PermError, "more than one SPF record"},
		{"a@tworedirects.test", PermError, ""},
		{"a@redirect-none.test", PermError, ""},
		{"a@huge.test", Fail, ""},
		{"a@loop-a.test", PermError, "10 DNS-querying terms"},
		{"a@self.test", PermError, "10 DNS-querying terms"},
		{"a@chain0.test", PermError, "10 DNS-querying terms"},
		{"a@many.test", PermError, "10 DNS-querying terms"},
		{"a@void.test", PermError, "void"},
		{"a@mx11.test", PermError, ""},
		{"a@nul.test", PermError, ""},
	}
	for _, tc := range tests {
		t.Run(tc.from, func(t *testing.T) {
			r := checkBounded(t, ck, netip.MustParseAddr("192.0.2.1"), "x.test", tc.from)
			assert.Equal(t, tc.want, r.Status, "problem: %s", r.Problem)
			if tc.problem != "" {
				assert.Contains(t, r.Problem, tc.problem)
			}
		})
	}
	// Each check logged its result with the reason.
	recs := lb.Records(t, "spf check")
	require.Len(t, recs, len(tests))
	for _, rec := range recs {
		if rec["result"] == string(PermError) {
			assert.NotEmpty(t, rec["problem"], "log line %v", rec)
		}
	}
}

// A server that never answers makes a temperror within the check's
// timeout, however many lookups the record asks for.
func TestSPFTimeout(t *testing.T) {
	s := startDNS(t)
	s.txt("slow.test", "v=spf1 a:t1.slow.test a:t2.slow.test a:t3.slow.test mx:t4.slow.test -all")
	for i := 1; i <= 4; i++ {
		s.setTimeout(fmt.Sprintf("t%d.slow.test", i))
	}
	s.setTimeout("dead.test")
	ck, _ := newSPF(t, s, 400*time.Millisecond)
	for _, from := range []string{"a@slow.test", "a@dead.test"} {
		r := checkBounded(t, ck, netip.MustParseAddr("192.0.2.1"), "x.test", from)
		assert.Equal(t, TempError, r.Status, from)
		assert.NotEmpty(t, r.Problem)
	}
	// The caller's context counts too.
	ctx, cancel := context.WithCancel(bg)
	cancel()
	r := ck.Check(ctx, netip.MustParseAddr("192.0.2.1"), "x.test", "a@slow.test")
	assert.Equal(t, TempError, r.Status)
}

// checkBounded fails the test when a check does not return in a long
// while: a hang, not a timing measurement.
func checkBounded(t *testing.T, ck *SPFChecker, ip netip.Addr, helo, from string) SPFResult {
	t.Helper()
	done := make(chan SPFResult, 1)
	go func() { done <- ck.Check(bg, ip, helo, from) }()
	select {
	case r := <-done:
		return r
	case <-time.After(time.Minute):
		t.Fatalf("SPF check of %s hung", from)
		return SPFResult{}
	}
}

func TestSPFConfig(t *testing.T) {
	_, err := NewSPFChecker(SPFConfig{Timeout: -1})
	require.ErrorIs(t, err, ErrConfig)
	ck, err := NewSPFChecker(SPFConfig{})
	require.NoError(t, err)
	_, err = NewSPFFilter(SPFFilterConfig{})
	require.ErrorIs(t, err, ErrConfig)
	for _, bad := range []map[Status]postern.Action{
		{Pass: postern.Reject},
		{Fail: postern.Discard},
		{Fail: postern.Quarantine},
		{Policy: postern.Reject},
		{"bogus": postern.Reject},
	} {
		_, err = NewSPFFilter(SPFFilterConfig{Checker: ck, Actions: bad})
		require.ErrorIs(t, err, ErrConfig, "%v", bad)
	}
}

// A custom evaluator sits behind the same interface.
type fixedSPF Status

func (f fixedSPF) CheckHost(context.Context, netip.Addr, string, string) (Status, error) {
	return Status(f), nil
}

func TestSPFCustomEvaluator(t *testing.T) {
	ck, err := NewSPFChecker(SPFConfig{Evaluator: fixedSPF(SoftFail)})
	require.NoError(t, err)
	r := ck.Check(bg, netip.MustParseAddr("192.0.2.1"), "x.test", "a@b.test")
	assert.Equal(t, SoftFail, r.Status)
}
