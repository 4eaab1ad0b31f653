package integration

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deadAddr is a loopback address nothing listens on: a dependency that is
// down (connections refused at once).
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Each failure switch of the relay, with its dependency down from the
// start, gives the answer it always gave, now through the library's one
// ErrorPolicy: DNS lists and virus scanning fail closed by default (421 /
// 451 4.7.1) and open with -dnsbl-on-error accept / -virus-on-error
// accept; spam scoring fails open by default and closed (451 4.7.1) with
// -spam-on-error tempfail; reject refuses for good. The old switches
// (-dnsbl-fail-open, ...) still work, with a warning. (Redis:
// TestRedisVanishes.)
func TestFailureSwitchesThroughRelay(t *testing.T) {
	need(t, "python3")
	common := []string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", ""}
	banner := func(r *relay) string {
		c := dialFrom(t, "127.0.0.2", r.addr)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		l, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		return l
	}
	send := func(r *relay) string {
		got := runDialog(t, r.addr, "127.0.0.2", "MAIL FROM:<a@example.net>", "RCPT TO:<alice@example.test>", "MESSAGE")
		require.Len(t, got, 3, got)
		require.True(t, strings.HasPrefix(got[1], "250 "), got[1])
		return got[2]
	}

	t.Run("dnsbl", func(t *testing.T) {
		// The discard port: nothing answers.
		dns := append(common, "-dnsbl", "bl.test", "-dns-resolver", "127.0.0.1:9")
		got := banner(startRelay(t, dns...))
		assert.True(t, strings.HasPrefix(got, "421 4.7.1 DNSBL lookup failed"), got)
		got = banner(startRelay(t, append(dns, "-dnsbl-on-error", "accept")...))
		assert.True(t, strings.HasPrefix(got, "220 "), "fail open: %s", got)
		got = banner(startRelay(t, append(dns, "-dnsbl-on-error", "reject")...))
		assert.True(t, strings.HasPrefix(got, "554 5.7.1 "), "reject: %s", got)
		old := startRelay(t, append(dns, "-dnsbl-fail-open")...)
		got = banner(old)
		assert.True(t, strings.HasPrefix(got, "220 "), "the old switch: %s", got)
		assert.Contains(t, old.logs(), "dnsbl.fail_open is renamed dnsbl.on_error")
	})
	t.Run("virus", func(t *testing.T) {
		av := append(common, "-clamd", deadAddr(t))
		got := send(startRelay(t, av...))
		assert.True(t, strings.HasPrefix(got, "451 4.7.1 Message could not be scanned"), got)
		r := startRelay(t, append(av, "-virus-on-error", "accept")...)
		got = send(r)
		assert.True(t, strings.HasPrefix(got, "250 "), "fail open: %s", got)
		assert.Contains(t, r.logs(), "scanner failed")
	})
	t.Run("spam", func(t *testing.T) {
		sa := append(common, "-spamd", deadAddr(t))
		r := startRelay(t, sa...)
		got := send(r)
		assert.True(t, strings.HasPrefix(got, "250 "), "fail open: %s", got)
		assert.Contains(t, r.logs(), "scanner failed")
		got = send(startRelay(t, append(sa, "-spam-on-error", "tempfail")...))
		assert.True(t, strings.HasPrefix(got, "451 4.7.1 Message could not be scanned"), got)
		got = send(startRelay(t, append(sa, "-spam-fail-closed")...))
		assert.True(t, strings.HasPrefix(got, "451 4.7.1 Message could not be scanned"), "the old switch: %s", got)
	})
}
