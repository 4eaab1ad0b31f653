package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scantest"
)

// greeting is a banner a client read, and which client.
type greeting struct {
	src, line string
}

// racePause dials from each source in turn (each connection accepted, and
// so in its pause, before the next is dialled) and returns the banners in
// the order they arrived. A client the pass cache knows is greeted before
// one dialled earlier that waits the pause: an order, not a timing.
func racePause(t *testing.T, addr string, srcs ...string) []greeting {
	t.Helper()
	ch := make(chan greeting, len(srcs))
	for _, src := range srcs {
		c := dialFrom(t, src, addr)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
			l, _ := bufio.NewReader(c).ReadString('\n')
			ch <- greeting{src, l}
		}()
		// The relay must have taken this connection into its pause
		// before the next one arrives: it has once the client can see
		// the kernel accepted (the dial returned) and the relay's
		// accept loop ran; a pause is seconds, this a few milliseconds.
		time.Sleep(50 * time.Millisecond)
	}
	var out []greeting
	for range srcs {
		out = append(out, <-ch)
	}
	return out
}

// session runs a whole polite session (waiting for the banner, EHLO,
// QUIT) from src, so the relay records its passes.
func session(t *testing.T, addr, src string) {
	t.Helper()
	c := dialFrom(t, src, addr)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	l, err := br.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(l, "220 "), l)
	_, err = c.Write([]byte("EHLO patient.example\r\n"))
	require.NoError(t, err)
	for {
		l, err = br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(l, "250 ") {
			break
		}
	}
	_, err = c.Write([]byte("QUIT\r\n"))
	require.NoError(t, err)
	l, _ = br.ReadString('\n')
	require.True(t, strings.HasPrefix(l, "221 "), l)
}

// Pass cache: a client that waited out the greet pause and passed the DNS
// list is greeted at once on its next connection (before a stranger that
// connected first and waits its pause); an early talker is not.
func TestPassCacheSkipsPause(t *testing.T) {
	z := startDNS(t, map[string]string{"5.0.0.127.bl.test": "127.0.0.2"})
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "3s", "-trusted", "127.0.0.1",
		"-dnsbl", "bl.test", "-dns-resolver", z.addr, "-metrics-listen", "127.0.0.1:0")

	session(t, r.addr, "127.0.0.2") // waits the pause once, passes the list
	got := racePause(t, r.addr, "127.0.0.3", "127.0.0.2")
	require.Len(t, got, 2)
	assert.Equal(t, "127.0.0.2", got[0].src, "the known client is greeted first: %+v", got)
	for _, g := range got {
		assert.True(t, strings.HasPrefix(g.line, "220 "), "%+v", g)
	}

	// An early talker is refused and remembered as failed: its next
	// connection, patient or not, waits like a stranger's.
	early := dialFrom(t, "127.0.0.4", r.addr)
	_, err := early.Write([]byte("EHLO impatient.example\r\n"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(readAll(early, 30*time.Second), "554 5.5.1 "))
	// A listed client is refused before the banner and never known.
	listed := dialFrom(t, "127.0.0.5", r.addr)
	assert.True(t, strings.HasPrefix(readAll(listed, 30*time.Second), "554 5.7.1 "))

	m := scrape(t, r.metricsAddr(t))
	assert.Equal(t, 1.0, m[`postern_greet_pause_total{action="known"}`])
	assert.Equal(t, 1.0, m[`postern_greet_pause_total{action="reject"}`])
	assert.GreaterOrEqual(t, m[`postern_greet_pause_total{action="pass"}`], 3.0)

	// With the cache off the same client waits every time.
	off := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "3s", "-trusted", "127.0.0.1", "-pass-cache=false",
		"-metrics-listen", "127.0.0.1:0")
	session(t, off.addr, "127.0.0.2")
	session(t, off.addr, "127.0.0.2")
	m = scrape(t, off.metricsAddr(t))
	assert.Zero(t, m[`postern_greet_pause_total{action="known"}`])
	assert.Equal(t, 2.0, m[`postern_greet_pause_total{action="pass"}`])
}

// Two relays share the pass cache through a real redis-server: a client
// that passed at A is greeted at once by B.
func TestPassCacheSharedThroughRedis(t *testing.T) {
	redisAddr, _ := startRedis(t)
	args := []string{"-listen", "127.0.0.1:0", "-greet-pause", "3s", "-trusted", "127.0.0.1", "-redis", redisAddr,
		"-metrics-listen", "127.0.0.1:0"}
	a := startRelay(t, args...)
	b := startRelay(t, args...)

	session(t, a.addr, "127.0.0.2")
	rc := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rc.Close()
	require.Eventually(t, func() bool {
		n, err := rc.Exists(context.Background(), "postern:pass:greet:ip:127.0.0.2/32").Result()
		return err == nil && n == 1
	}, 10*time.Second, 20*time.Millisecond, "A recorded the pass in Redis")

	got := racePause(t, b.addr, "127.0.0.3", "127.0.0.2")
	require.Len(t, got, 2)
	assert.Equal(t, "127.0.0.2", got[0].src, "B greets the client A saw pass first: %+v", got)
	assert.Equal(t, 1.0, scrape(t, b.metricsAddr(t))[`postern_greet_pause_total{action="known"}`], "B counts why")
}

// The deep protocol tests on the relay: a client that pipelines before the
// EHLO reply or speaks HTTP gets 421 4.7.0; one that speaks SMTP properly
// passes, and is not tested again (its pipelining is then its own
// business, as for any client that passed).
func TestProtocolTestsThroughRelay(t *testing.T) {
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-protocol-tests", "pipelining,non_smtp,bare_newline", "-metrics-listen", "127.0.0.1:0")
	ask := func(src, send string) string {
		c := dialFrom(t, src, r.addr)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		l, err := br.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(l, "220 "), l)
		_, err = c.Write([]byte(send))
		require.NoError(t, err)
		rest, _ := br.ReadString('\n')
		return rest
	}
	pipelined := "EHLO bot.example\r\nMAIL FROM:<a@bot.example>\r\nRCPT TO:<u@example.test>\r\n"
	assert.Equal(t, "421 4.7.0 ", ask("127.0.0.2", pipelined)[:10])
	assert.Contains(t, ask("127.0.0.3", "GET / HTTP/1.1\r\nHost: mx\r\n\r\n"), "421 4.7.0")
	assert.Contains(t, ask("127.0.0.4", "EHLO bare.example\n"), "bare <LF>")

	// A proper client: swaks, then the same client pipelining at once is
	// no longer tested.
	swaks := need(t, "swaks")
	run(t, t.TempDir(), swaks, "--server", r.addr, "--local-interface", "127.0.0.6", "--from", "s@sender.example",
		"--to", "u@example.test")
	require.Eventually(t, func() bool {
		return scrape(t, r.metricsAddr(t))[`postern_protocol_tests_total{result="passed"}`] == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		return strings.HasPrefix(ask("127.0.0.6", pipelined), "250")
	}, 10*time.Second, 50*time.Millisecond, "a client that passed is not tested again")
	m := scrape(t, r.metricsAddr(t))
	assert.Equal(t, 1.0, m[`postern_protocol_tests_total{result="pipelining"}`])
	assert.Equal(t, 1.0, m[`postern_protocol_tests_total{result="non_smtp"}`])
	assert.Equal(t, 1.0, m[`postern_protocol_tests_total{result="bare_newline"}`])
	assert.Contains(t, r.logs(), `msg="protocol test failed"`)
}

// greyTry sends one message with swaks from src and returns its output
// and whether it was queued.
func greyTry(t *testing.T, addr, src, from string) (string, bool) {
	t.Helper()
	out, err := exec.Command(need(t, "swaks"), "--server", addr, "--local-interface", src, "--from", from,
		"--to", "bob@example.test", "--timeout", "30").CombinedOutput()
	return string(out), err == nil && queuedRE.MatchString(string(out))
}

// Greylisting through the relay with real swaks retries: the first
// attempt of a triplet is answered 451 4.7.1 with the retry hint; a retry
// before the minimum delay is answered 451 again; one after it is queued
// and delivered, and the triplet is then known.
func TestGreylistThroughRelay(t *testing.T) {
	// A delay no test outlasts: every retry is early.
	long := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-greylist", "-greylist-delay", "1h", "-metrics-listen", "127.0.0.1:0")
	for range 2 {
		out, ok := greyTry(t, long.addr, "127.0.0.2", "early@sender.example")
		require.False(t, ok, out)
		assert.Contains(t, out, "451 4.7.1 Greylisted, please try again in ")
	}
	m := scrape(t, long.metricsAddr(t))
	assert.Equal(t, 1.0, m[`postern_greylist_total{outcome="greylisted"}`])
	assert.Equal(t, 1.0, m[`postern_greylist_total{outcome="early"}`])
	// Trusted clients are never greylisted.
	out, ok := greyTry(t, long.addr, "127.0.0.1", "early@sender.example")
	require.True(t, ok, out)

	// A short delay: waiting it out (at least the delay; longer is as
	// good) lets the retry through.
	const delay = 2 * time.Second
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-greylist", "-greylist-delay", delay.String(), "-metrics-listen", "127.0.0.1:0")
	out, ok = greyTry(t, r.addr, "127.0.0.2", "patient@sender.example")
	require.False(t, ok, out)
	assert.Contains(t, out, "451 4.7.1 Greylisted")
	time.Sleep(delay + 500*time.Millisecond)
	out, ok = greyTry(t, r.addr, "127.0.0.2", "patient@sender.example")
	require.True(t, ok, out)
	r.delivered(t, queuedRE.FindStringSubmatch(out)[1])
	// The same triplet from another address of the client's /24 is known.
	out, ok = greyTry(t, r.addr, "127.0.0.3", "patient@sender.example")
	require.True(t, ok, out)
	// Another sender from the client starts over.
	out, ok = greyTry(t, r.addr, "127.0.0.2", "other@sender.example")
	require.False(t, ok, out)
	m = scrape(t, r.metricsAddr(t))
	assert.Equal(t, 2.0, m[`postern_greylist_total{outcome="greylisted"}`])
	assert.Equal(t, 1.0, m[`postern_greylist_total{outcome="passed"}`])
	assert.Equal(t, 1.0, m[`postern_greylist_total{outcome="known"}`])
}

// Greylisting's exemptions on the relay: a client on a DNS allow list,
// and (greylist.exempt_pass_cache) a client the pass cache knows, are
// accepted at once though the delay is an hour.
func TestGreylistExemptions(t *testing.T) {
	z := startDNS(t, map[string]string{"7.0.0.127.wl.test": "127.0.0.2"})
	cfg := writeFile(t, t.TempDir(), "postern.toml", `
[greylist]
enabled = true
min_delay = "1h"
exempt_pass_cache = true
`)
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "1s", "-trusted", "127.0.0.1",
		"-dnswl", "wl.test", "-dns-resolver", z.addr, "-metrics-listen", "127.0.0.1:0")
	out, ok := greyTry(t, r.addr, "127.0.0.7", "listed@sender.example")
	require.True(t, ok, "a client on the allow list is not greylisted: %s", out)

	// A client that waited out the greet pause in silence (as swaks
	// does) and passed the lists is in the pass cache: not greylisted.
	// The pass is recorded while the session goes on, so its first
	// RCPT may come before it.
	require.Eventually(t, func() bool {
		_, ok := greyTry(t, r.addr, "127.0.0.8", "cached@sender.example")
		return ok
	}, 30*time.Second, 100*time.Millisecond, "a client the pass cache knows is not greylisted")
	m := scrape(t, r.metricsAddr(t))
	assert.GreaterOrEqual(t, m[`postern_greylist_total{outcome="exempt"}`], 2.0)

	// Without greylist.exempt_pass_cache the same client is greylisted.
	plain := writeFile(t, t.TempDir(), "postern.toml", "[greylist]\nenabled = true\nmin_delay = \"1h\"\n")
	p := startRelay(t, "-config", plain, "-listen", "127.0.0.1:0", "-greet-pause", "1s", "-trusted", "127.0.0.1",
		"-dnswl", "wl.test", "-dns-resolver", z.addr)
	for range 2 {
		out, ok = greyTry(t, p.addr, "127.0.0.8", "cached@sender.example")
		require.False(t, ok, out)
		assert.Contains(t, out, "451 4.7.1 Greylisted")
	}
}

// Two relays share greylisting through a real redis-server: a triplet
// first seen at A is accepted at B's first sight of it once the delay
// has passed (alone, B would answer its first attempt 451).
func TestGreylistSharedThroughRedis(t *testing.T) {
	redisAddr, _ := startRedis(t)
	const delay = 2 * time.Second
	args := []string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-redis", redisAddr,
		"-greylist", "-greylist-delay", delay.String()}
	a := startRelay(t, args...)
	b := startRelay(t, args...)
	out, ok := greyTry(t, a.addr, "127.0.0.2", "shared@sender.example")
	require.False(t, ok, out)
	assert.Contains(t, out, "451 4.7.1 Greylisted")
	time.Sleep(delay + 500*time.Millisecond)
	out, ok = greyTry(t, b.addr, "127.0.0.2", "shared@sender.example")
	require.True(t, ok, "B accepts the retry of a triplet A greylisted: %s", out)
	b.delivered(t, queuedRE.FindStringSubmatch(out)[1])
}

// freeLoopbackPort returns a port free on 127.0.0.1 a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startHAProxy runs a real HAProxy in TCP mode in front of backend with
// two frontends on loopback: one sending PROXY version 1 (send-proxy),
// one version 2 (send-proxy-v2). It returns their addresses.
func startHAProxy(t *testing.T, backend string) (v1, v2 string) {
	t.Helper()
	bin := need(t, "haproxy")
	v1 = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	v2 = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	dir := t.TempDir()
	cfg := writeFile(t, dir, "haproxy.cfg", fmt.Sprintf(`global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend v1
  bind %s
  default_backend relay_v1
backend relay_v1
  server relay %s send-proxy
frontend v2
  bind %s
  default_backend relay_v2
backend relay_v2
  server relay %s send-proxy-v2
`, v1, backend, v2, backend))
	cmd := exec.Command(bin, "-db", "-f", cfg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out.String())
		}
	})
	// Ready once both frontends accept (from an address the tests do not
	// use, so its connections are told apart in the relay's log).
	for _, a := range []string{v1, v2} {
		require.Eventually(t, func() bool {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.99")}, Timeout: time.Second}
			c, err := d.Dial("tcp", a)
			if err == nil {
				c.Close()
			}
			return err == nil
		}, 20*time.Second, 50*time.Millisecond, "haproxy did not start on %s", a)
	}
	return v1, v2
}

// swaksVia sends one message with swaks through addr from src.
func swaksVia(t *testing.T, addr, src, to string) (string, bool) {
	t.Helper()
	out, err := exec.Command(need(t, "swaks"), "--server", addr, "--local-interface", src,
		"--from", "sender@sender.example", "--to", to, "--timeout", "30").CombinedOutput()
	return string(out), err == nil && queuedRE.MatchString(string(out))
}

// The relay behind a real HAProxy, both PROXY versions: the client's
// address (not HAProxy's, which is trusted) is the one in the Received
// field, the log, the access map, the relay check and the rate limit; a
// header from an address not among the balancers closes the connection.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	acc := writeFile(t, t.TempDir(), "access", "Connect:127.0.0.4 REJECT\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-proxy-balancers", "127.0.0.1", "-access", acc, "-message-rate", "1/1h")
	v1, v2 := startHAProxy(t, r.addr)

	for _, tc := range []struct{ front, src, other string }{{v1, "127.0.0.2", "127.0.0.6"}, {v2, "127.0.0.3", "127.0.0.7"}} {
		out, ok := swaksVia(t, tc.front, tc.src, "bob@example.test")
		require.True(t, ok, out)
		msg := r.delivered(t, queuedRE.FindStringSubmatch(out)[1])
		assert.Contains(t, msg, "(["+tc.src+"])", "Received names the client")
		assert.NotContains(t, msg, "[127.0.0.1]")
		assert.Contains(t, r.logs(), "remote_ip="+tc.src+" stage=connect")

		// The rate limit counts the client: its second message is over
		// its 1/1h.
		out, ok = swaksVia(t, tc.front, tc.src, "bob@example.test")
		require.False(t, ok, out)
		assert.Contains(t, out, "450 4.7.1 Error: too much mail from "+tc.src)

		// HAProxy's own address is trusted and may relay; a client
		// behind it may not.
		out, ok = swaksVia(t, tc.front, tc.other, "someone@elsewhere.example")
		require.False(t, ok, out)
		assert.Contains(t, out, "<** 5")
	}
	// The access map judges the client.
	out, ok := swaksVia(t, v2, "127.0.0.4", "bob@example.test")
	require.False(t, ok, out)
	assert.Contains(t, out, "<** 5")
	assert.NotRegexp(t, `msg=connect [^\n]*remote_ip=127\.0\.0\.1 `, r.logs(), "no connection judged as HAProxy's")

	// A client that is not a balancer sending a header naming an address
	// of its choice is disconnected, unanswered.
	c := dialFrom(t, "127.0.0.5", r.addr)
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := br.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(l, "220 "), l)
	_, err = c.Write([]byte("PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\nEHLO forger.example\r\n"))
	require.NoError(t, err)
	rest, err := io.ReadAll(br)
	assert.Empty(t, string(rest))
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed (EOF or reset), not left open: %v", err)
}

// swaksRspamd sends a message from src asking the test rule of the real
// rspamd for one answer (scantest.RspamdTestHeader).
func swaksRspamd(t *testing.T, addr, src, test string) (string, bool) {
	t.Helper()
	out, err := exec.Command(need(t, "swaks"), "--server", addr, "--local-interface", src,
		"--from", "sender@sender.example", "--to", "bob@example.test", "--timeout", "30",
		"--header", "Subject: lunch", "--header", scantest.RspamdTestHeader+": "+test,
		"--header", "X-Postern-Remove-Me: 1").CombinedOutput()
	return string(out), err == nil && queuedRE.MatchString(string(out))
}

// rspamd's full answer through the relay, from a real rspamd with the
// test-only rule: greylist and soft reject are answered 451 4.7.1 with
// rspamd's message; rewrite subject rewrites it; the fields its milter
// block adds are in the delivered copy, the ones it removes are gone,
// and its hostile ones (a name with a line break, removing Received) are
// refused.
func TestRspamdActionsThroughRelay(t *testing.T) {
	d := scantest.Rspamd(t)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-rspamd", d.Addr)

	out, ok := swaksRspamd(t, r.addr, "127.0.0.2", "greylist")
	require.False(t, ok, out)
	assert.Contains(t, out, "451 4.7.1 Greylisted by the test rule, try again later")
	out, ok = swaksRspamd(t, r.addr, "127.0.0.2", "soft-reject")
	require.False(t, ok, out)
	assert.Contains(t, out, "451 4.7.1 Rate limited by the test rule")

	out, ok = swaksRspamd(t, r.addr, "127.0.0.2", "rewrite-subject")
	require.True(t, ok, out)
	msg := r.delivered(t, queuedRE.FindStringSubmatch(out)[1])
	// The Maildir copy has LF line ends.
	assert.Contains(t, msg, "\nSubject: ***SPAM*** lunch\n")
	assert.NotContains(t, msg, "\nSubject: lunch\n")

	out, ok = swaksRspamd(t, r.addr, "127.0.0.2", "headers")
	require.True(t, ok, out)
	msg = r.delivered(t, queuedRE.FindStringSubmatch(out)[1])
	head, _, _ := strings.Cut(msg, "\n\n")
	assert.Contains(t, head, "\nX-Postern-Rspamd: added by the test rule\n")
	assert.Contains(t, head, "\nDKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=test;")
	assert.NotContains(t, head, "X-Postern-Remove-Me")
	assert.NotContains(t, head, "Injected")
	assert.NotContains(t, head, "X-Evil")
	assert.Contains(t, head, "Received: from ", "rspamd may not remove Received")
}

// scan.rspamd_greylist = "greylist": rspamd's greylist action is handed
// to the relay's greylisting (not enabled for other mail), so swaks's
// retry after the delay is accepted; soft reject is still answered 451.
func TestRspamdGreylistHandedToGreylisting(t *testing.T) {
	d := scantest.Rspamd(t)
	const delay = 2 * time.Second
	cfg := writeFile(t, t.TempDir(), "postern.toml", fmt.Sprintf(`
[greylist]
min_delay = %q

[scan]
rspamd_greylist = "greylist"
`, delay))
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-rspamd", d.Addr)
	out, ok := swaksVia(t, r.addr, "127.0.0.2", "bob@example.test")
	require.True(t, ok, "mail rspamd has no action for is not greylisted: %s", out)

	out, ok = swaksRspamd(t, r.addr, "127.0.0.2", "greylist")
	require.False(t, ok, out)
	assert.Contains(t, out, "451 4.7.1 Greylisted, please try again in ")
	time.Sleep(delay + 500*time.Millisecond)
	out, ok = swaksRspamd(t, r.addr, "127.0.0.2", "greylist")
	require.True(t, ok, "the retry after the delay passes: %s", out)
	r.delivered(t, queuedRE.FindStringSubmatch(out)[1])

	out, ok = swaksRspamd(t, r.addr, "127.0.0.2", "soft-reject")
	require.False(t, ok, out)
	assert.Contains(t, out, "451 4.7.1 Rate limited by the test rule")
}

// greylist.exempt_spf_domains: a sender of a listed domain whose SPF
// passed is not greylisted; the same domain from an address its SPF
// record does not name, and another domain whose SPF passed, are.
func TestGreylistSPFExemption(t *testing.T) {
	z := startDNS(t, nil)
	z.setTXT("bank.example", "v=spf1 ip4:127.0.0.9 -all")
	z.setTXT("shop.example", "v=spf1 ip4:127.0.0.9 -all")
	cfg := writeFile(t, t.TempDir(), "postern.toml", `
[greylist]
enabled = true
min_delay = "1h"
exempt_spf_domains = ["bank.example"]
`)
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-auth-check", "tag", "-dns-resolver", z.addr, "-metrics-listen", "127.0.0.1:0")
	out, ok := greyTry(t, r.addr, "127.0.0.9", "statements@bank.example")
	require.True(t, ok, "SPF passed for a listed domain: %s", out)
	for _, tc := range []struct{ src, from string }{
		{"127.0.0.10", "statements@bank.example"}, // SPF fails: forged
		{"127.0.0.9", "offers@shop.example"},      // SPF passes, not listed
	} {
		out, ok = greyTry(t, r.addr, tc.src, tc.from)
		require.False(t, ok, out)
		assert.Contains(t, out, "451 4.7.1 Greylisted", "%+v", tc)
	}
	m := scrape(t, r.metricsAddr(t))
	assert.Equal(t, 1.0, m[`postern_greylist_total{outcome="exempt"}`])
	assert.Equal(t, 2.0, m[`postern_greylist_total{outcome="greylisted"}`])
}

// greylist.at = "data": the recipients are accepted and the message is
// answered 451 4.7.1 at the end of DATA, once for all of them.
func TestGreylistAtData(t *testing.T) {
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-greylist", "-greylist-at", "data", "-greylist-delay", "1h")
	out, err := exec.Command(need(t, "swaks"), "--server", r.addr, "--local-interface", "127.0.0.2",
		"--from", "sender@sender.example", "--to", "bob@example.test,carol@example.test", "--timeout", "30").CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "<-  250 2.0.0 I'll make sure <carol@example.test> gets this")
	assert.Regexp(t, `(?s) -> \.\r?\n<\*\* 451 4\.7\.1 Greylisted, please try again in `, string(out))
}

// The pass cache with an access file: the default GreetPause: entry (a
// migrated sendmail site's) is a pause the cache cuts short; an entry
// naming the client wins, so that client waits every time.
func TestPassCacheAndAccessGreetPause(t *testing.T) {
	acc := writeFile(t, t.TempDir(), "access", "GreetPause: 3000\nGreetPause:127.0.0.4 3000\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-access", acc,
		"-metrics-listen", "127.0.0.1:0")
	session(t, r.addr, "127.0.0.4")
	session(t, r.addr, "127.0.0.2")
	got := racePause(t, r.addr, "127.0.0.3", "127.0.0.2")
	require.Len(t, got, 2)
	assert.Equal(t, "127.0.0.2", got[0].src, "the default entry's pause is cut short: %+v", got)
	session(t, r.addr, "127.0.0.4")
	m := scrape(t, r.metricsAddr(t))
	assert.Equal(t, 1.0, m[`postern_greet_pause_total{action="known"}`], "127.0.0.4's own entry wins")
	assert.Equal(t, 4.0, m[`postern_greet_pause_total{action="pass"}`])
}
