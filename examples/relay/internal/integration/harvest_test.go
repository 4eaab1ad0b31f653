package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two relay instances share one real Redis: a harvester that collects
// "User unknown" answers on A is answered 451 4.7.1 on B, and is served
// again once the hold has passed, with nobody cleaning up by hand.
func TestHarvestGuardSharedThroughRedis(t *testing.T) {
	need(t, "python3")
	redisAddr, _ := startRedis(t)
	rcpts := writeFile(t, t.TempDir(), "recipients", "alice@example.test\n")
	args := []string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-recipients", rcpts, "-redis", redisAddr,
		"-harvest-threshold", "3", "-harvest-window", "1m", "-harvest-hold", "3s"}
	a := startRelay(t, args...)
	b := startRelay(t, args...)

	got := runDialog(t, a.addr, "127.0.0.2", "MAIL FROM:<h@harvest.example>",
		"RCPT TO:<u1@example.test>", "RCPT TO:<u2@example.test>", "RCPT TO:<u3@example.test>", "RCPT TO:<alice@example.test>")
	for _, l := range got[1:4] {
		assert.True(t, strings.HasPrefix(l, "550 5.1.1 "), l)
	}
	assert.True(t, strings.HasPrefix(got[4], "451 4.7.1 "), "held on A too: %s", got[4])
	heldAt := time.Now()

	got = runDialog(t, b.addr, "127.0.0.2", "MAIL FROM:<h@harvest.example>", "RCPT TO:<alice@example.test>")
	require.True(t, strings.HasPrefix(got[1], "451 4.7.1 "), "instance B must know: %s", got[1])
	// Another source is not affected, nor is a trusted client.
	got = runDialog(t, b.addr, "127.0.0.4", "MAIL FROM:<x@other.example>", "RCPT TO:<alice@example.test>")
	assert.True(t, strings.HasPrefix(got[1], "250 "), got[1])

	// After the hold the source is served again by itself.
	time.Sleep(time.Until(heldAt.Add(3500 * time.Millisecond)))
	got = runDialog(t, b.addr, "127.0.0.2", "MAIL FROM:<h@harvest.example>", "RCPT TO:<alice@example.test>")
	assert.True(t, strings.HasPrefix(got[1], "250 "), "recovered: %s", got[1])
}

// Connection limits from the command line: a third concurrent connection
// from one client is refused with 421 while others are served.
func TestClientConnLimit(t *testing.T) {
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-client-conn", "2")
	c1 := dialFrom(t, "127.0.0.2", r.addr)
	c2 := dialFrom(t, "127.0.0.2", r.addr)
	for _, c := range []interface{ Read([]byte) (int, error) }{c1, c2} {
		buf := make([]byte, 4)
		_, err := c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "220 ", string(buf))
	}
	c3 := dialFrom(t, "127.0.0.2", r.addr)
	got := readAll(c3, 10*time.Second)
	assert.True(t, strings.HasPrefix(got, "421 4.7.0 "), got)
	c4 := dialFrom(t, "127.0.0.3", r.addr)
	buf := make([]byte, 4)
	_, err := c4.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "220 ", string(buf))
}

// Redis vanishing mid-run: by default the relay fails open (mail flows,
// a log line says why); with -redis-on-error tempfail it answers 451 4.3.0.
func TestRedisVanishes(t *testing.T) {
	need(t, "python3")
	redisAddr, stopRedis := startRedis(t)
	rcpts := writeFile(t, t.TempDir(), "recipients", "alice@example.test\n")
	common := []string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-recipients", rcpts, "-redis", redisAddr}
	open := startRelay(t, common...)
	closed := startRelay(t, append(common, "-redis-on-error", "tempfail")...)
	for _, r := range []*relay{open, closed} {
		got := runDialog(t, r.addr, "127.0.0.2", "MAIL FROM:<a@example.net>", "RCPT TO:<alice@example.test>")
		require.True(t, strings.HasPrefix(got[1], "250 "), got[1])
	}
	stopRedis()
	got := runDialog(t, open.addr, "127.0.0.2", "MAIL FROM:<a@example.net>", "RCPT TO:<alice@example.test>")
	assert.True(t, strings.HasPrefix(got[1], "250 "), "fail open: %s", got[1])
	assert.Contains(t, open.logs(), "store")
	got = runDialog(t, closed.addr, "127.0.0.2", "MAIL FROM:<a@example.net>", "RCPT TO:<alice@example.test>")
	assert.True(t, strings.HasPrefix(got[1], "451 4.3.0"), "fail closed: %s", got[1])
}
