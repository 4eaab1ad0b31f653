package main

import (
	"bytes"
	"os"
	"path/filepath"
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
