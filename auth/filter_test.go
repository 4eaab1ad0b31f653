package auth

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func newConn(ip string) *postern.Conn {
	return &postern.Conn{ID: "c1", Remote: netip.AddrPortFrom(netip.MustParseAddr(ip), 40000), HELO: "mail.client.test"}
}

func TestSPFFilter(t *testing.T) {
	s := spfZone(t)
	ck, _ := newSPF(t, s, 0)
	lb := &logBuf{newLogBuffer()}
	f, err := NewSPFFilter(SPFFilterConfig{Checker: ck, Receiver: "mx.example.net", Logger: lb.Logger(),
		Actions: map[Status]postern.Action{Fail: postern.Reject, TempError: postern.TempFail, PermError: postern.Reject,
			SoftFail: postern.Continue}})
	require.NoError(t, err)
	assert.Equal(t, "spf", f.Name())
	tests := []struct {
		from   string
		action postern.Action
		reply  string
	}{
		{"a@pass.test", postern.Continue, ""},
		{"a@fail.test", postern.Reject, "550 5.7.23 SPF fail"},
		{"a@softfail.test", postern.Continue, ""},
		{"a@neutral.test", postern.Continue, ""},
		{"a@temperror.test", postern.TempFail, "451 4.7.24 SPF temperror"},
		{"a@permerror.test", postern.Reject, "550 5.7.24 SPF permerror"},
	}
	for _, tc := range tests {
		c := newConn("192.0.2.1")
		txn := &postern.Txn{From: tc.from}
		v, err := f.CheckMail(bg, c, txn)
		require.NoError(t, err)
		assert.Equal(t, tc.action, v.Action, tc.from)
		if tc.reply != "" {
			assert.Equal(t, tc.reply, v.ReplyAt(postern.StageMail).Error(), tc.from)
		}
		r, ok := postern.GetValue(&txn.Values, SPFResultKey)
		require.True(t, ok, tc.from)
		assert.Equal(t, postern.AddrDomain(tc.from), r.Domain)
		// At DATA the result becomes a Received-SPF field.
		m := newMessage(t, testMessage)
		_, err = f.CheckData(bg, c, txn, m)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(render(t, m), "Received-SPF: "+string(r.Status)+" (mx.example.net: "), tc.from)
	}
	refusals := lb.Records(t, "spf decision")
	require.Len(t, refusals, len(tests))
	assert.Equal(t, "reject", refusals[1]["action"])
	assert.EqualValues(t, 550, refusals[1]["code"])
	assert.Equal(t, "spf", refusals[1]["filter"])
	assert.Equal(t, "mail", refusals[1]["stage"])

	// Trusted and authenticated clients are not checked.
	for _, c := range []*postern.Conn{{Trusted: true}, {AuthUser: "alice"}} {
		c.Remote = netip.MustParseAddrPort("192.0.2.9:1")
		txn := &postern.Txn{From: "a@fail.test"}
		postern.SetValue(&txn.Values, SPFResultKey, SPFResult{Status: Pass})
		v, err := f.CheckMail(bg, c, txn)
		require.NoError(t, err)
		assert.Equal(t, postern.Pass, v)
		_, ok := postern.GetValue(&txn.Values, SPFResultKey)
		assert.False(t, ok, "a stale result is dropped")
	}
	// No header when asked.
	quiet, err := NewSPFFilter(SPFFilterConfig{Checker: ck, NoReceivedSPF: true})
	require.NoError(t, err)
	txn := &postern.Txn{From: "a@pass.test"}
	_, err = quiet.CheckMail(bg, newConn("192.0.2.1"), txn)
	require.NoError(t, err)
	m := newMessage(t, testMessage)
	_, err = quiet.CheckData(bg, newConn("192.0.2.1"), txn, m)
	require.NoError(t, err)
	assert.Empty(t, m.Edits())
}

// verifySetup is an inbound chain: SPF at MAIL, then VerifyFilter at DATA,
// with example.com publishing p=reject and a DKIM key.
type verifySetup struct {
	dns    *testDNS
	spf    *SPFFilter
	signed string // a message from example.com with a valid signature
}

func newVerifySetup(t *testing.T) *verifySetup {
	s := startDNS(t)
	s.txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
	s.txt("_dmarc.example.com", "v=DMARC1; p=reject")
	s.txt("_dmarc.example.org", "v=DMARC1; p=quarantine")
	k := testEd25519Key(t)
	publish(t, s, "example.com", "sel", k)
	ck, err := NewSPFChecker(SPFConfig{Resolver: s.resolver()})
	require.NoError(t, err)
	f, err := NewSPFFilter(SPFFilterConfig{Checker: ck, Receiver: "mx.example.net"})
	require.NoError(t, err)
	signed := signString(t, DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}}, testMessage)
	return &verifySetup{dns: s, spf: f, signed: signed}
}

func (vs *verifySetup) filter(t *testing.T, cfg VerifyFilterConfig) *VerifyFilter {
	cfg.AuthServID = "mx.example.net"
	var err error
	if cfg.DKIM == nil {
		cfg.DKIM, err = NewDKIMVerifier(DKIMVerifyConfig{Resolver: vs.dns.resolver()})
		require.NoError(t, err)
	}
	if cfg.DMARC == nil {
		cfg.DMARC, err = NewDMARCChecker(DMARCConfig{Resolver: vs.dns.resolver(), Rand: func(int) int { return 0 }})
		require.NoError(t, err)
	}
	f, err := NewVerifyFilter(cfg)
	require.NoError(t, err)
	return f
}

// run passes one message through a chain of the SPF filter and f.
func (vs *verifySetup) run(t *testing.T, f *VerifyFilter, c *postern.Conn, from, msg string) (postern.Verdict, *postern.Txn, string) {
	t.Helper()
	chain, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{{Filter: vs.spf}, {Filter: f}}})
	require.NoError(t, err)
	txn := &postern.Txn{ID: "t1", From: from}
	v, err := chain.CheckMail(bg, c, txn)
	require.NoError(t, err)
	require.False(t, v.Final())
	m := newMessage(t, msg)
	v, err = chain.CheckData(bg, c, txn, m)
	require.NoError(t, err)
	return v, txn, render(t, m)
}

func authResultsOf(t *testing.T, rendered string) string {
	t.Helper()
	m := newMessage(t, rendered)
	var vals []string
	for _, f := range m.Fields() {
		if strings.EqualFold(f.Name, "Authentication-Results") {
			vals = append(vals, f.Value())
		}
	}
	require.Len(t, vals, 1, "exactly one Authentication-Results field in\n%s", rendered)
	return vals[0]
}

func TestVerifyFilterPass(t *testing.T) {
	vs := newVerifySetup(t)
	lb := &logBuf{newLogBuffer()}
	f := vs.filter(t, VerifyFilterConfig{Mode: DMARCEnforce, Logger: lb.Logger(), RemoveIDs: []string{"relay2.example.net"}})
	forged := "Authentication-Results: mx.example.net; dmarc=pass header.from=example.com\r\n" +
		"Authentication-Results: relay2.example.net; dkim=pass\r\n" +
		"Authentication-Results: elsewhere.example; spf=fail\r\n"
	v, txn, out := vs.run(t, f, newConn("192.0.2.1"), "alice@example.com", forged+vs.signed)
	assert.Equal(t, postern.Pass, v)
	ar := authResultsOf(t, strings.Replace(out, "Authentication-Results: elsewhere.example; spf=fail\r\n", "", 1))
	assert.Contains(t, ar, "spf=pass smtp.mailfrom=alice@example.com")
	assert.Contains(t, ar, "dkim=pass")
	assert.Contains(t, ar, "header.s=sel")
	assert.Contains(t, ar, "dmarc=pass header.from=example.com")
	assert.Contains(t, out, "Authentication-Results: elsewhere.example; spf=fail\r\n", "others' fields stay")
	assert.Contains(t, out, "Received-SPF: pass")
	dk, ok := postern.GetValue(&txn.Values, DKIMResultsKey)
	require.True(t, ok)
	assert.Equal(t, Pass, dk[0].Status)
	dm, ok := postern.GetValue(&txn.Values, DMARCResultKey)
	require.True(t, ok)
	assert.Equal(t, Pass, dm.Status)
	assert.True(t, dm.SPFAligned && dm.DKIMAligned)
	recs := lb.Records(t, "auth decision")
	require.Len(t, recs, 1)
	assert.EqualValues(t, 2, recs[0]["removed_auth_results"])
	assert.Equal(t, "auth-verify", recs[0]["filter"])
}

func TestVerifyFilterDMARCDisposition(t *testing.T) {
	vs := newVerifySetup(t)
	spoofed := strings.Replace(testMessage, "Shall", "Please send the invoices. Shall", 1)
	spoofedOrg := strings.ReplaceAll(testMessage, "example.com", "example.org")
	tests := []struct {
		name   string
		mode   DMARCMode
		from   string
		msg    string
		action postern.Action
		reply  string
	}{
		{"enforce reject", DMARCEnforce, "alice@example.com", spoofed, postern.Reject, "550 5.7.1 Email rejected per DMARC policy for example.com"},
		{"enforce quarantine", DMARCEnforce, "alice@example.org", spoofedOrg, postern.Quarantine, ""},
		{"quarantine only", DMARCQuarantineOnly, "alice@example.com", spoofed, postern.Quarantine, ""},
		{"tag only", DMARCTagOnly, "alice@example.com", spoofed, postern.Continue, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := vs.filter(t, VerifyFilterConfig{Mode: tc.mode})
			// Sent from an address the domain does not authorize, unsigned.
			v, _, out := vs.run(t, f, newConn("198.51.100.7"), tc.from, tc.msg)
			assert.Equal(t, tc.action, v.Action)
			if tc.reply != "" {
				assert.Equal(t, tc.reply, v.ReplyAt(postern.StageData).Error())
			}
			if tc.action == postern.Quarantine {
				assert.Contains(t, v.Reason, "dmarc: fail")
			}
			assert.Contains(t, authResultsOf(t, out), "dmarc=fail")
		})
	}
}

func TestVerifyFilterErrors(t *testing.T) {
	vs := newVerifySetup(t)
	vs.dns.setServfail("_dmarc.flaky.example")
	f := vs.filter(t, VerifyFilterConfig{Mode: DMARCEnforce, OnTempError: postern.OnErrorTempFail, OnPermError: postern.Reject})
	twoFroms := "From: a@example.com\r\nFrom: b@example.org\r\nSubject: x\r\n\r\nbody\r\n"
	v, _, _ := vs.run(t, f, newConn("192.0.2.1"), "a@example.com", twoFroms)
	assert.Equal(t, postern.Reject, v.Action)
	assert.Equal(t, 550, v.Reply.Code)
	assert.Contains(t, v.Reason, "2 From fields")

	flaky := strings.ReplaceAll(testMessage, "alice@example.com", "alice@flaky.example")
	v, _, out := vs.run(t, f, newConn("192.0.2.1"), "a@flaky.example", flaky)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 DMARC temporary error, try again later", v.ReplyAt(postern.StageData).Error())
	assert.Contains(t, authResultsOf(t, out), "dmarc=temperror")

	// Every OnTempError value: the default only tags, as it always has.
	for _, tc := range []struct {
		policy postern.ErrorPolicy
		action postern.Action
		reply  string
	}{
		{postern.OnErrorDefault, postern.Continue, "no reply"},
		{postern.OnErrorAccept, postern.Continue, "no reply"},
		{postern.OnErrorTempFail, postern.TempFail, "451 4.7.1 DMARC temporary error, try again later"},
		{postern.OnErrorReject, postern.Reject, "554 5.7.1 DMARC temporary error"},
	} {
		v, _, out = vs.run(t, vs.filter(t, VerifyFilterConfig{Mode: DMARCEnforce, OnTempError: tc.policy}),
			newConn("192.0.2.1"), "a@flaky.example", flaky)
		assert.Equal(t, tc.action, v.Action, tc.policy.String())
		assert.Equal(t, tc.reply, v.Reply.Error(), tc.policy.String())
		if tc.action != postern.Continue {
			assert.Equal(t, tc.reply, v.ReplyAt(postern.StageData).Error(), "sent as is")
		}
		assert.Contains(t, authResultsOf(t, out), "dmarc=temperror", "tagged whatever the policy")
	}

	// Tag only by default.
	v, _, _ = vs.run(t, vs.filter(t, VerifyFilterConfig{}), newConn("192.0.2.1"), "a@example.com", twoFroms)
	assert.Equal(t, postern.Pass, v)
}

func TestVerifyFilterExempt(t *testing.T) {
	vs := newVerifySetup(t)
	f := vs.filter(t, VerifyFilterConfig{Mode: DMARCEnforce})
	c := newConn("198.51.100.7")
	c.AuthUser = "alice"
	msg := "Authentication-Results: mx.example.net; dmarc=pass\r\n" + testMessage
	v, txn, out := vs.run(t, f, c, "alice@example.com", msg)
	assert.Equal(t, postern.Pass, v)
	assert.NotContains(t, out, "Authentication-Results", "forged field removed, none added")
	_, ok := postern.GetValue(&txn.Values, DMARCResultKey)
	assert.False(t, ok)
}

func TestVerifyFilterConfig(t *testing.T) {
	for name, cfg := range map[string]VerifyFilterConfig{
		"no id":    {},
		"bad id":   {AuthServID: "mx.example.net; spf=pass"},
		"bad mode": {AuthServID: "mx", Mode: 9},
		"bad temp": {AuthServID: "mx", OnTempError: postern.OnErrorReject + 1},
		"bad perm": {AuthServID: "mx", OnPermError: postern.Quarantine},
	} {
		_, err := NewVerifyFilter(cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
	// Without DKIM and DMARC it still writes the SPF result and removes
	// forged fields.
	f, err := NewVerifyFilter(VerifyFilterConfig{AuthServID: "mx.example.net"})
	require.NoError(t, err)
	txn := &postern.Txn{}
	postern.SetValue(&txn.Values, SPFResultKey, SPFResult{Status: SoftFail, Identity: IdentityMailFrom, MailFrom: "a@b.example"})
	m := newMessage(t, "Authentication-Results: MX.example.net; spf=pass\r\n"+testMessage)
	v, err := f.CheckData(bg, newConn("192.0.2.1"), txn, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	out := render(t, m)
	assert.Equal(t, "mx.example.net;\tspf=softfail smtp.mailfrom=a@b.example", authResultsOf(t, out))
}

// RemoveOnly: forged fields go, with whatever spelling, and no field of
// ours is added (the relay with auth.check off).
func TestVerifyFilterRemoveOnly(t *testing.T) {
	f, err := NewVerifyFilter(VerifyFilterConfig{AuthServID: "mx.example.net", RemoveOnly: true})
	require.NoError(t, err)
	m := newMessage(t, "Authentication-Results: MX.Example.NET.; dkim=pass\r\n"+
		"Authentication-Results: other.example; spf=pass\r\n"+testMessage)
	v, err := f.CheckData(bg, newConn("192.0.2.1"), &postern.Txn{}, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	assert.Equal(t, "other.example; spf=pass", authResultsOf(t, render(t, m)), "ours removed, none added, others kept")

	dk, err := NewDKIMVerifier(DKIMVerifyConfig{Resolver: startDNS(t).resolver()})
	require.NoError(t, err)
	_, err = NewVerifyFilter(VerifyFilterConfig{AuthServID: "mx.example.net", RemoveOnly: true, DKIM: dk})
	assert.ErrorIs(t, err, ErrConfig, "a filter that checks nothing cannot verify DKIM")
}

func TestSignFilter(t *testing.T) {
	s := startDNS(t)
	k := testEd25519Key(t)
	publish(t, s, "example.com", "sel", k)
	sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}})
	require.NoError(t, err)
	lb := &logBuf{newLogBuffer()}
	senders, err := ParseSenderBindings(strings.NewReader("alice: alice@example.com, @example.org\n"), "senders")
	require.NoError(t, err)
	f, err := NewSignFilter(SignFilterConfig{Signer: sg, Senders: senders, Logger: lb.Logger()})
	require.NoError(t, err)
	v := newVerifier(t, s, DKIMVerifyConfig{})

	sign := func(c *postern.Conn, msg string) string {
		m := newMessage(t, msg)
		m.AddHeader("Received", "from client by mx; Wed, 25 Nov 2026 09:00:00 +0000")
		verdict, err := f.CheckData(bg, c, &postern.Txn{}, m)
		require.NoError(t, err)
		require.Equal(t, postern.Pass, verdict)
		return render(t, m)
	}
	c := newConn("192.0.2.1")
	c.AuthUser = "alice"
	out := sign(c, testMessage)
	require.True(t, strings.HasPrefix(out, "DKIM-Signature:"))
	assert.Equal(t, Pass, v.Verify(bg, newMessage(t, out))[0].Status)

	trusted := newConn("192.0.2.1")
	trusted.Trusted = true
	assert.True(t, strings.HasPrefix(sign(trusted, testMessage), "DKIM-Signature:"))
	assert.False(t, strings.HasPrefix(sign(newConn("192.0.2.1"), testMessage), "DKIM-Signature:"), "inbound mail is not signed")

	// No key for the author domain: passed unsigned, logged.
	out = sign(c, strings.Replace(testMessage, "alice@example.com", "alice@example.org", 1))
	assert.NotContains(t, out, "DKIM-Signature")
	assert.Len(t, lb.Records(t, "dkim: not signed"), 1)

	// An authenticated user's From that is not theirs is never signed,
	// whatever the predicate says; nor, without bindings, is any
	// authenticated mail.
	for _, msg := range []string{
		strings.Replace(testMessage, "alice@example.com", "ceo@example.com", 1),
		strings.Replace(testMessage, "Alice <alice@example.com>", "alice@example.com, ceo@example.com", 1),
		"Sender: ceo@example.com\r\n" + testMessage,
		"From: ceo@example.com\r\n" + testMessage,
	} {
		assert.NotContains(t, sign(c, msg), "DKIM-Signature", msg)
	}
	assert.Len(t, lb.Records(t, "dkim: not signed"), 5)
	always, err := NewSignFilter(SignFilterConfig{Signer: sg, Senders: senders,
		Sign: func(*postern.Conn, *postern.Txn) bool { return true }})
	require.NoError(t, err)
	m := newMessage(t, strings.Replace(testMessage, "alice@example.com", "ceo@example.com", 1))
	_, err = always.CheckData(bg, c, &postern.Txn{}, m)
	require.NoError(t, err)
	assert.NotContains(t, render(t, m), "DKIM-Signature")
	unbound, err := NewSignFilter(SignFilterConfig{Signer: sg})
	require.NoError(t, err)
	m = newMessage(t, testMessage)
	_, err = unbound.CheckData(bg, c, &postern.Txn{}, m)
	require.NoError(t, err)
	assert.NotContains(t, render(t, m), "DKIM-Signature")

	// A custom predicate.
	f2, err := NewSignFilter(SignFilterConfig{Signer: sg, Sign: func(*postern.Conn, *postern.Txn) bool { return true }})
	require.NoError(t, err)
	m = newMessage(t, testMessage)
	_, err = f2.CheckData(bg, newConn("192.0.2.1"), &postern.Txn{}, m)
	require.NoError(t, err)
	assert.Contains(t, render(t, m), "DKIM-Signature")

	_, err = NewSignFilter(SignFilterConfig{})
	assert.ErrorIs(t, err, ErrConfig)
}
