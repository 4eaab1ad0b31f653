package smtpserver

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// FuzzDialog feeds arbitrary client bytes to the server: it must never
// panic or hang, and must close the session when the client is done.
func FuzzDialog(f *testing.F) {
	seeds := []string{
		"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nBDAT 5 LAST\r\nabcdeQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<d@e.f> NOTIFY=SUCCESS ORCPT=rfc822;x+40y\r\nDATA\r\nx\n.\nMAIL FROM:<evil>\r\n.\r\n",
		"EHLO x\r\nAUTH PLAIN AHUAcA==\r\nAUTH LOGIN\r\ndQ==\r\ncA==\r\nSTARTTLS\r\n",
		"\x00\x01\x02\r\n\r\n\n\n" + "NOOP\r\nRSET\r\nVRFY x\r\nEXPN y\r\nHELP\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 3\r\nabcBDAT x\r\nRSET\r\nBDAT 0 LAST\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	h := &memHandoff{}
	srv, err := New(Config{Hostname: "fuzz.test", Handoff: h, Auth: passwords{"u": "p"}, AllowInsecureAuth: true,
		MaxMessageBytes: 4096, CommandTimeout: 2 * time.Second, ErrorSleep: -1})
	require.NoError(f, err)
	l := testutil.NewPipeListener("127.0.0.1:25")
	go srv.Serve(l)
	defer srv.Close()

	f.Fuzz(func(t *testing.T, in []byte) {
		client, err := l.Dial()
		require.NoError(t, err)
		readDone := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client)
			close(readDone)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(in)
		client.Write([]byte("\r\n.\r\nQUIT\r\n"))
		client.Close()
		<-readDone
		// Whatever state the dialogue was left in, the session must end
		// once the client is gone.
		deadline := time.Now().Add(10 * time.Second)
		for srv.openSessions() > 0 {
			if time.Now().After(deadline) {
				t.Fatal("session did not end")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// FuzzAddressRoundTrip is the differential test of envelope addresses
// through go-smtp, which parses them in this server and, through route's
// client, writes them to the next hop. Whatever a client may give in RCPT
// TO, once accepted, reaches the policy in canonical form; its wire form,
// written by go-smtp's client as route writes it (RCPT TO:<%s>), is read
// by a go-smtp server as the very same canonical form, as recipient and as
// sender. So the next hop gets the mailbox the policy judged.
func FuzzAddressRoundTrip(f *testing.F) {
	for _, s := range []string{
		"ceo@example.test", `"ceo"@example.test`, `"ceo(x)"@example.test`, `"a b"@example.test`,
		`"a\"b\\c"@example.test`, `"a@b"@example.test`, "a@b@example.test", `".ceo."@example.test`,
		"@relay.test:ceo@example.test", "Postmaster", "x@[IPv6:2001:DB8::1]", "x@[192.0.2.1]",
		"山田@例え.jp", "ceo@EXAMPLE.test.", "ceo@example.test(x)", `"c\` + "\x01" + `"@x.test`,
		"ceo@example.test> NOTIFY=NEVER", `"\ "@x.test`,
	} {
		f.Add(s)
	}
	rec := &recorder{}
	srv, err := New(Config{Hostname: "fuzz.test", Handoff: &memHandoff{}, Policy: rec, ErrorSleep: -1})
	require.NoError(f, err)
	l := testutil.NewPipeListener("127.0.0.1:25")
	go srv.Serve(l)
	defer srv.Close()

	f.Fuzz(func(t *testing.T, path string) {
		if strings.ContainsAny(path, "\r\n") {
			return // go-smtp's client refuses to write those
		}
		cli, err := l.Dial()
		require.NoError(t, err)
		_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
		c := smtp.NewClient(cli)
		defer c.Close()
		require.NoError(t, c.Hello("client.test"))
		utf8 := &smtp.MailOptions{UTF8: true}
		require.NoError(t, c.Mail("", utf8))
		if err := c.Rcpt(path, nil); err != nil {
			var se *smtp.SMTPError
			require.ErrorAs(t, err, &se, "RCPT TO:<%s>", path)
			require.GreaterOrEqual(t, se.Code, 400, "RCPT TO:<%s>", path)
			return
		}
		_, canon := rec.last()
		a, err := postern.SplitAddress(canon)
		require.NoError(t, err, "accepted %q as %q", path, canon)
		require.Equal(t, canon, a.String(), "policy saw a non-canonical form of %q", path)

		wire := postern.WireAddr(canon)
		require.NoError(t, c.Rcpt(wire, nil), "wire form %q of %q refused", wire, canon)
		_, again := rec.last()
		require.Equal(t, canon, again, "RCPT TO:<%s> (the wire form of %q) read as another mailbox", wire, canon)
		if a.Domain == "" {
			return // the bare Postmaster is a recipient only
		}
		require.NoError(t, c.Reset())
		require.NoError(t, c.Mail(wire, utf8), "MAIL FROM:<%s> refused", wire)
		from, _ := rec.last()
		require.Equal(t, canon, from, "MAIL FROM:<%s> read as another mailbox", wire)
	})
}
