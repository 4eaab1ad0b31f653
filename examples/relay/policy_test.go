package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/internal/stats"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver/access"
)

func TestPolicyOrderErrors(t *testing.T) {
	tests := []struct{ name, order, want string }{
		{"unknown", `["trust", "relay", "clamav"]`, `relay.toml:2: policy.order: unknown filter "clamav" (item 3); the filters are trust, access, relay,`},
		{"twice", `["trust", "relay", "scan", "spf", "scan"]`, "relay.toml:2: policy.order: scan is listed twice (items 3 and 5)"},
		{"trust not first", `["relay", "trust"]`, "relay.toml:2: policy.order: trust must come first"},
		{"no relay", `["trust", "access", "scan"]`, "relay.toml:2: policy.order: relay (relay control) must be listed"},
		{"relay late", `["trust", "scan", "relay"]`, "relay.toml:2: policy.order: relay (relay control) must come right after trust (or after access): scan before it"},
		{"guard after verify", `["trust", "relay", "verify", "harvest-guard"]`, "relay.toml:2: policy.order: harvest-guard must come before verify"},
		{"sign not last", `["trust", "relay", "dkim-sign", "scan"]`, "relay.toml:2: policy.order: dkim-sign must come last"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte("[policy]\norder = "+tt.order+"\n"), "relay.toml")
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	for _, ok := range []string{
		`["trust", "relay"]`,
		`["trust", "access", "relay", "scan", "auth-verify", "spf", "dkim-sign"]`,
		`["trust", "relay", "access", "harvest-guard", "verify"]`,
	} {
		_, err := parseConfig([]byte("[policy]\norder = "+ok+"\n"), "relay.toml")
		assert.NoError(t, err, ok)
	}
}

// checkRun runs "relay check" with a configuration file and flags.
func checkRun(t *testing.T, conf string, args ...string) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "relay.toml")
	require.NoError(t, os.WriteFile(p, []byte(conf), 0o644))
	var out, errb bytes.Buffer
	code := run(append([]string{"check", "-config", p}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// The order is the configured one, shown by check; a filter that is on
// but missing from the list is refused with the file and line.
func TestPolicyOrderBuilt(t *testing.T) {
	code, out, errb := checkRun(t, "trusted_networks = []\n[policy]\norder = [\"trust\", \"access\", \"relay\", \"dnsbl\", \"scan\",\n"+
		"  \"auth-verify\", \"spf\", \"harvest-guard\", \"verify\", \"ratelimit\", \"outbound-ratelimit\"]\n",
		"-ip", "192.0.2.7", "-from", "a@example.net", "-rcpt", "x@example.test")
	require.Equal(t, 0, code, errb)
	assert.Contains(t, out, "filters: trust, relay, scan, auth-verify, harvest-guard, outbound-ratelimit (policy.order, ")
	assert.Contains(t, out, "relay.toml:3)\n", "where the order was set")
	// Listed filters that are off are skipped; one that is on and not
	// listed is an error.
	code, _, errb = checkRun(t, "[policy]\norder = [\"trust\", \"relay\", \"scan\", \"auth-verify\"]\n")
	assert.Equal(t, 1, code)
	assert.Contains(t, errb, "relay.toml:2: policy.order: outbound-ratelimit is configured (limits.outbound_message_rate or limits.outbound_recipient_rate) but not listed")

	code, out, errb = checkRun(t, "", "-ip", "192.0.2.7")
	require.Equal(t, 0, code, errb)
	assert.Contains(t, out, "filters: trust, relay, outbound-ratelimit, harvest-guard, auth-verify, scan (default order)")

	// The flag wins over the file, and says so; empty is the default.
	code, out, errb = checkRun(t, "[policy]\norder = [\"trust\", \"relay\"]\n", "-ip", "192.0.2.7",
		"-policy-order", "trust,relay,scan,auth-verify,outbound-ratelimit,harvest-guard")
	require.Equal(t, 0, code, errb)
	assert.Contains(t, out, "filters: trust, relay, scan, auth-verify, outbound-ratelimit, harvest-guard (policy.order, -policy-order)")
	code, out, errb = checkRun(t, "", "-ip", "192.0.2.7", "-policy-order", "")
	require.Equal(t, 0, code, errb)
	assert.Contains(t, out, "(default order)")
	code, _, errb = checkRun(t, "", "-policy-order", "trust,relay")
	assert.Equal(t, 1, code)
	assert.Contains(t, errb, "-policy-order: policy.order: outbound-ratelimit is configured")
}

// policyFor builds the relay's chains from a configuration document.
func policyFor(t *testing.T, doc string, obs postern.Observer) (*policy, *postern.Chain) {
	t.Helper()
	cfg, err := parseConfig([]byte(doc), "relay.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	res, err := newResolver(s, nil)
	require.NoError(t, err)
	ap, err := buildAuth(s, res, nil, nil)
	require.NoError(t, err)
	sc, err := buildScan(s, nil, nil, nil)
	require.NoError(t, err)
	pol, err := buildPolicy(s, nil, obs, nil, ap, sc, store, nil)
	require.NoError(t, err)
	sub, err := submissionChain(s, ap, sc, pol, nil, obs)
	require.NoError(t, err)
	return pol, sub
}

func client(ip string) *postern.Conn {
	return &postern.Conn{ID: "c-" + ip, Remote: netip.AddrPortFrom(netip.MustParseAddr(ip), 40000)}
}

// mailN runs MAIL n times on a chain and returns the replies of the
// refused ones ("" for accepted).
func mailN(t *testing.T, ch *postern.Chain, c *postern.Conn, n int) (accepted int, refused []string) {
	t.Helper()
	for range n {
		v, err := ch.CheckMail(context.Background(), c, &postern.Txn{From: "worm@campus.example"})
		require.NoError(t, err)
		if v.Action == postern.TempFail {
			refused = append(refused, v.ReplyAt(postern.StageMail).Error())
			continue
		}
		require.Equal(t, postern.Continue, v.Action, v.Reason)
		accepted++
	}
	return accepted, refused
}

// The outbound limit holds trusted clients (own networks, Connect: RELAY
// hosts) and users who logged in, per address and per user, on both
// chains with one count; outbound_exempt and strangers are left alone.
func TestOutboundLimits(t *testing.T) {
	acc := filepath.Join(t.TempDir(), "access")
	require.NoError(t, os.WriteFile(acc, []byte("Connect:192.0.2.50 RELAY\n"), 0o644))
	var decisions []postern.Decision
	obs := func(_ context.Context, d postern.Decision) {
		if d.Verdict.Action == postern.TempFail {
			decisions = append(decisions, d)
		}
	}
	pol, sub := policyFor(t, `trusted_networks = ["10.0.0.0/8", "127.0.0.0/8"]
[policy]
access = "`+acc+`"
[limits]
outbound_message_rate = "5/24h"
outbound_exempt = ["10.9.0.0/16", "127.0.0.0/8"]
`, obs)
	got, refused := mailN(t, pol.chain, client("10.1.2.3"), 12)
	assert.Equal(t, 5, got, "a campus PC")
	require.Len(t, refused, 7)
	assert.Equal(t, "450 4.7.1 Error: too much mail from 10.1.2.3", refused[0])
	got, _ = mailN(t, pol.chain, client("192.0.2.50"), 8)
	assert.Equal(t, 5, got, "a Connect: RELAY host")
	got, _ = mailN(t, pol.chain, client("10.9.1.1"), 20)
	assert.Equal(t, 20, got, "outbound_exempt")
	got, _ = mailN(t, pol.chain, client("127.0.0.1"), 20)
	assert.Equal(t, 20, got, "the relay's own host")
	got, _ = mailN(t, pol.chain, client("198.51.100.7"), 20)
	assert.Equal(t, 20, got, "a stranger: the inbound limits' business (none here)")

	// A user, on the submission chain, then on port 25 from an exempt
	// network: one count, per user.
	alice := client("203.0.113.9")
	alice.AuthUser, alice.AuthMech = "alice@example.test", "PLAIN"
	got, _ = mailN(t, sub, alice, 3)
	assert.Equal(t, 3, got)
	alice2 := client("10.9.1.1")
	alice2.AuthUser, alice2.AuthMech = "ALICE@example.test", "PLAIN"
	got, refused = mailN(t, pol.chain, alice2, 4)
	assert.Equal(t, 2, got, "the same user's count, wherever she logs in")
	require.NotEmpty(t, refused)

	last := decisions[len(decisions)-1]
	assert.Equal(t, outboundFilterName, last.Filter)
	assert.Contains(t, last.Verdict.Reason, "(user:alice@example.test)", "logged with the user")
	assert.Equal(t, "messages", limitReason(last))

	// The daily mail counts refusals by filter and reason class: one line
	// for all of them, apart from the inbound limit's.
	keys := map[string]bool{}
	for _, d := range decisions {
		keys[stats.RejectKey(stats.Event{Filter: d.Filter, Reason: d.Verdict.Reason, Code: d.Verdict.Reply.Code})] = true
	}
	assert.Equal(t, map[string]bool{"outbound-ratelimit: 450 message rate 5/24h0m0s exceeded": true}, keys)
}

func TestOutboundOff(t *testing.T) {
	pol, sub := policyFor(t, "trusted_networks = [\"10.0.0.0/8\"]\n[limits]\noutbound_message_rate = \"unlimited\"\noutbound_recipient_rate = \"unlimited\"\n", nil)
	assert.NotContains(t, pol.names, outboundFilterName)
	got, _ := mailN(t, pol.chain, client("10.1.2.3"), 400)
	assert.Equal(t, 400, got)
	assert.Equal(t, 3, sub.Len(), "submission: relay, auth-verify and scan")
}

// Recipients are counted on both the inbound and the outbound limit, each
// for its own clients.
func TestOutboundRecipients(t *testing.T) {
	pol, _ := policyFor(t, "trusted_networks = [\"10.0.0.0/8\"]\n[limits]\noutbound_recipient_rate = \"3/1h\"\nrecipient_rate = \"2/1h\"\n", nil)
	ctx := context.Background()
	rcpts := func(c *postern.Conn, n int) (ok int) {
		tx := &postern.Txn{From: "a@example.test"}
		for range n {
			v, err := pol.chain.CheckRcpt(ctx, c, tx, &postern.Rcpt{Addr: "b@example.test"})
			require.NoError(t, err)
			if v.Action != postern.TempFail {
				ok++
			}
		}
		return ok
	}
	assert.Equal(t, 3, rcpts(client("10.1.2.3"), 10))
	assert.Equal(t, 2, rcpts(client("198.51.100.7"), 10))
}

// ClientRate:/ClientConn: entries naming a client apply to it even when
// it is trusted; the default entry and the configured default do not.
func TestClientLimitTrusted(t *testing.T) {
	acc := filepath.Join(t.TempDir(), "access")
	require.NoError(t, os.WriteFile(acc, []byte("ClientRate:10.1.2.3 7\nClientConn:10.1 2\nClientRate: 20\n"), 0o644))
	pol, _ := policyFor(t, "trusted_networks = [\"10.0.0.0/8\"]\n[policy]\naccess = \""+acc+"\"\n[limits]\nclient_rate = 30\n", nil)
	for _, tt := range []struct {
		ip, tag string
		want    int
	}{
		{"10.1.2.3", access.TagClientRate, 7},   // named, trusted
		{"10.1.9.9", access.TagClientConn, 2},   // its network named, trusted
		{"10.2.0.1", access.TagClientRate, 0},   // trusted, only the default entry
		{"10.2.0.1", access.TagClientConn, 0},   // trusted, the configured default
		{"192.0.2.1", access.TagClientRate, 20}, // stranger: the default entry
		{"192.0.2.1", access.TagClientConn, 50}, // stranger: the configured default
	} {
		def := pol.s.Limits.ClientConn
		if tt.tag == access.TagClientRate {
			def = pol.s.Limits.ClientRate
		}
		n, _ := pol.clientLimit(netip.MustParseAddr(tt.ip), def, tt.tag)
		assert.Equal(t, tt.want, n, "%s %s", tt.tag, tt.ip)
	}
}

// postern_rate_limited_total counts refusals by filter and reason.
func TestRateLimitedMetric(t *testing.T) {
	m := newMetrics()
	for _, d := range []postern.Decision{
		{Stage: postern.StageMail, Filter: outboundFilterName, Verdict: postern.TempFailed(450, postern.ESC(4, 7, 1), "x", "")},
		{Stage: postern.StageRcpt, Filter: ratelimit.FilterName, Verdict: postern.TempFailed(450, postern.ESC(4, 7, 1), "x", "")},
		{Stage: postern.StageRcpt, Filter: ratelimit.GuardName, Verdict: postern.TempFailed(451, postern.ESC(4, 7, 1), "x", "")},
		{Stage: postern.StageMail, Filter: outboundFilterName, Verdict: postern.TempFailed(451, postern.ESC(4, 3, 0), "x", "")},
		{Stage: postern.StageRcpt, Filter: "dnsbl", Verdict: postern.TempFailed(451, postern.ESC(4, 7, 1), "x", "")},
	} {
		m.observe(d)
	}
	got := map[string]float64{}
	fams, err := m.reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != "postern_rate_limited_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			var l []string
			for _, lp := range mt.GetLabel() {
				l = append(l, lp.GetValue())
			}
			got[strings.Join(l, "/")] = mt.GetCounter().GetValue()
		}
	}
	assert.Equal(t, map[string]float64{outboundFilterName + "/messages": 1, "ratelimit/recipients": 1,
		"harvest-guard/harvest": 1, outboundFilterName + "/store": 1}, got, "dnsbl's 451 is not a rate limit")
}

// The configuration's limits reach the walker and the server.
func TestLimitKeys(t *testing.T) {
	cfg, err := parseConfig([]byte("[smtp]\nmax_recipients = 50\n[scan]\nmax_mime_depth = 3\nmax_mime_parts = 20\n"), "relay.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.Equal(t, 50, s.SMTP.MaxRecipients)
	sc, err := buildScan(s, nil, nil, nil)
	require.NoError(t, err)
	deep := "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: multipart/mixed; boundary=d\r\n\r\n" +
		"--d\r\nContent-Type: text/plain\r\n\r\nhi\r\n--d--\r\n--c--\r\n--b--\r\n--a--\r\n"
	m, err := postern.NewMessage(strings.NewReader("From: a@example.net\r\n"+deep), int64(len(deep)+21), 0)
	require.NoError(t, err)
	v, err := sc.filter.CheckData(context.Background(), client("192.0.2.1"), &postern.Txn{From: "a@example.net",
		Rcpts: []*postern.Rcpt{{Addr: "b@example.test"}}}, m)
	require.NoError(t, err)
	assert.Equal(t, "554 5.6.0 Message rejected: MIME nesting too deep", v.ReplyAt(postern.StageData).Error())

	cfg = &Config{}
	require.NoError(t, cfg.applyDefaults())
	s, err = cfg.resolved()
	require.NoError(t, err)
	assert.Equal(t, 1000, s.SMTP.MaxRecipients)
	assert.Equal(t, 32, s.Scan.MaxMimeDepth)
	assert.Equal(t, 1000, s.Scan.MaxMimeParts)
	assert.Equal(t, ratelimit.Rate{Count: 300, Per: time.Hour}, s.Limits.OutboundMessageRate.Rate)
	assert.Equal(t, ratelimit.Rate{Count: 1000, Per: time.Hour}, s.Limits.OutboundRecipientRate.Rate)
	assert.Equal(t, ratelimit.DefaultHarvestWindow, s.harvest.Window)

	_, err = parseConfig([]byte("[scan]\nmax_mime_parts = -1\n"), "relay.toml")
	assert.ErrorContains(t, err, "relay.toml:2: scan.max_mime_parts: cannot be negative")
	_, err = parseConfig([]byte("[limits]\noutbound_exempt = [\"10.0.0.0/33\"]\n"), "relay.toml")
	assert.ErrorContains(t, err, "relay.toml:2: limits.outbound_exempt:")
}

// The relay's failure-policy keys resolve to the library's ErrorPolicy as
// the relay always behaved: DNS lists and virus scanning fail closed
// (tempfail), Redis and spam scoring fail open (accept), each key turning
// its dependency the other way.
func TestFailurePolicyKeys(t *testing.T) {
	for _, tc := range []struct {
		doc                    string
		dnsbl, redis, av, spam postern.ErrorPolicy
	}{
		{"", postern.OnErrorTempFail, postern.OnErrorAccept, postern.OnErrorTempFail, postern.OnErrorAccept},
		{"[dnsbl]\nfail_open = true\n", postern.OnErrorAccept, postern.OnErrorAccept, postern.OnErrorTempFail, postern.OnErrorAccept},
		{"[redis]\nfail_closed = true\n", postern.OnErrorTempFail, postern.OnErrorTempFail, postern.OnErrorTempFail, postern.OnErrorAccept},
		{"[scan]\nvirus_fail_open = true\nspam_fail_closed = true\n",
			postern.OnErrorTempFail, postern.OnErrorAccept, postern.OnErrorAccept, postern.OnErrorTempFail},
	} {
		cfg, err := parseConfig([]byte(tc.doc), "relay.toml")
		require.NoError(t, err)
		require.NoError(t, cfg.applyDefaults())
		s, err := cfg.resolved()
		require.NoError(t, err)
		assert.Equal(t, tc.dnsbl, s.DNSBL.OnError, "dnsbl: %q", tc.doc)
		assert.Equal(t, tc.redis, s.Redis.OnError, "redis: %q", tc.doc)
		assert.Equal(t, tc.av, s.Scan.VirusOnError, "virus: %q", tc.doc)
		assert.Equal(t, tc.spam, s.Scan.SpamOnError, "spam: %q", tc.doc)
	}
}

// A limit whose store failed is counted as "store" whatever its OnError
// refused with; a limit's own refusals by what they limit.
func TestLimitReason(t *testing.T) {
	storeDown := func(p postern.ErrorPolicy, st postern.Stage) postern.Verdict {
		// As ratelimit answers a store failure.
		return p.Verdict(st, postern.ESC(4, 3, 0), "", "store failed")
	}
	for _, tc := range []struct {
		filter string
		stage  postern.Stage
		v      postern.Verdict
		want   string
	}{
		{ratelimit.FilterName, postern.StageRcpt, storeDown(postern.OnErrorTempFail, postern.StageRcpt), "store"},
		{ratelimit.GuardName, postern.StageConnect, storeDown(postern.OnErrorReject, postern.StageConnect), "store"},
		{outboundFilterName, postern.StageMail, storeDown(postern.OnErrorReject, postern.StageMail), "store"},
		{ratelimit.FilterName, postern.StageMail, storeDown(postern.OnErrorAccept, postern.StageMail), ""},
		{ratelimit.FilterName, postern.StageMail, postern.TempFailed(450, postern.ESC(4, 7, 1), "too much mail", ""), "messages"},
		{ratelimit.GuardName, postern.StageRcpt, postern.TempFailed(451, postern.ESC(4, 7, 1), "held", ""), "harvest"},
		{ratelimit.FilterName, postern.StageRcpt, postern.Rejected(550, postern.ESC(5, 7, 1), "no", ""), ""},
		{"dnsbl", postern.StageConnect, storeDown(postern.OnErrorTempFail, postern.StageConnect), ""},
	} {
		d := postern.Decision{Filter: tc.filter, Stage: tc.stage, Verdict: tc.v}
		assert.Equal(t, tc.want, limitReason(d), "%s %s %s", tc.filter, tc.stage, tc.v.Reply.Error())
	}
}

// [[milter]] tables are one filter, "milter", in the order: after scan,
// before dkim-sign by default; an order that leaves it out is refused.
func TestPolicyOrderMilters(t *testing.T) {
	milters := "[[milter]]\naddress = \"inet:127.0.0.1:9\"\nname = \"a\"\n[[milter]]\naddress = \"unix:/nonexistent/b.sock\"\n"
	code, out, errb := checkRun(t, milters, "-ip", "192.0.2.7")
	require.Equal(t, 0, code, errb)
	assert.Contains(t, out, "filters: trust, relay, outbound-ratelimit, harvest-guard, auth-verify, scan, milter (default order)")
	code, _, errb = checkRun(t, "[policy]\norder = [\"trust\", \"relay\", \"outbound-ratelimit\", \"harvest-guard\", \"auth-verify\", \"scan\"]\n"+milters)
	assert.Equal(t, 1, code)
	assert.Contains(t, errb, "relay.toml:2: policy.order: milter is configured ([[milter]]) but not listed")
}

// An access GreetPause: entry naming the client wins over the pass cache;
// the default entry (empty key) is only the site's pause.
func TestGreetEntryWinsOverPassCache(t *testing.T) {
	m, _, err := access.Parse(strings.NewReader("GreetPause: 5000\nGreetPause:192.0.2.7 8000\nGreetPause:198.51.100 0\n"), "access")
	require.NoError(t, err)
	p := &policy{amap: m}
	for ip, want := range map[string]bool{"192.0.2.7": true, "198.51.100.9": true, "203.0.113.1": false} {
		assert.Equal(t, want, p.greetEntry(netip.MustParseAddr(ip)), ip)
	}
	assert.False(t, (&policy{}).greetEntry(netip.MustParseAddr("192.0.2.7")), "no access file")
}
