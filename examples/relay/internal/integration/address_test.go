package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sinkDump waits for the one smtp-sink dump file in dir that contains
// want and returns it whole.
func sinkDump(t *testing.T, r *relay, dir, want string) string {
	t.Helper()
	var got string
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			// smtp-sink writes the file as the message arrives: wait
			// for its end.
			if s := string(b); strings.Contains(s, want) && strings.Contains(s, "\n\n") && strings.HasSuffix(s, "\n") {
				got = s
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "smtp-sink got no message with %q; relay log:\n%s", want, r.logs())
	return got
}

// argsRE picks smtp-sink's record of the MAIL FROM and RCPT TO arguments
// it received, exactly as written on the wire.
var argsRE = regexp.MustCompile(`(?m)^X-(Mail|Rcpt)-Args: (.*)$`)

func wireArgs(dump string) []string {
	var out []string
	for _, m := range argsRE.FindAllStringSubmatch(dump, -1) {
		out = append(out, m[1]+" "+m[2])
	}
	return out
}

// "Security at the seams", item 2: a quoted local part is one mailbox from
// the client to the next hop. With "To:ceo@example.test REJECT", every
// spelling of ceo@example.test is refused; "ceo(x)"@example.test and
// "a b"@example.test are accepted and reach Postfix's smtp-sink exactly so,
// never as ceo@example.test; what no wire form carries is refused 553; a
// quoted sender gets its notice addressed in wire form.
func TestQuotedAddressesEndToEnd(t *testing.T) {
	need(t, "python3")
	storeAddr, storeDumps := postfixSink(t)
	senderAddr, senderDumps := postfixSink(t)
	refusing := startSink(t, "127.0.0.1:0")
	refusing.setRcpt(func(string) *gosmtp.SMTPError {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	})
	dir := t.TempDir()
	mt := writeFile(t, dir, "mailertable", "example.test esmtp:"+hostPort(storeAddr)+"\n"+
		"sender.example esmtp:"+hostPort(senderAddr)+"\n"+
		"gone.example esmtp:"+hostPort(refusing.addr)+"\n")
	acc := writeFile(t, dir, "access", "To:ceo@example.test REJECT\n")
	// The client is not trusted and nothing checks its sender, so its
	// notices would go to the postmaster: this test is about how they are
	// addressed, and asks for them to go to the sender.
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "",
		"-domains", "example.test,gone.example", "-mailertable", mt, "-access", acc, "-notify-unverified-senders")

	// Spellings of the refused mailbox; each refusal counts against the
	// error limit, so they get a session of their own.
	refused := []string{`"ceo"@example.test`, `"c\eo"@example.test`, `"CEO"@Example.Test`, "ceo@EXAMPLE.TEST.",
		"@relay.example:ceo@example.test"}
	cmds := []string{`MAIL FROM:<"a b"@sender.example>`}
	for _, a := range refused {
		cmds = append(cmds, "RCPT TO:<"+a+">")
	}
	got := runDialog(t, r.addr, "127.0.0.2", cmds...)
	require.Len(t, got, len(cmds))
	assert.True(t, strings.HasPrefix(got[0], "250 "), got[0])
	for i, a := range refused {
		assert.True(t, strings.HasPrefix(got[i+1], "550 5.2.1 "), "RCPT TO:<%s> must be refused as ceo@: %s", a, got[i+1])
	}

	got = runDialog(t, r.addr, "127.0.0.2",
		`MAIL FROM:<"a b"@sender.example>`,
		`RCPT TO:<"ceo(x)"@example.test>`,
		`RCPT TO:<"a b"@example.test>`,
		`RCPT TO:<"a\"b"@example.test>`,
		`RCPT TO:<ceo@example.test(x)>`,
		`RCPT TO:<"x"@gone.example>`,
		"MESSAGE",
	)
	require.Len(t, got, 7)
	for i, want := range []string{"250 ", "250 ", "250 ", "250 ", "553 5.1.3 ", "250 ", "250 2.0.0 Ok: queued as "} {
		assert.True(t, strings.HasPrefix(got[i], want), "line %d: want %q, got %q", i, want, got[i])
	}

	// The store gets the very mailboxes the policy judged, quoted.
	store := sinkDump(t, r, storeDumps, "X-Rcpt-Args:")
	assert.Equal(t, []string{
		`Mail <"a b"@sender.example> BODY=8BITMIME`,
		`Rcpt <"ceo(x)"@example.test>`,
		`Rcpt <"a b"@example.test>`,
		`Rcpt <"a\"b"@example.test>`,
	}, wireArgs(store))
	assert.NotContains(t, store, "<ceo@example.test>")
	assert.NotContains(t, store, "ceo(x)@")

	// gone.example refused "x"@: the sender's notice goes to the sender
	// in wire form, envelope and header alike.
	dsn := sinkDump(t, r, senderDumps, "Final-Recipient:")
	assert.Equal(t, []string{"Mail <> BODY=8BITMIME", `Rcpt <"a b"@sender.example> NOTIFY=NEVER`}, wireArgs(dsn))
	assert.Contains(t, dsn, "\nTo: <\"a\\ b\"@sender.example>\n")
	assert.Contains(t, dsn, "Final-Recipient: rfc822; x@gone.example")
	assert.Contains(t, dsn, "Action: failed")
}

// smtp.quoted_local_parts = "refuse": a local part that needs quotes is
// refused 553 (5.1.7 for the sender, 5.1.3 for a recipient) and says why;
// a needlessly quoted one is the plain mailbox; the bare Postmaster still
// passes, and is delivered.
func TestQuotedLocalPartsRefused(t *testing.T) {
	need(t, "python3")
	down := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	mt := writeFile(t, dir, "mailertable", "example.test esmtp:"+hostPort(down.addr)+"\n")
	cfg := writeFile(t, dir, "relay.toml", "[smtp]\nquoted_local_parts = \"refuse\"\n")
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-mailertable", mt)
	got := runDialog(t, r.addr, "127.0.0.2",
		`MAIL FROM:<"a b"@sender.example>`,
		`MAIL FROM:<"alice"@sender.example>`,
		`RCPT TO:<"ceo(x)"@example.test>`,
		`RCPT TO:<".bob"@example.test>`,
		`RCPT TO:<"bob"@example.test>`,
		"RCPT TO:<Postmaster>",
		"MESSAGE",
	)
	require.Len(t, got, 7)
	assert.True(t, strings.HasPrefix(got[0], "553 5.1.7 "), got[0])
	assert.Contains(t, got[0], "quoted local parts are not accepted")
	assert.True(t, strings.HasPrefix(got[1], "250 "), got[1])
	assert.True(t, strings.HasPrefix(got[2], "553 5.1.3 "), got[2])
	assert.Contains(t, got[2], "quoted local parts are not accepted")
	assert.True(t, strings.HasPrefix(got[3], "553 5.1.3 "), got[3])
	assert.True(t, strings.HasPrefix(got[4], "250 "), got[4])
	assert.True(t, strings.HasPrefix(got[5], "250 "), got[5])
	assert.True(t, strings.HasPrefix(got[6], "250 2.0.0 Ok: queued as "), got[6])
	msgs := down.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, "alice@sender.example", msgs[0].From)
	// The bare Postmaster goes to the postmaster of the first local domain.
	assert.Equal(t, []string{"bob@example.test", "postmaster@example.test"}, msgs[0].Rcpts)
}
