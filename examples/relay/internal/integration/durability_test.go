package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A full disk is a temporary failure: 452 4.3.1. What was acknowledged
// before is not harmed, and mail flows again once there is room.
func TestDiskFullAnswers452(t *testing.T) {
	swaks := need(t, "swaks")
	spool := filepath.Join(t.TempDir(), "spool")
	require.NoError(t, os.MkdirAll(spool, 0o755))
	if err := syscall.Mount("tmpfs", spool, "tmpfs", 0, "size=256k"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a small tmpfs for the disk-full test (needs root): %v", err)
		}
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(spool, syscall.MNT_DETACH) })

	// The next hop is down at first, so acknowledged mail waits in the
	// queue while the disk fills.
	next := freeAddr(t)
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(next)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-spool", spool, "-mailertable", mt,
		"-min-backoff", "1s", "-max-backoff", "1s")
	send := func(args ...string) (string, error) {
		out, err := exec.Command(swaks, append([]string{"--server", r.addr, "--to", "a@example.test", "--from", "b@example.net"},
			args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := send("--header", "Message-Id: <before@example.net>")
	require.NoError(t, err, out)
	// ~385 KiB, more than the disk holds.
	big := writeFile(t, t.TempDir(), "body", strings.Repeat(strings.Repeat("x", 76)+"\n", 5000))
	out, err = send("--body", big)
	require.Error(t, err, "swaks must see the temporary failure")
	assert.Contains(t, out, "<** 452 4.3.1 Insufficient system storage")
	out, err = send("--header", "Message-Id: <after@example.net>")
	require.NoError(t, err, out)

	down := startSink(t, next)
	got := down.waitFor(t, 2, 30*time.Second)
	var ids []string
	for _, m := range got {
		ids = append(ids, m.MessageID())
	}
	assert.ElementsMatch(t, []string{"<before@example.net>", "<after@example.net>"}, ids)
}

// A message answered 250 survives the relay being killed at once
// afterwards: it is delivered after the restart.
func TestKilledAfter250KeepsMessage(t *testing.T) {
	swaks := need(t, "swaks")
	// The next hop is down until after the kill, so the message is still
	// queued when the relay dies.
	next := freeAddr(t)
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(next)+"\n")
	spool := filepath.Join(t.TempDir(), "spool")
	args := []string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt, "-spool", spool, "-min-backoff", "1s"}
	r := startRelay(t, args...)
	out, err := exec.Command(swaks, "--server", r.addr, "--to", "a@example.test", "--from", "b@example.net",
		"--header", "Message-Id: <kill-test@example.net>").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Regexp(t, queuedRE, string(out))
	require.NoError(t, r.cmd.Process.Kill())
	_ = r.cmd.Wait()
	down := startSink(t, next)
	startRelay(t, args...)
	got := down.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, "<kill-test@example.net>", got[0].MessageID())
	assert.True(t, strings.HasSuffix(string(got[0].Data), "\r\n"), "complete message")
}
