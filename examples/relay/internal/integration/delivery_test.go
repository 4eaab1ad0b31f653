package integration

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// swaks → relay → mailertable → Postfix's smtp-sink.
func TestMailertableToPostfixSink(t *testing.T) {
	swaks := need(t, "swaks")
	addr, dumps := postfixSink(t)
	mt := writeFile(t, t.TempDir(), "mailertable", "# the internal mail store\nnix.co.jj esmtp:"+hostPort(addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-domains", "nix.co.jj", "-mailertable", mt)
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "alice@example.net", "--to", "user@nix.co.jj",
		"--header", "Message-Id: <to-sink@example.net>").CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	// smtp-sink writes its dump file as the message arrives: wait for the
	// whole of it.
	var b []byte
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dumps, "*"))
		if len(files) != 1 {
			return false
		}
		b, _ = os.ReadFile(files[0])
		return strings.Contains(string(b), "This is a test mailing")
	}, 20*time.Second, 50*time.Millisecond, "smtp-sink got nothing; relay log:\n%s", r.logs())
	assert.Contains(t, string(b), "Message-Id: <to-sink@example.net>")
	assert.Contains(t, string(b), m[1], "the Received header names the queue ID")
	// The queue logs the delivery once its result is recorded, a moment
	// after the sink has the message.
	sent := regexp.MustCompile(`queue_id=` + m[1] + ` rcpt=user@nix.co.jj stage=delivery action=sent destination=\S+ relay=\S+ `)
	assert.Eventually(t, func() bool { return sent.MatchString(r.logs()) }, 10*time.Second, 20*time.Millisecond, r.logs())
}

// SMTPUTF8 and DSN parameters given by Python's smtplib reach the next hop.
func TestParametersReachNextHop(t *testing.T) {
	need(t, "python3")
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(down.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt)
	got := runDialog(t, r.addr, "127.0.0.1", "SEND alice@example.net bob@example.test,carol@example.test RET=HDRS+ENVID=abc123")
	require.Equal(t, "SENT []", got[0])
	msgs := down.waitFor(t, 1, 20*time.Second)
	require.Len(t, msgs, 1)
	assert.Equal(t, []string{"bob@example.test", "carol@example.test"}, msgs[0].Rcpts, "one transaction for both")
	assert.Equal(t, gosmtp.DSNReturnHeaders, msgs[0].Mail.Return)
	assert.Equal(t, "abc123", msgs[0].Mail.EnvelopeID)
	assert.NotContains(t, string(msgs[0].Data), "\tfor <", "no 'for' clause with two recipients")
}

// The next hop is down: the message is retried, the sender gets a delay
// notice after the warn time, and once the fallback relay is up it gets
// the message.
func TestDownstreamDownThenFallback(t *testing.T) {
	swaks := need(t, "swaks")
	senders := startSink(t, "127.0.0.1:0") // where notices to the sender go
	dead := freeAddr(t)
	fallback := freeAddr(t)
	mt := writeFile(t, t.TempDir(), "mailertable",
		"remote.example esmtp:"+hostPort(dead)+"\nsender.example esmtp:"+hostPort(senders.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt,
		"-fallback-relay", hostPort(fallback), "-min-backoff", "1s", "-max-backoff", "1s", "-queue-warn", "2s")
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "alice@sender.example", "--to", "bob@remote.example",
		"--header", "Message-Id: <fallback@sender.example>").CombinedOutput()
	require.NoError(t, err, string(out))

	notices := senders.waitFor(t, 1, 30*time.Second)
	n := string(notices[0].Data)
	assert.Equal(t, "", notices[0].From, "notices come from the null sender")
	assert.Contains(t, n, "Action: delayed")
	assert.Contains(t, n, "Final-Recipient: rfc822; bob@remote.example")
	assert.Contains(t, n, "Will-Retry-Until:")
	assert.Regexp(t, `stage=delivery action=deferred`, r.logs())

	fb := startSink(t, fallback)
	got := fb.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, "<fallback@sender.example>", got[0].MessageID())
	assert.Equal(t, []string{"bob@remote.example"}, got[0].Rcpts)
	time.Sleep(500 * time.Millisecond)
	assert.Len(t, senders.received(), 1, "one delay notice, no failure notice")
}

// The next hop refuses a recipient with 5xx: the sender gets a failure
// DSN that Python's email package reads as RFC 3464.
func TestDownstream5xxBouncesWithDSN(t *testing.T) {
	need(t, "python3")
	down := startSink(t, "127.0.0.1:0")
	down.setRcpt(func(a string) *gosmtp.SMTPError {
		if strings.HasPrefix(a, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "nobody: User unknown"}
		}
		return nil
	})
	mt := writeFile(t, t.TempDir(), "mailertable", "remote.example esmtp:"+hostPort(down.addr)+"\nsender.example esmtp:"+hostPort(down.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt)
	// smtplib, without SMTPUTF8 (Go's net/smtp would ask for it, and the
	// notice would then use the RFC 6533 global types).
	got := runDialog(t, r.addr, "127.0.0.1", "SEND alice@sender.example nobody@remote.example,bob@remote.example")
	require.Equal(t, "SENT []", got[0])

	var dsn sunk
	require.Eventually(t, func() bool {
		for _, m := range down.received() {
			if m.From == "" {
				dsn = m
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "no DSN; relay log:\n%s", r.logs())
	assert.Equal(t, []string{"alice@sender.example"}, dsn.Rcpts)
	file := writeFile(t, t.TempDir(), "dsn.eml", string(dsn.Data))
	out, err := exec.Command("python3", "-c", pyReadDSN, file).CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	assert.Equal(t, []string{
		"multipart/report delivery-status",
		"message/delivery-status",
		"Final-Recipient: rfc822; nobody@remote.example",
		"Action: failed",
		"Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1 nobody: User unknown",
	}, lines)
	// bob was delivered; his address is not in the notice.
	assert.NotContains(t, string(dsn.Data), "Final-Recipient: rfc822; bob@remote.example")
}

// pyReadDSN prints what Python's standard email package finds in a DSN.
const pyReadDSN = `
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
print(m.get_content_type(), m.get_param('report-type'))
for part in m.walk():
    if part.get_content_type() == 'message/delivery-status':
        print(part.get_content_type())
        blocks = part.get_payload()
        for b in blocks[1:]:
            for k in ('Final-Recipient', 'Action', 'Status', 'Diagnostic-Code'):
                print('%s: %s' % (k, b[k]))
`

// Crash safety: while smtp-source loads the relay, it is killed with
// SIGKILL and restarted several times; every message a tracked client got
// 250 for arrives downstream (counted by Message-ID).
func TestKillUnderLoadLosesNothing(t *testing.T) {
	source := need(t, "smtp-source")
	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", "example.test esmtp:"+hostPort(down.addr)+"\n")
	dir := t.TempDir()
	args := []string{"-listen", "127.0.0.1:0", "-greet-pause", "0", "-mailertable", mt, "-min-backoff", "1s",
		"-spool", filepath.Join(dir, "spool")}
	acked := map[string]bool{}
	const cycles = 5
	for cycle := range cycles {
		r := startRelay(t, args...)
		// Background load from Postfix's smtp-source: 8 sessions.
		load := exec.Command(source, "-c", "-s", "8", "-m", "2000", "-f", "load@example.net", "-t", "bob@example.test", r.addr)
		require.NoError(t, load.Start())
		// The tracked client: one message per connection, each with its
		// own Message-ID; what got 250 must arrive.
		stop := time.After(time.Duration(300+100*cycle) * time.Millisecond)
	send:
		for i := 0; ; i++ {
			select {
			case <-stop:
				break send
			default:
			}
			id := fmt.Sprintf("<c%d-%d@example.net>", cycle, i)
			msg := "From: tracked@example.net\r\nSubject: crash test\r\nMessage-ID: " + id + "\r\n\r\nbody\r\n"
			if err := smtp.SendMail(r.addr, nil, "tracked@example.net", []string{"bob@example.test"}, []byte(msg)); err == nil {
				acked[id] = true
			}
		}
		require.NoError(t, r.cmd.Process.Kill())
		_ = r.cmd.Wait()
		load.Process.Kill()
		load.Wait()
	}
	require.NotEmpty(t, acked)
	// A last start delivers what the kills left in the queue.
	r := startRelay(t, args...)
	seen := map[string]int{}
	require.Eventually(t, func() bool {
		clear(seen)
		for _, m := range down.received() {
			seen[m.MessageID()]++
		}
		for id := range acked {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, 100*time.Millisecond, "acknowledged messages missing; relay log:\n%s", r.logs())
	dups := 0
	for id := range acked {
		dups += seen[id] - 1
	}
	t.Logf("crash test: %d kills, %d tracked messages acknowledged, all delivered, %d duplicates; %d messages in all at the sink",
		cycles, len(acked), dups, len(down.received()))
}

// Recipient verification by call-ahead: the relay asks the mail store
// behind it and answers 550 5.1.1 at RCPT for a user it does not know,
// instead of accepting and bouncing later.
func TestCallAhead(t *testing.T) {
	need(t, "python3")
	store := startSink(t, "127.0.0.1:0")
	store.setRcpt(func(a string) *gosmtp.SMTPError {
		if strings.HasPrefix(a, "ghost@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	mt := writeFile(t, t.TempDir(), "mailertable", "nix.co.jj esmtp:"+hostPort(store.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-domains", "nix.co.jj", "-mailertable", mt,
		"-callahead", "-trusted", "")
	got := runDialog(t, r.addr, "127.0.0.2", "MAIL FROM:<friend@example.org>", "RCPT TO:<ghost@nix.co.jj>",
		"RCPT TO:<user@nix.co.jj>")
	assert.True(t, strings.HasPrefix(got[1], "550 5.1.1"), got[1])
	assert.True(t, strings.HasPrefix(got[2], "250 "), got[2])
	assert.Empty(t, store.received(), "a probe is not a delivery")
}
