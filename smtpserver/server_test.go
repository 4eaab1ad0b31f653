package smtpserver

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
)

func TestTransactionQueued(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h})
	c := dial(t, addr)
	ehlo := c.greet()
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES", "SIZE 10485760", "CHUNKING"} {
		assert.Contains(t, ehlo.Lines, ext)
	}
	expect(t, c.cmd("MAIL FROM:<a@example.org> SIZE=100 RET=HDRS ENVID=env+2B1"), "250 2.0.0")
	expect(t, c.cmd("RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40orig.example"), "250 2.0.0")
	expect(t, c.cmd("DATA"), "354")
	c.send("Subject: hi\r\n\r\nline one\r\n..dot\r\n.\r\n")
	r := c.reply()
	expect(t, r, "250 2.0.0 Ok: queued as Q")
	expect(t, c.cmd("QUIT"), "221")

	msgs := h.all()
	require.Len(t, msgs, 1)
	m := msgs[0]
	assert.Equal(t, "a@example.org", m.txn.From)
	assert.Equal(t, "HDRS", m.txn.Mail.Ret)
	assert.Equal(t, "env+1", m.txn.Mail.EnvID)
	assert.Equal(t, int64(100), m.txn.Mail.Size)
	require.Len(t, m.txn.Rcpts, 1)
	assert.Equal(t, []string{"SUCCESS", "FAILURE"}, m.txn.Rcpts[0].Notify)
	assert.Equal(t, "b@orig.example", m.txn.Rcpts[0].ORcpt)
	assert.Equal(t, "RFC822", m.txn.Rcpts[0].ORcptType)
	data := string(m.data)
	assert.True(t, strings.HasPrefix(data, "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Postern) with ESMTP id "), data)
	assert.Contains(t, data, "\tfor <b@example.net>; ")
	assert.True(t, strings.HasSuffix(data, "Subject: hi\r\n\r\nline one\r\n.dot\r\n"), data)
	assert.Equal(t, "Q"+m.txn.ID, strings.TrimPrefix(r.Text(), "Ok: queued as "))
}

func TestBarePostmaster(t *testing.T) {
	h := &memHandoff{}
	var seen []string
	pol := postern.RcptFunc("record", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
		seen = append(seen, r.Addr)
		return postern.Pass, nil
	})
	_, addr := startServer(t, Config{Handoff: h, Policy: pol})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<>"), "250")
	// RFC 5321 §4.5.1: Postmaster without a domain must be accepted;
	// go-smtp passes it on as given.
	r := c.cmd("RCPT TO:<Postmaster>")
	expect(t, r, "250 2.0.0")
	assert.Contains(t, r.Text(), "<Postmaster>")
	expect(t, c.cmd("RCPT TO:<postmaster> NOTIFY=NEVER"), "250")
	// Other domainless recipients stay refused, and the domain the edge
	// once added is an ordinary one.
	expect(t, c.cmd("RCPT TO:<root>"), "501 5.5.2")
	expect(t, c.cmd("RCPT TO:<postmaster@postmaster.invalid>"), "250")
	assert.Equal(t, []string{"Postmaster", "postmaster", "postmaster@postmaster.invalid"}, seen)
	// A reverse path always has a domain.
	expect(t, c.cmd("RSET"), "250")
	expect(t, c.cmd("MAIL FROM:<Postmaster>"), "501")
}

func TestLimits(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h, MaxMessageBytes: 1000, MaxRecipients: 2, MaxHeaderBytes: 600})

	t.Run("declared size", func(t *testing.T) {
		c := dial(t, addr)
		c.greet()
		expect(t, c.cmd("MAIL FROM:<a@x.test> SIZE=5000"), "552 5.3.4")
	})
	t.Run("actual size", func(t *testing.T) {
		c := dial(t, addr)
		c.greet()
		expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
		expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
		expect(t, c.cmd("DATA"), "354")
		c.send("Subject: big\r\n\r\n" + strings.Repeat("0123456789\r\n", 200) + ".\r\n")
		expect(t, c.reply(), "552 5.3.4")
		expect(t, c.cmd("NOOP"), "250") // the session goes on
	})
	t.Run("header size", func(t *testing.T) {
		c := dial(t, addr)
		c.greet()
		expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
		expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
		expect(t, c.cmd("DATA"), "354")
		c.send("X-Big: " + strings.Repeat("a", 700) + "\r\n\r\nbody\r\n.\r\n")
		expect(t, c.reply(), "552 5.3.4")
	})
	t.Run("recipients", func(t *testing.T) {
		c := dial(t, addr)
		c.greet()
		expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
		expect(t, c.cmd("RCPT TO:<1@y.test>"), "250")
		expect(t, c.cmd("RCPT TO:<2@y.test>"), "250")
		expect(t, c.cmd("RCPT TO:<3@y.test>"), "452 4.5.3")
	})
	assert.Empty(t, h.all())
}

func TestBadInput(t *testing.T) {
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, MaxCommandLine: 600})
	tests := []struct {
		name, send, want string
	}{
		{"unknown verb", "FOOBAR x\r\n", "500 5.5.2"},
		{"empty line", "\r\n", "500 5.5.2"},
		{"NUL byte", "NOOP\x00x\r\n", "500 5.5.2"},
		{"over-long line", "NOOP " + strings.Repeat("x", 2000) + "\r\n", "500 5.5.2"},
		{"MAIL before EHLO", "MAIL FROM:<a@b.c>\r\n", "502 5.5.1"},
		{"bad MAIL syntax", "EHLO x\r\nMAIL FROM:a\r\n", "501 5.5.2"},
		{"RCPT before MAIL", "EHLO x\r\nRCPT TO:<a@b.c>\r\n", "502 5.5.1"},
		{"DATA before RCPT", "EHLO x\r\nMAIL FROM:<>\r\nDATA\r\n", "502 5.5.1"},
		{"unknown MAIL parameter", "EHLO x\r\nMAIL FROM:<> FOO=BAR\r\n", "500 5.5.4"},
		{"bare LF command", "NOOP\n", "250 2.0.0"},
		{"EXPN", "EXPN staff\r\n", "502 5.5.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			expect(t, c.reply(), "220")
			c.send(tt.send)
			r := c.reply()
			for strings.HasPrefix(tt.send, "EHLO") && r.Code == 250 {
				r = c.reply() // skip the replies to the set-up commands
			}
			expect(t, r, tt.want)
			expect(t, c.cmd("NOOP"), "250") // still served
		})
	}
}

func TestHardErrorLimit(t *testing.T) {
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, SoftErrorLimit: 2, HardErrorLimit: 5})
	c := dial(t, addr)
	expect(t, c.reply(), "220")
	for range 4 {
		expect(t, c.cmd("BOGUS"), "500 5.5.2")
	}
	expect(t, c.cmd("BOGUS"), "500 5.5.2")
	expect(t, c.reply(), "421 4.7.0")
	assert.True(t, c.closed())
}

func TestErrorCountResetByDelivery(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h, SoftErrorLimit: 2, HardErrorLimit: 3})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("BOGUS"), "500")
	expect(t, c.cmd("BOGUS"), "500")
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
	expect(t, c.cmd("DATA"), "354")
	expect(t, c.cmd("Subject: x\r\n\r\nbody\r\n."), "250")
	expect(t, c.cmd("BOGUS"), "500")
	expect(t, c.cmd("BOGUS"), "500")
	expect(t, c.cmd("NOOP"), "250") // two errors since the delivery: below the limit
}

// A bare LF never ends DATA, whatever follows it: otherwise a sender could
// smuggle a second message through a relay that passes bare LF on.
func TestNoSmuggling(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h})
	for _, eod := range []string{"\n.\n", "\n.\r\n", "\r\n.\n"} {
		t.Run(fmt.Sprintf("%q", eod), func(t *testing.T) {
			before := len(h.all())
			c := dial(t, addr)
			c.greet()
			expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
			expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
			expect(t, c.cmd("DATA"), "354")
			c.send("Subject: one\r\n\r\nfirst" + eod + "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n")
			expect(t, c.reply(), "250 2.0.0")
			expect(t, c.cmd("QUIT"), "221")
			msgs := h.all()
			require.Len(t, msgs, before+1, "exactly one message")
			data := string(msgs[len(msgs)-1].data)
			assert.Contains(t, data, "MAIL FROM:<evil@x.test>\r\n")
			assert.NotContains(t, data, "first\n", "bare LF normalised")
		})
	}
}

func TestPolicyVerdicts(t *testing.T) {
	h := &memHandoff{}
	chain, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{
		{Filter: postern.ConnectFunc("conn", func(_ context.Context, c *postern.Conn) (postern.Verdict, error) {
			return postern.Pass, nil
		})},
		{Filter: postern.MailFunc("mail", func(_ context.Context, _ *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
			if t.From == "spam@x.test" {
				return postern.Rejected(550, postern.ESC(5, 7, 1), "Go away", "test"), nil
			}
			return postern.Pass, nil
		})},
		{Filter: postern.RcptFunc("rcpt", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
			switch r.Addr {
			case "drop@y.test":
				return postern.Discarded("test"), nil
			case "later@y.test":
				return postern.TempFailed(450, postern.ESC(4, 2, 0), "Mailbox busy", "test"), nil
			case "broken@y.test":
				return postern.Pass, errors.New("dns down")
			}
			return postern.Pass, nil
		})},
		{Filter: postern.DataFunc("data", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, m *postern.Message) (postern.Verdict, error) {
			if m.Header().Get("Subject") == "virus" {
				return postern.Rejected(554, postern.ESC(5, 7, 0), "Virus found", "test"), nil
			}
			m.AddHeader("X-Checked", "yes")
			return postern.Pass, nil
		})},
	}})
	require.NoError(t, err)
	_, addr := startServer(t, Config{Handoff: h, Policy: chain})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<spam@x.test>"), "550 5.7.1 Go away")
	expect(t, c.cmd("MAIL FROM:<ok@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<later@y.test>"), "450 4.2.0 Mailbox busy")
	expect(t, c.cmd("RCPT TO:<broken@y.test>"), "451 4.3.0")
	expect(t, c.cmd("RCPT TO:<a@y.test>"), "250")
	expect(t, c.cmd("DATA"), "354")
	expect(t, c.cmd("Subject: virus\r\n\r\nx\r\n."), "554 5.7.0 Virus found")
	expect(t, c.cmd("MAIL FROM:<ok@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<a@y.test>"), "250")
	expect(t, c.cmd("DATA"), "354")
	expect(t, c.cmd("Subject: fine\r\n\r\nx\r\n."), "250")
	expect(t, c.cmd("MAIL FROM:<ok@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<drop@y.test>"), "250")
	expect(t, c.cmd("DATA"), "354")
	expect(t, c.cmd("Subject: dropped\r\n\r\nx\r\n."), "250 2.0.0")
	msgs := h.all()
	require.Len(t, msgs, 1, "the discarded message is not handed off")
	assert.True(t, strings.HasPrefix(string(msgs[0].data), "X-Checked: yes\r\nReceived: "))
}

func TestConnectReject(t *testing.T) {
	pol := postern.ConnectFunc("deny", func(_ context.Context, c *postern.Conn) (postern.Verdict, error) {
		return postern.Rejected(554, postern.ESC(5, 7, 1), "No thanks", "test"), nil
	})
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Policy: pol})
	c := dial(t, addr)
	expect(t, c.reply(), "554 5.7.1 No thanks")
	assert.True(t, c.closed())
}

func TestAuthRequired(t *testing.T) {
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, RequireAuth: true, Auth: passwords{"u": "p"}, AllowInsecureAuth: true})
	c := dial(t, addr)
	c.greet()
	// RFC 4954 §6: 530 5.7.0, not go-smtp's 502.
	expect(t, c.cmd("MAIL FROM:<u@x.test>"), "530 5.7.0")
	expect(t, c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong"))), "535 5.7.8")
	expect(t, c.cmd("AUTH LOGIN"), "334")
	expect(t, c.cmd(base64.StdEncoding.EncodeToString([]byte("u"))), "334")
	expect(t, c.cmd(base64.StdEncoding.EncodeToString([]byte("p"))), "235 2.7.0")
	expect(t, c.cmd("MAIL FROM:<u@x.test>"), "250")
}

type passwords map[string]string

func (p passwords) CheckPassword(_ context.Context, _ *postern.Conn, u, pw string) error {
	if want, ok := p[u]; ok && want == pw {
		return nil
	}
	return errors.New("bad password")
}

func TestHandoffFailures(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("write: %w", syscall.ENOSPC), "452 4.3.1"},
		{ErrNoSpace, "452 4.3.1"},
		{errors.New("io error"), "451 4.3.0"},
		{postern.NewReply(554, postern.ESC(5, 3, 0), "Nope"), "554 5.3.0 Nope"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, addr := startServer(t, Config{Handoff: &memHandoff{err: tt.err}})
			c := dial(t, addr)
			c.greet()
			expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
			expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
			expect(t, c.cmd("DATA"), "354")
			expect(t, c.cmd("Subject: x\r\n\r\nx\r\n."), tt.want)
		})
	}
}

func TestBDAT(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<Postmaster>"), "250")
	body := "Subject: chunked\r\n\r\nRCPT TO:<Postmaster>\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", 10, body[:10]))
	expect(t, c.reply(), "250")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body)-10, body[10:]))
	expect(t, c.reply(), "250 2.0.0 Ok: queued as")
	msgs := h.all()
	require.Len(t, msgs, 1)
	assert.True(t, strings.HasSuffix(string(msgs[0].data), body), "chunk bytes are not rewritten")
	assert.Equal(t, "Postmaster", msgs[0].txn.Rcpts[0].Addr)
}

// A client that says nothing for CommandTimeout (default 5 minutes,
// RFC 5321 §4.5.3.2.7) is told 421 and disconnected.
func TestCommandTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, l := startPipeServer(t, Config{Handoff: &memHandoff{}})
		c := dialPipe(t, l)
		expect(t, c.reply(), "220")
		start := time.Now()
		expect(t, c.reply(), "421 4.4.2")
		assert.Equal(t, 5*time.Minute, time.Since(start))
		assert.True(t, c.closed())
	})
}

// A session that keeps talking ends at SessionTimeout (default 1 hour).
func TestSessionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, l := startPipeServer(t, Config{Handoff: &memHandoff{}})
		start := time.Now()
		c := dialPipe(t, l)
		expect(t, c.reply(), "220")
		// A NOOP every 4.5 minutes (within CommandTimeout); between them the client reads, as it
		// would with a socket's buffer, so the 421 is taken when it comes.
		var r postern.Reply
		for range 100 {
			require.NoError(t, c.c.SetReadDeadline(time.Now().Add(270*time.Second)))
			var err error
			if r, err = postern.ParseReply(c.br); err == nil {
				break
			}
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.NoError(t, c.c.SetReadDeadline(time.Time{}))
			expect(t, c.cmd("NOOP"), "250")
		}
		expect(t, r, "421 4.4.2")
		assert.Equal(t, time.Hour, time.Since(start))
		assert.True(t, c.closed())
	})
}

func TestShutdownIdle(t *testing.T) {
	h := &memHandoff{}
	srv, addr := startServer(t, Config{Handoff: h})
	idle := dial(t, addr)
	idle.greet()
	busy := dial(t, addr)
	busy.greet()
	expect(t, busy.cmd("MAIL FROM:<a@x.test>"), "250")
	expect(t, busy.cmd("RCPT TO:<b@y.test>"), "250")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	expect(t, idle.reply(), "421 4.3.2")
	// The session in a transaction finishes it.
	expect(t, busy.cmd("DATA"), "354")
	expect(t, busy.cmd("Subject: x\r\n\r\nx\r\n."), "250")
	expect(t, busy.cmd("NOOP"), "421 4.3.2")
	require.NoError(t, <-done)
	assert.Len(t, h.all(), 1)
}

func TestSTARTTLS(t *testing.T) {
	h := &memHandoff{}
	cert := selfSigned(t)
	_, addr := startServer(t, Config{Handoff: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		RequireTLS: true, Auth: passwords{"u": "p"}})
	c := dial(t, addr)
	ehlo := c.greet()
	assert.Contains(t, ehlo.Lines, "STARTTLS")
	for _, l := range ehlo.Lines {
		assert.False(t, strings.HasPrefix(l, "AUTH"), "no AUTH before TLS")
	}
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "530 5.7.0")
	// A command pipelined after STARTTLS in the clear must be dropped.
	c.send("STARTTLS\r\nNOOP\r\n")
	expect(t, c.reply(), "220 2.0.0")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, tc.Handshake())
	assert.False(t, tc.ConnectionState().DidResume)
	c.c, c.br = tc, bufio.NewReader(tc)
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "503 5.5.1") // must greet again
	r := c.cmd("EHLO client.test")
	expect(t, r, "250")
	assert.NotContains(t, r.Lines, "STARTTLS")
	assert.Contains(t, r.Lines, "AUTH PLAIN LOGIN")
	expect(t, c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00p"))), "235")
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
	expect(t, c.cmd("DATA"), "354")
	expect(t, c.cmd("Subject: x\r\n\r\nx\r\n."), "250")
	msgs := h.all()
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0].data), "with ESMTPSA id")
	assert.Contains(t, string(msgs[0].data), "(using TLS 1.3 with cipher ")
	assert.Equal(t, "u", msgs[0].conn.AuthUser)
}

func TestImplicitTLS(t *testing.T) {
	h := &memHandoff{}
	cert := selfSigned(t)
	_, addr := startServer(t, Config{Handoff: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ImplicitTLS: true})
	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	require.NoError(t, err)
	defer tc.Close()
	c := &client{t: t, c: tc, br: bufio.NewReader(tc)}
	ehlo := c.greet()
	assert.NotContains(t, ehlo.Lines, "STARTTLS")
	expect(t, c.cmd("STARTTLS"), "503 5.5.1")
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		DNSNames:     []string{"mx.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestSilentClientsDoNotBlockOthers(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h})
	var silent []net.Conn
	for range 200 {
		s, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		silent = append(silent, s)
	}
	defer func() {
		for _, s := range silent {
			s.Close()
		}
	}()
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
}

// RFC 2920: a client may send a whole group of commands at once; replies
// come in order, and DATA's 354 comes before the body is read.
func TestPipelining(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h, MaxRecipients: 50})
	c := dial(t, addr)
	c.greet()
	c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<bad>\r\nDATA\r\n")
	expect(t, c.reply(), "250 2.0.0 Roger")
	expect(t, c.reply(), "250 2.0.0 I'll make sure <b@y.test>")
	expect(t, c.reply(), "250 2.0.0 I'll make sure <Postmaster>")
	expect(t, c.reply(), "501 5.5.2")
	expect(t, c.reply(), "354")
	c.send("Subject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\n")
	expect(t, c.reply(), "250 2.0.0 Ok: queued as")
	expect(t, c.reply(), "250 2.0.0") // NOOP after the message is a command again
	require.Len(t, h.all(), 1)

	// Abuse: a flood of recipients in one write; the limit holds and the
	// session stays in step.
	var b strings.Builder
	b.WriteString("RSET\r\nMAIL FROM:<a@x.test>\r\n")
	for i := range 60 {
		fmt.Fprintf(&b, "RCPT TO:<r%d@y.test>\r\n", i)
	}
	b.WriteString("NOOP\r\n")
	c.send(b.String())
	expect(t, c.reply(), "250") // RSET
	expect(t, c.reply(), "250") // MAIL
	for i := range 60 {
		r := c.reply()
		if i < 50 {
			expect(t, r, "250")
		} else {
			expect(t, r, "452 4.5.3")
		}
	}
	expect(t, c.reply(), "250 2.0.0") // NOOP
}

// A body sent without waiting for 354, after DATA was refused, is read as
// commands: each line is an error, and the error limit ends the session.
func TestPipelinedBodyAfterRefusedDATA(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h, HardErrorLimit: 5, SoftErrorLimit: 5})
	c := dial(t, addr)
	c.greet()
	c.send("MAIL FROM:<a@x.test>\r\nDATA\r\nSubject: x\r\n\r\nline1\r\nline2\r\nline3\r\n.\r\n")
	expect(t, c.reply(), "250")
	expect(t, c.reply(), "502 5.5.1") // DATA without RCPT
	var last postern.Reply
	for i := 0; i < 10; i++ {
		r, err := postern.ParseReply(c.br)
		if err != nil {
			break
		}
		last = r
	}
	expect(t, last, "421 4.7.0")
	assert.True(t, c.closed())
	assert.Empty(t, h.all())
}

// Session tickets are off unless asked for: some large senders fail
// STARTTLS against Go servers that send them.
func TestSessionTicketsOffByDefault(t *testing.T) {
	cert := selfSigned(t)
	base := &tls.Config{Certificates: []tls.Certificate{cert}}
	srv, err := New(Config{Handoff: &memHandoff{}, TLSConfig: base})
	require.NoError(t, err)
	assert.True(t, srv.tlsConfig.SessionTicketsDisabled)
	assert.False(t, base.SessionTicketsDisabled, "the caller's config is not changed")
	srv, err = New(Config{Handoff: &memHandoff{}, TLSConfig: base, TLSSessionTickets: true})
	require.NoError(t, err)
	assert.False(t, srv.tlsConfig.SessionTicketsDisabled)

	// Over the wire: a TLS 1.3 client with a session cache gets no ticket
	// to resume with (with TLSSessionTickets the second connection does
	// resume).
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, TLSConfig: base})
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c := dial(t, addr)
		c.greet()
		c.send("STARTTLS\r\n")
		expect(t, c.reply(), "220")
		tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, ServerName: "mx.test"})
		require.NoError(t, tc.Handshake())
		c.c, c.br = tc, bufio.NewReader(tc)
		expect(t, c.cmd("EHLO again.test"), "250") // gives the client time to read any ticket
		assert.False(t, tc.ConnectionState().DidResume, "connection %d resumed", i)
	}
}

// Password guessing is slowed by an AuthLimiter: here the real one from
// ratelimit, counting failures per client address.
func TestAuthLimit(t *testing.T) {
	lim, err := ratelimit.NewAuthLimiter(ratelimit.AuthConfig{MaxFailures: 3})
	require.NoError(t, err)
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Auth: passwords{"u": "p"}, AllowInsecureAuth: true, AuthLimit: lim})
	c := dial(t, addr)
	c.greet()
	plain := func(user, pass string) string {
		return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
	}
	for range 3 {
		expect(t, c.cmd(plain("u", "wrong")), "535 5.7.8")
	}
	// Blocked now, even with the right password, and from a new session.
	expect(t, c.cmd(plain("u", "p")), "454 4.7.0")
	c2 := dial(t, addr)
	c2.greet()
	expect(t, c2.cmd(plain("u", "p")), "454 4.7.0")
}

// A Discard or Quarantine decided at connect applies to every transaction
// of the connection.
func TestConnectDiscardAndQuarantine(t *testing.T) {
	for _, v := range []postern.Verdict{postern.Discarded("bad neighbourhood"), postern.Quarantined("suspicious")} {
		t.Run(v.Action.String(), func(t *testing.T) {
			h := &memHandoff{}
			pol := postern.ConnectFunc("mark", func(context.Context, *postern.Conn) (postern.Verdict, error) { return v, nil })
			_, addr := startServer(t, Config{Handoff: h, Policy: pol})
			c := dial(t, addr)
			c.greet()
			for range 2 {
				expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
				expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
				expect(t, c.cmd("DATA"), "354")
				expect(t, c.cmd("Subject: x\r\n\r\nx\r\n."), "250 2.0.0 Ok: queued as")
			}
			msgs := h.all()
			if v.Action == postern.Discard {
				assert.Empty(t, msgs)
				return
			}
			require.Len(t, msgs, 2)
			for _, m := range msgs {
				assert.Equal(t, "suspicious", m.txn.Quarantine)
			}
		})
	}
}

// The transaction observer sees each transaction that reached the end of
// DATA once, with the outcome the client was told.
func TestTxnObserver(t *testing.T) {
	var mu sync.Mutex
	var got []TxnResult
	obs := func(_ context.Context, r TxnResult) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
	}
	pol := postern.DataFunc("content", func(_ context.Context, _ *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
		switch t.Rcpts[0].Addr {
		case "spam@y.test":
			return postern.Rejected(550, postern.ESC(5, 7, 1), "spam", "score 20"), nil
		case "drop@y.test":
			return postern.Discarded("dropped"), nil
		case "hold@y.test":
			return postern.Quarantined("held"), nil
		}
		return postern.Pass, nil
	})
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Policy: pol, TxnObserver: obs})
	c := dial(t, addr)
	c.greet()
	for _, tc := range []struct{ rcpt, reply string }{{"ok@y.test", "250"}, {"spam@y.test", "550"},
		{"drop@y.test", "250"}, {"hold@y.test", "250"}} {
		expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
		expect(t, c.cmd("RCPT TO:<"+tc.rcpt+">"), "250")
		expect(t, c.cmd("DATA"), "354")
		expect(t, c.cmd("Subject: x\r\n\r\nx\r\n."), tc.reply)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 4)
	for i, want := range []struct {
		outcome string
		code    int
	}{{"queued", 250}, {"reject", 550}, {"discard", 250}, {"quarantine", 250}} {
		assert.Equal(t, want.outcome, got[i].Outcome)
		assert.Equal(t, want.code, got[i].Code)
		assert.NotZero(t, got[i].Size)
		assert.Equal(t, "a@x.test", got[i].Txn.From)
	}
	assert.NotEmpty(t, got[0].QueueID)
	assert.Empty(t, got[1].QueueID)
}

// A client that goes away inside the last BDAT chunk has not sent a
// message: nothing may be handed off (go-smtp alone would take the EOF
// for the chunk's end).
func TestBDATTruncatedByEOF(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<b@y.test>"), "250")
	c.send("BDAT 100 LAST\r\nSubject: ")
	require.NoError(t, c.c.(*net.TCPConn).CloseWrite())
	// The server closes the connection without a 250.
	rest, _ := io.ReadAll(c.br)
	assert.NotContains(t, string(rest), "250 2.0.0 Ok: queued")
	assert.Empty(t, h.all(), "a truncated chunk is not a message")
}

// Paths longer than RFC 5321 allows are refused, so no reply line (go-smtp
// repeats the sender in its 250) grows past 512 octets.
func TestAddressTooLong(t *testing.T) {
	_, addr := startServer(t, Config{Handoff: &memHandoff{}})
	c := dial(t, addr)
	c.greet()
	long := strings.Repeat("a", 250) + "@x.test"
	expect(t, c.cmd("MAIL FROM:<"+long+">"), "501 5.1.7")
	expect(t, c.cmd("MAIL FROM:<a@x.test>"), "250")
	expect(t, c.cmd("RCPT TO:<"+long+">"), "501 5.1.3")
	expect(t, c.cmd("RCPT TO:<"+strings.Repeat("b", 240)+"@y.test>"), "250")
}

// downChecker is a PasswordChecker whose directory is down.
type downChecker struct{}

func (downChecker) CheckPassword(context.Context, *postern.Conn, string, string) error {
	return fmt.Errorf("directory: %w", postern.NewReply(451, postern.ESC(4, 3, 0), "directory unavailable"))
}

// A checker that cannot tell answers 454 4.7.0, and the failure is not
// counted: an outage must not lock users out.
func TestAuthCheckerUnavailable(t *testing.T) {
	lim, err := ratelimit.NewAuthLimiter(ratelimit.AuthConfig{MaxFailures: 2})
	require.NoError(t, err)
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Auth: downChecker{}, AllowInsecureAuth: true, AuthLimit: lim})
	c := dial(t, addr)
	c.greet()
	plain := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00u\x00p"))
	for range 4 {
		expect(t, c.cmd(plain), "454 4.7.0 Temporary authentication failure")
	}
	v := lim.CheckAuth(context.Background(), "ip:127.0.0.1")
	assert.Equal(t, postern.Continue, v.Action, "nothing counted")
}
