package dnsbl

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/route/resolver"
)

func newConn(ip string) *postern.Conn {
	return &postern.Conn{ID: "c1", Remote: netip.AddrPortFrom(mustAddr(ip), 40000)}
}

// filterDNS serves: 192.0.2.1 listed with TXT, 192.0.2.2 clean,
// 192.0.2.3 on the allow list (and the block list), 192.0.2.4 SERVFAIL,
// and in the domain list bad.example.
func filterDNS(t *testing.T) (*testDNS, *Checker) {
	s := startDNS(t)
	s.listA(qn("192.0.2.1", "bl.test"), 300, "127.0.0.2")
	s.listTXT(qn("192.0.2.1", "bl.test"), 300, "https://bl.test/lookup?ip=192.0.2.1")
	s.listA(qn("192.0.2.3", "bl.test"), 300, "127.0.0.2")
	s.listA(qn("192.0.2.3", "wl.test"), 300, "127.0.10.3")
	s.set(qn("192.0.2.4", "bl.test"), dns.TypeA, response{rcode: dns.RcodeServerFailure})
	s.listA("bad.example.dbl.test.", 300, "127.0.1.2")
	c := newChecker(t, s, Config{Zones: []Zone{
		{Name: "bl.test", TXT: true, OnError: postern.OnErrorTempFail},
		{Name: "wl.test", Weight: -10},
		{Name: "dbl.test", Kind: DomainZone, OnError: postern.OnErrorTempFail},
	}})
	return s, c
}

func TestFilterConfig(t *testing.T) {
	_, c := filterDNS(t)
	_, err := NewFilter(FilterConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewFilter(FilterConfig{Checker: c, EnforceAt: postern.StageData})
	assert.ErrorIs(t, err, ErrConfig)
	ipOnly := newChecker(t, nil, Config{Resolver: newResolver(t, nil, resolver.Config{Servers: []string{"127.0.0.1"}}),
		Zones: []Zone{{Name: "bl.test"}}})
	_, err = NewFilter(FilterConfig{Checker: ipOnly, CheckSender: true})
	assert.ErrorIs(t, err, ErrConfig, "RHSBL checks need domain zones")
	f, err := NewFilter(FilterConfig{Checker: c})
	require.NoError(t, err)
	assert.Equal(t, "dnsbl", f.Name())
}

func TestFilterAtConnect(t *testing.T) {
	s, c := filterDNS(t)
	f, err := NewFilter(FilterConfig{Checker: c})
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		ip      string
		trusted bool
		action  postern.Action
		reply   string
	}{
		{"listed", "192.0.2.1", false, postern.Reject,
			"554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.test; https://bl.test/lookup?ip=192.0.2.1"},
		{"not listed", "192.0.2.2", false, postern.Continue, ""},
		{"allow list wins", "192.0.2.3", false, postern.Continue, ""},
		{"lookup failed, tempfail policy", "192.0.2.4", false, postern.TempFail,
			"421 4.7.1 DNSBL lookup failed, try again later"},
		{"trusted client not checked", "192.0.2.1", true, postern.Continue, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := newConn(tc.ip)
			conn.Trusted = tc.trusted
			v, err := f.CheckConnect(bg, conn)
			require.NoError(t, err)
			assert.Equal(t, tc.action, v.Action, v.Reason)
			if tc.reply != "" {
				assert.Equal(t, tc.reply, v.Reply.Error())
				assert.Contains(t, v.Reason, "bl.test")
			}
			r, stored := postern.GetValue(&conn.Values, IPResultKey)
			assert.Equal(t, !tc.trusted, stored, "result recorded for later filters")
			if stored {
				assert.Equal(t, mustAddr(tc.ip), r.IP)
			}
		})
	}
	conn := newConn("192.0.2.3")
	_, err = f.CheckConnect(bg, conn)
	require.NoError(t, err)
	assert.True(t, Whitelisted(conn))
	assert.False(t, Whitelisted(newConn("192.0.2.3")), "nothing recorded")
	before := s.total()
	_, err = f.CheckConnect(bg, &postern.Conn{}) // no address (a pipe)
	require.NoError(t, err)
	assert.Equal(t, before, s.total())
}

func TestFilterRHSBLAtConnect(t *testing.T) {
	s, c := filterDNS(t)
	f, err := NewFilter(FilterConfig{Checker: c, CheckHELO: true, CheckSender: true})
	require.NoError(t, err)

	conn := newConn("192.0.2.2")
	conn.HELO = "Bad.Example"
	v, err := f.CheckHelo(bg, conn)
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action)
	assert.Equal(t, "550 5.7.1 Service unavailable; Domain bad.example blocked using dbl.test", v.Reply.Error())
	r, ok := postern.GetValue(&conn.Values, HELOResultKey)
	require.True(t, ok)
	assert.Equal(t, "bad.example", r.Domain)

	conn.HELO = "[192.0.2.2]"
	before := s.total()
	v, err = f.CheckHelo(bg, conn)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v, "an address literal is not a domain")
	assert.Equal(t, before, s.total())

	conn.HELO = "mail.good.example"
	for _, tc := range []struct {
		from   string
		action postern.Action
	}{
		{"spammer@bad.example", postern.Reject},
		{"someone@good.example", postern.Continue},
		{"", postern.Continue}, // null sender: not checked
		{"user@[192.0.2.1]", postern.Continue},
	} {
		txn := &postern.Txn{From: tc.from}
		v, err := f.CheckMail(bg, conn, txn)
		require.NoError(t, err)
		assert.Equal(t, tc.action, v.Action, tc.from)
		if tc.action == postern.Reject {
			assert.Equal(t, 550, v.Reply.Code)
			_, ok := postern.GetValue(&txn.Values, SenderResultKey)
			assert.True(t, ok)
		}
	}
	s.set("down.example.dbl.test.", dns.TypeA, response{rcode: dns.RcodeServerFailure})
	v, err = f.CheckMail(bg, conn, &postern.Txn{From: "x@down.example"})
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 DNSBL lookup failed, try again later", v.Reply.Error())
}

func TestFilterAtRcpt(t *testing.T) {
	_, c := filterDNS(t)
	var logs syncBuffer
	f, err := NewFilter(FilterConfig{Checker: c, EnforceAt: postern.StageRcpt, CheckHELO: true, CheckSender: true,
		Logger: newTextLogger(&logs)})
	require.NoError(t, err)

	// Each stage records; only RCPT refuses.
	conn := newConn("192.0.2.1")
	conn.HELO = "mail.example"
	v, err := f.CheckConnect(bg, conn)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	_, ok := postern.GetValue(&conn.Values, IPResultKey)
	assert.True(t, ok)
	v, err = f.CheckHelo(bg, conn)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	txn := &postern.Txn{From: "alice@sender.example"}
	v, err = f.CheckMail(bg, conn, txn)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	rcpt := &postern.Rcpt{Addr: "bob@local.example"}
	v, err = f.CheckRcpt(bg, conn, txn, rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action)
	assert.Equal(t, "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.test; https://bl.test/lookup?ip=192.0.2.1",
		v.Reply.Error())
	out := logs.String()
	for _, want := range []string{"conn_id=c1", "remote_ip=192.0.2.1", "stage=rcpt", "filter=dnsbl", "action=reject",
		"code=550", "zone=bl.test", "sender=alice@sender.example", "rcpt=bob@local.example"} {
		assert.Contains(t, out, want)
	}

	// The same client after SMTP AUTH is let through.
	conn.AuthUser = "roaming"
	v, err = f.CheckRcpt(bg, conn, txn, rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)

	// A listed sender domain, a clean client.
	clean := newConn("192.0.2.2")
	_, err = f.CheckConnect(bg, clean)
	require.NoError(t, err)
	badTxn := &postern.Txn{From: "x@bad.example"}
	_, err = f.CheckMail(bg, clean, badTxn)
	require.NoError(t, err)
	v, err = f.CheckRcpt(bg, clean, badTxn, rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action)
	assert.Equal(t, "550 5.7.1 Service unavailable; Domain bad.example blocked using dbl.test", v.Reply.Error())
	v, err = f.CheckRcpt(bg, clean, &postern.Txn{From: "x@good.example"}, rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v, "a new transaction is judged on its own sender")

	// A failed lookup: 451 at RCPT. The connect stage did not run: the
	// check happens at RCPT.
	failing := newConn("192.0.2.4")
	v, err = f.CheckRcpt(bg, failing, &postern.Txn{From: "x@good.example"}, rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 DNSBL lookup failed, try again later", v.Reply.Error())
	_, ok = postern.GetValue(&failing.Values, IPResultKey)
	assert.True(t, ok)

	// A listing outranks a failed lookup elsewhere.
	failing2 := newConn("192.0.2.4")
	v, err = f.CheckRcpt(bg, failing2, &postern.Txn{From: "x@bad.example"}, rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action)
}

// Every Zone.OnError value, at connect and at RCPT: the default fails
// open, as it always has; tempfail and reject answer with the stage's code.
func TestFilterErrorPolicy(t *testing.T) {
	s := startDNS(t)
	s.set(qn("192.0.2.4", "bl.test"), dns.TypeA, response{rcode: dns.RcodeServerFailure})
	for _, tc := range []struct {
		policy         postern.ErrorPolicy
		action         postern.Action
		connect, rcpt  string
		resultPolicy   postern.ErrorPolicy
		zoneErrorNamed string
	}{
		{postern.OnErrorDefault, postern.Continue, "no reply", "no reply", postern.OnErrorDefault, "accept"},
		{postern.OnErrorAccept, postern.Continue, "no reply", "no reply", postern.OnErrorDefault, "accept"},
		{postern.OnErrorTempFail, postern.TempFail, "421 4.7.1 DNSBL lookup failed, try again later",
			"451 4.7.1 DNSBL lookup failed, try again later", postern.OnErrorTempFail, "tempfail"},
		{postern.OnErrorReject, postern.Reject, "554 5.7.1 DNSBL lookup failed",
			"550 5.7.1 DNSBL lookup failed", postern.OnErrorReject, "reject"},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			var logs syncBuffer
			c := newChecker(t, s, Config{Zones: []Zone{{Name: "bl.test", OnError: tc.policy}}, Logger: newTextLogger(&logs)})
			atConnect, err := NewFilter(FilterConfig{Checker: c})
			require.NoError(t, err)
			atRcpt, err := NewFilter(FilterConfig{Checker: c, EnforceAt: postern.StageRcpt})
			require.NoError(t, err)

			conn := newConn("192.0.2.4")
			v, err := atConnect.CheckConnect(bg, conn)
			require.NoError(t, err)
			assert.Equal(t, tc.action, v.Action, v.Reason)
			assert.Equal(t, tc.connect, v.Reply.Error())
			r, ok := postern.GetValue(&conn.Values, IPResultKey)
			require.True(t, ok)
			assert.Equal(t, tc.resultPolicy, r.OnError)
			require.Len(t, r.Errors, 1)
			assert.Equal(t, tc.zoneErrorNamed, r.Errors[0].Policy.String())
			assert.Contains(t, v.Reason, "SERVFAIL", "the reason says what failed")

			v, err = atRcpt.CheckRcpt(bg, newConn("192.0.2.4"), &postern.Txn{From: "a@b.example"}, &postern.Rcpt{Addr: "c@d.example"})
			require.NoError(t, err)
			assert.Equal(t, tc.action, v.Action, v.Reason)
			assert.Equal(t, tc.rcpt, v.Reply.Error())
			if tc.action != postern.Continue {
				assert.Contains(t, logs.String(), "zone=bl.test", "the log names the zone that failed")
			}
		})
	}
}

// In a chain, Whitelisted lets an allow-listed client skip later filters.
func TestWhitelistedSkipsLaterFilters(t *testing.T) {
	_, c := filterDNS(t)
	f, err := NewFilter(FilterConfig{Checker: c})
	require.NoError(t, err)
	called := 0
	later := postern.ConnectFunc("expensive", func(context.Context, *postern.Conn) (postern.Verdict, error) {
		called++
		return postern.Pass, nil
	})
	chain, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{
		{Filter: f},
		{Filter: later, Skip: func(c *postern.Conn, _ *postern.Txn) bool { return Whitelisted(c) }},
	}})
	require.NoError(t, err)
	for _, ip := range []string{"192.0.2.3", "192.0.2.2"} {
		v, err := chain.CheckConnect(bg, newConn(ip))
		require.NoError(t, err)
		assert.Equal(t, postern.Pass, v)
	}
	assert.Equal(t, 1, called, "only the client not on the allow list")
}

// ClientResult hears each client check once, with what it found; trusted
// clients are not checked, so not reported.
func TestFilterClientResult(t *testing.T) {
	_, c := filterDNS(t)
	got := map[string]Result{}
	f, err := NewFilter(FilterConfig{Checker: c, ClientResult: func(_ context.Context, conn *postern.Conn, r Result) {
		got[conn.RemoteAddr().String()] = r
	}})
	require.NoError(t, err)
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
		_, err := f.CheckConnect(bg, newConn(ip))
		require.NoError(t, err)
	}
	trusted := newConn("192.0.2.5")
	trusted.Trusted = true
	_, err = f.CheckConnect(bg, trusted)
	require.NoError(t, err)
	require.Len(t, got, 4)
	assert.True(t, got["192.0.2.1"].Listed)
	assert.False(t, got["192.0.2.2"].Listed || got["192.0.2.2"].Failed)
	assert.True(t, got["192.0.2.3"].Whitelisted())
	assert.True(t, got["192.0.2.4"].Failed)
}
