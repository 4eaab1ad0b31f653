package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
)

// The regression tests of "Security at the seams": each runs the real
// relay binary against real clients (swaks, smtplib, an HTTPS client,
// redis-server).

// submissionRelay starts a relay with submission on 587 (and the
// quarantine page) for alice@example.test, who may send as
// alice@example.test only, with a DKIM key for example.test; mail for
// remote.example goes to a sink. It returns the relay, the submission
// address, the sink and the credentials file.
type subRelay struct {
	*relay
	sub, web string
	down     *sink
	creds    string
}

func startSubmissionRelay(t *testing.T, extra ...string) *subRelay {
	t.Helper()
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	hash, err := auth.HashPassword(auth.HashBcrypt, "s3cret pass")
	require.NoError(t, err)
	creds := writeFile(t, dir, "credentials", "alice@example.test:"+hash+"\n")
	senders := writeFile(t, dir, "senders", "alice@example.test: alice@example.test\n")
	keyPEM, _, err := auth.GenerateKey(auth.KeyEd25519, 0)
	require.NoError(t, err)
	dkimKey := writeFile(t, dir, "dkim.pem", string(keyPEM))
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, dir, "mailertable", "remote.example esmtp:"+hostPort(down.addr)+"\n")
	args := append([]string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-mailertable", mt,
		"-tls-cert", cert, "-tls-key", key, "-credentials", creds, "-senders", senders,
		"-dkim-key", "example.test:mail:" + dkimKey, "-submission", "127.0.0.1:0",
		"-web-listen", "127.0.0.1:0"}, extra...)
	r := startRelay(t, args...)
	subs := submissionRE.FindStringSubmatch(r.logs())
	require.NotNil(t, subs, r.logs())
	web := webRE.FindStringSubmatch(r.logs())
	require.NotNil(t, web, r.logs())
	return &subRelay{relay: r, sub: subs[1], web: web[1], down: down, creds: creds}
}

// swaks submits as alice over STARTTLS; args add to or override the
// defaults.
func (s *subRelay) swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := need(t, "swaks")
	out, err := exec.Command(bin, append([]string{"--server", s.sub, "--tls", "--to", "bob@remote.example",
		"--auth", "PLAIN", "--auth-user", "alice@example.test", "--auth-password", "s3cret pass",
		"--from", "alice@example.test"}, args...)...).CombinedOutput()
	return string(out), err
}

// A user logged in as alice@ cannot write "From: CEO <ceo@example.test>":
// the header is bound like the envelope (553 5.7.1 naming the field), and
// with the binding turned off the message goes, but unsigned.
func TestSubmissionFromBinding(t *testing.T) {
	s := startSubmissionRelay(t)
	for _, tc := range []struct{ name, header, want string }{
		{"another address of the domain", "From: CEO <ceo@example.test>", "553 5.7.1 From header rejected: <ceo@example.test> not owned by user"},
		{"a second author", "From: alice@example.test, ceo@example.test", "553 5.7.1 From header rejected: <ceo@example.test> not owned by user"},
		{"a group", "From: Board: ceo@example.test;", "553 5.7.1 From header rejected: <ceo@example.test> not owned by user"},
		{"Sender", "From: alice@example.test\nSender: ceo@example.test", "553 5.7.1 Sender header rejected: <ceo@example.test> not owned by user"},
		{"two From fields", "From: alice@example.test\nFrom: ceo@example.test", "553 5.7.1 From header rejected: 2 fields"},
		{"unparsable", "From: CEO <ceo@example.test", "553 5.7.1 From header rejected: cannot be parsed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.ReplaceAll(tc.header, "\n", "\r\n") + "\r\nTo: bob@remote.example\r\nSubject: wire\r\n\r\nNow.\r\n"
			out, err := s.swaks(t, "--data", data)
			require.Error(t, err, out)
			assert.Contains(t, out, "* "+tc.want, out)
		})
	}
	out, err := s.swaks(t, "--header", "From: Alice <alice@example.test>", "--header", "Message-Id: <own@example.test>")
	require.NoError(t, err, out)
	got := s.down.waitFor(t, 1, 20*time.Second)
	assert.Contains(t, string(got[0].Data), "DKIM-Signature:", "her own From is signed")

	// bind_from off: the forged From is relayed, but never signed.
	off := startSubmissionRelay(t, "-bind-from=false")
	out, err = off.swaks(t, "--header", "From: CEO <ceo@example.test>", "--header", "Message-Id: <forged@example.test>")
	require.NoError(t, err, out)
	got = off.down.waitFor(t, 1, 20*time.Second)
	assert.Contains(t, string(got[0].Data), "From: CEO <ceo@example.test>")
	assert.NotContains(t, string(got[0].Data), "DKIM-Signature:")
	assert.Contains(t, off.logs(), `msg="dkim: not signed"`)
	assert.Contains(t, off.logs(), "not owned by the user")
}

var retryAfterRE = regexp.MustCompile(`^[1-9][0-9]*$`)

// webLogin fills in the quarantine page's login form from a fresh
// browser and returns the client (with its cookies) and the answer.
func webLogin(t *testing.T, base, user, password string) (*http.Client, *http.Response) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the test's own certificate
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/login")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="login_token" value="([^"]+)"`).FindSubmatch(body)
	require.NotNil(t, m, string(body))
	resp, err = c.PostForm(base+"/login", url.Values{"login_token": {string(m[1])}, "user": {user}, "password": {password}})
	require.NoError(t, err)
	resp.Body.Close()
	return c, resp
}

// 20 wrong passwords for one account from four addresses (five each, the
// most one address may fail) lock the account: the right password from a
// fifth address is refused 454 4.7.0, and the quarantine page answers 429
// for it. An unknown account answers the same.
func TestLoginLockPerAccount(t *testing.T) {
	s := startSubmissionRelay(t)
	for _, user := range []string{"alice@example.test", "nobody@example.test"} {
		for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
			for range 5 {
				out, err := s.swaks(t, "--auth-user", user, "--auth-password", "guess", "--local-interface", src)
				require.Error(t, err)
				assert.Regexp(t, `<~?\* +(535 5\.7\.8|454 4\.7\.0) `, out)
			}
		}
		out, err := s.swaks(t, "--auth-user", user, "--auth-password", "s3cret pass", "--local-interface", "127.0.0.6")
		require.Error(t, err, out)
		assert.Contains(t, out, "454 4.7.0 Too many failed authentication attempts", user)

		_, resp := webLogin(t, "https://"+s.web, user, "s3cret pass")
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, user)
		assert.Regexp(t, retryAfterRE, resp.Header.Get("Retry-After"))
	}
	assert.Contains(t, s.logs(), "key=user:alice@example.test")
}

// With Redis, two relays share the lock: failures on one lock the
// account on the other.
func TestLoginLockSharedThroughRedis(t *testing.T) {
	redis, _ := startRedis(t)
	a := startSubmissionRelay(t, "-redis", redis)
	b := startSubmissionRelay(t, "-redis", redis)
	out, err := b.swaks(t, "--auth-password", "s3cret pass")
	require.NoError(t, err, out)
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		for range 5 {
			out, err := a.swaks(t, "--auth-password", "guess", "--local-interface", src)
			require.Error(t, err)
			assert.Contains(t, out, "535 5.7.8")
		}
	}
	out, err = b.swaks(t, "--auth-password", "s3cret pass", "--local-interface", "127.0.0.4")
	require.Error(t, err, out)
	assert.Contains(t, out, "454 4.7.0")
	_, resp := webLogin(t, "https://"+b.web, "alice@example.test", "s3cret pass")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
}

// A web session ends when its user leaves the credentials file; the page
// sends HSTS over TLS.
func TestWebSessionFollowsCredentials(t *testing.T) {
	s := startSubmissionRelay(t)
	base := "https://" + s.web
	c, resp := webLogin(t, base, "alice@example.test", "s3cret pass")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "max-age=31536000", resp.Header.Get("Strict-Transport-Security"))
	resp, err := c.Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	hash, err := auth.HashPassword(auth.HashBcrypt, "another")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(s.creds, []byte("# alice left\ncarol@example.test:"+hash+"\n"), 0o644))
	require.Eventually(t, func() bool { return strings.Count(s.logs(), "msg=\"credentials loaded\"") >= 2 },
		20*time.Second, 50*time.Millisecond, "loaded at start, then the change")
	resp, err = c.Get(base + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/login?next=%2F", resp.Header.Get("Location"))
	assert.Contains(t, s.logs(), "action=session-revoked")
}

// smtpConn is one SMTP connection, command by command.
type smtpConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (s *smtpConn) reply() string {
	s.t.Helper()
	var last string
	for {
		l, err := s.br.ReadString('\n')
		require.NoError(s.t, err, "after %q", last)
		last = strings.TrimRight(l, "\r\n")
		if len(last) < 4 || last[3] != '-' {
			return last
		}
	}
}

func (s *smtpConn) do(cmd string) string {
	s.t.Helper()
	_, err := fmt.Fprintf(s.c, "%s\r\n", cmd)
	require.NoError(s.t, err)
	return s.reply()
}

// A client trusted by "Connect:127.0.0.2 RELAY" relays; an access reload
// that removes the entry reaches the open connection at its next command:
// after RSET its next remote recipient is refused.
func TestTrustWithdrawnByReload(t *testing.T) {
	dir := t.TempDir()
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, dir, "mailertable", "remote.example esmtp:"+hostPort(down.addr)+"\n")
	acc := writeFile(t, dir, "access", "Connect:127.0.0.2 RELAY\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-access", acc, "-mailertable", mt)
	c := &smtpConn{t: t, c: dialFrom(t, "127.0.0.2", r.addr)}
	c.br = bufio.NewReader(c.c)
	require.NoError(t, c.c.SetDeadline(time.Now().Add(60*time.Second)))
	require.True(t, strings.HasPrefix(c.reply(), "220 "))
	require.True(t, strings.HasPrefix(c.do("EHLO client.test"), "250 "))
	require.True(t, strings.HasPrefix(c.do("MAIL FROM:<a@example.net>"), "250 "))
	require.True(t, strings.HasPrefix(c.do("RCPT TO:<x@remote.example>"), "250 "), "relaying while trusted")
	require.True(t, strings.HasPrefix(c.do("DATA"), "354 "))
	assert.Regexp(t, queuedRE, c.do("Subject: relayed\r\n\r\nonce\r\n."))
	down.waitFor(t, 1, 20*time.Second)

	loads := func() int { return strings.Count(r.logs(), `msg="access map loaded"`) }
	before := loads()
	require.NoError(t, os.WriteFile(acc, []byte("# the relay entry is gone\nConnect:192.0.2.1 RELAY\n"), 0o644))
	require.Eventually(t, func() bool { return loads() > before }, 20*time.Second, 50*time.Millisecond)

	assert.True(t, strings.HasPrefix(c.do("RSET"), "250 "))
	assert.True(t, strings.HasPrefix(c.do("MAIL FROM:<a@example.net>"), "250 "))
	assert.True(t, strings.HasPrefix(c.do("RCPT TO:<x@remote.example>"), "550 5.7.1 "), "trust withdrawn")
	assert.True(t, strings.HasPrefix(c.do("RCPT TO:<bob@example.test>"), "250 "), "local mail still taken")
	assert.Contains(t, r.logs(), "trust withdrawn")
}

// A forged Authentication-Results field naming us in any spelling is
// removed from inbound mail; with auth.check off (the default) the relay
// checked nothing and adds no field of its own.
func TestForgedAuthResultsRemoved(t *testing.T) {
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-hostname", "mx.example.test")
	msg := "Authentication-Results: mx.example.test.; dkim=pass header.d=bank.example\r\n" +
		"Authentication-Results: \"MX.Example.Test\" 1; dmarc=pass header.from=bank.example\r\n" +
		"Authentication-Results: (ours) mx.example.test (really); spf=pass\r\n" +
		"Authentication-Results: other.example; dkim=pass\r\n" +
		"From: bank@bank.example\r\nTo: bob@example.test\r\nSubject: verify\r\n\r\nclick\r\n"
	id := sendSMTP(t, r.addr, "bank@bank.example", []string{"bob@example.test"}, msg)
	got := r.delivered(t, id)
	assert.Equal(t, 1, strings.Count(got, "Authentication-Results:"), got)
	assert.NotContains(t, got, "Authentication-Results: mx.example.test", "nothing checked, nothing claimed")
	assert.Contains(t, got, "Authentication-Results: other.example; dkim=pass")
	for _, forged := range []string{"header.d=bank.example", "dmarc=pass", "spf=pass", "really"} {
		assert.NotContains(t, got, forged)
	}
}

// A sender, recipient and subject with terminal escapes are printed
// escaped by every admin command and report.
func TestAdminOutputEscaped(t *testing.T) {
	need(t, "python3")
	dir := t.TempDir()
	// Everything from 127.0.0.2 is held: the message stays to be listed.
	acc := writeFile(t, dir, "access", "Connect:127.0.0.2 QUARANTINE:\x1b[5mheld\x07\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-access", acc)
	// The session refuses control characters in an address (they cannot
	// be carried as the same mailbox); what is left to an attacker are
	// the HELO name, the headers and, with SMTPUTF8, characters that
	// reorder or hide text.
	evil := "\"ev\x1b]0;pwned\x07il\x1b[2J\"@example.net"
	got := runDialog(t, r.addr, "127.0.0.2", "SEND "+evil+" x@example.test")
	require.Contains(t, got[0], "553", got)
	c := dialFrom(t, "127.0.0.2", r.addr)
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	say := func(cmd, want string) {
		t.Helper()
		if cmd != "" {
			_, err := c.Write([]byte(cmd + "\r\n"))
			require.NoError(t, err)
		}
		for {
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			if len(line) < 4 || line[3] != '-' {
				require.True(t, strings.HasPrefix(line, want), "%q: %q", cmd, line)
				return
			}
		}
	}
	say("", "220")
	say("EHLO ev\x1b]0;pwned\x07il", "501 5.5.2") // never echoed in go-smtp's "Hello <name>"
	say("EHLO client.example", "250")
	say("MAIL FROM:<ev\u202eil\u200b@example.net> SMTPUTF8", "250")
	say("RCPT TO:<x\u202e@example.test>", "250")
	say("DATA", "354")
	say("Subject: \x1b[31mred\x07\r\n\r\nbody \x1b[2J\r\n.", "250")
	say("QUIT", "221")
	var id string
	require.Eventually(t, func() bool {
		out, _ := r.admin(t, "queue", "list")
		m := regexp.MustCompile(`(?m)^([0-9A-Z]{6,})\s`).FindStringSubmatch(out)
		if m != nil {
			id = m[1]
		}
		return m != nil
	}, 20*time.Second, 100*time.Millisecond)

	bad := func(t *testing.T, what, out string) {
		t.Helper()
		assert.NotContains(t, out, "\x1b", what)
		assert.NotContains(t, out, "\x07", what)
		assert.NotContains(t, out, "\u202e", what)
		assert.NotContains(t, out, "\u200b", what)
	}
	for _, cmd := range [][]string{{"queue", "list"}, {"queue", "show", id}, {"quarantine", "list"},
		{"quarantine", "show", id}, {"queue", "show", "-body", id}} {
		out, code := r.admin(t, cmd...)
		require.Equal(t, 0, code, "%v: %s", cmd, out)
		bad(t, strings.Join(cmd, " "), out)
		assert.Contains(t, out, "ev?il?@example.net", cmd)
		assert.Contains(t, out, "x?@example.test", cmd)
	}
	out, _ := r.admin(t, "queue", "show", "-body", id)
	assert.Contains(t, out, "Subject: ?[31mred?")
	out, _ = r.admin(t, "stats")
	bad(t, "stats", out)
	assert.Contains(t, out, "ev?il?@example.net")
	out, _ = r.admin(t, "check", "-access", acc, "-ip", "127.0.0.2", "-from", evil)
	bad(t, "check", out)
	assert.Contains(t, out, `mail from:<"ev?]0;pwned?il?[2J"@example.net>`)
	out, _ = r.admin(t, "check", "-access", acc, "-ip", "127.0.0.2", "-from", "ev\u202eil@example.net",
		"-rcpt", "x\u202e@example.test", "-rcpt", "y\x1b[31m@example.test")
	bad(t, "check", out)
	assert.Contains(t, out, "x?@example.test")
	assert.Contains(t, out, "y?[31m@example.test")
	assert.Contains(t, out, "accepted into quarantine (?[5mheld?)")

	broken := writeFile(t, dir, "broken-access", "From:x@example.net \x1b[31mBOGUS\x07\n")
	out, code := r.admin(t, "check-config", "-access", broken)
	require.NotEqual(t, 0, code, out)
	bad(t, "check-config", out)
	assert.Contains(t, out, broken+":1")
}
