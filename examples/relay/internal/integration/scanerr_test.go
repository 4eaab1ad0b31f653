package integration

import (
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closedPort returns a loopback address nothing listens on: a scanner
// that is down.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// With clamd and spamd down, the relay's log says once which scanner and
// which server failed, and how: "clamav: 127.0.0.1:N: dial: connect:
// connection refused" (it read "scan: scanner failed: clamav:
// 127.0.0.1:N: dial tcp 127.0.0.1:N: ..."), in the failure line and in
// the reason of the 451.
func TestClamdDownErrorReadsOnce(t *testing.T) {
	swaks := need(t, "swaks")
	clamd, spamd := closedPort(t), closedPort(t)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-clamd", clamd, "-spamd", spamd)
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test").CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "451 4.7.1 Message could not be scanned, try again later")

	failed := regexp.MustCompile(`msg="scanner failed" .*scanner=(\w+) error="([^"]*)"`).FindAllStringSubmatch(r.logs(), -1)
	require.Len(t, failed, 2, r.logs())
	want := map[string]string{
		"clamav": "clamav: " + clamd + ": dial: connect: connection refused",
		"spamd":  "spamd: " + spamd + ": dial: connect: connection refused",
	}
	for _, m := range failed {
		assert.Equal(t, want[m[1]], m[2])
	}
	reason := regexp.MustCompile(`msg="scan decision" .*action=tempfail .*reason="([^"]*)"`).FindStringSubmatch(r.logs())
	require.NotNil(t, reason, r.logs())
	assert.Equal(t, 1, strings.Count(reason[1], "clamav"), reason[1])
	assert.Equal(t, 1, strings.Count(reason[1], clamd), reason[1])
	assert.Contains(t, reason[1], want["clamav"])
}
