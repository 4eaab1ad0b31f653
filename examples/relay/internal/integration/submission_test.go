package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/route/resolver"
)

// selfSigned writes a certificate and key for localhost.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile = writeFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile
}

var submissionRE = regexp.MustCompile(`msg="submission listening" addr=(\S+) implicit_tls=(\w+)`)

// Message submission on 587 (STARTTLS, then AUTH) and 465 (implicit TLS)
// with swaks: the right replies for AUTH before TLS, a wrong password and
// a sender the user does not own; accepted mail leaves DKIM-signed and the
// signature verifies.
func TestSubmission(t *testing.T) {
	swaks := need(t, "swaks")
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	hash, err := auth.HashPassword(auth.HashBcrypt, "s3cret pass")
	require.NoError(t, err)
	creds := writeFile(t, dir, "credentials", "# user:hash\nalice@example.test:"+hash+"\n")
	senders := writeFile(t, dir, "senders", "alice@example.test: alice@example.test, @sales.example.test\n")
	keyPEM, txt, err := auth.GenerateKey(auth.KeyEd25519, 0)
	require.NoError(t, err)
	dkimKey := writeFile(t, dir, "dkim.pem", string(keyPEM))
	zone := startDNS(t, map[string]string{"mail._domainkey.example.test": "127.0.0.2"})
	zone.setTXT("mail._domainkey.example.test", txt)

	down := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, dir, "mailertable", "remote.example esmtp:"+hostPort(down.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-mailertable", mt,
		"-tls-cert", cert, "-tls-key", key, "-credentials", creds, "-senders", senders,
		"-dkim-key", "example.test:mail:"+dkimKey,
		"-submission", "127.0.0.1:0", "-submissions", "127.0.0.1:0")
	subs := submissionRE.FindAllStringSubmatch(r.logs(), -1)
	require.Len(t, subs, 2, r.logs())
	sub587, sub465 := subs[0][1], subs[1][1]

	swaksRun := func(args ...string) (string, error) {
		out, err := exec.Command(swaks, append([]string{"--to", "bob@remote.example", "--auth", "PLAIN",
			"--auth-user", "alice@example.test"}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Run("587 STARTTLS and AUTH PLAIN", func(t *testing.T) {
		out, err := swaksRun("--server", sub587, "--tls", "--auth-password", "s3cret pass", "--from", "alice@example.test",
			"--header", "Message-Id: <submitted@example.test>")
		require.NoError(t, err, out)
		assert.Contains(t, out, "<~  235 2.7.0 ")
		assert.Regexp(t, queuedRE, out)
	})
	t.Run("465 implicit TLS", func(t *testing.T) {
		out, err := swaksRun("--server", sub465, "--tls-on-connect", "--auth-password", "s3cret pass",
			"--from", "alice@sales.example.test")
		require.NoError(t, err, out)
		assert.Regexp(t, queuedRE, out)
	})
	t.Run("wrong password", func(t *testing.T) {
		out, err := swaksRun("--server", sub587, "--tls", "--auth-password", "guess", "--from", "alice@example.test")
		require.Error(t, err)
		assert.Contains(t, out, "535 5.7.8 Authentication failed")
	})
	t.Run("someone else's address", func(t *testing.T) {
		out, err := swaksRun("--server", sub587, "--tls", "--auth-password", "s3cret pass", "--from", "ceo@example.test")
		require.Error(t, err)
		assert.Contains(t, out, "553 5.7.1 Sender address rejected")
	})
	t.Run("AUTH and MAIL before STARTTLS", func(t *testing.T) {
		c, err := net.Dial("tcp", sub587)
		require.NoError(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		reply := func(cmd string) string {
			if cmd != "" {
				_, err := c.Write([]byte(cmd + "\r\n"))
				require.NoError(t, err)
			}
			var last string
			for {
				l, err := br.ReadString('\n')
				require.NoError(t, err)
				last = l
				if len(l) < 4 || l[3] != '-' {
					return strings.TrimSpace(last)
				}
				if strings.Contains(l, "AUTH") {
					t.Errorf("AUTH offered before TLS: %q", l)
				}
			}
		}
		for _, step := range []struct{ cmd, want string }{
			{"", "220 "},
			{"EHLO client.test", "250 "},
			// RFC 4954 §6: 538 5.7.11 (encryption required for the
			// mechanism); 530 5.7.0 would do too.
			{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice@example.test\x00s3cret pass")), "538 5.7.11"},
			{"MAIL FROM:<alice@example.test>", "530 5.7.0"},
		} {
			got := reply(step.cmd)
			assert.True(t, strings.HasPrefix(got, step.want), "%s: got %q", step.cmd, got)
		}
	})

	t.Run("password guessing is slowed", func(t *testing.T) {
		// One wrong password was tried above; after five in all the
		// client is refused for a while (RFC 4954 §6: 454 4.7.0), even
		// with the right password.
		for range 4 {
			out, _ := swaksRun("--server", sub587, "--tls", "--auth-password", "guess", "--from", "alice@example.test")
			require.Contains(t, out, "535 5.7.8")
		}
		out, err := swaksRun("--server", sub587, "--tls", "--auth-password", "s3cret pass", "--from", "alice@example.test")
		require.Error(t, err)
		assert.Contains(t, out, "454 4.7.0")
	})

	// What was accepted left DKIM-signed; the signature verifies against
	// the key published in (test) DNS.
	got := down.waitFor(t, 2, 20*time.Second)
	res, err := resolver.New(resolver.Config{Servers: []string{zone.addr}})
	require.NoError(t, err)
	verifier, err := auth.NewDKIMVerifier(auth.DKIMVerifyConfig{Resolver: res})
	require.NoError(t, err)
	for _, m := range got {
		assert.Contains(t, string(m.Data), "DKIM-Signature:")
		assert.Contains(t, string(m.Data), "ESMTPSA", "the Received header records the authenticated submission")
		msg, err := postern.NewMessage(bytes.NewReader(m.Data), int64(len(m.Data)), 0)
		require.NoError(t, err)
		res := verifier.Verify(context.Background(), msg)
		require.NotEmpty(t, res)
		assert.Equal(t, auth.Pass, res[0].Status, "%+v", res[0])
		assert.Equal(t, "example.test", res[0].Domain)
	}
	assert.Contains(t, r.logs(), "auth_user=alice@example.test")
}

// Inbound sender authentication through the relay: SPF pass is recorded
// in Authentication-Results, and with -auth-check enforce an SPF fail is
// refused at MAIL with 550 5.7.23.
func TestInboundSPF(t *testing.T) {
	swaks := need(t, "swaks")
	zone := startDNS(t, map[string]string{"good.example": "127.0.0.9", "forged.example": "127.0.0.9"})
	zone.setTXT("good.example", "v=spf1 ip4:127.0.0.0/8 -all")
	zone.setTXT("forged.example", "v=spf1 ip4:192.0.2.0/24 -all")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-auth-check", "enforce",
		"-dns-resolver", zone.addr, "-hostname", "mx.example.test")
	out, err := exec.Command(swaks, "--server", r.addr, "--from", "alice@good.example", "--to", "bob@example.test").CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	msg := r.delivered(t, m[1])
	assert.Contains(t, msg, "Authentication-Results: mx.example.test;")
	assert.Regexp(t, `spf=pass`, msg)
	assert.Contains(t, msg, "Received-SPF: pass")

	out, err = exec.Command(swaks, "--server", r.addr, "--from", "mallory@forged.example", "--to", "bob@example.test").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "550 5.7.23")
}
