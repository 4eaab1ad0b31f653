package access

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientCase is one LookupClient call and the line that should decide (0:
// none; negative: only a SKIP at that line).
type clientCase struct {
	name string
	tag  string
	ip   string
	host string
	line int
}

func runClient(t *testing.T, m *Map, cases []clientCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var a netip.Addr
			if tc.ip != "" {
				a = ip(tc.ip)
			}
			e, ok := m.LookupClient(tc.tag, a, tc.host)
			switch {
			case tc.line == 0:
				assert.False(t, ok, "matched %v", e)
			case tc.line < 0:
				require.True(t, ok)
				assert.Equal(t, ActionSkip, e.Action)
				assert.Equal(t, -tc.line, e.Line)
			default:
				require.True(t, ok, "no match")
				assert.Equal(t, tc.line, e.Line, "matched %v", e)
			}
		})
	}
}

func TestLookupClientIPv4(t *testing.T) {
	m := mustMap(t, `Connect:10.1.2.3 OK
Connect:10.1.2 REJECT
10.1 RELAY
Connect:10 DISCARD
10.1.2.3 REJECT
Connect:172.16.0.0/12 OK
Connect:172.16.5.0/24 REJECT
172.16.5.128/25 RELAY
Connect:172.16.5 DISCARD
`)
	runClient(t, m, []clientCase{
		{"exact", "Connect", "10.1.2.3", "", 1},
		{"three octets", "Connect", "10.1.2.4", "", 2},
		{"two octets untagged", "Connect", "10.1.3.1", "", 3},
		{"one octet", "Connect", "10.9.9.9", "", 4},
		{"tagged wins at equal length", "connect:", "10.1.2.3", "", 1},
		{"no match", "Connect", "11.0.0.1", "", 0},
		{"cidr /12", "Connect", "172.20.0.1", "", 6},
		{"longest prefix wins: /25 over /24", "Connect", "172.16.5.200", "", 8},
		{"same network twice: first line wins", "Connect", "172.16.5.1", "", 7},
		{"untagged only", "", "10.1.2.3", "", 5},
		{"mapped client", "Connect", "::ffff:10.1.2.3", "", 1},
	})
}

func TestLookupClientIPv6(t *testing.T) {
	m := mustMap(t, `Connect:IPv6:2001:db8:1:2:3:4:5:6 OK
Connect:IPv6:2001:db8:1:2 REJECT
IPv6:2001:db8 RELAY
Connect:IPv6:2001:db8:ff00::/40 DISCARD
Connect:IPv6:2001:DB8:0001:0002:0003:0004:0005:0007 SKIP
Connect:IPv6:::1 RELAY
`)
	runClient(t, m, []clientCase{
		{"full", "Connect", "2001:db8:1:2:3:4:5:6", "", 1},
		{"four groups", "Connect", "2001:db8:1:2::9", "", 2},
		{"two groups untagged", "Connect", "2001:db8:7::1", "", 3},
		{"cidr /40 beats /32", "Connect", "2001:db8:ff12::1", "", 4},
		{"expanded key, upper case", "Connect", "2001:db8:1:2:3:4:5:7", "", -5},
		{"loopback", "Connect", "::1", "", 6},
		{"zone ignored", "Connect", "2001:db8:1:2:3:4:5:6%eth0", "", 1},
		{"other", "Connect", "2001:db9::1", "", 0},
	})
}

// TestLookupClientNameFirst: sendmail's check_relay looks up
// ${client_name} before ${client_addr}.
func TestLookupClientNameFirst(t *testing.T) {
	m := mustMap(t, `Connect:mail.example.com OK
Connect:example.com REJECT
com DISCARD
Connect:192.0.2.5 RELAY
Connect:.sub.example.net REJECT
Connect:[192.0.2.7] ERROR:550 no reverse DNS
[198.51.100] ERROR:550 no reverse DNS for this network
Connect:[IPv6:2001:db8::7] ERROR:550 no reverse DNS
localhost RELAY
`)
	runClient(t, m, []clientCase{
		{"name exact", "Connect", "192.0.2.5", "mail.example.com", 1},
		{"name beats address", "Connect", "192.0.2.5", "other.example.com", 2},
		{"parent domain", "Connect", "203.0.113.1", "a.b.example.com", 2},
		{"top-level untagged", "Connect", "203.0.113.1", "host.other.com", 3},
		{"case and trailing dot", "Connect", "203.0.113.1", "MAIL.Example.COM.", 1},
		{"address when name does not match", "Connect", "192.0.2.5", "host.example.org", 4},
		{"address when no name", "Connect", "192.0.2.5", "", 4},
		{"dot key matches subdomains", "Connect", "203.0.113.1", "x.sub.example.net", 5},
		{"dot key not the domain itself", "Connect", "203.0.113.1", "sub.example.net", 0},
		{"bracketed when name unknown", "Connect", "192.0.2.7", "", 6},
		{"bracketed not when name known", "Connect", "192.0.2.7", "host.example.org", 0},
		{"bracketed network", "Connect", "198.51.100.20", "", 7},
		{"bracketed IPv6", "Connect", "2001:db8::7", "", 8},
		{"client_name given bracketed", "Connect", "192.0.2.7", "[192.0.2.7]", 6},
		{"untagged name", "Connect", "127.0.0.1", "localhost", 9},
	})
}

func TestLookupClientTags(t *testing.T) {
	m := mustMap(t, `127.0.0.1 RELAY
GreetPause:127.0.0.1 0
GreetPause:example.com 2000
GreetPause:10.1 3000
GreetPause: 15000
ClientRate:10.1.2.3 4
ClientRate: 10
ClientConn:10.1.2 3
GreetPause:skip.example.com SKIP
`)
	runClient(t, m, []clientCase{
		{"greet tagged", "GreetPause", "127.0.0.1", "", 2},
		{"greet by name first", "GreetPause", "10.1.0.1", "mx.example.com", 3},
		{"greet by network", "GreetPause", "10.1.0.1", "mx.example.org", 4},
		{"greet default", "GreetPause", "192.0.2.1", "mx.example.org", 5},
		{"greet skip falls to address", "GreetPause", "10.1.0.1", "skip.example.com", 4},
		{"greet skip falls to default", "GreetPause", "192.0.2.1", "skip.example.com", 5},
		{"rate", "ClientRate", "10.1.2.3", "", 6},
		{"rate ignores names", "ClientRate", "10.1.2.4", "example.com", 7},
		{"conn network", "ClientConn", "10.1.2.200", "", 8},
		{"conn no default", "ClientConn", "10.2.0.1", "", 0},
		{"untagged key is not a greet pause", "GreetPause", "127.0.0.2", "", 5},
	})
	d, ok := m.GreetPause(ip("10.1.0.1"), "mx.example.com")
	assert.True(t, ok)
	assert.Equal(t, 2*time.Second, d)
	d, ok = m.GreetPause(ip("127.0.0.1"), "")
	assert.True(t, ok)
	assert.Equal(t, time.Duration(0), d)
}

type addrCase struct {
	name string
	tag  string
	addr string
	line int
}

func runAddr(t *testing.T, m *Map, cases []addrCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := m.LookupAddr(tc.tag, tc.addr)
			switch {
			case tc.line == 0:
				assert.False(t, ok, "matched %v", e)
			case tc.line < 0:
				require.True(t, ok)
				assert.Equal(t, ActionSkip, e.Action)
				assert.Equal(t, -tc.line, e.Line)
			default:
				require.True(t, ok, "no match")
				assert.Equal(t, tc.line, e.Line, "matched %v", e)
			}
		})
	}
}

func TestLookupAddrOrder(t *testing.T) {
	m := mustMap(t, `From:joe@sub.example.com OK
joe@ REJECT
example.com DISCARD
From:sub.example.com ERROR:550 sub
To:example.com RELAY
From:ann+*@example.com OK
ann@example.com REJECT
list+owner@ OK
list@ REJECT
From:<> ERROR:550 no bounces here
From:[192.0.2.1] OK
[198.51.100] REJECT
To:[IPv6:2001:db8::25] RELAY
.example.org REJECT
postmaster@ OK
`)
	runAddr(t, m, []addrCase{
		{"full address", "From", "joe@sub.example.com", 1},
		{"From: user@ before domain", "From", "joe@other.example.com", 2},
		{"From: tagged domain", "From", "kim@sub.example.com", 4},
		{"From: parent domain", "From", "kim@a.sub.example.com", 4},
		{"From: untagged parent", "From", "kim@x.example.com", 3},
		{"To: user@ before domain (local domain)", "To", "joe@x.example.com", 2},
		{"To: user@ when no domain entry", "To", "joe@example.net", 2},
		{"To: untagged full", "To", "ann@example.com", 7},
		{"+detail to +*", "From", "ann+news@example.com", 6},
		{"+detail to plain", "To", "ann+news@example.com", 7},
		{"user+detail@ to user+detail@", "From", "list+owner@lists.example.net", 8},
		{"user+detail@ to user@", "From", "list+spam@lists.example.net", 9},
		{"null sender", "From", "", 10},
		{"null sender in brackets", "From", "<>", 10},
		{"null sender is no recipient", "To", "", 0},
		{"address literal", "From", "x@[192.0.2.1]", 11},
		{"address literal network", "From", "x@[198.51.100.7]", 12},
		{"IPv6 literal", "To", "x@[IPv6:2001:db8:0:0:0:0:0:25]", 13},
		{"literal does not match names", "From", "x@[192.0.2.2]", 0},
		{"dot domain", "From", "x@a.example.org", 14},
		{"dot domain not itself", "From", "x@example.org", 0},
		{"case, angle brackets, trailing dot", "From", "<JOE@Sub.Example.COM.>", 1},
		{"source route ignored", "From", "<@relay.example:joe@sub.example.com>", 1},
		{"domainless", "To", "Postmaster", 15},
		{"no match", "From", "a@b.example", 0},
	})
}

func TestLookupSkip(t *testing.T) {
	m := mustMap(t, `example.com REJECT
sub.example.com SKIP
Connect:sub.example.net SKIP
Connect:example.net REJECT
Connect:10.9 OK
Connect:10.1 SKIP
Connect:10 REJECT
From:skipper@ SKIP
From:skip.example OK
`)
	// SKIP stops the walk up the domain ...
	e, ok := m.LookupAddr("From", "x@host.sub.example.com")
	require.True(t, ok)
	assert.Equal(t, ActionSkip, e.Action)
	assert.Equal(t, 2, e.Line)
	// ... and up the network.
	runClient(t, m, []clientCase{
		{"network skip", "Connect", "10.1.2.3", "", -6},
		{"network no skip", "Connect", "10.2.2.3", "", 7},
		// a SKIP in the name search lets the address search run
		{"name skip then address", "Connect", "10.9.0.1", "a.sub.example.net", 5},
		{"name skip, address skip", "Connect", "10.1.0.1", "a.sub.example.net", -3},
		{"name skip, no address", "Connect", "192.0.2.1", "a.sub.example.net", -3},
	})
	// A SKIP on user@ ends that search; the domain search still runs.
	e, ok = m.LookupAddr("From", "skipper@skip.example")
	require.True(t, ok)
	assert.Equal(t, ActionOK, e.Action)
}

func TestLookupDomain(t *testing.T) {
	m := mustMap(t, "To:example.com RELAY\nexample.net OK\nFrom:example.org RELAY\n")
	e, ok := m.LookupDomain("To", "Mail.Example.COM.")
	require.True(t, ok)
	assert.Equal(t, 1, e.Line)
	e, ok = m.LookupDomain("To", "example.net")
	require.True(t, ok)
	assert.Equal(t, 2, e.Line)
	_, ok = m.LookupDomain("To", "example.org")
	assert.False(t, ok)
}

func TestNilMap(t *testing.T) {
	var m *Map
	assert.Equal(t, 0, m.Len())
	_, ok := m.LookupClient("Connect", ip("192.0.2.1"), "x.example")
	assert.False(t, ok)
	_, ok = m.LookupAddr("From", "a@b.example")
	assert.False(t, ok)
	_, ok = m.GreetPause(ip("192.0.2.1"), "")
	assert.False(t, ok)
	_, ok = m.Exact("", "x")
	assert.False(t, ok)
	assert.Nil(t, m.Entries())
}

func TestExact(t *testing.T) {
	m := mustMap(t, "Connect:10.1 OK\nConnect:[10.2] OK\nTo:Example.com REJECT\n")
	for _, k := range []string{"10.1", "10.1.0.0/16"} {
		e, ok := m.Exact("Connect", k)
		require.True(t, ok, k)
		assert.Equal(t, 1, e.Line)
	}
	e, ok := m.Exact("connect", "[10.2.0.0/16]")
	require.True(t, ok)
	assert.Equal(t, 2, e.Line)
	_, ok = m.Exact("Connect", "10.1.2")
	assert.False(t, ok, "Exact does not walk networks")
	e, ok = m.Exact("TO", "EXAMPLE.COM")
	require.True(t, ok)
	assert.Equal(t, 3, e.Line)
	_, ok = m.Exact("To", "mail.example.com")
	assert.False(t, ok)
}

// TestConcurrentLookups runs lookups from many goroutines; with -race it
// shows a Map needs no locking.
func TestConcurrentLookups(t *testing.T) {
	m, _ := loadSite(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				_, _ = m.LookupClient("Connect", ip("192.168.1.1"), "mail.spammers.net")
				_, _ = m.LookupAddr("To", "postmaster@nix.co.jj")
				_, _ = m.GreetPause(ip("127.0.0.1"), "")
			}
		}()
	}
	wg.Wait()
}

func TestActionString(t *testing.T) {
	want := []string{"NONE", "OK", "RELAY", "REJECT", "DISCARD", "SKIP", "ERROR", "QUARANTINE", "VALUE", "Action(9)"}
	for i, w := range want {
		assert.Equal(t, w, Action(i).String())
	}
}

func TestLookupRcptLocalOnlyUserAt(t *testing.T) {
	m := mustMap(t, "joe@ REJECT\nTo:example.com RELAY\n")
	e, ok := m.LookupRcpt("joe@example.com", true)
	require.True(t, ok)
	assert.Equal(t, ActionReject, e.Action)
	e, ok = m.LookupRcpt("joe@example.com", false)
	require.True(t, ok)
	assert.Equal(t, ActionRelay, e.Action)
	_, ok = m.LookupRcpt("joe@example.net", false)
	assert.False(t, ok)
}

// Lookups are given addresses in canonical form, the local part unquoted
// (postern.Address); a key may spell the local part quoted, as SMTP does,
// and matches that mailbox only.
func TestQuotedKeys(t *testing.T) {
	m, warns := parse(t, "To:\"ceo(x)\"@example.test REJECT\n"+
		"To:\"a@b\"@example.test DISCARD\n"+
		"From:\"Bad.\"@ REJECT\n"+
		"To:ceo@example.test OK\n")
	assert.Empty(t, warns)
	for _, tt := range []struct {
		tag, addr string
		action    Action
		ok        bool
	}{
		{TagTo, "ceo(x)@example.test", ActionReject, true},
		{TagTo, "CEO(X)@Example.Test", ActionReject, true},
		{TagTo, "ceo@example.test", ActionOK, true},
		{TagTo, "a@b@example.test", ActionDiscard, true},
		{TagFrom, "bad.@anywhere.example", ActionReject, true},
		{TagFrom, "bad@anywhere.example", 0, false},
	} {
		e, ok := m.LookupAddr(tt.tag, tt.addr)
		assert.Equal(t, tt.ok, ok, tt.addr)
		if ok {
			assert.Equal(t, tt.action, e.Action, tt.addr)
		}
	}
	_, _, err := Parse(strings.NewReader("To:\"open@example.test REJECT\n"), "access")
	assert.ErrorContains(t, err, "malformed quoted local part")
}
