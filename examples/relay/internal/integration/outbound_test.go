package integration

import (
	"bufio"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sendMany sends n messages from src with Python's smtplib
// (testdata/dialog.py), five to a connection as a mass mailer does (and
// under the relay's error limits: refused commands count as errors, and
// ten of them in one session slow it down), and counts the accepted ones
// and the refusals, by their reply.
func sendMany(t *testing.T, addr, src, from, to string, n int) (sent int, refused map[string]int) {
	t.Helper()
	refused = map[string]int{}
	for n > 0 {
		cmds := make([]string, min(n, 5))
		n -= len(cmds)
		for i := range cmds {
			cmds[i] = "SEND " + from + " " + to
		}
		for _, l := range runDialog(t, addr, src, cmds...) {
			switch {
			case strings.HasPrefix(l, "SENT []"):
				sent++
			case strings.HasPrefix(l, "REFUSED "):
				// smtplib: "(450, b'4.7.1 Error: too much mail from 127.0.0.5', 'pc@...')"
				m := regexp.MustCompile(`^REFUSED \((\d{3}), b'(\S+ [^']*)'`).FindStringSubmatch(l)
				require.NotNil(t, m, l)
				refused[m[1]+" "+m[2]]++
			default:
				t.Fatalf("unexpected dialog line %q", l)
			}
		}
	}
	return sent, refused
}

// The worm of seed 004's site: one infected campus PC, a trusted client,
// sends 200 messages in a minute (the site saw 3,898 in 25 minutes). The
// relay lets it have its configured 20, answers the other 180 with
// 450 4.7.1, logs the address, counts them in the metrics and in the
// statistics, and two relays sharing Redis hold it to one count. The
// host's own programs (outbound_exempt) and another PC are not held.
func TestWormHeldToOutboundLimit(t *testing.T) {
	need(t, "python3")
	redisAddr, _ := startRedis(t)
	out := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	writeFile(t, dir, "mailertable", "outside.example esmtp:"+hostPort(out.addr)+"\n")
	// The campus is 127.0.0.0/8; 127.0.0.1 stands for the relay's own host.
	// 20 a day: no token comes back while the test runs.
	conf := writeFile(t, dir, "relay.toml", `
local_domains = ["campus.example"]
trusted_networks = ["127.0.0.0/8"]
[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
[limits]
outbound_message_rate = "20/24h"
outbound_exempt = ["127.0.0.1/32"]
[redis]
addr = "`+redisAddr+`"
[delivery]
mailertable = "mailertable"
[metrics]
listen = "127.0.0.1:0"
`)
	spoolA, spoolB := filepath.Join(t.TempDir(), "spool"), filepath.Join(t.TempDir(), "spool")
	a := startRelay(t, "-config", conf, "-spool", spoolA)
	b := startRelay(t, "-config", conf, "-spool", spoolB)

	const worm = "127.0.0.5"
	sentA, refusedA := sendMany(t, a.addr, worm, "pc5@campus.example", "victim@outside.example", 100)
	sentB, refusedB := sendMany(t, b.addr, worm, "pc5@campus.example", "victim@outside.example", 100)
	assert.Equal(t, 20, sentA+sentB, "the configured limit, over both relays")
	assert.Equal(t, 20, sentA, "relay A took the first 20")
	tooMuch := "450 4.7.1 Error: too much mail from " + worm
	assert.Equal(t, map[string]int{tooMuch: 80}, refusedA)
	assert.Equal(t, map[string]int{tooMuch: 100}, refusedB, "relay B knows the count through Redis")

	// Another PC and the host itself are not held by the worm's count.
	sent, refused := sendMany(t, a.addr, "127.0.0.6", "pc6@campus.example", "friend@outside.example", 3)
	assert.Equal(t, 3, sent, "%v", refused)
	sent, refused = sendMany(t, a.addr, "127.0.0.1", "cron@campus.example", "friend@outside.example", 30)
	assert.Equal(t, 30, sent, "outbound_exempt: %v", refused)
	got := out.waitFor(t, 20+3+30, 30*time.Second)
	assert.Len(t, got, 53, "what was accepted left; nothing else")

	// Logged with the address, counted by reason in the metrics.
	assert.Contains(t, a.logs(), "outbound-ratelimit: message rate 20/24h0m0s exceeded (ip:127.0.0.5/32)")
	for r, want := range map[*relay]float64{a: 80, b: 100} {
		m := scrape(t, r.metricsAddr(t))
		assert.Equal(t, want, m[`postern_rate_limited_total{filter="outbound-ratelimit",reason="messages"}`])
	}
	// And in the statistics the daily mail summarises: one reason line.
	st, code := b.admin(t, "stats", "-config", conf, "-spool", spoolB)
	require.Equal(t, 0, code, st)
	assert.Regexp(t, `(?m)^\s+100\s+outbound-ratelimit: 450 message rate 20/24h0m0s exceeded$`, st)
	t.Logf("worm: %d of 200 accepted; stats of relay B:\n%s", sentA+sentB, st)
}

// sendmail's ClientRate:/ClientConn: entries apply to every client they
// name, trusted or not; the default entry leaves the trusted network
// alone.
func TestClientLimitsForTrustedHosts(t *testing.T) {
	acc := writeFile(t, t.TempDir(), "access", "ClientConn:127.0.0.7 1\nClientRate:127.0.0.8 2\nClientConn: 1\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.0/8", "-access", acc)
	banner := func(src string) string {
		c := dialFrom(t, src, r.addr)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	assert.True(t, strings.HasPrefix(banner("127.0.0.7"), "220 "))
	assert.True(t, strings.HasPrefix(banner("127.0.0.7"), "421 4.7.0 "), "ClientConn:127.0.0.7 1 holds a trusted host")
	for range 2 {
		c := dialFrom(t, "127.0.0.8", r.addr)
		l, _ := bufio.NewReader(c).ReadString('\n')
		require.True(t, strings.HasPrefix(l, "220 "), l)
		c.Close()
	}
	assert.True(t, strings.HasPrefix(banner("127.0.0.8"), "421 4.7.0 "), "ClientRate:127.0.0.8 2 holds a trusted host")
	for range 3 {
		assert.True(t, strings.HasPrefix(banner("127.0.0.9"), "220 "), "the default entry is for strangers")
	}
}
