package dsn

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func parseFile(t *testing.T, path string) *Parsed {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	p, err := Parse(f)
	require.NoError(t, err, path)
	return p
}

func mustDate(s string) time.Time {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestParseForeign reads DSNs in the styles of other MTAs.
func TestParseForeign(t *testing.T) {
	t.Run("postfix", func(t *testing.T) {
		p := parseFile(t, "testdata/foreign/postfix-style.eml")
		assert.Equal(t, Typed{"dns", "relay.example.net"}, p.ReportingMTA)
		assert.Equal(t, "3F1A22C0123", p.Fields.Get("X-Postfix-Queue-ID"))
		assert.True(t, mustDate("Tue, 24 Nov 2026 17:02:09 +0100").Equal(p.ArrivalDate))
		require.Len(t, p.Recipients, 1)
		r := p.Recipients[0]
		assert.Equal(t, Typed{"rfc822", "nobody@big.example"}, r.FinalRecipient)
		assert.Equal(t, Typed{"rfc822", "nobody@big.example"}, r.OriginalRecipient)
		assert.Equal(t, Failed, r.Action)
		assert.Equal(t, postern.ESC(5, 1, 1), r.Status)
		assert.Equal(t, Typed{"dns", "mx.big.example"}, r.RemoteMTA)
		rep, ok := r.Reply()
		require.True(t, ok)
		assert.Equal(t, 550, rep.Code)
		assert.Equal(t, postern.ESC(5, 1, 1), rep.Enhanced)
		assert.Equal(t, "The account you tried to reach does not exist. 550 5.1.1 Check the address for typos.", rep.Text())
		assert.Equal(t, "text/rfc822-headers", p.ReturnedType)
		assert.Contains(t, string(p.Returned), "Message-ID: <q3@example.org>\r\n")
		assert.Contains(t, string(p.Text), "Your message to the address below bounced.")
		assert.Equal(t, "Undelivered Mail Returned to Sender", p.Header.Get("Subject"))
	})
	t.Run("sendmail", func(t *testing.T) {
		p := parseFile(t, "testdata/foreign/sendmail-style.eml")
		assert.Equal(t, Typed{"dns", "gw.example.edu"}, p.ReportingMTA)
		assert.Equal(t, Typed{"dns", "localhost"}, p.ReceivedFromMTA)
		require.Len(t, p.Recipients, 1)
		r := p.Recipients[0]
		assert.Equal(t, Typed{"rfc822", "student@old.example"}, r.FinalRecipient)
		assert.Equal(t, Failed, r.Action, "comment after the action")
		assert.Equal(t, postern.ESC(5, 2, 1), r.Status, "comment after the status")
		assert.Equal(t, Typed{"smtp", "550 5.2.1 Mailbox disabled"}, r.DiagnosticCode)
		assert.True(t, mustDate("Mon, 23 Nov 2026 10:15:00 -0500").Equal(r.LastAttemptDate))
		assert.Contains(t, string(p.Text), "permanent fatal errors", "part without Content-Type is text/plain")
		assert.Equal(t, "message/rfc822", p.ReturnedType)
		assert.True(t, strings.HasPrefix(string(p.Returned), "Return-Path: <prof@example.edu>\r\n"))
	})
	t.Run("exchange", func(t *testing.T) {
		p := parseFile(t, "testdata/foreign/exchange-style.eml")
		assert.Equal(t, Typed{"dns", "EX01.corp.example.com"}, p.ReportingMTA)
		require.Len(t, p.Recipients, 1)
		r := p.Recipients[0]
		assert.Equal(t, Typed{"rfc822", "jane.doe@partner.example"}, r.FinalRecipient)
		assert.Equal(t, postern.ESC(5, 4, 1), r.Status)
		assert.Equal(t, "Jane Doe", r.Fields.Get("X-Display-Name"))
		rep, ok := r.Reply()
		require.True(t, ok)
		assert.Equal(t, "550 5.4.1 Recipient address rejected: Access denied. [AM0PR01MB0001.eurprd01.prod.example.com]", rep.Error())
		assert.Nil(t, p.Text, "the text is inside a multipart/alternative, not read")
		assert.Equal(t, "message/rfc822", p.ReturnedType)
	})
	t.Run("global", func(t *testing.T) {
		p := parseFile(t, "testdata/foreign/global-style.eml")
		assert.True(t, p.Global)
		assert.Equal(t, "封筒-1", p.EnvID)
		require.Len(t, p.Recipients, 2)
		assert.Equal(t, Typed{"utf-8", "受信者@例え.jp"}, p.Recipients[0].FinalRecipient)
		assert.Equal(t, Typed{"utf-8", "受信者@例え.jp"}, p.Recipients[0].OriginalRecipient)
		assert.Equal(t, Typed{"smtp", "550 5.1.1 ユーザー不明"}, p.Recipients[0].DiagnosticCode)
		assert.Equal(t, Delayed, p.Recipients[1].Action)
		assert.True(t, mustDate("Fri, 27 Nov 2026 18:00:00 +0900").Equal(p.Recipients[1].WillRetryUntil))
		assert.Equal(t, "message/global-headers", p.ReturnedType)
		assert.Equal(t, "配信できませんでした。\r\n", string(p.Text))
	})
	t.Run("embedded utf-8", func(t *testing.T) {
		p := parseFile(t, "testdata/foreign/embedded-utf8.eml")
		assert.False(t, p.Global)
		assert.Equal(t, Typed{"dns", "x400.gw.example"}, p.DSNGateway)
		assert.Equal(t, "ENV+2B1", p.EnvID)
		require.Len(t, p.Recipients, 1)
		r := p.Recipients[0]
		assert.Equal(t, Typed{"utf-8", "山田@example.jp"}, r.OriginalRecipient)
		assert.Equal(t, Delayed, r.Action, "action in mixed case")
		assert.Equal(t, "gw-1234", r.FinalLogID)
		assert.Equal(t, "kept", r.Fields.Get("X-Custom"))
		_, ok := r.Reply()
		assert.False(t, ok, "no Diagnostic-Code")
		assert.Empty(t, p.ReturnedType)
	})
}

func TestDecodeEmbedded(t *testing.T) {
	tests := map[string]string{
		`plain@example.com`:            `plain@example.com`,
		`\x{5C71}\x{7530}@example.jp`:  `山田@example.jp`,
		`a\x{}b`:                       `a\x{}b`,
		`a\x{110000}b`:                 `a\x{110000}b`,
		`a\x{D800}b`:                   `a\x{D800}b`,
		`a\x{1234567}b`:                `a\x{1234567}b`,
		`a\x{zz}b\x{41}`:               `a\x{zz}bA`,
		`trailing\x{`:                  `trailing\x{`,
		`\x{1F600}`:                    "\U0001F600",
		`\x{5c71}`:                     `山`,
		`no brace \x{41 and \x{42}end`: `no brace \x{41 and Bend`,
	}
	for in, want := range tests {
		assert.Equal(t, want, decodeEmbedded(in), in)
	}
}

func TestReplyFromDiagnostic(t *testing.T) {
	tests := []struct {
		diag Typed
		ok   bool
		want string
	}{
		{Typed{"smtp", "550 5.1.1 User unknown"}, true, "550 5.1.1 User unknown"},
		{Typed{"smtp", "550 User unknown"}, true, "550 User unknown"},
		{Typed{"smtp", "550-5.1.1 a 550 5.1.1 b"}, true, "550 5.1.1 a 550 5.1.1 b"},
		{Typed{"smtp", "550-first 550 second"}, true, "550 first 550 second"},
		{Typed{"smtp", "250"}, true, "250"},
		{Typed{"smtp", "99 nope"}, false, ""},
		{Typed{"smtp", "hello"}, false, ""},
		{Typed{"smtp", "550x"}, false, ""},
		{Typed{"x-postfix", "connect to host: refused"}, false, ""},
		{Typed{}, false, ""},
	}
	for _, tt := range tests {
		rr := RecipientReport{DiagnosticCode: tt.diag}
		rep, ok := rr.Reply()
		assert.Equal(t, tt.ok, ok, "%v", tt.diag)
		if ok {
			assert.Equal(t, tt.want, rep.Error(), "%v", tt.diag)
		}
	}
}

const minimalStatus = "Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; a@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\n"

func report(ctype, status string) string {
	return "Content-Type: " + ctype + "\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n" + status + "\r\n--b--\r\n"
}

func TestParseMalformed(t *testing.T) {
	manyRcpts := "Reporting-MTA: dns; x\r\n" + strings.Repeat("\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\n", 1001)
	manyParts := "Content-Type: multipart/report; boundary=b\r\n\r\n" + strings.Repeat("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n", 40) + "--b--\r\n"
	tests := []struct {
		name string
		in   string
		err  string
	}{
		{"empty", "", "empty input"},
		{"garbage", "\x00\x01\x02 not mail at all", "header"},
		{"header line without colon", "this is not a header\r\n\r\nbody", "header"},
		{"not a report", "Content-Type: text/plain\r\n\r\nhello\r\n", "not multipart/report"},
		{"no content type", "Subject: x\r\n\r\nhello\r\n", "Content-Type"},
		{"MDN", report("multipart/report; report-type=disposition-notification; boundary=b", minimalStatus), "not a delivery status"},
		{"no boundary", report("multipart/report; report-type=delivery-status", minimalStatus), "without a boundary"},
		{"wrong boundary", report("multipart/report; boundary=c", minimalStatus), "NextPart: EOF"},
		{"no status part", strings.Replace(report("multipart/report; boundary=b", minimalStatus), "message/delivery-status", "text/plain", 1), "no message/delivery-status"},
		{"empty status", report("multipart/report; boundary=b", ""), "empty delivery-status"},
		{"no recipient", report("multipart/report; boundary=b", "Reporting-MTA: dns; x\r\n"), "without a recipient"},
		{"no reporting MTA", report("multipart/report; boundary=b", "Arrival-Date: Wed, 25 Nov 2026 08:30:05 +0000\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\n"), "without Reporting-MTA"},
		{"no final recipient", report("multipart/report; boundary=b", strings.Replace(minimalStatus, "Final-Recipient: rfc822; a@example.net\r\n", "", 1)), "without Final-Recipient"},
		{"bad action", report("multipart/report; boundary=b", strings.Replace(minimalStatus, "failed", "bounced", 1)), "action"},
		{"no action", report("multipart/report; boundary=b", strings.Replace(minimalStatus, "Action: failed\r\n", "", 1)), "action"},
		{"bad status", report("multipart/report; boundary=b", strings.Replace(minimalStatus, "5.0.0", "3.0.0", 1)), "status"},
		{"status words", report("multipart/report; boundary=b", strings.Replace(minimalStatus, "5.0.0", "failed", 1)), "status"},
		{"bad status line", report("multipart/report; boundary=b", "Reporting-MTA: dns; x\r\n\r\nnot a field\r\n"), "delivery-status"},
		{"too many recipients", report("multipart/report; boundary=b", manyRcpts), "more than 1000 recipients"},
		{"too many parts", manyParts, "more than 32 parts"},
		{"header too large", "Subject: " + strings.Repeat("x", 300<<10) + "\r\n\r\n", "header: larger than"},
		{"truncated", report("multipart/report; boundary=b", minimalStatus)[:60], "malformed MIME header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(strings.NewReader(tt.in))
			require.ErrorIs(t, err, ErrMalformed)
			assert.ErrorContains(t, err, tt.err)
			assert.Nil(t, p)
		})
	}
	// The minimal report itself is fine.
	p, err := Parse(strings.NewReader(report("multipart/report; boundary=b", minimalStatus)))
	require.NoError(t, err)
	require.Len(t, p.Recipients, 1)
}

func TestParseLimits(t *testing.T) {
	var buf bytes.Buffer
	r := withMessage(failedReport(), bigMessage())
	_, err := newComposer(t, nil).Compose(&buf, r)
	require.NoError(t, err)
	dsn := buf.Bytes()
	statusEnd := bytes.Index(dsn, []byte("Content-Description: Undelivered message"))
	require.Positive(t, statusEnd)

	t.Run("returned part cut", func(t *testing.T) {
		p, err := Parser{MaxReturnedBytes: 100}.Parse(bytes.NewReader(dsn))
		require.NoError(t, err)
		assert.True(t, p.ReturnedTruncated)
		assert.Len(t, p.Returned, 100)
		assert.False(t, p.Incomplete)
	})
	t.Run("input over MaxBytes after the report", func(t *testing.T) {
		p, err := Parser{MaxBytes: int64(statusEnd + 200)}.Parse(bytes.NewReader(dsn))
		require.NoError(t, err)
		assert.True(t, p.Incomplete)
		assert.True(t, p.ReturnedTruncated)
		require.Len(t, p.Recipients, 1)
	})
	t.Run("input over MaxBytes before the report", func(t *testing.T) {
		_, err := Parser{MaxBytes: 1000}.Parse(bytes.NewReader(dsn))
		require.ErrorIs(t, err, ErrMalformed)
		assert.ErrorContains(t, err, "input larger than 1000 bytes")
	})
	t.Run("input cut after the report", func(t *testing.T) {
		p, err := Parse(bytes.NewReader(dsn[:statusEnd+200]))
		require.NoError(t, err)
		assert.True(t, p.Incomplete)
	})
	t.Run("input cut at the next part", func(t *testing.T) {
		p, err := Parse(bytes.NewReader(dsn[:statusEnd]))
		require.NoError(t, err)
		assert.True(t, p.Incomplete)
		assert.Empty(t, p.ReturnedType)
	})
	t.Run("input cut inside the report", func(t *testing.T) {
		_, err := Parse(bytes.NewReader(dsn[:statusEnd-30]))
		require.ErrorIs(t, err, ErrMalformed)
		assert.ErrorContains(t, err, "delivery-status part: unexpected EOF")
	})
	t.Run("status part too large", func(t *testing.T) {
		_, err := Parser{MaxStatusBytes: 100}.Parse(bytes.NewReader(dsn))
		require.ErrorIs(t, err, ErrMalformed)
		assert.ErrorContains(t, err, "delivery-status part larger than 100 bytes")
	})
	t.Run("text cut", func(t *testing.T) {
		p, err := Parser{MaxTextBytes: 10}.Parse(bytes.NewReader(dsn))
		require.NoError(t, err)
		assert.Equal(t, "This is th", string(p.Text))
	})
	t.Run("recipients", func(t *testing.T) {
		_, err := Parser{MaxRecipients: 1}.Parse(bytes.NewReader(dsn))
		require.NoError(t, err)
		var b bytes.Buffer
		r := failedReport()
		r.Recipients = append(r.Recipients, r.Recipients[0])
		_, err = newComposer(t, nil).Compose(&b, r)
		require.NoError(t, err)
		_, err = Parser{MaxRecipients: 1}.Parse(&b)
		require.ErrorIs(t, err, ErrMalformed)
		assert.ErrorContains(t, err, "more than 1 recipients")
	})
}

// TestParseManyRecipients: a DSN for 1000 recipients (the default cap)
// is composed and read back.
func TestParseManyRecipients(t *testing.T) {
	r := failedReport()
	base := r.Recipients[0]
	r.Recipients = nil
	for i := range DefaultParseMaxRcpts {
		rs := base
		rs.FinalRecipient = fmt.Sprintf("user%d@example.net", i)
		r.Recipients = append(r.Recipients, rs)
	}
	var buf bytes.Buffer
	_, err := newComposer(t, nil).Compose(&buf, r)
	require.NoError(t, err)
	p, err := Parse(&buf)
	require.NoError(t, err)
	require.Len(t, p.Recipients, DefaultParseMaxRcpts)
	assert.Equal(t, "user999@example.net", p.Recipients[999].FinalRecipient.Value)
}

// zeroReader returns (0, nil) for ever: Parse must not spin.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestParseNoProgress(t *testing.T) {
	in := io.MultiReader(strings.NewReader(report("multipart/report; boundary=b", minimalStatus)[:40]), zeroReader{})
	_, err := Parser{MaxBytes: 40}.Parse(in)
	require.ErrorIs(t, err, ErrMalformed)
}

// TestParseGoldenFiles reads every golden DSN: the seeds of FuzzParse.
func TestParseGoldenFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.eml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		p := parseFile(t, f)
		assert.NotEmpty(t, p.Recipients, f)
		assert.NotEmpty(t, p.ReturnedType, f)
	}
}
