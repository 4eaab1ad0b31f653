package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nested returns a message whose text part sits depth multiparts deep.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString("From: a@example.net\r\nTo: bob@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nhello\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// The recipient and MIME limits are keys: what was fixed in the code
// (1000 recipients, 32 levels, 1000 parts) is the default, and a site's
// own values are what the relay answers by.
func TestRecipientAndMIMELimits(t *testing.T) {
	swaks := need(t, "swaks")
	need(t, "python3")
	dir := t.TempDir()
	conf := writeFile(t, dir, "relay.toml", `
[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
max_recipients = 3
[scan]
max_mime_depth = 4
max_mime_parts = 6
`)
	r := startRelay(t, "-config", conf)
	got := runDialog(t, r.addr, "127.0.0.1", "EHLO client.test", "MAIL FROM:<a@example.net>",
		"RCPT TO:<u1@example.test>", "RCPT TO:<u2@example.test>", "RCPT TO:<u3@example.test>", "RCPT TO:<u4@example.test>")
	assert.Contains(t, got[0], "LIMITS RCPTMAX=3", "the client is told")
	for _, l := range got[2:5] {
		assert.True(t, strings.HasPrefix(l, "250 "), l)
	}
	assert.Equal(t, "452 4.5.3 Maximum limit of 3 recipients reached", got[5])

	send := func(msg string) (string, error) {
		body := writeFile(t, t.TempDir(), "msg", msg)
		out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test",
			"--data", "@"+body).CombinedOutput()
		return string(out), err
	}
	out, err := send(nested(4))
	require.NoError(t, err, "4 levels deep is allowed: %s", out)
	out, err = send(nested(5))
	require.Error(t, err)
	assert.Contains(t, out, "554 5.6.0 Message rejected: MIME nesting too deep")

	var parts strings.Builder
	parts.WriteString("From: a@example.net\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n")
	for i := range 6 {
		fmt.Fprintf(&parts, "--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	parts.WriteString("--p--\r\n")
	out, err = send(parts.String())
	require.Error(t, err, "7 entities with the container: %s", out)
	assert.Contains(t, out, "554 5.6.0 Message rejected: too many MIME parts")
}
