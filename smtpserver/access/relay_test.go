package access

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

const relayMap = `Connect:198.51.100.0/24 RELAY
Connect:relayhost.partner.example RELAY
To:partner.example RELAY
To:.branch.partner.example RELAY
To:[203.0.113.5] RELAY
To:blocked.partner.example REJECT
localhost RELAY
127.0.0.1 RELAY
To:localhost.localdomain RELAY
`

func newRelay(t *testing.T) *RelayControl {
	t.Helper()
	rc, err := NewRelayControl(RelayConfig{
		Map:          mustMap(t, relayMap),
		LocalDomains: []string{"nix.co.jj", "[192.0.2.25]", "[IPv6:2001:db8::25]"},
		TrustedNets:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	require.NoError(t, err)
	return rc
}

// The clients of the table.
const (
	untrusted = iota
	trusted   // Conn.Trusted (e.g. set by Connect: RELAY at the connect stage)
	authed    // SMTP AUTH
	netTrust  // address in TrustedNets
	mapIP     // Connect: RELAY for its address in the map
	mapName   // Connect: RELAY for its verified host name
	nClients
)

func relayConn(kind int) *postern.Conn {
	switch kind {
	case trusted:
		c := newConn("203.0.113.50", "")
		c.Trusted = true
		return c
	case authed:
		c := newConn("203.0.113.51", "")
		c.AuthUser = "alice"
		return c
	case netTrust:
		return newConn("10.20.30.40", "")
	case mapIP:
		return newConn("198.51.100.77", "")
	case mapName:
		return newConn("203.0.113.52", "relayhost.partner.example")
	}
	return newConn("203.0.113.99", "mx.anywhere.example")
}

// TestRelayTricks: every open-relay trick against every kind of client.
// "ok" lists the clients allowed; the others must be refused with reply.
func TestRelayTricks(t *testing.T) {
	rc := newRelay(t)
	all := []int{untrusted, trusted, authed, netTrust, mapIP, mapName}
	privileged := []int{trusted, authed, netTrust, mapIP, mapName}
	const denied = "550 5.7.1 Relay access denied"
	const syntax = "550 5.1.3 Bad recipient address syntax"
	for _, tc := range []struct {
		name  string
		rcpt  string
		ok    []int
		reply string
	}{
		{"local domain", "user@nix.co.jj", all, ""},
		{"local, case games", "User@NIX.CO.JJ", all, ""},
		{"local, trailing dot", "user@nix.co.jj.", all, ""},
		{"local, angle brackets", "<user@nix.co.jj>", all, ""},
		{"remote", "user@remote.example", privileged, denied},
		{"remote, trailing dot", "user@remote.example.", privileged, denied},
		{"remote that ends like local", "user@evilnix.co.jj", privileged, denied},
		{"local as prefix of remote", "user@nix.co.jj.remote.example", privileged, denied},
		{"subdomain of local is not local", "user@sub.nix.co.jj", privileged, denied},
		{"To: RELAY domain", "user@partner.example", all, ""},
		{"To: RELAY does not cover subdomains", "user@mx.partner.example", privileged, denied},
		{"To:.domain RELAY covers subdomains", "user@mx.branch.partner.example", all, ""},
		{"To:.domain RELAY, deeper", "user@a.b.branch.partner.example", all, ""},
		{"To:.domain RELAY is not the domain", "user@branch.partner.example", privileged, denied},
		{"To: REJECT under RELAY domain", "user@blocked.partner.example", privileged, denied},
		{"untagged localhost RELAY names clients", "user@localhost", privileged, denied},
		{"localhost, any case and a dot", "user@LocalHost.", privileged, denied},
		{"To:localhost.localdomain RELAY", "user@localhost.localdomain", privileged, denied},
		{".localhost names (RFC 6761)", "user@mail.localhost", privileged, denied},
		{"untagged 127.0.0.1 RELAY names clients", "user@[127.0.0.1]", privileged, denied},
		{"other loopback literal", "user@[127.9.9.9]", privileged, denied},
		{"unspecified literal", "user@[0.0.0.0]", privileged, denied},
		{"IPv6 loopback literal", "user@[IPv6:::1]", privileged, denied},
		{"percent hack", "user%remote.example@nix.co.jj", privileged, denied},
		{"percent hack to RELAY domain", "user%remote.example@partner.example", privileged, denied},
		{"bang path", "remote.example!user@nix.co.jj", privileged, denied},
		{"quoted @, as go-smtp hands it over", "u@remote.example@nix.co.jj", privileged, denied},
		{"quoted @, still quoted", `"u@remote.example"@nix.co.jj`, privileged, denied},
		{"source route, stripped by go-smtp", "u@remote.example", privileged, denied},
		{"source route, unstripped", "@nix.co.jj:u@remote.example", privileged, denied},
		{"source route to local via remote", "@remote.example:u@nix.co.jj", privileged, denied},
		{"address literal, local", "user@[192.0.2.25]", all, ""},
		{"address literal IPv6, local", "user@[IPv6:2001:db8:0:0:0:0:0:25]", all, ""},
		{"address literal with To: RELAY", "user@[203.0.113.5]", all, ""},
		{"address literal, remote", "user@[198.51.100.1]", privileged, denied},
		{"address literal IPv6, remote", "user@[IPv6:2001:db8::99]", privileged, denied},
		{"address literal, malformed", "user@[300.1.1.1]", nil, syntax},
		{"domainless postmaster", "Postmaster", all, ""},
		{"domainless postmaster, any case", "POSTMASTER", all, ""},
		{"domainless other", "root", nil, syntax},
		{"empty domain", "user@", nil, syntax},
		{"empty local part", "@nix.co.jj", nil, syntax},
		{"bad domain", "user@nix..co.jj", nil, syntax},
		{"two trailing dots", "user@nix.co.jj..", nil, syntax},
		{"space in domain", "user@nix.co jj", nil, syntax},
	} {
		for kind := 0; kind < nClients; kind++ {
			allowed := false
			for _, k := range tc.ok {
				allowed = allowed || k == kind
			}
			v, err := rc.CheckRcpt(bg, relayConn(kind), &postern.Txn{}, &postern.Rcpt{Addr: tc.rcpt, Original: tc.rcpt})
			require.NoError(t, err)
			if allowed {
				assert.Equal(t, postern.Continue, v.Action, "%s, client %d: %s", tc.name, kind, v.Reason)
				assert.NotEmpty(t, v.Reason)
			} else {
				assert.Equal(t, postern.Reject, v.Action, "%s, client %d", tc.name, kind)
				assert.Equal(t, tc.reply, v.Reply.Error(), "%s, client %d: %s", tc.name, kind, v.Reason)
			}
		}
	}
}

// TestRelaySubdomains: sendmail's default, where a domain key covers its
// subdomains, is there for those who want it.
func TestRelaySubdomains(t *testing.T) {
	rc, err := NewRelayControl(RelayConfig{Map: mustMap(t, relayMap), RelaySubdomains: true})
	require.NoError(t, err)
	for addr, want := range map[string]postern.Action{
		"a@mx.partner.example":          postern.Continue,
		"a@partner.example":             postern.Continue,
		"a@blocked.partner.example":     postern.Reject,
		"a@evilpartner.example":         postern.Reject,
		"a@localhost":                   postern.Reject,
		"a@localhost.localdomain":       postern.Reject,
		"a@x.mx.branch.partner.example": postern.Continue,
	} {
		v, _ := rc.CheckRcpt(bg, relayConn(untrusted), &postern.Txn{}, &postern.Rcpt{Addr: addr})
		assert.Equal(t, want, v.Action, "%s: %s", addr, v.Reason)
	}
	// A loopback destination is relayed only when listed as local.
	rc, err = NewRelayControl(RelayConfig{Map: mustMap(t, relayMap), LocalDomains: []string{"localhost", "[127.0.0.1]"}})
	require.NoError(t, err)
	for _, addr := range []string{"a@localhost", "a@[127.0.0.1]"} {
		v, _ := rc.CheckRcpt(bg, relayConn(untrusted), &postern.Txn{}, &postern.Rcpt{Addr: addr})
		assert.Equal(t, postern.Continue, v.Action, "%s: %s", addr, v.Reason)
	}
}

func TestRelayZeroConfig(t *testing.T) {
	rc, err := NewRelayControl(RelayConfig{})
	require.NoError(t, err)
	v, _ := rc.CheckRcpt(bg, newConn("127.0.0.1", "localhost"), &postern.Txn{}, &postern.Rcpt{Addr: "a@example.com"})
	assert.Equal(t, postern.Reject, v.Action, "loopback is not trusted unless configured")
	c := newConn("203.0.113.1", "")
	c.AuthUser = "bob"
	v, _ = rc.CheckRcpt(bg, c, &postern.Txn{}, &postern.Rcpt{Addr: "a@example.com"})
	assert.Equal(t, postern.Continue, v.Action)
	assert.Equal(t, "relay: authenticated as bob", v.Reason)
	assert.Equal(t, "relay", rc.Name())
}

func TestRelayReasons(t *testing.T) {
	rc := newRelay(t)
	for _, tc := range []struct {
		kind   int
		rcpt   string
		reason string
	}{
		{untrusted, "a@remote.example", "relay: client may not relay and remote.example is not ours"},
		{untrusted, "a%b@nix.co.jj", "relay: % in local part of a%b@nix.co.jj (percent hack)"},
		{untrusted, "a@partner.example", "relay: recipient domain has To:partner.example RELAY (access:3)"},
		{untrusted, "a@mx.partner.example", "relay: client may not relay and mx.partner.example is a subdomain of To:partner.example RELAY (access:3) (an entry of its own, or To:.partner.example, relays it)"},
		{untrusted, "a@localhost", "relay: localhost names this host; only local_domains may make it a destination"},
		{mapIP, "a@remote.example", "relay: client has Connect:198.51.100.0/24 RELAY (access:1)"},
		{mapName, "a@remote.example", "relay: client has Connect:relayhost.partner.example RELAY (access:2)"},
		{netTrust, "a@remote.example", "relay: client in trusted network 10.0.0.0/8"},
	} {
		v, _ := rc.CheckRcpt(bg, relayConn(tc.kind), &postern.Txn{}, &postern.Rcpt{Addr: tc.rcpt})
		assert.Equal(t, tc.reason, v.Reason)
	}
}

// TestRelayUnresolvedName: a bracketed Connect: RELAY key matches the
// connect stage of an unresolved client but does not by itself permit
// relaying (sendmail's Relay_ok refuses clients whose name did not
// resolve before it looks at names).
func TestRelayUnresolvedName(t *testing.T) {
	m := mustMap(t, "Connect:[192.0.2.7] RELAY\n")
	rc, err := NewRelayControl(RelayConfig{Map: m})
	require.NoError(t, err)
	v, _ := rc.CheckRcpt(bg, newConn("192.0.2.7", ""), &postern.Txn{}, &postern.Rcpt{Addr: "a@remote.example"})
	assert.Equal(t, postern.Reject, v.Action)
	// Through the access filter the connection becomes trusted, and then
	// it may relay.
	f, err := NewFilter(FilterConfig{Map: m})
	require.NoError(t, err)
	c := newConn("192.0.2.7", "")
	_, _ = f.CheckConnect(bg, c)
	require.True(t, c.Trusted)
	v, _ = rc.CheckRcpt(bg, c, &postern.Txn{}, &postern.Rcpt{Addr: "a@remote.example"})
	assert.Equal(t, postern.Continue, v.Action)
}

func TestRelayConfigErrors(t *testing.T) {
	for _, cfg := range []RelayConfig{
		{LocalDomains: []string{""}},
		{LocalDomains: []string{"bad..domain"}},
		{LocalDomains: []string{"[not-an-ip]"}},
		{TrustedNets: []netip.Prefix{{}}},
	} {
		_, err := NewRelayControl(cfg)
		assert.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
}
