package route

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smartHostTransport delivers everything to the server at addr as the
// smart host "[127.0.0.1]:port", with the AuthInfo entries given.
func smartHostTransport(t *testing.T, addr string, cfg TransportConfig, entries ...AuthEntry) *Transport {
	t.Helper()
	r := newTestRouter(t, nil, RouterConfig{SmartHost: hostPort(addr)})
	tb, err := NewAuthTable(entries)
	require.NoError(t, err)
	cfg.Auth = tb
	return newTestTransport(t, r, cfg)
}

// The smart host wants STARTTLS and then AUTH PLAIN; the credentials
// come from an "AuthInfo:[127.0.0.1]" line. The password never crosses
// the wire in clear, and the server sees the login.
func TestSmartHostLogin(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, time24h, "smarthost.test")
	srv := startAuthServer(t, &cert, "relay-user", "s3cret", "PLAIN")
	tr := smartHostTransport(t, srv.addr, TransportConfig{},
		AuthEntry{Key: "[127.0.0.1]", Value: `"U:relay-user" "I:relay-user" "P:s3cret" "M:PLAIN LOGIN"`, Source: "access:1"})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, "TLS 1.3 unverified, AUTH PLAIN", res[0].TLS)
	msgs, users := srv.messages()
	require.Len(t, msgs, 1)
	assert.True(t, msgs[0].TLS)
	assert.Equal(t, []string{"relay-user"}, users)
	assertNothingInClear(t, srv, "s3cret")
}

const time24h = 24 * 60 * 60 * 1e9

// assertNothingInClear checks the bytes the server read: STARTTLS in
// clear, then only TLS records; no AUTH, no MAIL, no password.
func assertNothingInClear(t *testing.T, srv *authServer, secret string) {
	t.Helper()
	raw := srv.raw.bytes()
	assert.Contains(t, string(raw), "STARTTLS")
	for _, s := range []string{"AUTH", "MAIL FROM", secret, base64.StdEncoding.EncodeToString([]byte("\x00relay-user\x00" + secret))} {
		assert.False(t, bytes.Contains(raw, []byte(s)), "%q went in clear", s)
	}
}

// A wrong password: deferred with the server's reply, the next address
// not tried without a login, nothing sent.
func TestSmartHostLoginRefused(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, time24h, "smarthost.test")
	srv := startAuthServer(t, &cert, "relay-user", "s3cret", "PLAIN")
	tr := smartHostTransport(t, srv.addr, TransportConfig{},
		AuthEntry{Key: "127.0.0.1", Value: `"U:relay-user" "P:wrong"`})
	res := tr.Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, 451, res[0].Reply.Code)
	assert.Equal(t, "4.7.8", res[0].Reply.Enhanced.String())
	assert.Contains(t, res[0].Reply.Text(), "SASL PLAIN authentication failed; host "+hostPort(srv.addr)+" said: 535 5.7.8 Authentication credentials invalid")
	assert.Equal(t, "127.0.0.1", res[0].RemoteMTA)
	msgs, _ := srv.messages()
	assert.Empty(t, msgs)
	assert.Zero(t, srv.mails.Load(), "no MAIL without the login")
	assertNothingInClear(t, srv, "wrong")
}

// A smart host that offers no STARTTLS never sees the credentials;
// delivery waits. With AuthWithoutTLS the site takes that risk.
func TestSmartHostLoginNeedsTLS(t *testing.T) {
	srv := startAuthServer(t, nil, "relay-user", "s3cret", "PLAIN")
	entry := AuthEntry{Key: "[127.0.0.1]", Value: `"U:relay-user" "P:s3cret"`}
	res := smartHostTransport(t, srv.addr, TransportConfig{}, entry).Deliver(bg, delivery("a@sender.test", "b@example.net"))
	assert.Equal(t, "451 4.7.4 TLS is required by TLS level encrypt (default), but was not offered by host "+hostPort(srv.addr), res[0].Reply.Error())
	assert.NotContains(t, string(srv.raw.bytes()), "AUTH")

	res = smartHostTransport(t, srv.addr, TransportConfig{AuthWithoutTLS: true}, entry).Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, "none, AUTH PLAIN", res[0].TLS)
	_, users := srv.messages()
	assert.Equal(t, []string{"relay-user"}, users)
}

// XOAUTH2 when the entry names it, with a token for a password.
func TestSmartHostLoginXOAUTH2(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, time24h, "smarthost.test")
	srv := startAuthServer(t, &cert, "alice@example.org", "ya29.token", "PLAIN", "XOAUTH2")
	res := smartHostTransport(t, srv.addr, TransportConfig{},
		AuthEntry{Key: "127.0.0.1", Value: `"I:alice@example.org" "P:ya29.token" "M:XOAUTH2"`}).Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	_, users := srv.messages()
	assert.Equal(t, []string{"alice@example.org"}, users)
}

// sendmail's default entry ("AuthInfo:") logs in where a server offers
// AUTH, and only over TLS; a host that offers none gets the mail
// without a login.
func TestDefaultAuthInfoEntry(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, time24h, "smarthost.test")
	srv := startAuthServer(t, &cert, "relay-user", "s3cret", "PLAIN")
	def := AuthEntry{Key: "", Value: `"U:relay-user" "P:s3cret"`}
	res := smartHostTransport(t, srv.addr, TransportConfig{}, def).Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())

	plain := startSink(t, "127.0.0.1:0", sinkConfig{})
	res = smartHostTransport(t, plain.addr, TransportConfig{}, def).Deliver(bg, delivery("a@sender.test", "b@example.net"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Zero(t, plain.ln.count("AUTH PLAIN"), "no AUTH without TLS")
	for _, c := range plain.ln.commands() {
		assert.NotContains(t, c, "AUTH")
	}
}
