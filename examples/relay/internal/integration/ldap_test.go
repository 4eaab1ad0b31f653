package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth/directory/ldaptest"
	"github.com/postern/postern/scan/scantest"
)

// The directory of the LDAP tests: alice has spam filtering off and a
// second address; bob denies a domain; carol allows one sender.
var ldapUsers = strings.Join([]string{
	ldaptest.Person("alice", "alice-pw", []string{"alice@example.test", "a.smith@example.test"}, "amavisBypassSpamChecks: TRUE"),
	ldaptest.Person("bob", "bob-pw", []string{"bob@example.test"}, "amavisBlacklistSender: @spammer.test"),
	ldaptest.Person("carol", "carol-pw", []string{"carol@example.test"}, "amavisWhitelistSender: friend@partner.test"),
}, "\n")

// ldapConfig writes a relay.toml that uses slapd for uses.
func ldapConfig(t *testing.T, dir string, srv *ldaptest.Server, uses string, extra ...string) string {
	t.Helper()
	pw := writeFile(t, dir, "ldap.secret", ldaptest.ServicePassword+"\n")
	require.NoError(t, os.Chmod(pw, 0o600))
	lines := append([]string{
		`local_domains = ["example.test"]`,
		`[ldap]`,
		fmt.Sprintf(`urls = [%q]`, srv.URL),
		`tls = "starttls"`,
		fmt.Sprintf(`ca_file = %q`, srv.CAFile),
		fmt.Sprintf(`bind_dn = %q`, ldaptest.ServiceDN),
		`bind_password_file = "ldap.secret"`,
		fmt.Sprintf(`base = %q`, ldaptest.Suffix),
		`timeout = "3s"`,
		`uses = ` + uses,
	}, extra...)
	return writeFile(t, dir, "relay.toml", strings.Join(lines, "\n")+"\n")
}

// Recipients from the directory: known 250, unknown 550 5.1.1 at RCPT,
// injection attempts looked up as themselves (nothing found, logged);
// with slapd stopped every recipient is 451 4.3.0, so nothing is
// accepted and nothing bounced; back up, mail flows.
func TestLDAPRecipients(t *testing.T) {
	need(t, "python3")
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: ldapUsers})
	dir := t.TempDir()
	cfg := ldapConfig(t, dir, srv, `["recipients"]`)
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-harvest-threshold", "-1")
	src := outsideAddr(t)

	got := runDialog(t, r.addr, src,
		"MAIL FROM:<sender@remote.example>",
		"RCPT TO:<alice@example.test>",
		"RCPT TO:<a.smith@example.test>",
		"RCPT TO:<nobody@example.test>",
		`RCPT TO:<"*)(uid=*"@example.test>`,
		`RCPT TO:<"\\00"@example.test>`,
		`RCPT TO:<"a)(objectClass=*"@example.test>`,
		"RCPT TO:<postmaster@example.test>")
	require.Len(t, got, 8, "%q", got)
	assert.True(t, strings.HasPrefix(got[1], "250"), got[1])
	assert.True(t, strings.HasPrefix(got[2], "250"), got[2])
	assert.Equal(t, "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in the directory", got[3])
	for _, g := range got[4:7] {
		assert.True(t, strings.HasPrefix(g, "550 5.1.1 "), "an injection finds nothing: %q", g)
	}
	assert.True(t, strings.HasPrefix(got[7], "250"), got[7])
	logs := r.logs()
	assert.Contains(t, logs, "lookup value holds LDAP filter characters")
	assert.Contains(t, logs, `*)(uid=*`)
	filters := strings.Join(srv.Filters(), "\n")
	// (slapd writes the escapes in upper case.)
	assert.Contains(t, filters, `(mail=\2A\29\28uid=\2A@example.test)`, "slapd got the value escaped")
	assert.Contains(t, filters, `(mail=\5C00@example.test)`)

	// slapd gone: 451 4.3.0 for every recipient not asked within the
	// cache's TTL, known or not; the transaction never reaches DATA;
	// nothing is queued, nothing bounced.
	srv.Stop()
	got = runDialog(t, r.addr, src,
		"MAIL FROM:<sender@remote.example>",
		"RCPT TO:<bob@example.test>",
		"RCPT TO:<carol@example.test>",
		"RCPT TO:<ghost@example.test>",
		"DATA",
		"RSET",
		"MAIL FROM:<sender@remote.example>",
		"RCPT TO:<alice@example.test>")
	require.Len(t, got, 8, "%q", got)
	for _, g := range got[1:4] {
		assert.True(t, strings.HasPrefix(g, "451 4.3.0 "), "directory down: %q", g)
		assert.Contains(t, g, "directory unavailable")
	}
	assert.False(t, strings.HasPrefix(got[4], "354"), "no recipient, no DATA: %q", got[4])
	assert.True(t, strings.HasPrefix(got[7], "250"), "alice was found a moment ago: her entry is cached: %q", got[7])
	out, code := r.admin(t, "queue", "list")
	require.Zero(t, code, out)
	assert.NotContains(t, out, "@", "nothing queued, no bounce: %s", out)

	// Back up: the failures were not cached.
	srv.Restart()
	got = runDialog(t, r.addr, src, "SEND sender@remote.example alice@example.test,ghost@example.test")
	require.Len(t, got, 1)
	assert.Equal(t, "SENT ['ghost@example.test']", got[0], "alice accepted, ghost refused")
	require.Eventually(t, func() bool { return len(maildirFiles(t, r.maildir)) == 1 }, 20*time.Second, 20*time.Millisecond)
	assert.Contains(t, maildirFiles(t, r.maildir)[0], filepath.Join("example.test", "alice"))
	assert.Empty(t, deliveredTo(t, r, "sender@remote.example"), "nothing bounced")
}

// deliveredTo lists the queued messages for rcpt (DSNs among them).
func deliveredTo(t *testing.T, r *relay, rcpt string) string {
	t.Helper()
	out, _ := r.admin(t, "queue", "list")
	var hits []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, rcpt) {
			hits = append(hits, l)
		}
	}
	return strings.Join(hits, "\n")
}

// Spam policy from the directory, with a real spamd: GTUBE reaches alice
// (spam filtering OFF in her entry) unscanned and bob tagged; carol's
// allow-list entry passes its sender untagged, another sender is
// tagged; bob's deny entry refuses a sender at RCPT.
func TestLDAPSpamPolicy(t *testing.T) {
	swaks := need(t, "swaks")
	need(t, "python3")
	spamd := scantest.Spamd(t)
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: ldapUsers})
	dir := t.TempDir()
	cfg := ldapConfig(t, dir, srv, `["recipients", "spam_policy"]`)
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-spamd", spamd.Addr,
		"-spam-subject", "[SPAM]")
	body := writeFile(t, dir, "body", "Buy now!\n"+scantest.GTUBE()+"\n")
	send := func(from, to, subject string) {
		out, err := exec.Command(swaks, "--server", r.addr, "--from", from, "--to", to,
			"--header", "Subject: "+subject, "--body", body).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	send("a@example.net", "alice@example.test,bob@example.test", "offer one")
	send("friend@partner.test", "carol@example.test", "offer two")
	send("stranger@example.net", "carol@example.test", "offer three")
	mail := map[string][]string{}
	require.Eventually(t, func() bool {
		mail = map[string][]string{}
		for _, f := range maildirFiles(t, r.maildir) {
			b, _ := os.ReadFile(f)
			user := filepath.Base(filepath.Dir(filepath.Dir(f)))
			mail[user] = append(mail[user], string(b))
		}
		return len(mail["alice"]) == 1 && len(mail["bob"]) == 1 && len(mail["carol"]) == 2
	}, 30*time.Second, 50*time.Millisecond, "relay log:\n%s", r.logs())
	assert.NotContains(t, mail["alice"][0], "X-Spam-", "spam OFF in the directory: not scored")
	assert.Contains(t, mail["alice"][0], "Subject: offer one")
	assert.Contains(t, mail["bob"][0], "X-Spam-Flag: YES")
	assert.Contains(t, mail["bob"][0], "Subject: [SPAM] offer one")
	for _, m := range mail["carol"] {
		switch {
		case strings.Contains(m, "offer two"):
			assert.NotContains(t, m, "X-Spam-Flag: YES", "the allow-list entry passes its sender")
			assert.Contains(t, m, "Subject: offer two")
		case strings.Contains(m, "offer three"):
			assert.Contains(t, m, "X-Spam-Flag: YES")
		}
	}

	got := runDialog(t, r.addr, outsideAddr(t), "MAIL FROM:<x@spammer.test>", "RCPT TO:<bob@example.test>",
		"RCPT TO:<carol@example.test>")
	assert.Equal(t, "550 5.7.1 Recipient address rejected: sender denied by recipient's policy", got[1])
	assert.True(t, strings.HasPrefix(got[2], "250"), got[2])
}

// Submission login by LDAP bind with swaks (STARTTLS, AUTH PLAIN): the
// right password 235, a wrong one 535, a sender not in the entry 553; a
// login while slapd is stopped is 454 4.7.0 and not counted; five
// failures lock the client out, even with the right password.
func TestLDAPSubmission(t *testing.T) {
	swaks := need(t, "swaks")
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: ldapUsers})
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, dir, "mailertable", "remote.example esmtp:"+hostPort(down.addr)+"\n")
	cfg := ldapConfig(t, dir, srv, `["recipients", "auth"]`)
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt,
		"-tls-cert", cert, "-tls-key", key, "-submission", "127.0.0.1:0")
	subs := submissionRE.FindAllStringSubmatch(r.logs(), -1)
	require.Len(t, subs, 1, r.logs())
	sub := subs[0][1]
	login := func(user, pw, from string) (string, error) {
		out, err := exec.Command(swaks, "--server", sub, "--tls", "--auth", "PLAIN", "--auth-user", user,
			"--auth-password", pw, "--from", from, "--to", "bob@remote.example").CombinedOutput()
		return string(out), err
	}
	out, err := login("alice", "alice-pw", "a.smith@example.test")
	require.NoError(t, err, out)
	assert.Contains(t, out, "<~  235 2.7.0 ")
	assert.Regexp(t, queuedRE, out)

	out, err = login("alice", "guess", "alice@example.test")
	require.Error(t, err)
	assert.Contains(t, out, "535 5.7.8")
	out, err = login("alice", "alice-pw", "bob@example.test")
	require.Error(t, err)
	assert.Contains(t, out, "553 5.7.1 Sender address rejected: not owned by user")

	// One failure so far. Four logins during an outage would make five,
	// the lock, if they counted.
	srv.Stop()
	for range 4 {
		out, err = login("carol", "carol-pw", "carol@example.test")
		require.Error(t, err)
		assert.Contains(t, out, "454 4.7.0 Temporary authentication failure")
	}
	srv.Restart()
	out, err = login("carol", "carol-pw", "carol@example.test")
	require.NoError(t, err, "the outage counted as failures: %s", out)

	for range 4 {
		out, err = login("bob", "nope", "bob@example.test")
		require.Error(t, err)
		assert.Contains(t, out, "535 5.7.8")
	}
	out, err = login("bob", "bob-pw", "bob@example.test")
	require.Error(t, err, "locked out")
	assert.Contains(t, out, "454 4.7.0")
	down.waitFor(t, 2, 20*time.Second) // alice's and carol's mail

}

// relay check prints what the directory answered, and a reload applies a
// changed [ldap] section.
func TestLDAPCheckAndReload(t *testing.T) {
	need(t, "python3")
	srv := ldaptest.Start(t, ldaptest.Options{LDIF: ldapUsers})
	dir := t.TempDir()
	cfg := ldapConfig(t, dir, srv, `["recipients", "spam_policy", "auth"]`)
	out, err := runRelayOnce("check", "-config", cfg, "-ip", "198.51.100.7", "-from", "x@remote.example",
		"-rcpt", "a.smith@example.test", "-rcpt", "ghost@example.test", "-rcpt", "someone@remote.example", "-auth", "bob")
	require.NoError(t, err, out)
	assert.Contains(t, out, "directory: rcpt <a.smith@example.test>: found uid=alice,ou=people,dc=example,dc=test; addresses alice@example.test, a.smith@example.test; spam off; filter (|(mail=a.smith@example.test)(mailAlternateAddress=a.smith@example.test))")
	assert.Contains(t, out, "directory: rcpt <ghost@example.test>: no entry")
	assert.NotContains(t, out, "directory: rcpt <someone@remote.example>", "not a domain of the directory")
	assert.Contains(t, out, `directory: login "bob": found uid=bob,`)
	assert.Contains(t, out, "=> rcpt <ghost@example.test>: 550 5.1.1")
	srv.Stop()
	out, err = runRelayOnce("check", "-config", cfg, "-ip", "198.51.100.7", "-from", "x@remote.example",
		"-rcpt", "alice@example.test")
	require.NoError(t, err, out)
	assert.Contains(t, out, "directory: rcpt <alice@example.test>: unavailable")
	assert.Contains(t, out, "=> rcpt <alice@example.test>: 451 4.3.0")
	srv.Restart()

	// Reload: without "recipients" anyone is accepted; with it, not.
	cfg = ldapConfig(t, dir, srv, `["auth"]`)
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0")
	src := outsideAddr(t)
	got := runDialog(t, r.addr, src, "MAIL FROM:<s@remote.example>", "RCPT TO:<ghost@example.test>")
	assert.True(t, strings.HasPrefix(got[1], "250"), got[1])
	ldapConfig(t, dir, srv, `["recipients", "auth"]`)
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		got = runDialog(t, r.addr, src, "MAIL FROM:<s@remote.example>", "RCPT TO:<ghost@example.test>")
		return strings.HasPrefix(got[1], "550 5.1.1")
	}, 20*time.Second, 100*time.Millisecond, "reload did not apply ldap.uses: %q\n%s", got, r.logs())
}
