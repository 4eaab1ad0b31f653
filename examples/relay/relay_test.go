package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestRecipients(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rcpts")
	require.NoError(t, os.WriteFile(p, []byte("# staff\nBob@Example.TEST\n\ncarol@example.test  # comment\n"), 0o644))
	r, err := loadRecipients(p, []string{"example.test"})
	require.NoError(t, err)
	for _, tt := range []struct {
		addr string
		want postern.Action
	}{
		{"bob@example.test", postern.Continue},
		{"BOB@EXAMPLE.TEST.", postern.Continue},
		{"carol@example.test", postern.Continue},
		{"alice@example.test", postern.Reject},
		{"Postmaster@example.test", postern.Continue},
		{"Postmaster", postern.Continue},
		{"alice@remote.example", postern.Continue},
	} {
		v, err := r.CheckRcpt(context.Background(), &postern.Conn{}, &postern.Txn{}, &postern.Rcpt{Addr: tt.addr})
		require.NoError(t, err)
		assert.Equal(t, tt.want, v.Action, tt.addr)
		if v.Action == postern.Reject {
			assert.Equal(t, 550, v.Reply.Code)
			assert.Equal(t, postern.ESC(5, 1, 1), v.Reply.Enhanced)
		}
	}
	require.NoError(t, os.WriteFile(p, []byte("bob@example.test\nnot-an-address\n"), 0o644))
	_, err = loadRecipients(p, nil)
	require.ErrorContains(t, err, p+":2")
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
