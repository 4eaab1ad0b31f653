package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/auth"
)

func submissionCases() []seamDef {
	const g = "Submission"
	return []seamDef{
		{"10", g, "alice, logged in on 587, sends From: CEO <bob@example.test> (envelope MAIL FROM her own)",
			"553 5.7.1 naming the From header; nothing delivered, nothing signed (her own From: delivered, DKIM-signed)", fromBinding, nil},
		{"11", g, "20 wrong passwords for alice from 4 source addresses (5 each), then the right one from a fifth",
			"535 5.7.8 (or 454 4.7.0 once locked) for the wrong ones; 454 4.7.0 for the right one", loginLock, nil},
		{"12", g, "Connect:127.0.0.2 RELAY removed from the access file while a session from 127.0.0.2 is open; then RSET, RCPT to a remote domain",
			"relays while trusted; after the reload 550 5.7.1; local mail still 250", trustWithdrawn, nil},
	}
}

// selfSigned writes a certificate and key for localhost into dir.
func selfSigned(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if certFile, err = writeFile(dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))); err != nil {
		return "", "", err
	}
	keyFile, err = writeFile(dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile, err
}

var submissionRE = regexp.MustCompile(`msg="submission listening" addr=(\S+)`)

// subRelay is a relay with submission (587: STARTTLS, then AUTH) for
// alice@example.test, who may send as alice@example.test only, with a
// DKIM key for example.test; remote.example goes to a recording sink.
type subRelay struct {
	r    *relayProc
	sub  string
	down *sink
}

const alicePass = "s3cret pass"

func (e *seams) submissionRelay(ctx context.Context) (*subRelay, error) {
	dir, err := e.s.dir("seams-" + e.c.ID)
	if err != nil {
		return nil, err
	}
	cert, key, err := selfSigned(dir)
	if err != nil {
		return nil, err
	}
	hash, err := auth.HashPassword(auth.HashBcrypt, alicePass)
	if err != nil {
		return nil, err
	}
	creds, err := writeFile(dir, "credentials", "alice@example.test:"+hash+"\n")
	if err != nil {
		return nil, err
	}
	senders, err := writeFile(dir, "senders", "alice@example.test: alice@example.test\n")
	if err != nil {
		return nil, err
	}
	keyPEM, _, err := auth.GenerateKey(auth.KeyEd25519, 0)
	if err != nil {
		return nil, err
	}
	dkim, err := writeFile(dir, "dkim.pem", string(keyPEM))
	if err != nil {
		return nil, err
	}
	s := &subRelay{}
	if s.down, err = e.s.startRecordingSink(); err != nil {
		return nil, err
	}
	mt, err := mailertable(dir, map[string]string{"remote.example": s.down.addr})
	if err != nil {
		return nil, err
	}
	if s.r, err = e.startRelayIn(ctx, dir, "-trusted", "", "-mailertable", mt, "-tls-cert", cert, "-tls-key", key,
		"-credentials", creds, "-senders", senders, "-dkim-key", "example.test:mail:"+dkim, "-submission", "127.0.0.1:0",
		"-hostname", "relay.seams.test"); err != nil {
		return nil, err
	}
	m := submissionRE.FindStringSubmatch(s.r.logText())
	if m == nil {
		return nil, fmt.Errorf("no submission listener in the relay's log: %s", s.r.tail())
	}
	s.sub = m[1]
	return s, nil
}

// login connects from src to the submission port, says EHLO, STARTTLS
// and AUTH PLAIN; the error is the relay's refusal.
func (s *subRelay) login(ctx context.Context, src, user, pass string) (*smtp.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.DialContext(ctx, "tcp", s.sub)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true}) // the run's own certificate
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// replyOf writes an SMTP error as the reply line it was: "553 5.7.1 text".
func replyOf(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Sprint(err)
	}
	if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode == (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d %s", se.Code, se.Message)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
}

// submit sends one message as alice and returns the reply to its end of
// data (or to what refused it first).
func (s *subRelay) submit(ctx context.Context, msg string) string {
	c, err := s.login(ctx, "127.0.0.1", "alice@example.test", alicePass)
	if err != nil {
		return replyOf(err)
	}
	defer c.Close()
	if err := c.Mail("alice@example.test", nil); err != nil {
		return replyOf(err)
	}
	if err := c.Rcpt("bob@remote.example", nil); err != nil {
		return replyOf(err)
	}
	w, err := c.Data()
	if err != nil {
		return replyOf(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return replyOf(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return replyOf(err)
	}
	_ = c.Quit()
	return "250 " + resp.StatusText
}

func fromBinding(ctx context.Context, e *seams, c *SeamCase) error {
	s, err := e.submissionRelay(ctx)
	if err != nil {
		return err
	}
	forged := s.submit(ctx, "From: CEO <bob@example.test>\r\nTo: bob@remote.example\r\nSubject: wire the money\r\nMessage-ID: <forged@seams.test>\r\n\r\nNow.\r\n")
	own := s.submit(ctx, "From: Alice <alice@example.test>\r\nTo: bob@remote.example\r\nSubject: hello\r\nMessage-ID: <own@seams.test>\r\n\r\nHi.\r\n")
	c.Reply = forged + "; her own From: " + own
	c.require(strings.HasPrefix(forged, "553 5.7.1 ") && strings.Contains(forged, "From header"), "forged From: %s, want 553 5.7.1 naming the From header", forged)
	c.require(strings.HasPrefix(own, "250 "), "her own From: %s, want 250", own)
	got := settleSink(ctx, s.down, 1, 20*time.Second, time.Second)
	c.Delivered = envelopes(deliveries(s.down))
	if c.require(len(got) == 1, "%d messages delivered, want only her own", len(got)) {
		msg := string(got[0].Data)
		c.require(strings.Contains(msg, "Message-ID: <own@seams.test>"), "the delivered message is not her own")
		c.require(strings.Contains(msg, "DKIM-Signature:"), "her own message is not signed")
		c.Delivered += "; her own message DKIM-signed"
	}
	for _, m := range got {
		c.require(!strings.Contains(string(m.Data), "forged@seams.test"), "the forged message was delivered")
	}
	return nil
}

func loginLock(ctx context.Context, e *seams, c *SeamCase) error {
	s, err := e.submissionRelay(ctx)
	if err != nil {
		return err
	}
	wrong := map[string]int{}
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		for range 5 {
			cl, err := s.login(ctx, src, "alice@example.test", "guess")
			if err == nil {
				cl.Close()
				c.fail("a wrong password from %s logged in", src)
				continue
			}
			r := replyOf(err)
			wrong[r[:min(9, len(r))]]++
			c.require(strings.HasPrefix(r, "535 5.7.8 ") || strings.HasPrefix(r, "454 4.7.0 "), "wrong password from %s: %s", src, r)
		}
	}
	right := "235 (logged in)"
	cl, err := s.login(ctx, "127.0.0.6", "alice@example.test", alicePass)
	if err == nil {
		cl.Close()
	} else {
		right = replyOf(err)
	}
	c.Reply = fmt.Sprintf("wrong: %s; right, from 127.0.0.6: %s", replyCounts(wrong), right)
	c.require(strings.HasPrefix(right, "454 4.7.0 "), "the right password after 20 failures: %s, want 454 4.7.0", right)
	c.Delivered = "nothing (no message sent)"
	return nil
}

func trustWithdrawn(ctx context.Context, e *seams, c *SeamCase) error {
	dir, err := e.s.dir("seams-" + e.c.ID)
	if err != nil {
		return err
	}
	down, err := e.s.startRecordingSink()
	if err != nil {
		return err
	}
	mt, err := mailertable(dir, map[string]string{"remote.example": down.addr})
	if err != nil {
		return err
	}
	acc, err := writeFile(dir, "access", "Connect:127.0.0.2 RELAY\n")
	if err != nil {
		return err
	}
	r, err := e.startRelayIn(ctx, dir, "-trusted", "", "-access", acc, "-mailertable", mt, "-hostname", "relay.seams.test")
	if err != nil {
		return err
	}
	t, _, err := e.dial(ctx, "127.0.0.2", r.addr)
	if err != nil {
		return err
	}
	got, err := t.do("EHLO client.example", "MAIL FROM:<a@example.net>", "RCPT TO:<x@remote.example>", "DATA")
	if err != nil {
		return err
	}
	if !c.expectCodes(got, "250 250 250 354") {
		return nil
	}
	end, err := t.do("Subject: relayed\r\n\r\nonce\r\n.")
	if err != nil {
		return err
	}
	c.require(strings.HasPrefix(end[0], "250 "), "relaying while trusted: %s", end[0])
	settleSink(ctx, down, 1, 20*time.Second, 0)

	loads := func() int { return strings.Count(r.logText(), `msg="access map loaded"`) }
	before := loads()
	if err := os.WriteFile(acc, []byte("# the relay entry is gone\nConnect:192.0.2.1 RELAY\n"), 0o644); err != nil {
		return err
	}
	if !waitFor(ctx, 20*time.Second, func() bool { return loads() > before }) {
		return errors.New("the relay did not reload the access file within 20s")
	}
	after, err := t.do("RSET", "MAIL FROM:<a@example.net>", "RCPT TO:<x@remote.example>", "RCPT TO:<bob@example.test>")
	if err != nil {
		return err
	}
	t.quit()
	c.Reply = fmt.Sprintf("while trusted: %s; after the reload: RCPT TO:<x@remote.example> %s; RCPT TO:<bob@example.test> %s", end[0], after[2], after[3])
	c.require(strings.HasPrefix(after[2], "550 5.7.1 "), "remote recipient after the reload: %s, want 550 5.7.1", after[2])
	c.require(strings.HasPrefix(after[3], "250 "), "local recipient after the reload: %s, want 250", after[3])
	c.require(strings.Contains(r.logText(), "trust withdrawn"), "the relay's log does not say the trust was withdrawn")
	time.Sleep(time.Second)
	d := deliveries(down)
	c.Delivered = fmt.Sprintf("%d (the message sent while trusted): %s", len(d), envelopes(d))
	c.require(len(d) == 1, "%d deliveries to remote.example, want the one sent while trusted", len(d))
	return nil
}
