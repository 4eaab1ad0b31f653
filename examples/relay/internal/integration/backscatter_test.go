package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unknownUsers(s *sink) {
	s.setRcpt(func(a string) *gosmtp.SMTPError {
		if strings.HasPrefix(a, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "nobody: User unknown"}
		}
		return nil
	})
}

// The migration example asks the store about each recipient (call-ahead):
// an unknown user is refused at RCPT, nothing is queued, nobody gets a
// bounce.
func TestMigrationRefusesUnknownUsers(t *testing.T) {
	need(t, "python3")
	dns := startDNS(t, nil)
	r, store := migrationRelay(t, dns.addr, "-greet-pause", "0")
	unknownUsers(store)
	got := runDialog(t, r.addr, "127.0.0.2", "MAIL FROM:<forged@victim.example>",
		"RCPT TO:<nobody@nix.co.jj>", "RCPT TO:<user@nix.co.jj>")
	assert.Regexp(t, `^550 5\.1\.1 `, got[1])
	assert.Regexp(t, `^250 `, got[2])
	res := runDialog(t, r.addr, "127.0.0.2", "SEND forged@victim.example nobody@nix.co.jj")
	assert.Contains(t, res[0], "REFUSED")
	assert.Contains(t, res[0], "5.1.1")
	time.Sleep(time.Second)
	assert.Empty(t, store.received(), "nothing was queued, nothing bounced")
}

// check-config and the relay's log name the domains whose unknown users
// would be bounced.
func TestBackscatterWarning(t *testing.T) {
	store := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	mt := writeFile(t, dir, "mailertable", "example.test esmtp:"+hostPort(store.addr)+"\n")
	out, err := exec.Command(relayBin, "check-config", "-mailertable", mt, "-spool", filepath.Join(dir, "spool")).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "WARNING: example.test has no recipient verification")

	// A recipients file that covers the domain, or call-ahead, verifies.
	rc := writeFile(t, dir, "recipients", "user@example.test\n")
	for _, extra := range [][]string{{"-recipients", rc}, {"-callahead"}} {
		args := append([]string{"check-config", "-mailertable", mt, "-spool", filepath.Join(dir, "spool")}, extra...)
		out, err := exec.Command(relayBin, args...).CombinedOutput()
		require.NoError(t, err, string(out))
		assert.NotContains(t, string(out), "WARNING", extra)
	}
	// The built-in defaults deliver to Maildir, which knows its users.
	out, err = exec.Command(relayBin, "check-config", "-spool", filepath.Join(dir, "spool")).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.NotContains(t, string(out), "WARNING")

	r := startRelay(t, "-listen", "127.0.0.1:0", "-mailertable", mt)
	assert.Contains(t, r.logs(), "backscatter: example.test has no recipient verification")
}

// When the store refuses a recipient after the relay accepted it, the
// notice goes to the sender only if something vouched for the sender;
// otherwise to the postmaster.
func TestUnverifiedSenderNoticeGoesToPostmaster(t *testing.T) {
	need(t, "python3")
	store := startSink(t, "127.0.0.1:0")
	unknownUsers(store)
	senders := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(store.addr)+"\n"+
		"victim.example esmtp:"+hostPort(senders.addr)+"\n"+"site.example esmtp:"+hostPort(senders.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-mailertable", mt,
		"-postmaster", "postmaster@site.example")

	// From outside, with no SPF or DKIM checked: unverified.
	res := runDialog(t, r.addr, "127.0.0.2", "SEND forged@victim.example nobody@example.test")
	require.Equal(t, "SENT []", res[0])
	// From the site's own host: its sender gets the notice.
	res = runDialog(t, r.addr, "127.0.0.1", "SEND alice@site.example nobody@example.test")
	require.Equal(t, "SENT []", res[0])

	got := senders.waitFor(t, 2, 20*time.Second)
	time.Sleep(time.Second)
	require.Len(t, senders.received(), 2)
	to := map[string]bool{}
	for _, m := range got {
		assert.Equal(t, "", m.From)
		assert.Contains(t, string(m.Data), "Status: 5.1.1")
		to[strings.Join(m.Rcpts, ",")] = true
	}
	assert.Equal(t, map[string]bool{"postmaster@site.example": true, "alice@site.example": true}, to,
		"no notice to forged@victim.example")
}
