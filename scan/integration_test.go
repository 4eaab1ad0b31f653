package scan_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/scan/clamav"
	"github.com/postern/postern/scan/rspamd"
	"github.com/postern/postern/scan/scantest"
	"github.com/postern/postern/scan/spamd"
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

// nested hides payload in a zip in a zip, attached in a multipart/mixed
// inside a multipart/alternative.
func nested(t *testing.T, payload []byte) string {
	outer := zipOf(t, "inner.zip", zipOf(t, "payload.txt", payload))
	return "From: <sender@example.org>\r\nTo: <user@example.com>\r\nSubject: report\r\n" +
		"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <n@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain\r\n\r\nSee the other part.\r\n" +
		"--alt\r\nContent-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n" +
		"--mixed\r\nContent-Type: text/plain\r\n\r\nThe report is attached.\r\n" +
		"--mixed\r\nContent-Type: application/zip; name=\"report.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(outer) + "\r\n--mixed--\r\n--alt--\r\n"
}

func spool(t *testing.T, msg string) *postern.Message {
	m, err := postern.NewMessage(strings.NewReader(msg), int64(len(msg)), 0)
	require.NoError(t, err)
	return m
}

func txn(rcpts ...string) (*postern.Conn, *postern.Txn) {
	c := &postern.Conn{ID: "C1", Remote: netip.MustParseAddrPort("192.0.2.10:40000"), HELO: "mx.example.org"}
	t := &postern.Txn{ID: "Q1", From: "sender@example.org"}
	for _, r := range rcpts {
		t.Rcpts = append(t.Rcpts, &postern.Rcpt{Addr: r, Original: r})
	}
	return c, t
}

// The filter with all three real daemons: clamd finds EICAR deep inside,
// spamd and rspamd flag GTUBE, clean mail passes, and daemons that are
// down give the configured failure policy.
func TestFilterWithRealScanners(t *testing.T) {
	clamd, spamdD, rspamdD := scantest.Clamd(t), scantest.Spamd(t), scantest.Rspamd(t)
	ctx := context.Background()
	av, err := clamav.New(clamav.Config{Addrs: []string{clamd.Socket}})
	require.NoError(t, err)
	sa, err := spamd.New(spamd.Config{Addrs: []string{spamdD.Addr}, Command: spamd.Report})
	require.NoError(t, err)
	rs, err := rspamd.New(rspamd.Config{Addrs: []string{rspamdD.Addr}})
	require.NoError(t, err)
	defer rs.Close()

	for _, scorer := range []scan.Scanner{sa, rs} {
		t.Run(scorer.Name(), func(t *testing.T) {
			f, err := scan.NewFilter(scan.FilterConfig{
				Virus:         []scan.ScannerEntry{{Scanner: av}},
				Spam:          []scan.ScannerEntry{{Scanner: scorer}},
				TagScore:      6.8,
				SubjectPrefix: "[SPAM]",
			})
			require.NoError(t, err)

			c, tx := txn("user@example.com")
			v, err := f.CheckData(ctx, c, tx, spool(t, nested(t, scantest.EICAR())))
			require.NoError(t, err)
			assert.Equal(t, "554 5.7.0 Message rejected: virus "+scantest.EICARSignature+".UNOFFICIAL found", v.Reply.Error())

			c, tx = txn("user@example.com")
			m := spool(t, nested(t, []byte("quarterly figures")))
			v, err = f.CheckData(ctx, c, tx, m)
			require.NoError(t, err)
			assert.Equal(t, postern.Continue, v.Action)
			var out bytes.Buffer
			require.NoError(t, m.Render(&out))
			assert.NotContains(t, out.String(), "X-Spam-Flag")

			c, tx = txn("user@example.com")
			m = spool(t, "From: sender@example.org\r\nTo: user@example.com\r\nSubject: offer\r\n\r\n"+scantest.GTUBE()+"\r\n")
			v, err = f.CheckData(ctx, c, tx, m)
			require.NoError(t, err)
			assert.Equal(t, postern.Continue, v.Action)
			out.Reset()
			require.NoError(t, m.Render(&out))
			assert.Contains(t, out.String(), "X-Spam-Flag: YES\r\n")
			assert.Contains(t, out.String(), "Subject: [SPAM] offer\r\n")
			assert.Contains(t, out.String(), "GTUBE")
		})
	}

	// Daemons down: virus scanning fails closed, spam scoring open.
	clamd.Kill()
	spamdD.Kill()
	f, err := scan.NewFilter(scan.FilterConfig{Virus: []scan.ScannerEntry{{Scanner: av}}})
	require.NoError(t, err)
	c, tx := txn("user@example.com")
	v, err := f.CheckData(ctx, c, tx, spool(t, nested(t, []byte("x"))))
	require.NoError(t, err)
	assert.Equal(t, "451 4.7.1 Message could not be scanned, try again later", v.Reply.Error())

	f, err = scan.NewFilter(scan.FilterConfig{Spam: []scan.ScannerEntry{{Scanner: sa}}})
	require.NoError(t, err)
	c, tx = txn("user@example.com")
	v, err = f.CheckData(ctx, c, tx, spool(t, nested(t, []byte("x"))))
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	rep, _ := postern.GetValue(&tx.Values, scan.ReportKey)
	require.Len(t, rep.Errors, 1)
	assert.ErrorIs(t, rep.Errors[0].Err, scan.ErrScanner)

	f, err = scan.NewFilter(scan.FilterConfig{Spam: []scan.ScannerEntry{{Scanner: sa, OnError: postern.OnErrorTempFail}}})
	require.NoError(t, err)
	v, err = f.CheckData(ctx, c, tx, spool(t, nested(t, []byte("x"))))
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
}
