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
