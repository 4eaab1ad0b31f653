package access

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// loadSite parses testdata/sendmail-site.access, a file written for
// sendmail (SEEDS §1 and §2), under the name "access".
func loadSite(t *testing.T) (*Map, []Warning) {
	t.Helper()
	f, err := os.Open("testdata/sendmail-site.access")
	require.NoError(t, err)
	defer f.Close()
	m, warns, err := Parse(f, "access")
	require.NoError(t, err, "a sendmail site's access file must load unchanged")
	return m, warns
}

func TestSiteFileLoads(t *testing.T) {
	m, warns := loadSite(t)
	assert.Equal(t, 14, m.Len())
	require.Len(t, warns, 1)
	assert.Equal(t, "access:6: GreetPause:192.168.1.0 matches only the single address 192.168.1.0, as in sendmail; the network is written GreetPause:192.168.1",
		warns[0].String())
}

type siteCase struct {
	name    string
	stage   postern.Stage
	ip      string
	host    string
	from    string
	rcpt    string
	action  postern.Action
	reply   string // expected reply, "" for none
	reason  string // expected verdict reason
	discard bool
	trusted bool
}

// TestSiteFileEffects checks the effect of every line of the site's file
// through the filter, as a connection would meet it.
func TestSiteFileEffects(t *testing.T) {
	m, _ := loadSite(t)
	f, err := NewFilter(FilterConfig{Map: m, LocalDomains: []string{"nix.co.jj"}})
	require.NoError(t, err)

	cases := []siteCase{
		// line 1: the mail store may relay; its neighbour may not.
		{name: "1 Connect RELAY", stage: postern.StageConnect, ip: "192.168.1.1", action: postern.Accept, trusted: true,
			reason: "access: Connect:192.168.1.1 RELAY (access:1)"},
		{name: "1 neighbour", stage: postern.StageConnect, ip: "192.168.1.2", action: postern.Continue},
		// line 2: own domain; OK/RELAY on To: lets later RCPT checks run.
		{name: "2 To RELAY", stage: postern.StageRcpt, ip: "203.0.113.9", rcpt: "user@nix.co.jj", action: postern.Continue,
			reason: "access: To:nix.co.jj RELAY (access:2)"},
		{name: "2 subdomain", stage: postern.StageRcpt, ip: "203.0.113.9", rcpt: "user@host.nix.co.jj", action: postern.Continue,
			reason: "access: To:nix.co.jj RELAY (access:2)"},
		// lines 3, 4: bounces to postmaster and an unwanted user are dropped.
		{name: "3 postmaster DISCARD", stage: postern.StageRcpt, ip: "203.0.113.9", rcpt: "postmaster@nix.co.jj", action: postern.Accept, discard: true,
			reason: "access: To:postmaster@nix.co.jj DISCARD (access:3)"},
		{name: "3 case-insensitive", stage: postern.StageRcpt, ip: "203.0.113.9", rcpt: "PostMaster@NIX.CO.JJ.", action: postern.Accept, discard: true,
			reason: "access: To:postmaster@nix.co.jj DISCARD (access:3)"},
		{name: "4 baka DISCARD", stage: postern.StageRcpt, ip: "203.0.113.9", rcpt: "baka@nix.co.jj", action: postern.Accept, discard: true,
			reason: "access: To:baka@nix.co.jj DISCARD (access:4)"},
		{name: "4 baka is To: only", stage: postern.StageMail, ip: "203.0.113.9", from: "baka@nix.co.jj", action: postern.Continue},
		// line 7: a spam domain and its hosts, everywhere.
		{name: "7 connect by name", stage: postern.StageConnect, ip: "198.51.100.7", host: "mx1.spammers.net", action: postern.Reject,
			reply: "554 5.7.1 Access denied", reason: "access: spammers.net REJECT (access:7)"},
		{name: "7 sender", stage: postern.StageMail, ip: "203.0.113.9", from: "bob@spammers.net", action: postern.Reject,
			reply: "550 5.7.1 Sender address rejected: Access denied", reason: "access: spammers.net REJECT (access:7)"},
		{name: "7 sender subdomain", stage: postern.StageMail, ip: "203.0.113.9", from: "bob@x.SPAMMERS.net", action: postern.Reject,
			reply: "550 5.7.1 Sender address rejected: Access denied"},
		{name: "7 recipient", stage: postern.StageRcpt, ip: "192.168.1.1", rcpt: "bob@spammers.net", action: postern.Reject,
			reply: "550 5.2.1 Mailbox disabled for this recipient"},
		{name: "7 not a suffix match", stage: postern.StageMail, ip: "203.0.113.9", from: "bob@notspammers.net", action: postern.Continue},
		// line 8: one sender, with its own reply.
		{name: "8 ERROR with DSN", stage: postern.StageMail, ip: "203.0.113.9", from: "spammer@ube.com", action: postern.Reject,
			reply: "551 5.7.1 Relay denied", reason: "access: spammer@ube.com ERROR:5.7.1:551 Relay denied (access:8)"},
		{name: "8 other user", stage: postern.StageMail, ip: "203.0.113.9", from: "someone@ube.com", action: postern.Continue},
		{name: "8 +detail", stage: postern.StageMail, ip: "203.0.113.9", from: "spammer+x@ube.com", action: postern.Reject,
			reply: "551 5.7.1 Relay denied"},
		// line 9: a sender whose mail is swallowed.
		{name: "9 sender DISCARD", stage: postern.StageMail, ip: "203.0.113.9", from: "spam@uce.uce.com", action: postern.Accept, discard: true,
			reason: "access: spam@uce.uce.com DISCARD (access:9)"},
		// line 10: a user name at any domain.
		{name: "10 user@ sender", stage: postern.StageMail, ip: "203.0.113.9", from: "Bogus_User@anywhere.example", action: postern.Reject,
			reply: "550 5.7.1 Sender address rejected: Access denied", reason: "access: bogus_user@ REJECT (access:10)"},
		// To: tries user@ only in the local domains, before the domain
		// (sendmail's check_rcpt order), so it beats To:nix.co.jj RELAY...
		{name: "10 user@ recipient", stage: postern.StageRcpt, ip: "192.168.1.1", rcpt: "bogus_user@nix.co.jj", action: postern.Reject,
			reply: "550 5.2.1 Mailbox disabled for this recipient", reason: "access: bogus_user@ REJECT (access:10)"},
		// ...and never decides for a remote domain.
		{name: "10 user@ not for remote recipients", stage: postern.StageRcpt, ip: "192.168.1.1", rcpt: "bogus_user@example.org", action: postern.Continue},
		// line 11: a host with its own reply, as client and as sender domain.
		{name: "11 connect", stage: postern.StageConnect, ip: "198.51.100.11", host: "bogus.example.gr.jp", action: postern.Reject,
			reply: "550 Bogus host", reason: "access: bogus.example.gr.jp ERROR:550 Bogus host (access:11)"},
		{name: "11 sender", stage: postern.StageMail, ip: "203.0.113.9", from: "a@bogus.example.gr.jp", action: postern.Reject,
			reply: "550 Bogus host"},
		{name: "11 sibling", stage: postern.StageMail, ip: "203.0.113.9", from: "a@good.example.gr.jp", action: postern.Continue},
		// line 12: one mailbox.
		{name: "12 recipient", stage: postern.StageRcpt, ip: "192.168.1.1", rcpt: "junk@other.example.gr.jp", action: postern.Reject,
			reply: "550 Mailbox unavailable", reason: "access: junk@other.example.gr.jp ERROR:550 Mailbox unavailable (access:12)"},
		{name: "12 sender", stage: postern.StageMail, ip: "203.0.113.9", from: "junk@other.example.gr.jp", action: postern.Reject,
			reply: "550 Mailbox unavailable"},
		// lines 13, 14: the local host relays, by name and by address.
		{name: "13 localhost by name", stage: postern.StageConnect, ip: "127.0.0.2", host: "localhost", action: postern.Accept, trusted: true,
			reason: "access: localhost RELAY (access:13)"},
		{name: "14 loopback by address", stage: postern.StageConnect, ip: "127.0.0.1", action: postern.Accept, trusted: true,
			reason: "access: 127.0.0.1 RELAY (access:14)"},
		{name: "14 other loopback", stage: postern.StageConnect, ip: "127.0.0.3", action: postern.Continue},
		// untagged RELAY on From: is only OK
		{name: "13 sender localhost", stage: postern.StageMail, ip: "203.0.113.9", from: "root@localhost", action: postern.Accept,
			reason: "access: localhost RELAY (access:13)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConn(tc.ip, tc.host)
			txn := &postern.Txn{From: tc.from}
			var v postern.Verdict
			var err error
			switch tc.stage {
			case postern.StageConnect:
				v, err = f.CheckConnect(bg, c)
			case postern.StageMail:
				v, err = f.CheckMail(bg, c, txn)
			case postern.StageRcpt:
				v, err = f.CheckRcpt(bg, c, txn, &postern.Rcpt{Addr: tc.rcpt, Original: tc.rcpt})
			}
			require.NoError(t, err)
			assert.Equal(t, tc.action, v.Action, v.Reason)
			if tc.reply != "" {
				assert.Equal(t, tc.reply, v.Reply.Error())
			} else {
				assert.True(t, v.Reply.IsZero(), "unexpected reply %v", v.Reply)
			}
			if tc.reason != "" {
				assert.Equal(t, tc.reason, v.Reason)
			}
			assert.Equal(t, tc.discard, txn.Discard)
			assert.Equal(t, tc.trusted, c.Trusted)
		})
	}
}

// TestSiteFileGreetPause covers lines 5 and 6: the exemptions the operator
// wrote, including the one that exempts less than it seems to.
func TestSiteFileGreetPause(t *testing.T) {
	m, _ := loadSite(t)
	for _, tc := range []struct {
		ip   string
		want time.Duration
		ok   bool
	}{
		{"127.0.0.1", 0, true},    // line 5
		{"127.0.0.2", 0, false},   // not exempt: the caller's default pause applies
		{"192.168.1.0", 0, true},  // line 6 matches this one address ...
		{"192.168.1.1", 0, false}, // ... and not the mail store next to it
		{"192.168.1.77", 0, false},
	} {
		d, ok := m.GreetPause(ip(tc.ip), "")
		assert.Equal(t, tc.ok, ok, tc.ip)
		assert.Equal(t, tc.want, d, tc.ip)
	}
}

// TestSiteFileRelay: line 1 and line 2 as the relay check sees them.
func TestSiteFileRelay(t *testing.T) {
	m, _ := loadSite(t)
	rc, err := NewRelayControl(RelayConfig{Map: m})
	require.NoError(t, err)
	for _, tc := range []struct {
		ip, host, rcpt string
		ok             bool
	}{
		{"192.168.1.1", "", "someone@remote.example", true},       // line 1
		{"127.0.0.1", "", "someone@remote.example", true},         // line 14
		{"10.0.0.9", "localhost", "someone@remote.example", true}, // line 13, verified name
		{"192.168.1.2", "", "someone@remote.example", false},
		{"203.0.113.9", "", "user@nix.co.jj", true},       // line 2
		{"203.0.113.9", "", "user@mail.nix.co.jj", false}, // line 2 is nix.co.jj alone (RelaySubdomains is off)
		{"203.0.113.9", "", "user@localhost", false},      // line 13 names clients, not destinations
		{"203.0.113.9", "", "user@[127.0.0.1]", false},    // line 14 likewise
		{"203.0.113.9", "", "user@remote.example", false},
		{"203.0.113.9", "", "user@spammers.net", false},
	} {
		v, err := rc.CheckRcpt(bg, newConn(tc.ip, tc.host), &postern.Txn{}, &postern.Rcpt{Addr: tc.rcpt})
		require.NoError(t, err)
		if tc.ok {
			assert.Equal(t, postern.Continue, v.Action, "%s -> %s: %s", tc.ip, tc.rcpt, v.Reason)
		} else {
			assert.Equal(t, postern.Reject, v.Action, "%s -> %s", tc.ip, tc.rcpt)
			assert.Equal(t, "550 5.7.1 Relay access denied", v.Reply.Error())
		}
	}
}
