package spamd_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scanner"
	"github.com/postern/postern/scan/scantest"
	"github.com/postern/postern/scan/spamd"
)

func TestRealSpamd(t *testing.T) {
	d := scantest.Spamd(t)
	ctx := context.Background()
	gtube := "From: sender@example.org\r\nTo: user@example.com\r\nSubject: test\r\n" +
		"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <gtube@example.org>\r\n\r\n" + scantest.GTUBE() + "\r\n"
	clean := "From: sender@example.org\r\nTo: user@example.com\r\nSubject: lunch\r\n" +
		"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <lunch@example.org>\r\n\r\nShall we have lunch at noon?\r\n"
	for _, cmd := range []spamd.Command{spamd.Symbols, spamd.Report, spamd.Check} {
		t.Run(cmd.String(), func(t *testing.T) {
			c, err := spamd.New(spamd.Config{Addrs: []string{d.Addr}, Command: cmd})
			require.NoError(t, err)
			res, err := c.Scan(ctx, strings.NewReader(gtube), nil)
			require.NoError(t, err)
			assert.True(t, res.Spam)
			assert.GreaterOrEqual(t, res.Score, 1000.0)
			assert.Equal(t, 5.0, res.Threshold)
			if cmd != spamd.Check {
				var names []string
				for _, s := range res.Symbols {
					names = append(names, s.Name)
				}
				assert.Contains(t, names, "GTUBE")
			}
			if cmd == spamd.Report {
				for _, s := range res.Symbols {
					if s.Name == "GTUBE" {
						assert.Equal(t, 1000.0, s.Score)
						assert.Contains(t, s.Description, "Unsolicited Bulk Email")
					}
				}
			}
			res, err = c.Scan(ctx, strings.NewReader(clean), nil)
			require.NoError(t, err)
			assert.False(t, res.Spam, "%v", res)
		})
	}
	c, err := spamd.New(spamd.Config{Addrs: []string{d.Addr}})
	require.NoError(t, err)
	require.NoError(t, c.Ping(ctx))
	d.Kill()
	_, err = c.Scan(ctx, strings.NewReader(clean), nil)
	assert.ErrorIs(t, err, scanner.ErrScanner)
}
