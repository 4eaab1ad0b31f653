package scan

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

// eicar is built at run time so that no scanner flags this source.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-FILE!$H+H*")
}

// mzStub is the start of a PE file: enough for sniffing.
var mzStub = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"), make([]byte, 64)...)

// b64 encodes data in 76-column lines (RFC 2045 §6.8).
func b64(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

// attachment renders a base64 attachment part (header and body).
func attachment(ctype, name string, data []byte) string {
	return "Content-Type: " + ctype + "; name=\"" + name + "\"\r\n" +
		"Content-Disposition: attachment; filename=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64(data)
}

// multipart renders a multipart body (the parts with their headers) with
// boundary b.
func multipart(b string, parts ...string) string {
	var s strings.Builder
	s.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, p := range parts {
		s.WriteString("--" + b + "\r\n" + p)
		if !strings.HasSuffix(p, "\r\n") {
			s.WriteString("\r\n")
		}
	}
	s.WriteString("--" + b + "--\r\n")
	return s.String()
}

// zipOf builds a zip archive of name/content pairs.
func zipOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		w, err := zw.Create(files[i].(string))
		require.NoError(t, err)
		_, err = w.Write(files[i+1].([]byte))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// nestedEICAR is the message of the integration tests: EICAR in a zip in
// a zip, attached in a multipart/mixed inside a multipart/alternative.
func nestedEICAR(t testing.TB) string {
	inner := zipOf(t, "eicar.com", eicar())
	outer := zipOf(t, "inner.zip", inner, "readme.txt", []byte("see inner.zip\n"))
	mixed := "Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n" + multipart("mixed",
		"Content-Type: text/plain; charset=us-ascii\r\n\r\nThe report is attached.\r\n",
		attachment("application/zip", "report.zip", outer))
	return "From: <sender@example.org>\r\nTo: <user@example.com>\r\nSubject: report\r\n" +
		"Message-ID: <nested@example.org>\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" + multipart("alt",
		"Content-Type: text/plain; charset=us-ascii\r\n\r\nSee the HTML part.\r\n",
		mixed)
}

func walk(t testing.TB, lim Limits, msg string) (*Content, error) {
	t.Helper()
	w, err := NewWalker(WalkerConfig{Limits: lim})
	require.NoError(t, err)
	return w.WalkBytes(context.Background(), []byte(msg))
}

var spool = testutil.Message
