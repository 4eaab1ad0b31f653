package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SIGHUP reloads the access file; a broken file is an error naming file
// and line, and the previous good map stays in force.
func TestAccessReloadKeepsLastGoodMap(t *testing.T) {
	need(t, "python3")
	dir := t.TempDir()
	acc := writeFile(t, dir, "access", "To:blocked@example.test REJECT\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-access", acc)
	rcpt := func(addr string) string {
		got := runDialog(t, r.addr, "127.0.0.2", "MAIL FROM:<a@example.net>", "RCPT TO:<"+addr+">")
		return got[1]
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, r.logs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	assert.True(t, strings.HasPrefix(rcpt("blocked@example.test"), "550 5.2.1"))

	require.NoError(t, os.WriteFile(acc, []byte("To:other@example.test REJECT\nTo:x@example.test ERROR:999 not a code\n"), 0o644))
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGHUP))
	eventually("the reload error", func() bool { return strings.Contains(r.logs(), acc+":2") })
	assert.True(t, strings.HasPrefix(rcpt("blocked@example.test"), "550 5.2.1"), "old map in force")
	assert.True(t, strings.HasPrefix(rcpt("other@example.test"), "250"), "broken map not used")

	require.NoError(t, os.WriteFile(acc, []byte("To:other@example.test REJECT\n"), 0o644))
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGHUP))
	eventually("the new map", func() bool { return strings.HasPrefix(rcpt("other@example.test"), "550 5.2.1") })
	assert.True(t, strings.HasPrefix(rcpt("blocked@example.test"), "250"))
}

// A broken access file stops the relay from starting, naming file and line.
func TestBrokenAccessFileAtStart(t *testing.T) {
	acc := writeFile(t, t.TempDir(), "access", "# ok\nConnect:10.0.0.1 RELAY\nFrom:x@y.test BOGUSACTION\n")
	out, err := runRelayOnce("check", "-access", acc, "-ip", "10.0.0.1")
	require.Error(t, err)
	assert.Contains(t, out, acc+":3")
}
