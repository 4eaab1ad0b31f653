package rspamd_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/rspamd"
	"github.com/postern/postern/scan/scanner"
	"github.com/postern/postern/scan/scantest"
)

func TestRealRspamd(t *testing.T) {
	d := scantest.Rspamd(t)
	ctx := context.Background()
	c, err := rspamd.New(rspamd.Config{Addrs: []string{d.Addr}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Ping(ctx))
	env := &scanner.Envelope{From: "sender@example.org", Rcpts: []string{"user@example.com"},
		IP: netip.MustParseAddr("192.0.2.1"), Helo: "mx.example.org", QueueID: "Q1"}

	gtube := "From: sender@example.org\r\nTo: user@example.com\r\nSubject: test\r\n\r\n" + scantest.GTUBE() + "\r\n"
	res, err := c.Scan(ctx, strings.NewReader(gtube), env)
	require.NoError(t, err)
	assert.True(t, res.Spam)
	assert.Equal(t, "reject", res.Action)
	assert.Equal(t, "GTUBE", res.SymbolNames())
	assert.Equal(t, 15.0, res.Threshold)

	clean := "From: sender@example.org\r\nTo: user@example.com\r\nSubject: lunch\r\n\r\nShall we have lunch at noon?\r\n"
	res, err = c.Scan(ctx, strings.NewReader(clean), env)
	require.NoError(t, err)
	assert.False(t, res.Spam)
	assert.Equal(t, "no action", res.Action)

	d.Kill()
	_, err = c.Scan(ctx, strings.NewReader(clean), env)
	assert.ErrorIs(t, err, scanner.ErrScanner)
}

// rspamd's full answer, from the real daemon with the test-only rule:
// greylist and soft reject with their messages, the rewritten subject,
// the milter block's fields in order (the hostile ones included: the
// filter, not the adapter, refuses them).
func TestRealRspamdActions(t *testing.T) {
	d := scantest.Rspamd(t)
	ctx := context.Background()
	c, err := rspamd.New(rspamd.Config{Addrs: []string{d.Addr}})
	require.NoError(t, err)
	defer c.Close()
	msg := func(test string) *strings.Reader {
		return strings.NewReader("From: sender@example.org\r\nTo: user@example.com\r\nSubject: lunch\r\n" +
			scantest.RspamdTestHeader + ": " + test + "\r\nX-Postern-Remove-Me: 1\r\n\r\nShall we?\r\n")
	}
	res, err := c.Scan(ctx, msg("greylist"), nil)
	require.NoError(t, err)
	assert.Equal(t, "greylist", res.Action)
	assert.False(t, res.Spam)
	assert.Equal(t, "Greylisted by the test rule, try again later", res.Message)

	res, err = c.Scan(ctx, msg("soft-reject"), nil)
	require.NoError(t, err)
	assert.Equal(t, "soft reject", res.Action)
	assert.Equal(t, "Rate limited by the test rule", res.Message)

	res, err = c.Scan(ctx, msg("rewrite-subject"), nil)
	require.NoError(t, err)
	assert.Equal(t, "rewrite subject", res.Action)
	assert.True(t, res.Spam)
	assert.Equal(t, "***SPAM*** lunch", res.Subject)

	res, err = c.Scan(ctx, msg("headers"), nil)
	require.NoError(t, err)
	assert.Equal(t, "no action", res.Action)
	require.Len(t, res.AddHeaders, 3)
	assert.Equal(t, scanner.HeaderField{Name: "X-Postern-Rspamd", Value: "added by the test rule"}, res.AddHeaders[0])
	assert.Equal(t, "DKIM-Signature", res.AddHeaders[1].Name)
	assert.Equal(t, "X-Evil\r\nInjected", res.AddHeaders[2].Name, "handed on as rspamd said it")
	assert.ElementsMatch(t, []scanner.HeaderRemoval{{Name: "X-Postern-Remove-Me"}, {Name: "Received"}}, res.RemoveHeaders)
}
