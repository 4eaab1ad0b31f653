package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A full disk is a temporary failure: 452 4.3.1, nothing half-written left
// behind, and mail flows again once there is room.
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

	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-spool", spool)
	// ~385 KiB, more than the disk holds.
	big := writeFile(t, t.TempDir(), "body", strings.Repeat(strings.Repeat("x", 76)+"\n", 5000))
	out, err := exec.Command(swaks, "--server", r.addr, "--to", "a@example.test", "--from", "b@example.net",
		"--body", big).CombinedOutput()
	require.Error(t, err, "swaks must see the temporary failure")
	assert.Contains(t, string(out), "<** 452 4.3.1 Insufficient system storage")
	for _, sub := range []string{"tmp", "new"} {
		ents, err := os.ReadDir(filepath.Join(spool, sub))
		require.NoError(t, err)
		assert.Empty(t, ents, "no partial file in %s", sub)
	}
	out, err = exec.Command(swaks, "--server", r.addr, "--to", "a@example.test", "--from", "b@example.net").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Regexp(t, queuedRE, string(out))
}

// A message answered 250 is in the spool even if the relay is killed at
// once afterwards.
func TestKilledAfter250KeepsMessage(t *testing.T) {
	swaks := need(t, "swaks")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0")
	out, err := exec.Command(swaks, "--server", r.addr, "--to", "a@example.test", "--from", "b@example.net",
		"--header", "Message-ID: <kill-test@example.net>").CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	require.NoError(t, r.cmd.Process.Kill())
	_ = r.cmd.Wait()
	file := r.spooled(t, "new", m[1])
	assert.Contains(t, file, "Message-ID: <kill-test@example.net>")
	assert.True(t, strings.HasSuffix(file, "\r\n"), "complete message")
}
