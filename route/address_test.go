package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Addresses are queued in canonical form (the local part unquoted, as
// go-smtp hands it over); the transport writes their wire form, so the
// next hop reads the same mailbox: ceo(x), never ceo with a comment.
func TestQuotedAddressesOnTheWire(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a b@sender.test", "ceo(x)@example.net", `a"b\c@example.net`, "ceo@example.net", ".x@example.net"))
	for _, r := range res {
		require.Equal(t, 250, r.Reply.Code, r.Reply.Error())
	}
	cmds := s.ln.commands()
	for _, want := range []string{
		`MAIL FROM:<"a b"@sender.test> BODY=8BITMIME SIZE=65`,
		`RCPT TO:<"ceo(x)"@example.net>`,
		`RCPT TO:<"a\"b\\c"@example.net>`,
		`RCPT TO:<ceo@example.net>`,
		`RCPT TO:<".x"@example.net>`,
	} {
		assert.Contains(t, cmds, want)
	}
	// go-smtp reads them back as the canonical forms.
	msgs := s.messages()
	require.Len(t, msgs, 1)
	assert.Equal(t, "a b@sender.test", msgs[0].From)
	assert.Equal(t, []string{"ceo(x)@example.net", `a"b\c@example.net`, "ceo@example.net", ".x@example.net"}, msgs[0].To)
}

// LMTP answers per recipient after the data; go-smtp's client keys them
// by the address it wrote, the wire form.
func TestQuotedAddressesLMTP(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{isLMTP: true, lmtp: func(to string) error {
		if to == "full box@store.example" {
			return smtpErr(452, [3]int{4, 2, 2}, "Mailbox full")
		}
		return nil
	}})
	tr := mtTransport(t, "store.example lmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "john smith@store.example", "full box@store.example"))
	assert.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	assert.Equal(t, 452, res[1].Reply.Code, res[1].Reply.Error())
	assert.Contains(t, s.ln.commands(), `RCPT TO:<"john smith"@store.example>`)
}

// The call-ahead probe asks for the mailbox the transport will deliver to.
func TestCallAheadQuoted(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{rcpt: func(to string) error {
		if to == "ceo(x)@nix.co.jj" {
			return nil
		}
		return smtpErr(550, [3]int{5, 1, 1}, "User unknown")
	}})
	v := newTestVerifier(t, "nix.co.jj esmtp:"+hostPort(s.addr)+"\n", VerifierConfig{CallAhead: true})
	r, err := v.Verify(bg, "ceo(x)@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusValid, r.Status)
	assert.Contains(t, s.ln.commands(), `RCPT TO:<"ceo(x)"@nix.co.jj>`)

	r, err = v.Verify(bg, "a b@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusInvalid, r.Status)
	assert.Equal(t, `550 5.1.1 <"a b"@nix.co.jj>: Recipient address rejected: User unknown`, r.Reply.Error())
}

// An address that no wire form carries as the same mailbox never reaches
// a next hop, whatever put it in the queue.
func TestTransportRefusesUncarriableAddresses(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sinkConfig{})
	tr := mtTransport(t, "example.net esmtp:"+hostPort(s.addr)+"\n", TransportConfig{})
	res := tr.Deliver(bg, delivery("a@sender.test", "ceo@example.net(x)", "c\x01eo@example.net", "ok@example.net"))
	assert.Equal(t, 550, res[0].Reply.Code)
	assert.Equal(t, "5.1.3", res[0].Reply.Enhanced.String())
	assert.Equal(t, 550, res[1].Reply.Code)
	assert.Equal(t, 250, res[2].Reply.Code)
	res = tr.Deliver(bg, delivery("a@sender.test(x)", "ok@example.net"))
	assert.Equal(t, "550 5.1.7 bad sender address syntax", res[0].Reply.Error())
	for _, c := range s.ln.commands() {
		assert.NotContains(t, c, "(x)")
		assert.NotContains(t, c, "\x01")
	}
}

// Maildir headers are RFC 5322 addr-specs, quoted as SMTP quotes them.
func TestMaildirHeadersQuoted(t *testing.T) {
	root := t.TempDir()
	tr := mtTransport(t, "local.example local:\n", TransportConfig{MaildirRoot: root})
	res := tr.Deliver(bg, delivery("a b@sender.test", "john smith@local.example"))
	require.Equal(t, 250, res[0].Reply.Code, res[0].Reply.Error())
	files, err := filepath.Glob(filepath.Join(root, "local.example", "john smith", "new", "*"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "Return-Path: <\"a b\"@sender.test>\nDelivered-To: \"john smith\"@local.example\n"), string(b))
}
