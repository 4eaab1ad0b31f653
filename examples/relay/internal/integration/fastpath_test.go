package integration

import (
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Mail that is one text entity with a declared charset is walked without
// enmime's tree (scan's fast path; scan.TestWalkFastPath has these forms
// taking it). Through the real relay it must find what the full walk
// finds: a banned name on a lone text part, a tar.gz sent base64 as
// "text", and it delivers ordinary Latin-1 text as sent.
func TestSingleTextPartThroughRelay(t *testing.T) {
	swaks := need(t, "swaks")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-ban-attachments")
	send := func(msg string) (string, error) {
		data := writeFile(t, t.TempDir(), "msg", msg)
		out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test",
			"--data", "@"+data).CombinedOutput()
		return string(out), err
	}
	head := "From: a@example.net\r\nTo: bob@example.test\r\nSubject: one part\r\nMIME-Version: 1.0\r\n"

	out, err := send(head + "Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\r\nnot really text\r\n")
	require.Error(t, err, out)
	assert.Contains(t, out, `552 5.7.0 Message rejected: attachment "invoice.exe" not allowed (banned-extension)`)

	tgz := base64.StdEncoding.EncodeToString(tarOf(t, true, "evil.exe", evilExe))
	out, err = send(head + "Content-Type: text/plain; charset=UTF-8; name=\"notes.txt\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + wrap76(tgz))
	require.Error(t, err, out)
	assert.Contains(t, out, `552 5.7.0 Message rejected: attachment "notes.txt/evil.exe" not allowed (banned-extension)`)

	body := "Caf=E9 cr=E8me at https://example.com/menu, see you =\r\nthere.\r\n"
	out, err = send(head + "Content-Type: text/plain; charset=ISO-8859-1\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body)
	require.NoError(t, err, out)
	m := queuedRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	assert.Contains(t, r.delivered(t, m[1]), "Caf=E9 cr=E8me at https://example.com/menu, see you =", "delivered as sent")
}

// wrap76 breaks base64 text into lines of 76 (RFC 2045 §6.8).
func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}
