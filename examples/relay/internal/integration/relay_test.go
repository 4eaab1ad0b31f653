package integration

import (
	"bufio"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var queuedRE = regexp.MustCompile(`250 2\.0\.0 Ok: queued as ([0-9A-Z]+)`)

// The newcomer's first run: swaks against the relay on its built-in
// defaults, and the message lands in the demo domain's Maildir.
func TestSwaksAgainstDefaults(t *testing.T) {
	swaks := need(t, "swaks")
	r := startRelay(t) // no flags: 127.0.0.1:2525, example.test, ./postern-spool
	require.Equal(t, "127.0.0.1:2525", r.addr)
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "alice@example.net",
		"--to", "bob@example.test", "--header", "Subject: integration", "--body", "Hello from swaks").CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m, string(out))
	for _, want := range []string{"<-  220 ", "-> EHLO", "<-  250 2.0.0 Roger", "<-  250 2.0.0 I'll make sure", "<-  354"} {
		assert.Contains(t, string(out), want)
	}
	msg := r.delivered(t, m[1])
	assert.Contains(t, msg, "Return-Path: <alice@example.net>")
	assert.Contains(t, msg, "Received: from ")
	assert.Contains(t, msg, "Subject: integration\n", "Maildir files have LF line ends")
	assert.Contains(t, msg, "Hello from swaks")
	assert.Contains(t, r.logs(), "queue_id="+m[1])
}

// Greet pause over real TCP: an early talker is refused and dropped, a
// patient client is greeted after the pause, an exempt one at once.
func TestGreetPauseOverTCP(t *testing.T) {
	dir := t.TempDir()
	acc := writeFile(t, dir, "access", "GreetPause:127.0.0.3 0\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-trusted", "127.0.0.1", "-greet-pause", "3s", "-access", acc)

	// Patient client from 127.0.0.2: waits, then is greeted.
	// start is taken before the dial, so it precedes the server's accept
	// and the pause that begins there.
	start := time.Now()
	patient := dialFrom(t, "127.0.0.2", r.addr)
	bannerCh := make(chan string, 1)
	go func() {
		_ = patient.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, _ := bufio.NewReader(patient).ReadString('\n')
		bannerCh <- line
	}()

	// Exempt clients (trusted 127.0.0.1, and 127.0.0.3 by GreetPause: 0)
	// are greeted while the patient one still waits.
	for _, src := range []string{"127.0.0.1", "127.0.0.3"} {
		c := dialFrom(t, src, r.addr)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(line, "220 "), line)
		select {
		case b := <-bannerCh:
			t.Fatalf("patient client greeted before exempt %s: %q", src, b)
		default:
		}
	}

	// Early talker: speaks before the banner, gets 554 5.5.1 and is closed.
	early := dialFrom(t, "127.0.0.2", r.addr)
	_, err := early.Write([]byte("EHLO impatient.test\r\n"))
	require.NoError(t, err)
	got := readAll(early, 30*time.Second)
	assert.True(t, strings.HasPrefix(got, "554 5.5.1 "), "%q", got)
	assert.NotContains(t, got, "220 ")

	b := <-bannerCh
	assert.True(t, strings.HasPrefix(b, "220 "), b)
	assert.GreaterOrEqual(t, time.Since(start), 3*time.Second, "greeted before the pause ended")
}

// The site's sendmail access file, unchanged, through the running relay.
func TestSendmailAccessFile(t *testing.T) {
	need(t, "python3")
	acc, err := filepath.Abs(filepath.Join("testdata", "sendmail-site.access"))
	require.NoError(t, err)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-domains", "nix.co.jj", "-access", acc)
	// 127.0.0.2 is an outside client; 127.0.0.1 is "127.0.0.1 RELAY".
	outside := runDialog(t, r.addr, "127.0.0.2",
		"MAIL FROM:<spammer@ube.com>",
		"MAIL FROM:<someone@spammers.net>",
		"MAIL FROM:<someone@mx.spammers.net>",
		"MAIL FROM:<bogus_user@anywhere.example>",
		"MAIL FROM:<x@bogus.example.gr.jp>",
		"MAIL FROM:<junk@other.example.gr.jp>",
		"MAIL FROM:<friend@example.org>",
		"RCPT TO:<user@nix.co.jj>",
		"RCPT TO:<user@sub.nix.co.jj>",
		"RCPT TO:<user@elsewhere.example>",
		"RCPT TO:<bogus_user@nix.co.jj>",
		"RSET",
		"MAIL FROM:<friend@example.org>",
		"RCPT TO:<baka@nix.co.jj>",
	)
	want := []string{
		"551 5.7.1 Relay denied",
		"550 5.7.1",
		"550 5.7.1",
		"550 5.7.1",
		"550 5.0.0 Bogus host",
		"550 5.0.0 Mailbox unavailable",
		"250 ",
		"250 ",
		"550 5.7.1", // To:nix.co.jj RELAY names the domain, not sub.nix.co.jj
		"550 5.7.1",
		"550 5.2.1",
		"250 ",
		"250 ",
		"250 ",
	}
	require.Len(t, outside, len(want))
	for i, w := range want {
		assert.True(t, strings.HasPrefix(outside[i], w), "line %d: want %q, got %q", i, w, outside[i])
	}
	// From 127.0.0.1 (untagged "127.0.0.1 RELAY") relaying is allowed.
	local := runDialog(t, r.addr, "127.0.0.1", "MAIL FROM:<a@nix.co.jj>", "RCPT TO:<user@elsewhere.example>")
	assert.True(t, strings.HasPrefix(local[1], "250 "), local[1])

	// DISCARD on To: claims delivery and drops the whole message.
	before := r.countDelivered(t)
	res := runDialog(t, r.addr, "127.0.0.2", "SEND friend@example.org baka@nix.co.jj,user@nix.co.jj")
	assert.Equal(t, "SENT []", res[0])
	res = runDialog(t, r.addr, "127.0.0.2", "SEND friend@example.org postmaster@nix.co.jj")
	assert.Equal(t, "SENT []", res[0])
	assert.Equal(t, before, r.countDelivered(t), "discarded mail is not spooled")
	res = runDialog(t, r.addr, "127.0.0.2", "SEND friend@example.org user@nix.co.jj")
	assert.Equal(t, "SENT []", res[0])
	assert.Equal(t, before+1, r.countDelivered(t))
}

// No open relay: every classic trick from an outside client is refused.
func TestNoOpenRelay(t *testing.T) {
	need(t, "python3")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-domains", "example.test")
	tricks := []string{
		"user@remote.example",
		"user%remote.example@example.test",
		"remote.example!user@example.test",
		"@example.test:user@remote.example",
		"@example.test,@other.example:user@remote.example",
		`"user@remote.example"@example.test`,
		`"user%remote.example"@example.test`,
		"user@remote.example@example.test",
		"user@[192.0.2.1]",
		"user@[127.0.0.1]",
		"user@[IPv6:::1]",
		"user@remote.example.",
		"user@REMOTE.EXAMPLE",
		"user@example.test.remote.example",
		"user@remote-example.test",
		"user@sub.example.test",
		"user@localhost",
		"user@example.test@remote.example",
		"remote.example!user",
		"user%remote.example",
	}
	// A few tricks per session: each refusal counts towards the error
	// limit, which would slow the dialogue and then end it.
	for i := 0; i < len(tricks); i += 5 {
		batch := tricks[i:min(i+5, len(tricks))]
		cmds := []string{"MAIL FROM:<stranger@outside.example>"}
		for _, a := range batch {
			cmds = append(cmds, "RCPT TO:<"+a+">")
		}
		got := runDialog(t, r.addr, "127.0.0.2", cmds...)
		require.Len(t, got, len(cmds))
		assert.True(t, strings.HasPrefix(got[0], "250"), got[0])
		for j, a := range batch {
			assert.Regexp(t, `^5\d\d 5\.\d\.\d`, got[j+1], "relay trick %q must be refused", a)
		}
	}
	cmds := []string{"MAIL FROM:<stranger@outside.example>", "RCPT TO:<user@example.test>",
		"RCPT TO:<User@EXAMPLE.TEST.>", "RCPT TO:<Postmaster>", "RCPT TO:<postmaster@example.test>"}
	got := runDialog(t, r.addr, "127.0.0.2", cmds...)
	for _, line := range got {
		assert.True(t, strings.HasPrefix(line, "250 "), "local recipient refused: %q", line)
	}
	// The trusted client may relay.
	got = runDialog(t, r.addr, "127.0.0.1", "MAIL FROM:<me@example.test>", "RCPT TO:<user@remote.example>")
	assert.True(t, strings.HasPrefix(got[1], "250 "), got[1])
}

// A client that opens a thousand connections and goes silent gets 50 (the
// per-client limit, Postfix's default) and 421 for the rest; other clients
// are served meanwhile. Bad input gets proper replies.
func TestSilentFloodAndBadInput(t *testing.T) {
	swaks := need(t, "swaks")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1")
	var conns []net.Conn
	for i := 0; i < 1000; i++ {
		conns = append(conns, dialFrom(t, "127.0.0.2", r.addr))
	}
	refused := 0
	for _, c := range conns[50:] {
		if got := readAll(c, 10*time.Second); strings.HasPrefix(got, "421 4.7.0 ") {
			refused++
		}
	}
	assert.Equal(t, 950, refused)
	out, err := exec.Command(swaks, "--server", r.addr, "--to", "x@example.test", "--from", "y@example.net").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Regexp(t, queuedRE, string(out))
	other := dialFrom(t, "127.0.0.3", r.addr)
	_ = other.SetReadDeadline(time.Now().Add(10 * time.Second))
	banner, _ := bufio.NewReader(other).ReadString('\n')
	assert.True(t, strings.HasPrefix(banner, "220 "), banner)

	c := dialFrom(t, "127.0.0.1", r.addr)
	br := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line := func() string { l, _ := br.ReadString('\n'); return l }
	assert.True(t, strings.HasPrefix(line(), "220 "))
	for _, tc := range []struct{ send, want string }{
		{"EHLO x\r\n", "250"},
		{"XYZZY\r\n", "500 5.5.2"},
		{"NOOP\x00\r\n", "500 5.5.2"},
		{"MAIL FROM:<" + strings.Repeat("a", 3000) + "@x.test>\r\n", "500 5.5.2"},
		{"RCPT TO:<a@example.test>\r\n", "502 5.5.1"},
		{"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\n", "250"},
	} {
		_, err := c.Write([]byte(tc.send))
		require.NoError(t, err)
		l := line()
		for strings.HasPrefix(l, "250-") {
			l = line()
		}
		assert.True(t, strings.HasPrefix(l, tc.want), "after %q: %q", tc.send, l)
	}
}

// runDialog runs testdata/dialog.py from src and returns one reply line
// per command.
func runDialog(t *testing.T, addr, src string, cmds ...string) []string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	script, err := filepath.Abs(filepath.Join("testdata", "dialog.py"))
	require.NoError(t, err)
	cmd := exec.Command("python3", script, host, port, src)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}
