package access_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern/postern"
	"github.com/postern/postern/smtpserver/access"
)

const siteAccess = `# /etc/mail/access of a sendmail relay
Connect:192.168.1.1      RELAY
To:nix.co.jj             RELAY
To:postmaster@nix.co.jj  DISCARD
GreetPause:127.0.0.1     0
GreetPause:192.168.1.0   0
GreetPause:              15000
spammers.net             REJECT
spammer@ube.com          ERROR:5.7.1:551 Relay denied
bogus_user@              REJECT
127.0.0.1                RELAY
`

func ExampleParse() {
	m, warnings, err := access.Parse(strings.NewReader(siteAccess), "access")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range warnings {
		fmt.Println("warning:", w)
	}
	fmt.Println(m.Len(), "entries")

	for _, addr := range []string{"spammer@ube.com", "bob@mail.spammers.net", "bogus_user@example.org", "alice@example.org"} {
		if e, ok := m.LookupAddr("From", addr); ok {
			fmt.Printf("From %s: %s\n", addr, e)
		} else {
			fmt.Printf("From %s: no entry\n", addr)
		}
	}
	// Output:
	// warning: access:6: GreetPause:192.168.1.0 matches only the single address 192.168.1.0, as in sendmail; the network is written GreetPause:192.168.1
	// 10 entries
	// From spammer@ube.com: spammer@ube.com ERROR:5.7.1:551 Relay denied (access:9)
	// From bob@mail.spammers.net: spammers.net REJECT (access:8)
	// From bogus_user@example.org: bogus_user@ REJECT (access:10)
	// From alice@example.org: no entry
}

func ExampleMap_GreetPause() {
	m, _, _ := access.Parse(strings.NewReader(siteAccess), "access")
	for _, ip := range []string{"127.0.0.1", "192.168.1.1", "203.0.113.9"} {
		d, ok := m.GreetPause(netip.MustParseAddr(ip), "")
		fmt.Println(ip, d, ok)
	}
	// Output:
	// 127.0.0.1 0s true
	// 192.168.1.1 15s true
	// 203.0.113.9 15s true
}

func ExampleMap_LookupClient() {
	m, _, _ := access.Parse(strings.NewReader("Connect:example.com REJECT\nConnect:192.0.2 OK\n"), "access")
	// sendmail looks at the host name before the address.
	e, _ := m.LookupClient("Connect", netip.MustParseAddr("192.0.2.5"), "mail.example.com")
	fmt.Println(e.Action, e.Source())
	e, _ = m.LookupClient("Connect", netip.MustParseAddr("192.0.2.5"), "")
	fmt.Println(e.Action, e.Source())
	// Output:
	// REJECT access:1
	// OK access:2
}

func ExampleNewRelayControl() {
	m, _, _ := access.Parse(strings.NewReader(siteAccess), "access")
	relay, _ := access.NewRelayControl(access.RelayConfig{Map: m})
	c := &postern.Conn{ID: "1", Remote: netip.MustParseAddrPort("203.0.113.9:40000")}
	for _, rcpt := range []string{"user@nix.co.jj", "user@NIX.CO.JJ.", "user%remote.example@nix.co.jj", "user@remote.example"} {
		v, _ := relay.CheckRcpt(context.Background(), c, &postern.Txn{}, &postern.Rcpt{Addr: rcpt})
		if v.Final() {
			fmt.Printf("%s: %s (%s)\n", rcpt, v.Reply.Error(), v.Reason)
		} else {
			fmt.Printf("%s: continue (%s)\n", rcpt, v.Reason)
		}
	}
	// Output:
	// user@nix.co.jj: continue (relay: recipient domain has To:nix.co.jj RELAY (access:3))
	// user@NIX.CO.JJ.: continue (relay: recipient domain has To:nix.co.jj RELAY (access:3))
	// user%remote.example@nix.co.jj: 550 5.7.1 Relay access denied (relay: % in local part of user%remote.example@nix.co.jj (percent hack))
	// user@remote.example: 550 5.7.1 Relay access denied (relay: client may not relay and remote.example is not ours)
}

func ExampleNewFilter() {
	m, _, _ := access.Parse(strings.NewReader(siteAccess), "access")
	f, _ := access.NewFilter(access.FilterConfig{Map: m})
	c := &postern.Conn{ID: "1", Remote: netip.MustParseAddrPort("203.0.113.9:40000")}
	txn := &postern.Txn{From: "someone@example.org"}
	v, _ := f.CheckRcpt(context.Background(), c, txn, &postern.Rcpt{Addr: "postmaster@nix.co.jj"})
	fmt.Println(v.Action, txn.Discard, v.Reason)
	// Output:
	// accept true access: To:postmaster@nix.co.jj DISCARD (access:4)
}

// Trust re-derives Conn.Trusted at every stage from the map in force: a
// client that was trusted at connect loses it once a reload removes its
// Connect: RELAY entry.
func ExampleTrust() {
	m, _, _ := access.Parse(strings.NewReader("Connect:192.168.1.1 RELAY\n"), "access")
	src := &source{m: m}
	trust, _ := access.NewTrust(access.TrustConfig{Map: src,
		TrustedNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	c := &postern.Conn{Remote: netip.MustParseAddrPort("192.168.1.1:40000")}
	ctx := context.Background()
	trust.CheckConnect(ctx, c)
	fmt.Println("at connect:", c.Trusted)

	src.m, _, _ = access.Parse(strings.NewReader("# the entry is gone\n"), "access")
	trust.CheckMail(ctx, c, &postern.Txn{})
	fmt.Println("after the reload:", c.Trusted)
	// Output:
	// at connect: true
	// after the reload: false
}

// source is a MapSource whose map the example replaces (an
// access.Watcher does that on its own).
type source struct{ m *access.Map }

func (s *source) Current() *access.Map { return s.m }
