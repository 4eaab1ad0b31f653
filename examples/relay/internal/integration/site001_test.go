package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The access lines of seed 001, the IW2001 tutorial's gateway, as the
// tutorial writes them: most of them name hosts, not addresses.
const site001Access = `# The IW2001 tutorial's gateway access map, unchanged.
spammers.net                REJECT
spammer@ube.com             ERROR:5.7.1:551 Relay denied
spam@uce.uce.com            DISCARD
example.gr.jp               RELAY
localhost                   RELAY
127.0.0.1                   RELAY
bogus_user@                 REJECT
bogus.example.gr.jp         ERROR:550 Bogus host
`

// site001 is the gateway: mail for example.gr.jp and its subdomains goes
// to the distribution server (a sink here) by the mailertable; nothing is
// trusted by network, the access map decides, as in sendmail.
type site001 struct {
	r      *relay
	dns    *dnsZone
	dist   *sink
	config string
}

func startSite001(t *testing.T, dns *dnsZone, extra ...string) *site001 {
	t.Helper()
	dist := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	writeFile(t, dir, "access", site001Access)
	writeFile(t, dir, "mailertable", "# sendmail: .example.gr.jp smtp:[dist-in.example.gr.jp]\n.example.gr.jp\tsmtp:"+hostPort(dist.addr)+"\n")
	cfg := writeFile(t, dir, "relay.toml", fmt.Sprintf(`hostname = "gw.example.gr.jp"
local_domains = ["gw.example.gr.jp"]
trusted_networks = []
spool = "spool"

[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
reverse_dns_timeout = "2s"

[policy]
access = "access"
# sendmail relays the subdomains of a To: RELAY domain.
relay_subdomains = true

[dnsbl]
resolvers = [%q]

[auth]
# iprev's result goes into Authentication-Results with the other checks.
check = "tag"

[delivery]
mailertable = "mailertable"
maildir = "maildir"
`, dns.addr))
	args := append([]string{"-config", cfg, "-metrics-listen", "", "-min-backoff", "1s", "-max-backoff", "2s"}, extra...)
	return &site001{r: startRelay(t, args...), dns: dns, dist: dist, config: cfg}
}

// banner reads what the relay says to a client at src before anything is
// sent: its 220 banner, or its refusal and the end of the connection.
func banner(t *testing.T, src, addr string) string {
	t.Helper()
	c := dialFrom(t, src, addr)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	return string(buf[:n])
}

// receivedFrom finds the message from a sender at the sink and returns
// its first Received field up to "by".
func receivedFrom(t *testing.T, dist *sink, from string) string {
	t.Helper()
	got := messageFrom(t, dist, from)
	// Authentication-Results comes above it (RFC 8601 §5: prepended).
	i := strings.Index(got, "Received: ")
	require.GreaterOrEqual(t, i, 0, got)
	got = got[i:]
	j := strings.Index(got, "\tby ")
	require.Positive(t, j, got)
	return got[:j]
}

// messageFrom waits for the message from a sender at the sink.
func messageFrom(t *testing.T, dist *sink, from string) string {
	t.Helper()
	var got string
	require.Eventually(t, func() bool {
		for _, m := range dist.received() {
			if m.From == from {
				got = string(m.Data)
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "no message from %s at the distribution server", from)
	return got
}

func TestSite001HostNames(t *testing.T) {
	need(t, "python3")
	ips := outsideAddrs(t, 7)
	spam, forged, servfail, silent, fwdTemp, member, fakeLocal := ips[0], ips[1], ips[2], ips[3], ips[4], ips[5], ips[6]
	z := startDNS(t, map[string]string{
		"mail.spammers.net": spam,
		// The A record of bogus.example.gr.jp is another host.
		"bogus.example.gr.jp": "192.0.2.50",
		"mx.example.gr.jp":    member,
		// A resolver that answers for localhost must not matter.
		"localhost": fakeLocal,
	})
	z.setPTR(spam, "mail.spammers.net")
	z.setPTR(forged, "bogus.example.gr.jp")
	z.setServfail(servfail)
	z.setSilent(silent)
	z.setPTR(fwdTemp, "relay.example.gr.jp")
	z.setServfail("relay.example.gr.jp")
	z.setPTR(member, "mx.example.gr.jp")
	z.setPTR(fakeLocal, "localhost")
	z.setPTR("127.0.0.2", "localhost") // not in /etc/hosts: asked of DNS
	site := startSite001(t, z)
	r := site.r

	t.Run("verified spammers.net host refused at connect", func(t *testing.T) {
		got := banner(t, spam, r.addr)
		assert.True(t, strings.HasPrefix(got, "554 5.7.1 "), got)
		assert.Positive(t, z.queries(spam, "PTR"), "the relay asked for the PTR record")
		assert.Positive(t, z.queries("mail.spammers.net", "A"), "and confirmed it")
		require.Eventually(t, func() bool { return strings.Contains(r.logs(), "client_resolve=OK client_name=mail.spammers.net") },
			10*time.Second, 20*time.Millisecond, "the connect line names the client")
	})

	// The one claiming bogus.example.gr.jp is not that host: neither
	// "bogus.example.gr.jp ERROR:550" nor "example.gr.jp RELAY" applies.
	t.Run("forged name matches nothing", func(t *testing.T) {
		got := runDialog(t, r.addr, forged, "MAIL FROM:<friend@example.org>", "RCPT TO:<user@elsewhere.example>",
			"RSET", "SEND forged@example.org user@mail.example.gr.jp")
		assert.True(t, strings.HasPrefix(got[0], "250 "), got[0])
		assert.True(t, strings.HasPrefix(got[1], "550 5.7.1 "), "no relaying by a forged name: %s", got[1])
		assert.Equal(t, "SENT []", got[3])
		assert.Equal(t, fmt.Sprintf("Received: from python.client.test (bogus.example.gr.jp [%s] (may be forged))\r\n", forged),
			receivedFrom(t, site.dist, "forged@example.org"))
		assert.Contains(t, messageFrom(t, site.dist, "forged@example.org"),
			"Authentication-Results: gw.example.gr.jp;\r\n\tiprev=fail reason=\"PTR name bogus.example.gr.jp does not resolve to the address\" policy.iprev="+forged+";\r\n")
		assert.Contains(t, r.logs(), "client_resolve=FORGED client_ptr=bogus.example.gr.jp")
	})

	// DNS failing for now: no name, so no REJECT and no RELAY entry by
	// name applies; judged by address, the mail comes in.
	for _, tc := range []struct{ name, ip string }{
		{"PTR SERVFAIL", servfail}, {"PTR unanswered", silent}, {"forward lookup SERVFAIL", fwdTemp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := "temp-" + strings.ReplaceAll(tc.ip, ".", "-") + "@example.org"
			got := runDialog(t, r.addr, tc.ip, "MAIL FROM:<friend@example.org>", "RCPT TO:<user@elsewhere.example>",
				"RSET", "SEND "+from+" user@mail.example.gr.jp")
			assert.True(t, strings.HasPrefix(got[1], "550 5.7.1 "), "no relaying: %s", got[1])
			assert.Equal(t, "SENT []", got[3])
			assert.Equal(t, fmt.Sprintf("Received: from python.client.test ([%s])\r\n", tc.ip), receivedFrom(t, site.dist, from))
		})
	}

	// A host of example.gr.jp, verified: "example.gr.jp RELAY" covers it
	// by its parent domain, as check_relay does.
	t.Run("verified member relays", func(t *testing.T) {
		got := runDialog(t, r.addr, member, "MAIL FROM:<staff@example.gr.jp>", "RCPT TO:<user@elsewhere.example>",
			"RSET", "SEND member@example.gr.jp user@mail.example.gr.jp")
		assert.True(t, strings.HasPrefix(got[1], "250 "), "relaying by verified name: %s", got[1])
		assert.Equal(t, "SENT []", got[3])
		assert.Equal(t, fmt.Sprintf("Received: from python.client.test (mx.example.gr.jp [%s])\r\n", member),
			receivedFrom(t, site.dist, "member@example.gr.jp"))

	})

	// "localhost RELAY" by name: a client whose verified name is
	// localhost relays. Only a loopback address can be localhost (RFC
	// 6761): 127.0.0.2 is not "127.0.0.1 RELAY", its PTR says localhost;
	// an outside address claiming localhost is forged, whatever the DNS
	// server answers for localhost, and the relay never asks it.
	t.Run("localhost by name", func(t *testing.T) {
		got := runDialog(t, r.addr, "127.0.0.2", "MAIL FROM:<root@gw.example.gr.jp>", "RCPT TO:<user@elsewhere.example>")
		assert.True(t, strings.HasPrefix(got[1], "250 "), "localhost RELAY by verified name: %s", got[1])
		got = runDialog(t, r.addr, "127.0.0.3", "MAIL FROM:<root@gw.example.gr.jp>", "RCPT TO:<user@elsewhere.example>")
		assert.True(t, strings.HasPrefix(got[1], "550 5.7.1 "), "no PTR, no relaying: %s", got[1])
		got = runDialog(t, r.addr, fakeLocal, "MAIL FROM:<root@gw.example.gr.jp>", "RCPT TO:<user@elsewhere.example>")
		assert.True(t, strings.HasPrefix(got[1], "550 5.7.1 "), "an outside localhost is forged: %s", got[1])
		assert.Zero(t, z.queries("localhost", "A")+z.queries("localhost", "AAAA"))
	})

	t.Run("the other seed lines", func(t *testing.T) {
		got := runDialog(t, r.addr, member,
			"MAIL FROM:<spammer@ube.com>", "RSET",
			"MAIL FROM:<bogus_user@anywhere.example>", "RSET",
			"MAIL FROM:<x@bogus.example.gr.jp>", "RSET",
			"SEND spam@uce.uce.com user@mail.example.gr.jp")
		assert.True(t, strings.HasPrefix(got[0], "551 5.7.1 Relay denied"), got[0])
		assert.True(t, strings.HasPrefix(got[2], "550 5.7.1 "), got[2])
		assert.True(t, strings.HasPrefix(got[4], "550 5.0.0 Bogus host"), got[4])
		assert.Equal(t, "SENT []", got[6], "DISCARD claims delivery")
		require.Eventually(t, func() bool { return strings.Contains(r.logs(), "action=discard") }, 10*time.Second, 20*time.Millisecond)
		for _, m := range site.dist.received() {
			assert.NotEqual(t, "spam@uce.uce.com", m.From, "discarded mail was delivered")
		}
	})

	// relay check does the lookup the server does and says what it found.
	t.Run("relay check", func(t *testing.T) {
		out, err := runRelayOnce("check", "-config", site.config, "-ip", spam)
		require.NoError(t, err, out)
		assert.Contains(t, out, "reverse dns: OK mail.spammers.net")
		assert.Contains(t, out, "=> connect: 554 5.7.1 Access denied")
		out, err = runRelayOnce("check", "-config", site.config, "-ip", forged, "-from", "a@example.org", "-rcpt", "user@elsewhere.example")
		require.NoError(t, err, out)
		assert.Contains(t, out, "reverse dns: FORGED: PTR bogus.example.gr.jp does not resolve to "+forged)
		assert.Contains(t, out, "=> connect: continue")
		assert.Contains(t, out, "=> rcpt <user@elsewhere.example>: 550 5.7.1")
		out, err = runRelayOnce("check", "-config", site.config, "-ip", forged, "-client-name", "bogus.example.gr.jp")
		require.NoError(t, err, out)
		assert.Contains(t, out, "reverse dns: OK bogus.example.gr.jp (given by -client-name, not looked up)")
		assert.Contains(t, out, "=> connect: 550 Bogus host")
	})
}

// With policy.client_checks = ["name"] a client needs a verified name:
// forged and unknown are refused before the banner, a temporary failure is
// 421 so the client comes back.
func TestSite001ClientChecks(t *testing.T) {
	need(t, "python3")
	ips := outsideAddrs(t, 4)
	member, forged, none, servfail := ips[0], ips[1], ips[2], ips[3]
	z := startDNS(t, map[string]string{"mx.example.gr.jp": member, "bogus.example.gr.jp": "192.0.2.50"})
	z.setPTR(member, "mx.example.gr.jp")
	z.setPTR(forged, "bogus.example.gr.jp")
	z.setServfail(servfail)
	site := startSite001(t, z, "-client-checks", "name")
	for _, tc := range []struct{ ip, want string }{
		{member, "220 "},
		{forged, "554 5.7.25 Cannot find your host name: bogus.example.gr.jp does not resolve to " + forged},
		{none, "554 5.7.25 Cannot find your host name: no PTR record for " + none},
		{servfail, "421 4.7.25 "},
		// 127.0.0.1 is localhost by /etc/hosts; 127.0.0.3 has no name.
		{"127.0.0.1", "220 "},
		{"127.0.0.3", "554 5.7.25 "},
	} {
		got := banner(t, tc.ip, site.r.addr)
		assert.True(t, strings.HasPrefix(got, tc.want), "%s: want %q, got %q", tc.ip, tc.want, got)
	}
}
