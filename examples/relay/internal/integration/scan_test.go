package integration

import (
	"archive/zip"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scantest"
)

// zipOf returns a zip archive holding one file.
func zipOf(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.Bytes()
}

// A real clamd behind the relay: EICAR in a zip in a zip is refused with
// 554 5.7.0, clean mail passes, and when clamd is gone mail is deferred
// (451), never delivered unscanned.
func TestClamdThroughRelay(t *testing.T) {
	swaks := need(t, "swaks")
	clamd := scantest.Clamd(t)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-clamd", clamd.Addr)
	dir := t.TempDir()
	inner := zipOf(t, "eicar.com", scantest.EICAR())
	outer := writeFile(t, dir, "invoice.zip", string(zipOf(t, "inner.zip", inner)))

	out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test",
		"--attach-type", "application/zip", "--attach", "@"+outer).CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "554 5.7.0")
	assert.Contains(t, string(out), scantest.EICARSignature)

	out, err = exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test").CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	r.delivered(t, m[1])

	clamd.Kill()
	out, err = exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test").CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "451 4.7.1")
}

// A virus can be quarantined instead: the message is accepted and held in
// the queue with the reason, not delivered.
func TestVirusQuarantine(t *testing.T) {
	swaks := need(t, "swaks")
	clamd := scantest.Clamd(t)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-clamd", clamd.Addr, "-virus-action", "quarantine")
	body := writeFile(t, t.TempDir(), "body", "see attachment\n"+string(scantest.EICAR())+"\n")
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test",
		"--body", body).CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	assert.Regexp(t, `msg=queued queue_id=`+m[1]+` .*hold=".*`+scantest.EICARSignature, r.logs())
	time.Sleep(500 * time.Millisecond)
	assert.Empty(t, maildirFiles(t, r.maildir), "a held message is not delivered")
}

// One message to two recipients, one of whom turned spam filtering off:
// scored once by a real spamd, delivered tagged to one and untagged to
// the other.
func TestPerRecipientSpamPolicy(t *testing.T) {
	swaks := need(t, "swaks")
	spamd := scantest.Spamd(t)
	dir := t.TempDir()
	pol := writeFile(t, dir, "scan-policy", "# bob reads his spam himself\nbob@example.test spam=off\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-spamd", spamd.Addr,
		"-spam-subject", "[SPAM]", "-scan-policy", pol)
	body := writeFile(t, dir, "body", "Buy now!\n"+scantest.GTUBE()+"\n")
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net",
		"--to", "alice@example.test,bob@example.test", "--header", "Subject: offer", "--body", body).CombinedOutput()
	require.NoError(t, err, string(out))
	var alice, bob string
	require.Eventually(t, func() bool {
		for _, f := range maildirFiles(t, r.maildir) {
			b, _ := os.ReadFile(f)
			switch {
			case strings.Contains(f, filepath.Join("example.test", "alice")):
				alice = string(b)
			case strings.Contains(f, filepath.Join("example.test", "bob")):
				bob = string(b)
			}
		}
		return alice != "" && bob != ""
	}, 20*time.Second, 50*time.Millisecond, "relay log:\n%s", r.logs())
	assert.Contains(t, alice, "X-Spam-Flag: YES")
	assert.Contains(t, alice, "Subject: [SPAM] offer")
	assert.NotContains(t, bob, "X-Spam-")
	assert.Contains(t, bob, "Subject: offer")
	assert.NotContains(t, bob, "[SPAM]")
}
