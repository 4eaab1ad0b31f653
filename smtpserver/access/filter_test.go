package access

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

func newFilter(t *testing.T, src string) *Filter {
	t.Helper()
	f, err := NewFilter(FilterConfig{Map: mustMap(t, src)})
	require.NoError(t, err)
	return f
}

func TestFilterConfig(t *testing.T) {
	_, err := NewFilter(FilterConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	f, err := NewFilter(FilterConfig{Map: (*Map)(nil)})
	require.NoError(t, err, "an empty source is an empty map")
	v, err := f.CheckConnect(bg, newConn("192.0.2.1", ""))
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	assert.Equal(t, "access", f.Name())
}

func TestConnectDiscardMarksEveryTransaction(t *testing.T) {
	f := newFilter(t, "Connect:192.0.2.66 DISCARD\nFrom:boss@example.com REJECT\n")
	c := newConn("192.0.2.66", "")
	v, err := f.CheckConnect(bg, c)
	require.NoError(t, err)
	assert.Equal(t, postern.Accept, v.Action)
	mark, ok := postern.GetValue(&c.Values, ConnMarkKey)
	require.True(t, ok)
	assert.Equal(t, ActionDiscard, mark.Action)

	for i := 0; i < 2; i++ { // each transaction of the connection
		txn := &postern.Txn{From: "someone@example.net"}
		v, err = f.CheckMail(bg, c, txn)
		require.NoError(t, err)
		assert.Equal(t, postern.Continue, v.Action)
		assert.True(t, txn.Discard)
		assert.Equal(t, "access: connection marked by Connect:192.0.2.66 DISCARD (access:1)", v.Reason)
	}
	// A From: entry still decides the MAIL reply.
	txn := &postern.Txn{From: "boss@example.com"}
	v, _ = f.CheckMail(bg, c, txn)
	assert.Equal(t, postern.Reject, v.Action)
}

func TestConnectQuarantine(t *testing.T) {
	f := newFilter(t, "Connect:192.0.2.0/24 QUARANTINE:odd network\n")
	c := newConn("192.0.2.9", "")
	v, _ := f.CheckConnect(bg, c)
	assert.Equal(t, postern.Accept, v.Action)
	txn := &postern.Txn{From: "a@example.net"}
	_, _ = f.CheckMail(bg, c, txn)
	assert.Equal(t, "odd network", txn.Quarantine)
	assert.False(t, txn.Discard)
}

func TestConnectVerdicts(t *testing.T) {
	f := newFilter(t, `Connect:192.0.2.1 ERROR:4.7.1:421 come back later
Connect:192.0.2.2 ERROR:550 go away
Connect:192.0.2.3 SKIP
Connect:192.0.2 OK
`)
	for _, tc := range []struct {
		ip     string
		action postern.Action
		reply  string
	}{
		{"192.0.2.1", postern.TempFail, "421 4.7.1 come back later"},
		{"192.0.2.2", postern.Reject, "550 go away"},
		{"192.0.2.3", postern.Continue, "no reply"},
		{"192.0.2.4", postern.Accept, "no reply"},
	} {
		c := newConn(tc.ip, "")
		v, err := f.CheckConnect(bg, c)
		require.NoError(t, err)
		assert.Equal(t, tc.action, v.Action, tc.ip)
		assert.Equal(t, tc.reply, v.Reply.Error(), tc.ip)
		assert.False(t, c.Trusted)
	}
	c := newConn("192.0.2.3", "")
	v, _ := f.CheckConnect(bg, c)
	assert.Equal(t, "access: Connect:192.0.2.3 SKIP (access:3)", v.Reason, "SKIP says why nothing applied")
}

func TestMailVerdicts(t *testing.T) {
	f := newFilter(t, `From:<> REJECT
From:hold@example.com QUARANTINE:check this sender
From:drop@example.com DISCARD
From:friend@example.com RELAY
From:late@example.com ERROR:4.2.0:451 try later
`)
	for _, tc := range []struct {
		from       string
		action     postern.Action
		reply      string
		discard    bool
		quarantine string
	}{
		{"", postern.Reject, "550 5.7.1 Sender address rejected: Access denied", false, ""},
		{"hold@example.com", postern.Accept, "no reply", false, "check this sender"},
		{"drop@example.com", postern.Accept, "no reply", true, ""},
		{"friend@example.com", postern.Accept, "no reply", false, ""}, // RELAY acts as OK
		{"late@example.com", postern.TempFail, "451 4.2.0 try later", false, ""},
		{"other@example.com", postern.Continue, "no reply", false, ""},
	} {
		txn := &postern.Txn{From: tc.from}
		v, err := f.CheckMail(bg, newConn("203.0.113.1", ""), txn)
		require.NoError(t, err)
		assert.Equal(t, tc.action, v.Action, tc.from)
		assert.Equal(t, tc.reply, v.Reply.Error(), tc.from)
		assert.Equal(t, tc.discard, txn.Discard, tc.from)
		assert.Equal(t, tc.quarantine, txn.Quarantine, tc.from)
	}
}

func TestRcptVerdicts(t *testing.T) {
	f := newFilter(t, `To:hold@example.com QUARANTINE:held
To:ok@example.com OK
To:gone@example.com ERROR:5.1.1:550 no such user
To:full@example.com ERROR:4.2.2:452 mailbox full
`)
	txn := &postern.Txn{}
	for _, tc := range []struct {
		rcpt   string
		action postern.Action
		reply  string
	}{
		{"hold@example.com", postern.Continue, "no reply"},
		{"ok@example.com", postern.Continue, "no reply"},
		{"gone@example.com", postern.Reject, "550 5.1.1 no such user"},
		{"full@example.com", postern.TempFail, "452 4.2.2 mailbox full"},
	} {
		v, err := f.CheckRcpt(bg, newConn("203.0.113.1", ""), txn, &postern.Rcpt{Addr: tc.rcpt})
		require.NoError(t, err)
		assert.Equal(t, tc.action, v.Action, tc.rcpt)
		assert.Equal(t, tc.reply, v.Reply.Error(), tc.rcpt)
	}
	assert.Equal(t, "held", txn.Quarantine)
}

// TestChainOrder puts the filters where the reference relay does: relay
// control, access, then recipient verification. A To: RELAY domain's
// recipients still reach verification; a To: DISCARD recipient is
// answered 250 and the whole message is dropped.
func TestChainOrder(t *testing.T) {
	m := mustMap(t, "To:example.jp RELAY\nTo:postmaster@example.jp DISCARD\n")
	acc, err := NewFilter(FilterConfig{Map: m})
	require.NoError(t, err)
	rc, err := NewRelayControl(RelayConfig{Map: m})
	require.NoError(t, err)
	known := map[string]bool{"alice@example.jp": true}
	verify := postern.RcptFunc("verify", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
		if !known[r.Addr] {
			return postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", "verify"), nil
		}
		return postern.Pass, nil
	})
	chain, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{{Filter: rc}, {Filter: acc}, {Filter: verify}}})
	require.NoError(t, err)

	c := newConn("203.0.113.7", "")
	txn := &postern.Txn{From: "x@example.net"}
	for _, tc := range []struct {
		rcpt  string
		reply string
	}{
		{"alice@example.jp", ""},
		{"bob@example.jp", "550 5.1.1 User unknown"},
		{"postmaster@example.jp", ""},
		{"victim@elsewhere.example", "550 5.7.1 Relay access denied"},
	} {
		v, err := chain.CheckRcpt(bg, c, txn, &postern.Rcpt{Addr: tc.rcpt})
		require.NoError(t, err)
		if tc.reply == "" {
			assert.NotEqual(t, postern.Reject, v.Action, tc.rcpt)
		} else {
			assert.Equal(t, tc.reply, v.Reply.Error(), tc.rcpt)
		}
	}
	assert.True(t, txn.Discard, "DISCARD on To: drops the whole message")
}

type syncBuffer = testutil.SyncBuffer

func TestFilterLogs(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := NewFilter(FilterConfig{Map: mustMap(t, "spammers.net REJECT\n"), Logger: log})
	require.NoError(t, err)
	_, _ = f.CheckMail(bg, newConn("203.0.113.1", ""), &postern.Txn{From: "a@spammers.net"})
	out := buf.String()
	for _, want := range []string{"conn_id=c1", "remote_ip=203.0.113.1", "stage=mail", "filter=access", "action=reject", "code=550",
		`reason="access: spammers.net REJECT (access:1)"`} {
		assert.True(t, strings.Contains(out, want), "%q not in %s", want, out)
	}
}
