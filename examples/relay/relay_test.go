package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The -recipients list refuses unknown users of the local domains at RCPT,
// through route's verifier, and names file and line of a bad entry.
func TestRecipientsList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rcpts")
	require.NoError(t, os.WriteFile(p, []byte("# staff\nBob@Example.TEST\n\ncarol@example.test  # comment\n"), 0o644))
	args := []string{"check", "-recipients", p, "-ip", "127.0.0.1", "-from", "a@example.net"}
	for _, r := range []string{"bob@example.test", "BOB@EXAMPLE.TEST.", "carol@example.test", "alice@example.test",
		"Postmaster@example.test", "alice@remote.example"} {
		args = append(args, "-rcpt", r)
	}
	var out, errb bytes.Buffer
	require.Equal(t, 0, run(args, &out, &errb), errb.String())
	s := out.String()
	assert.Contains(t, s, "=> rcpt <alice@example.test>: 550 5.1.1")
	assert.Contains(t, s, "=> message: accepted for 5 recipient(s)", s)

	require.NoError(t, os.WriteFile(p, []byte("bob@example.test\nnot-an-address\n"), 0o644))
	out.Reset()
	errb.Reset()
	assert.Equal(t, 1, run(args, &out, &errb))
	assert.Contains(t, errb.String(), p+":2")
}

func TestCheckCommand(t *testing.T) {
	acc := filepath.Join(t.TempDir(), "access")
	require.NoError(t, os.WriteFile(acc, []byte("Connect:192.0.2.9 RELAY\nTo:blocked@example.test REJECT\nGreetPause:192.0.2.7 0\n"), 0o644))
	var out, errb bytes.Buffer
	code := run([]string{"check", "-access", acc, "-trusted", "", "-ip", "192.0.2.7", "-from", "a@example.net",
		"-rcpt", "x@remote.example", "-rcpt", "blocked@example.test", "-rcpt", "ok@example.test"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	s := out.String()
	assert.Contains(t, s, "greet pause: 0s (access GreetPause: entry)")
	assert.Contains(t, s, "=> rcpt <x@remote.example>: 550 5.7.1 Relay access denied")
	assert.Contains(t, s, "=> rcpt <blocked@example.test>: 550 5.2.1 Mailbox disabled for this recipient")
	assert.Contains(t, s, "To:blocked@example.test REJECT ("+acc+":2)")
	assert.Contains(t, s, "=> message: accepted for 1 recipient(s)")

	out.Reset()
	code = run([]string{"check", "-access", acc, "-trusted", "", "-ip", "192.0.2.9", "-rcpt", "x@remote.example"}, &out, &errb)
	require.Equal(t, 0, code)
	assert.Contains(t, out.String(), "=> rcpt <x@remote.example>: continue")
	assert.Equal(t, 2, run([]string{"frobnicate"}, &out, &errb))
}

// check takes addresses as a client writes them and judges the canonical
// form the server would: a quoted local part that is the plain mailbox is
// that mailbox; one that is not stays itself.
func TestCheckCommandQuoted(t *testing.T) {
	acc := filepath.Join(t.TempDir(), "access")
	require.NoError(t, os.WriteFile(acc, []byte("To:ceo@example.test REJECT\n"), 0o644))
	var out, errb bytes.Buffer
	code := run([]string{"check", "-access", acc, "-ip", "192.0.2.7", "-from", `"a b"@example.net`,
		"-rcpt", `"ceo"@example.test`, "-rcpt", `"ceo(x)"@example.test`, "-rcpt", "ceo@example.test(x)"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	s := out.String()
	assert.Contains(t, s, `=> rcpt <"ceo"@example.test>: 550 5.2.1 Mailbox disabled for this recipient`)
	assert.Contains(t, s, `=> rcpt <"ceo(x)"@example.test>: continue`)
	assert.Contains(t, s, "=> rcpt <ceo@example.test(x)>: 553 5.1.3 Bad address syntax")

	out.Reset()
	code = run([]string{"check", "-quoted-local-parts", "refuse", "-ip", "192.0.2.7", "-from", `"a b"@example.net`,
		"-rcpt", "ceo@example.test"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	assert.Contains(t, out.String(), "=> mail: 553 5.1.7 Address rejected: quoted local parts are not accepted here")
}

// dkim keygen writes a private key the relay can sign with and prints the
// record to publish, split into strings of at most 255 octets.
func TestDKIMKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"rsa", "ed25519"} {
		key := filepath.Join(dir, alg+".pem")
		var out, errb bytes.Buffer
		require.Equal(t, 0, run([]string{"dkim", "keygen", "-domain", "example.org", "-selector", "s1", "-alg", alg,
			"-out", key}, &out, &errb), errb.String())
		assert.Contains(t, out.String(), `s1._domainkey.example.org. IN TXT ( "v=DKIM1; k=`+alg+`; p=`)
		for _, q := range strings.Split(out.String(), `"`) {
			assert.LessOrEqual(t, len(q), 255)
		}
		st, err := os.Stat(key)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		var e2 bytes.Buffer
		assert.Equal(t, 1, run([]string{"dkim", "keygen", "-domain", "example.org", "-selector", "s1", "-out", key}, &out, &e2),
			"an existing key is never overwritten")
		code := run([]string{"check", "-dkim-key", "example.org:s1:" + key, "-ip", "127.0.0.1", "-rcpt", "a@example.test"}, &out, &e2)
		assert.Equal(t, 0, code, "the key loads: %s", e2.String())
	}
}
