package integration

import (
	"bufio"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
)

// site002Conf is the relay of seed 3 (IW2006, "the cost of running
// mail"), an ISP's server facing the Internet: it knows which users
// exist, counts unknown-user answers per source and answers tempfail
// over a threshold, returning to normal by itself; it limits the flow
// per source IP (messages and connections) with tempfails; its users
// submit on 587 with SMTP AUTH over TLS (OP25B), and the identity is
// recorded; double bounces go to the postmaster. The hold is 3 s instead
// of 30 minutes, so the test sees it end.
const site002Conf = `
hostname = "mx.isp.example"
local_domains = ["isp.example"]
# Nobody relays by address: the users submit on 587 (OP25B).
trusted_networks = []

[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"

[submission]
listen = "127.0.0.1:0"
credentials = "credentials"
senders = "senders"

[tls]
cert = "cert.pem"
key = "key.pem"

[policy]
# The server facing outside must know which users exist.
recipients = "recipients"

[limits]
# Directory harvest: 5 unknown users in 10 minutes hold the source.
harvest_threshold = 5
harvest_window = "10m"
harvest_hold = "3s"
# Flow limits per source IP: messages and connections.
message_rate = "3/1h"
client_rate = 4
client_conn = 2
# What a user may send from the inside.
outbound_message_rate = "4/1h"

[delivery]
mailertable = "mailertable"
# Double bounces go to the postmaster.
postmaster = "postmaster@isp.example"

[metrics]
listen = "127.0.0.1:0"
`

func TestSite002(t *testing.T) {
	swaks := need(t, "swaks")
	need(t, "python3")
	dir := t.TempDir()
	selfSigned(t, dir)
	hash, err := auth.HashPassword(auth.HashBcrypt, "s3cret pass")
	require.NoError(t, err)
	writeFile(t, dir, "credentials", "alice@isp.example:"+hash+"\n")
	writeFile(t, dir, "senders", "alice@isp.example: alice@isp.example\n")
	writeFile(t, dir, "recipients", "alice@isp.example\nbob@isp.example\ngone@isp.example\npostmaster@isp.example\n")
	// The mail store, and the Internet for mail that leaves. The store no
	// longer has gone@: the relay's list is a day behind.
	store, inet := startSink(t, "127.0.0.1:0"), startSink(t, "127.0.0.1:0")
	store.setRcpt(func(a string) *smtp.SMTPError {
		if strings.HasPrefix(a, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
		}
		return nil
	})
	writeFile(t, dir, "mailertable", "isp.example esmtp:"+hostPort(store.addr)+"\noutside.example esmtp:"+hostPort(inet.addr)+"\n")
	conf := writeFile(t, dir, "relay.toml", site002Conf)
	r := startRelay(t, "-config", conf)
	subs := submissionRE.FindStringSubmatch(r.logs())
	require.NotNil(t, subs, r.logs())
	sub587 := subs[1]

	t.Run("directory harvest: tempfail per source, back to normal by itself", func(t *testing.T) {
		const harvester = "127.0.0.20"
		cmds := []string{"MAIL FROM:<h@harvest.example>"}
		for _, u := range []string{"admin", "info", "sales", "root", "web"} {
			cmds = append(cmds, "RCPT TO:<"+u+"@isp.example>")
		}
		got := runDialog(t, r.addr, harvester, append(cmds, "RCPT TO:<alice@isp.example>")...)
		for _, l := range got[1:6] {
			assert.True(t, strings.HasPrefix(l, "550 5.1.1 "), l)
		}
		assert.True(t, strings.HasPrefix(got[6], "451 4.7.1 Too many unknown recipients from "+harvester), "held: %s", got[6])
		heldAt := time.Now()
		// On a new connection too, and only for that source.
		got = runDialog(t, r.addr, harvester, "MAIL FROM:<h@harvest.example>", "RCPT TO:<bob@isp.example>")
		assert.True(t, strings.HasPrefix(got[1], "451 4.7.1 "), got[1])
		got = runDialog(t, r.addr, "127.0.0.21", "MAIL FROM:<friend@outside.example>", "RCPT TO:<bob@isp.example>")
		assert.True(t, strings.HasPrefix(got[1], "250 "), got[1])
		// Nobody releases it: once the hold has passed the source is served.
		time.Sleep(time.Until(heldAt.Add(3500 * time.Millisecond)))
		got = runDialog(t, r.addr, harvester, "MAIL FROM:<h@harvest.example>", "RCPT TO:<bob@isp.example>")
		assert.True(t, strings.HasPrefix(got[1], "250 "), "back to normal: %s", got[1])
	})

	t.Run("flow limit: messages per source IP", func(t *testing.T) {
		sent, refused := sendMany(t, r.addr, "127.0.0.30", "bulk@outside.example", "bob@isp.example", 5)
		assert.Equal(t, 3, sent)
		assert.Equal(t, map[string]int{"450 4.7.1 Error: too much mail from 127.0.0.30": 2}, refused)
		sent, _ = sendMany(t, r.addr, "127.0.0.31", "other@outside.example", "bob@isp.example", 1)
		assert.Equal(t, 1, sent, "another source has its own count")
	})

	t.Run("flow limit: connections per source IP", func(t *testing.T) {
		first := func(src string) string {
			c := dialFrom(t, src, r.addr)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			l, _ := bufio.NewReader(c).ReadString('\n')
			return l
		}
		// Two at once (client_conn), the third waits for one to close.
		assert.True(t, strings.HasPrefix(first("127.0.0.40"), "220 "))
		assert.True(t, strings.HasPrefix(first("127.0.0.40"), "220 "))
		assert.True(t, strings.HasPrefix(first("127.0.0.40"), "421 4.7.0 "), "third concurrent connection")
		// Four a minute (client_rate), whether or not they stay open:
		// each of these is over (QUIT, and the relay closed it) before
		// the next, so only the rate counts.
		for range 4 {
			c := dialFrom(t, "127.0.0.41", r.addr)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			l, _ := br.ReadString('\n')
			require.True(t, strings.HasPrefix(l, "220 "), l)
			_, err := c.Write([]byte("QUIT\r\n"))
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(readAll(c, 10*time.Second), "221 "))
		}
		l := first("127.0.0.41")
		assert.True(t, strings.HasPrefix(l, "421 4.7.0 "), "fifth connection within the minute: %s", l)
		assert.Contains(t, l, "127.0.0.41")
	})

	t.Run("submission on 587: TLS, AUTH, identity recorded, user's flow limited", func(t *testing.T) {
		submit := func() (string, error) {
			out, err := exec.Command(swaks, "--server", sub587, "--tls", "--auth", "PLAIN",
				"--auth-user", "alice@isp.example", "--auth-password", "s3cret pass",
				"--from", "alice@isp.example", "--to", "friend@outside.example").CombinedOutput()
			return string(out), err
		}
		var ids []string
		for range 4 {
			out, err := submit()
			require.NoError(t, err, out)
			assert.Contains(t, out, "<~  235 2.7.0 ")
			m := queuedRE.FindStringSubmatch(out)
			require.NotNil(t, m, out)
			ids = append(ids, m[1])
		}
		out, err := submit()
		require.Error(t, err)
		assert.Contains(t, out, "<~* 450 4.7.1 Error: too much mail from 127.0.0.1", "the fifth within the hour")
		got := inet.waitFor(t, 4, 20*time.Second)
		for _, m := range got {
			assert.Regexp(t, `with ESMTPSA id `, string(m.Data), "the Received field says TLS and AUTH")
		}
		// The log line of each message names the user who sent it.
		for _, id := range ids {
			found := false
			for _, l := range strings.Split(r.logs(), "\n") {
				if strings.Contains(l, "msg=message ") && strings.Contains(l, "queue_id="+id) {
					found = true
					assert.Contains(t, l, "auth_user=alice@isp.example")
				}
			}
			assert.True(t, found, "no log line for %s", id)
		}
		assert.Contains(t, r.logs(), "outbound-ratelimit: message rate 4/1h0m0s exceeded (user:alice@isp.example)")
	})

	t.Run("every refusal counted by reason", func(t *testing.T) {
		m := scrape(t, r.metricsAddr(t))
		for labels, want := range map[string]float64{
			`filter="harvest-guard",reason="harvest"`:       2,
			`filter="ratelimit",reason="messages"`:          2,
			`filter="ratelimit",reason="connections"`:       1,
			`filter="ratelimit",reason="connection_rate"`:   1,
			`filter="outbound-ratelimit",reason="messages"`: 1,
		} {
			assert.Equal(t, want, m["postern_rate_limited_total{"+labels+"}"], labels)
		}
	})

	t.Run("double bounce to postmaster", func(t *testing.T) {
		// A bounce (null sender) for gone@, whom the store refuses: it
		// cannot be returned to anyone, so the postmaster gets it.
		got := runDialog(t, r.addr, "127.0.0.50", "MAIL FROM:<>", "RCPT TO:<gone@isp.example>", "MESSAGE")
		require.True(t, strings.HasPrefix(got[2], "250 "), "accepted: %v", got)
		m := regexp.MustCompile(`queued as (\S+)`).FindStringSubmatch(got[2])
		require.NotNil(t, m, got[2])
		id := m[1]
		var pm sunk
		require.Eventually(t, func() bool {
			for _, m := range store.received() {
				if len(m.Rcpts) == 1 && m.Rcpts[0] == "postmaster@isp.example" {
					pm = m
					return true
				}
			}
			return false
		}, 30*time.Second, 50*time.Millisecond, "no double bounce; relay log:\n%s", r.logs())
		assert.Empty(t, pm.From, "from the null sender")
		msg := string(pm.Data)
		assert.Contains(t, msg, "multipart/report; report-type=delivery-status")
		assert.Contains(t, msg, "Final-Recipient: rfc822; gone@isp.example")
		assert.Contains(t, msg, "550 5.1.1")
		assert.Contains(t, msg, id)
	})
}
