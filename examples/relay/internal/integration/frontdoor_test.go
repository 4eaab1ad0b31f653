package integration

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
