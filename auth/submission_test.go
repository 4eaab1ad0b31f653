package auth_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/smtpserver"
)

// Credentials must satisfy the server's PasswordChecker. Package auth
// cannot import smtpserver (the dependency rules); its external test can
// check the structural match.
var _ smtpserver.PasswordChecker = (*auth.Credentials)(nil)

// A submission port on a real smtpserver over loopback: AUTH PLAIN against
// a credentials file, the sender binding at MAIL, forged
// Authentication-Results removed and the message DKIM-signed at DATA.
func TestSubmissionEndToEnd(t *testing.T) {
	dir := t.TempDir()
	hash, err := auth.HashPassword(auth.HashArgon2id, "alice-secret")
	require.NoError(t, err)
	credPath := filepath.Join(dir, "passwd")
	require.NoError(t, os.WriteFile(credPath, []byte("alice:"+hash+"\n"), 0o600))
	sendPath := filepath.Join(dir, "senders")
	require.NoError(t, os.WriteFile(sendPath, []byte("alice: alice@example.com\n"), 0o600))

	creds, err := auth.NewCredentials(auth.CredentialsConfig{Path: credPath})
	require.NoError(t, err)
	senders, err := auth.NewSenderMap(auth.SenderMapConfig{Path: sendPath})
	require.NoError(t, err)
	bind, err := auth.NewSenderFilter(auth.SenderFilterConfig{Map: senders})
	require.NoError(t, err)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := auth.NewDKIMSigner(auth.DKIMSignConfig{Keys: []auth.DKIMKey{{Domain: "example.com", Selector: "sub", Signer: key}}})
	require.NoError(t, err)
	sign, err := auth.NewSignFilter(auth.SignFilterConfig{Signer: signer, Senders: senders})
	require.NoError(t, err)
	verify, err := auth.NewVerifyFilter(auth.VerifyFilterConfig{AuthServID: "mx.example.com"})
	require.NoError(t, err)
	chain, err := postern.NewChain(postern.ChainConfig{Name: "submission", Entries: []postern.Entry{
		{Filter: bind}, {Filter: verify}, {Filter: sign},
	}})
	require.NoError(t, err)

	var mu sync.Mutex
	var got []byte
	handoff := smtpserver.HandoffFunc(func(_ context.Context, _ *postern.Conn, _ *postern.Txn, m *postern.Message) (string, error) {
		var b bytes.Buffer
		if err := m.Render(&b); err != nil {
			return "", err
		}
		mu.Lock()
		got = b.Bytes()
		mu.Unlock()
		return "Q1", nil
	})
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.example.com", Policy: chain, Handoff: handoff,
		Auth: creds, AllowInsecureAuth: true, RequireAuth: true})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	say := func(cmd string) postern.Reply {
		t.Helper()
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		r, err := postern.ParseReply(br)
		require.NoError(t, err, cmd)
		return r
	}
	plain := func(user, pass string) string {
		return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
	}
	assert.Equal(t, 220, say("").Code)
	assert.Equal(t, 250, say("EHLO laptop.example.com").Code)
	assert.Equal(t, 535, say(plain("alice", "wrong")).Code)
	assert.Equal(t, 535, say(plain("mallory", "alice-secret")).Code)
	assert.Equal(t, 235, say(plain("alice", "alice-secret")).Code)
	r := say("MAIL FROM:<boss@example.com>")
	assert.Equal(t, "553 5.7.1 Sender address rejected: not owned by user", r.Error())
	// The header's From is bound too: the envelope is not what the
	// recipient reads.
	assert.Equal(t, 250, say("MAIL FROM:<alice@example.com>").Code)
	assert.Equal(t, 250, say("RCPT TO:<bob@example.net>").Code)
	assert.Equal(t, 354, say("DATA").Code)
	r = say("From: CEO <boss@example.com>\r\nTo: bob@example.net\r\nSubject: wire the money\r\n\r\nNow.\r\n.")
	assert.Equal(t, "553 5.7.1 From header rejected: <boss@example.com> not owned by user", r.Error())
	assert.Equal(t, 250, say("MAIL FROM:<alice@example.com>").Code)
	assert.Equal(t, 250, say("RCPT TO:<bob@example.net>").Code)
	assert.Equal(t, 354, say("DATA").Code)
	r = say("Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n" +
		"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: report\r\n\r\nAttached.\r\n.")
	assert.Equal(t, 250, r.Code, r.Error())
	say("QUIT")

	mu.Lock()
	msg := string(got)
	mu.Unlock()
	require.True(t, strings.HasPrefix(msg, "DKIM-Signature: "), msg)
	assert.NotContains(t, msg, "Authentication-Results", "the forged field is gone")
	assert.Contains(t, msg, "Received: ")

	// The signature verifies at the receiving end.
	record, err := auth.DKIMRecord(key.Public())
	require.NoError(t, err)
	dnsRes, stop := serveTXT(map[string]string{"sub._domainkey.example.com": record})
	defer stop()
	v, err := auth.NewDKIMVerifier(auth.DKIMVerifyConfig{Resolver: dnsRes})
	require.NoError(t, err)
	m := testutil.Message(t, msg)
	res := v.Verify(context.Background(), m)
	require.Len(t, res, 1)
	assert.Equal(t, auth.Pass, res[0].Status, res[0].Reason)
}
