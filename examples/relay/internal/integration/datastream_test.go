package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// rawClient speaks SMTP byte for byte, to send what real clients must not.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, src, addr string) *rawClient {
	c := dialFrom(t, src, addr)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	_, err := rc.c.Write([]byte(s))
	require.NoError(rc.t, err)
}

// replies reads n replies and returns "code enhanced-code" of each.
func (rc *rawClient) replies(n int) []string {
	rc.t.Helper()
	var out []string
	for range n {
		r, err := postern.ParseReply(rc.br)
		require.NoError(rc.t, err, "after %q", out)
		out = append(out, r.Error())
	}
	return out
}

// prefixes checks each reply against its expected start.
func prefixes(t *testing.T, got []string, want ...string) {
	t.Helper()
	require.Len(t, got, len(want), "%q", got)
	for i := range want {
		assert.True(t, strings.HasPrefix(got[i], want[i]), "reply %d: want %q, got %q", i, want[i], got[i])
	}
}

// checkWire checks what the relay sent the next hop: CRLF line ends only,
// and as many CRLF "." CRLF as messages, so that no next hop, however
// lenient about line ends, finds an end of data before the real one.
func checkWire(t *testing.T, wires [][]byte) {
	t.Helper()
	ends, datas := 0, 0
	for _, w := range wires {
		for i, c := range w {
			switch c {
			case '\r':
				require.True(t, i+1 < len(w) && w[i+1] == '\n', "bare CR sent at %d: %q", i, w)
			case '\n':
				require.True(t, i > 0 && w[i-1] == '\r', "bare LF sent at %d: %q", i, w)
			}
		}
		ends += bytes.Count(w, []byte("\r\n.\r\n"))
		datas += bytes.Count(w, []byte("\r\nDATA\r\n"))
	}
	assert.Equal(t, datas, ends, "one end of data per DATA: %q", wires)
}

// The DATA stream of the issue, over the real relay to a real next hop:
// each DATA gets one reply, what follows the end is read as commands, bare
// CR and LF arrive as CRLF, and the next hop sees no early end of data.
func TestDataStreamOverRelay(t *testing.T) {
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(down.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt)

	c := rawDial(t, "127.0.0.2", r.addr)
	prefixes(t, c.replies(1), "220 ")
	c.send("EHLO raw.example\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	prefixes(t, c.replies(4), "250 ", "250 ", "250 ", "354 ")
	// The reported stream: ".\r\r\n" is not an end, ".\r\n" after it is;
	// the commands after it (BDAT included) are commands.
	two := "Subject: two\r\n\r\ntwo\r\n"
	c.send("Subject: one\r\n\r\nline\r\n.\r\r\n.\r\n" +
		"MAIL FROM:<mallory@example.net>\r\nRCPT TO:<carol@example.test>\r\n" +
		fmt.Sprintf("BDAT %d LAST\r\n%s", len(two), two))
	prefixes(t, c.replies(4), "250 2.0.0 Ok: queued as ", "250 ", "250 ", "250 2.0.0 Ok: queued as ")
	// ".\rX" and bare CR around a ".": lines of their own, not an end.
	c.send("MAIL FROM:<alice@example.net>\r\nRCPT TO:<dave@example.test>\r\nDATA\r\n")
	prefixes(t, c.replies(3), "250 ", "250 ", "354 ")
	c.send("Subject: three\r\n\r\nline\r\n.\rX\r\nhello\r.\r\nend\r\n.\r\nQUIT\r\n")
	prefixes(t, c.replies(2), "250 2.0.0 Ok: queued as ", "221 ")

	got := down.waitFor(t, 3, 30*time.Second)
	byRcpt := map[string]string{}
	for _, m := range got {
		require.Len(t, m.Rcpts, 1)
		byRcpt[m.Rcpts[0]] = string(m.Data)
	}
	assert.True(t, strings.HasSuffix(byRcpt["bob@example.test"], "\r\n\r\nline\r\n.\r\n\r\n"), "%q", byRcpt["bob@example.test"])
	assert.True(t, strings.HasSuffix(byRcpt["carol@example.test"], "\r\n"+two), "%q", byRcpt["carol@example.test"])
	assert.True(t, strings.HasSuffix(byRcpt["dave@example.test"], "\r\n\r\nline\r\n.\r\nX\r\nhello\r\n.\r\nend\r\n"), "%q", byRcpt["dave@example.test"])
	assert.NotContains(t, byRcpt["bob@example.test"], "mallory", "the commands after the end are not message text")
	checkWire(t, down.sent())
}

// With smtp.bare_newline = "reject" a message with a bare CR or LF is
// refused after its end, with one reply, and the session goes on.
func TestBareNewlineRejectOverRelay(t *testing.T) {
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(down.addr)+"\n")
	cfg := writeFile(t, t.TempDir(), "relay.toml", "[smtp]\nbare_newline = \"reject\"\n")
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt)

	c := rawDial(t, "127.0.0.2", r.addr)
	prefixes(t, c.replies(1), "220 ")
	txn := "MAIL FROM:<alice@example.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
	c.send("EHLO raw.example\r\n" + txn)
	prefixes(t, c.replies(4), "250 ", "250 ", "250 ", "354 ")
	c.send("Subject: smuggle\r\n\r\nhello\r.\r\nMAIL FROM:<mallory@example.net>\r\n.\r\n")
	prefixes(t, c.replies(1), "550 5.5.2 Error: bare <CR> received")
	c.send("NOOP\n" + txn)
	prefixes(t, c.replies(4), "550 5.5.2 Error: bare <LF> received", "250 ", "250 ", "354 ")
	c.send("Subject: clean\r\n\r\nclean\r\n.\r\nQUIT\r\n")
	prefixes(t, c.replies(2), "250 2.0.0 Ok: queued as ", "221 ")

	// The refused messages got no 250, so they were never queued.
	got := down.waitFor(t, 1, 30*time.Second)
	require.Len(t, got, 1)
	assert.Contains(t, string(got[0].Data), "Subject: clean")
	checkWire(t, down.sent())
}

// Recipients past the limit (1,000) get 452 4.5.3 and do not end the
// session: the message goes to the first 1,000.
func TestTooManyRecipientsOverRelay(t *testing.T) {
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(down.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt)

	c := rawDial(t, "127.0.0.2", r.addr)
	prefixes(t, c.replies(1), "220 ")
	c.send("EHLO raw.example\r\n")
	prefixes(t, c.replies(1), "250 ")
	var b strings.Builder
	b.WriteString("MAIL FROM:<alice@example.net>\r\n")
	for i := range 1100 {
		fmt.Fprintf(&b, "RCPT TO:<r%04d@example.test>\r\n", i)
	}
	b.WriteString("DATA\r\n")
	c.send(b.String()) // pipelined (RFC 2920), as a mailing list sends
	got := c.replies(1 + 1100 + 1)
	want := []string{"250 "}
	for i := range 1100 {
		if i < 1000 {
			want = append(want, "250 ")
		} else {
			want = append(want, "452 4.5.3 ")
		}
	}
	prefixes(t, got, append(want, "354 ")...)
	c.send("Subject: many\r\n\r\nto many\r\n.\r\nNOOP\r\nQUIT\r\n")
	prefixes(t, c.replies(3), "250 2.0.0 Ok: queued as ", "250 ", "221 ")

	var rcpts []string
	deadline := time.Now().Add(60 * time.Second)
	for len(rcpts) < 1000 && time.Now().Before(deadline) {
		rcpts = rcpts[:0]
		for _, m := range down.received() {
			rcpts = append(rcpts, m.Rcpts...)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sort.Strings(rcpts)
	require.Len(t, rcpts, 1000)
	assert.Equal(t, "r0000@example.test", rcpts[0])
	assert.Equal(t, "r0999@example.test", rcpts[999])
}

// firstLine dials addr from src and returns the connection and the first
// line the relay sends ("" if none within 10 s).
func firstLine(t *testing.T, src, addr string) (net.Conn, string) {
	c := dialFrom(t, src, addr)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	_ = c.SetReadDeadline(time.Time{})
	return c, line
}

// floodFrom20 opens n connections from 20 loopback addresses in turn,
// holding them, and returns them with the first line each got.
func floodFrom20(t *testing.T, addr string, n int) ([]net.Conn, []string) {
	var conns []net.Conn
	var lines []string
	for i := range n {
		c, line := firstLine(t, fmt.Sprintf("127.0.0.%d", 2+i%20), addr)
		conns = append(conns, c)
		lines = append(lines, line)
		if line == "" {
			break // a client without an answer: the callers fail on it
		}
	}
	return conns, lines
}

// afterFlood closes the flood and checks that a new client is greeted
// and served again.
func afterFlood(t *testing.T, addr string, conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
	var line string
	require.Eventually(t, func() bool {
		var c net.Conn
		c, line = firstLine(t, "127.0.0.50", addr)
		defer c.Close()
		return strings.HasPrefix(line, "220 ")
	}, 30*time.Second, 100*time.Millisecond, "no banner after the flood: %q", line)
	got := runDialog(t, addr, "127.0.0.51", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.test>")
	assert.True(t, strings.HasPrefix(got[1], "250 "), got[1])
}

// The global connection limit, from RLIMIT_NOFILE: a flood of idle
// connections from 20 addresses (each within its per-client limit of 50)
// fills it, later clients get 421 4.7.0 at once instead of hanging, and
// once the flood leaves new clients are served.
func TestGlobalConnectionLimitOverRelay(t *testing.T) {
	prlimit := need(t, "prlimit")
	const nofile = 256
	r := startRelayVia(t, []string{prlimit, fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"},
		"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1")
	limit := (nofile - 100) / 2 // smtpserver.AutoMaxConnections
	require.Contains(t, r.logs(), fmt.Sprintf("max_connections=%d", limit))

	conns, lines := floodFrom20(t, r.addr, limit+40)
	for i, l := range lines {
		if i < limit {
			require.True(t, strings.HasPrefix(l, "220 "), "connection %d: %q", i, l)
		} else {
			require.True(t, strings.HasPrefix(l, "421 4.7.0 "), "connection %d: %q", i, l)
		}
	}
	afterFlood(t, r.addr, conns)
}

// Out of file descriptors (the limit set above what RLIMIT_NOFILE
// allows): clients are answered 421 4.3.2 from the reserve descriptor,
// none is left without an answer, and the relay goes on accepting.
func TestOutOfDescriptorsOverRelay(t *testing.T) {
	prlimit := need(t, "prlimit")
	r := startRelayVia(t, []string{prlimit, "--nofile=64:64", "--"},
		"-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1", "-max-connections", "1000")
	require.Contains(t, r.logs(), "smtp.max_connections is above what RLIMIT_NOFILE allows")

	conns, lines := floodFrom20(t, r.addr, 100)
	greeted, exhausted := 0, 0
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "220 "):
			require.Zero(t, exhausted, "connection %d greeted after descriptors ran out", i)
			greeted++
		case strings.HasPrefix(l, "421 4.3.2 "):
			exhausted++
		default:
			t.Fatalf("connection %d got %q: a client without an answer", i, l)
		}
	}
	assert.Positive(t, greeted)
	assert.Positive(t, exhausted)
	t.Logf("RLIMIT_NOFILE 64: %d greeted, %d answered 421 4.3.2", greeted, exhausted)
	afterFlood(t, r.addr, conns)
}
