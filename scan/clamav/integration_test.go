package clamav_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/clamav"
	"github.com/postern/postern/scan/scanner"
	"github.com/postern/postern/scan/scantest"
)

func zipOf(t *testing.T, name string, data []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// nestedMessage hides EICAR in a zip in a zip attached inside a
// multipart/mixed inside a multipart/alternative.
func nestedMessage(t *testing.T, payload []byte) string {
	outer := zipOf(t, "inner.zip", zipOf(t, "eicar.com", payload))
	return "From: <sender@example.org>\r\nTo: <user@example.com>\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain\r\n\r\nSee the other part.\r\n" +
		"--alt\r\nContent-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n" +
		"--mixed\r\nContent-Type: text/plain\r\n\r\nThe report is attached.\r\n" +
		"--mixed\r\nContent-Type: application/zip; name=\"report.zip\"\r\n" +
		"Content-Disposition: attachment; filename=\"report.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(outer) + "\r\n" +
		"--mixed--\r\n--alt--\r\n"
}

func TestRealClamd(t *testing.T) {
	d := scantest.Clamd(t)
	ctx := context.Background()
	for _, addr := range []string{d.Addr, d.Socket} {
		t.Run(addr, func(t *testing.T) {
			c, err := clamav.New(clamav.Config{Addrs: []string{addr}})
			require.NoError(t, err)
			require.NoError(t, c.Ping(ctx))
			v, err := c.Version(ctx)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(v, "ClamAV "), v)

			res, err := c.Scan(ctx, strings.NewReader(nestedMessage(t, scantest.EICAR())), nil)
			require.NoError(t, err)
			assert.True(t, res.Infected, "EICAR two zips deep in nested multiparts")
			assert.Equal(t, []string{scantest.EICARSignature + ".UNOFFICIAL"}, res.Viruses)
			assert.Equal(t, addr, res.Server)

			res, err = c.Scan(ctx, strings.NewReader(nestedMessage(t, []byte("harmless text"))), nil)
			require.NoError(t, err)
			assert.False(t, res.Infected, "a clean message passes")
		})
	}
	// clamd's own StreamMaxLength (25M) refuses a larger stream.
	c, err := clamav.New(clamav.Config{Addrs: []string{d.Addr}, MaxSize: 64 << 20})
	require.NoError(t, err)
	_, err = c.Scan(ctx, bytes.NewReader(make([]byte, 26<<20)), nil)
	assert.ErrorIs(t, err, scanner.ErrTooLarge)

	// A server that is down.
	d.Kill()
	_, err = c.Scan(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil)
	assert.ErrorIs(t, err, scanner.ErrScanner)
}
