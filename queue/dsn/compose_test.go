package dsn

import (
	"bytes"
	"errors"
	"net/mail"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

type goldenCase struct {
	name   string
	config func(*Config)
	report func() *Report
	info   Info // Size and MessageID are not compared
}

// bigMessage is lunch with a body of about 3 KiB.
func bigMessage() []byte {
	body := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 70)
	return append(append([]byte(nil), lunch...), body...)
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{
			name:   "failed-full",
			report: failedReport,
			info:   Info{Subject: SubjectFailed, Returned: ReturnFull},
		},
		{
			name: "failed-hdrs",
			report: func() *Report {
				r := failedReport()
				r.Ret = RetHdrs
				return r
			},
			info: Info{Subject: SubjectFailed, Returned: ReturnHeaders},
		},
		{
			name: "delayed",
			report: func() *Report {
				return withMessage(&Report{
					Sender:      "alice@example.com",
					ArrivalDate: arrival,
					QueueID:     "4XyZ1",
					Recipients: []RecipientStatus{{
						FinalRecipient:  "bob@example.net",
						Action:          Delayed,
						RemoteMTA:       "mx1.example.net",
						Reply:           reply(451, postern.ESC(4, 7, 1), "Greylisted, please try again in 300 seconds"),
						LastAttemptDate: attempt,
						WillRetryUntil:  giveUpAt,
					}},
				}, lunch)
			},
			info: Info{Subject: SubjectDelayed, Returned: ReturnHeaders},
		},
		{
			name: "success",
			report: func() *Report {
				return withMessage(&Report{
					Sender:      "alice@example.com",
					EnvID:       "QQ314159",
					ArrivalDate: arrival,
					Ret:         RetFull, // ignored: no failure, header only (RFC 3461 §4.3)
					Recipients: []RecipientStatus{{
						FinalRecipient:  "bob@example.net",
						Action:          Delivered,
						RemoteMTA:       "mx1.example.net",
						Reply:           reply(250, postern.ESC(2, 0, 0), "Ok: queued as 8AB12"),
						LastAttemptDate: attempt,
					}, {
						FinalRecipient:  "carol@legacy.example",
						Action:          Relayed,
						RemoteMTA:       "mail.legacy.example",
						Reply:           reply(250, postern.EnhancedCode{}, "Message accepted for delivery"),
						LastAttemptDate: attempt,
					}},
				}, lunch)
			},
			info: Info{Subject: SubjectDelivered, Returned: ReturnHeaders},
		},
		{
			name:   "truncated",
			config: func(c *Config) { c.MaxReturn = 2048 },
			report: func() *Report {
				r := failedReport()
				return withMessage(r, bigMessage())
			},
			info: Info{Subject: SubjectFailed, Returned: ReturnHeaders, Truncated: true},
		},
		{
			name: "global",
			report: func() *Report {
				return withMessage(&Report{
					Sender:      "jürgen@bücher.example",
					EnvID:       "ENV-ü-1",
					ArrivalDate: arrival,
					SMTPUTF8:    true,
					Recipients: []RecipientStatus{{
						FinalRecipient:    "山田@例え.jp",
						OriginalType:      "utf-8",
						OriginalRecipient: "山田@例え.jp",
						Action:            Failed,
						RemoteMTA:         "mx.例え.jp",
						Reply:             reply(550, postern.ESC(5, 1, 1), "ユーザーが存在しません (no such user)"),
						LastAttemptDate:   attempt,
					}, {
						FinalRecipient:  "info@example.net",
						Action:          Failed,
						Reply:           reply(553, postern.ESC(5, 6, 7), "Non-ASCII addresses are not supported"),
						LastAttemptDate: attempt,
					}},
				}, utf8Message)
			},
			info: Info{Subject: SubjectFailed, Returned: ReturnFull, Global: true, SMTPUTF8: true, EightBit: true},
		},
		{
			name: "mixed",
			report: func() *Report {
				return withMessage(&Report{
					Sender:      "alice@example.com",
					EnvID:       "QQ271828",
					ArrivalDate: arrival,
					QueueID:     "4XyZ2",
					Recipients: []RecipientStatus{{
						FinalRecipient:  "dave@example.com",
						Action:          Delivered,
						Reply:           reply(250, postern.ESC(2, 0, 0), "Ok"),
						RemoteMTA:       "store.example.com",
						LastAttemptDate: attempt,
					}, {
						FinalRecipient:  "bob@example.net",
						Action:          Failed,
						RemoteMTA:       "mx1.example.net",
						Reply:           reply(550, postern.ESC(5, 1, 1), "The email account that you tried to reach does not exist. Please try", "double-checking the recipient's email address for typos or", "unnecessary spaces. For more information, go to", "https://support.example.net/mail/answer/6596"),
						LastAttemptDate: attempt,
					}, {
						FinalRecipient:  "erin@slow.example",
						Action:          Delayed,
						Reply:           reply(451, postern.ESC(4, 4, 1), "Connection to slow.example [198.51.100.7]:25 timed out"),
						LastAttemptDate: attempt,
						WillRetryUntil:  giveUpAt,
					}, {
						FinalRecipient: "frank@gone.example",
						Action:         Failed,
						Status:         postern.ESC(5, 1, 2),
						Reply:          reply(550, postern.ESC(5, 1, 2), "Domain gone.example has a null MX (RFC 7505)"),
					}},
				}, lunch)
			},
			info: Info{Subject: SubjectFailed, Returned: ReturnFull},
		},
	}
}

// TestComposeGolden compares each DSN byte for byte with its golden file
// (go test -run TestComposeGolden -update rewrites them).
func TestComposeGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newComposer(t, tc.config)
			var buf bytes.Buffer
			info, err := c.Compose(&buf, tc.report())
			require.NoError(t, err)
			got := buf.Bytes()
			assert.Equal(t, int64(len(got)), info.Size)
			assert.Equal(t, "<dsn-20261125090000-1@mx.example.org>", info.MessageID)
			info.Size, info.MessageID = 0, ""
			assert.Equal(t, tc.info, info)
			checkWire(t, got)

			testutil.Golden(t, filepath.Join("testdata", "golden", tc.name+".eml"), got, *update)
		})
	}
}

// checkWire checks what SMTP needs of a message: CRLF line ends only and
// no line over 998 octets (RFC 5321 §4.5.3.1.6).
func checkWire(t *testing.T, msg []byte) {
	t.Helper()
	for i, line := range bytes.Split(msg, []byte("\r\n")) {
		require.NotContains(t, string(line), "\n", "bare LF on line %d", i+1)
		require.NotContains(t, string(line), "\r", "bare CR on line %d", i+1)
		require.LessOrEqual(t, len(line), 998, "line %d", i+1)
	}
	require.True(t, bytes.HasSuffix(msg, []byte("\r\n")))
}

// TestRoundTrip parses each golden DSN back and finds the Report's
// fields.
func TestRoundTrip(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newComposer(t, tc.config)
			r := tc.report()
			var buf bytes.Buffer
			info, err := c.Compose(&buf, r)
			require.NoError(t, err)
			p, err := Parse(&buf)
			require.NoError(t, err)

			assert.Equal(t, info.Global, p.Global)
			assert.Equal(t, info.Subject, p.Header.Get("Subject"))
			assert.Equal(t, info.MessageID, p.Header.Get("Message-Id"))
			assert.Equal(t, "auto-replied", p.Header.Get("Auto-Submitted"))
			assert.Equal(t, Typed{"dns", "mx.example.org"}, p.ReportingMTA)
			assert.Equal(t, r.EnvID, p.EnvID)
			assert.Equal(t, r.QueueID, p.Fields.Get(QueueIDField))
			assert.True(t, r.ArrivalDate.Equal(p.ArrivalDate), "%v != %v", r.ArrivalDate, p.ArrivalDate)
			require.Len(t, p.Recipients, len(r.Recipients))
			for i, want := range r.Recipients {
				got := p.Recipients[i]
				assert.Equal(t, want.FinalRecipient, got.FinalRecipient.Value)
				assert.Equal(t, addrType("", want.FinalRecipient), got.FinalRecipient.Type)
				if want.OriginalRecipient != "" {
					assert.Equal(t, Typed{addrType(want.OriginalType, want.OriginalRecipient), want.OriginalRecipient}, got.OriginalRecipient)
				} else {
					assert.True(t, got.OriginalRecipient.IsZero())
				}
				assert.Equal(t, want.Action, got.Action)
				assert.Equal(t, want.status(), got.Status)
				if want.RemoteMTA != "" {
					assert.Equal(t, Typed{"dns", want.RemoteMTA}, got.RemoteMTA)
				}
				rep, ok := got.Reply()
				require.True(t, ok, "Diagnostic-Code %q", got.DiagnosticCode)
				assert.Equal(t, want.Reply.Code, rep.Code)
				assert.Equal(t, want.Reply.Enhanced, rep.Enhanced)
				assert.Equal(t, want.Reply.Text(), rep.Text())
				assert.True(t, want.LastAttemptDate.Equal(got.LastAttemptDate))
				assert.True(t, want.WillRetryUntil.Equal(got.WillRetryUntil))
			}

			msg := make([]byte, r.Size)
			_, err = r.Message.ReadAt(msg, 0)
			require.NoError(t, err)
			switch info.Returned {
			case ReturnFull:
				assert.Equal(t, string(msg), string(p.Returned))
				assert.Contains(t, []string{"message/rfc822", "message/global"}, p.ReturnedType)
			case ReturnHeaders:
				end, _ := headerEnd(msg)
				assert.Equal(t, string(msg[:end]), string(p.Returned))
				assert.Contains(t, []string{"text/rfc822-headers", "message/global-headers"}, p.ReturnedType)
			}
			assert.False(t, p.ReturnedTruncated)
			assert.False(t, p.Incomplete)
			assert.Contains(t, string(p.Text), "This is the mail delivery system at mx.example.org.")
		})
	}
}

func TestComposeHeaderInjection(t *testing.T) {
	c := newComposer(t, nil)
	r := failedReport()
	r.Sender = "alice@example.com>\r\nBcc: <victim@example.org"
	r.EnvID = "id\r\nX-Injected: 1"
	r.QueueID = "Q\nX-Injected: 2"
	r.Recipients[0].FinalRecipient = "bob@example.net\r\nAction: delivered"
	r.Recipients[0].RemoteMTA = "mx\r\n\r\n--=_dsn_7f3a9c--"
	r.Recipients[0].Reply = reply(550, postern.ESC(5, 1, 1), "no\r\nStatus: 2.0.0", "\x00\x1b[31mred")
	var buf bytes.Buffer
	_, err := c.Compose(&buf, r)
	require.NoError(t, err)
	out := buf.String()
	checkWire(t, buf.Bytes())
	for _, bad := range []string{"\r\nBcc:", "\r\nX-Injected:", "\r\nAction: delivered", "\r\nStatus: 2.0.0", "\x00", "\x1b"} {
		assert.NotContains(t, out, bad)
	}
	p, err := Parse(strings.NewReader(out))
	require.NoError(t, err)
	require.Len(t, p.Recipients, 1)
	assert.Equal(t, Failed, p.Recipients[0].Action)
	assert.Equal(t, postern.ESC(5, 1, 1), p.Recipients[0].Status)
	assert.Equal(t, "bob@example.net Action: delivered", p.Recipients[0].FinalRecipient.Value)
	assert.Equal(t, "<alice@example.com> Bcc: <victim@example.org>", p.Header.Get("To"))
	assert.Empty(t, p.Header.Get("Bcc"))
	assert.Equal(t, "id X-Injected: 1", p.EnvID)
	assert.Equal(t, "smtp; 550 5.1.1 no Status: 2.0.0 [31mred", p.Recipients[0].DiagnosticCode.String())
	assert.Equal(t, "message/rfc822", p.ReturnedType, "the boundary in Remote-MTA did not end the report")
}

func TestComposeSenderInBrackets(t *testing.T) {
	r := failedReport()
	r.Sender = "<alice@example.com>"
	var buf bytes.Buffer
	_, err := newComposer(t, nil).Compose(&buf, r)
	require.NoError(t, err)
	assert.Contains(t, buf.String(), "\r\nTo: <alice@example.com>\r\n")
}

// Addresses come in canonical form and go out in wire form: a local part
// that is not a Dot-string is quoted in To:, Final-Recipient and the text,
// so each names the very mailbox, and net/mail reads it back so.
func TestComposeQuotedAddresses(t *testing.T) {
	r := failedReport()
	r.Sender = "a  b@example.com"
	r.Recipients[0].FinalRecipient = "ceo(x)@example.net"
	var buf bytes.Buffer
	_, err := newComposer(t, nil).Compose(&buf, r)
	require.NoError(t, err)
	out := buf.String()
	assert.Contains(t, out, "\r\nTo: <\"a\\ \\ b\"@example.com>\r\n", "spaces escaped: folding keeps them")
	assert.Contains(t, out, "\r\nFinal-Recipient: rfc822; \"ceo(x)\"@example.net\r\n")
	assert.Contains(t, out, "<\"ceo(x)\"@example.net>: host mx1.example.net said:")
	p, err := Parse(strings.NewReader(out))
	require.NoError(t, err)
	to, err := mail.ParseAddress(p.Header.Get("To"))
	require.NoError(t, err)
	assert.Equal(t, "a  b@example.com", to.Address)
	final, err := mail.ParseAddress(p.Recipients[0].FinalRecipient.Value)
	require.NoError(t, err)
	assert.Equal(t, "ceo(x)@example.net", final.Address, "not ceo@ with a comment")
}

func TestComposeFolding(t *testing.T) {
	c := newComposer(t, nil)
	r := failedReport()
	long := strings.Repeat("word ", 60) + strings.Repeat("x", 2000) + " end"
	r.Recipients[0].Reply = reply(550, postern.ESC(5, 7, 1), long)
	var buf bytes.Buffer
	_, err := c.Compose(&buf, r)
	require.NoError(t, err)
	checkWire(t, buf.Bytes())
	p, err := Parse(&buf)
	require.NoError(t, err)
	// Folding changes nothing but the 2000-byte word, which no line can
	// hold and which is cut into pieces.
	diag := p.Recipients[0].DiagnosticCode.Value
	assert.True(t, strings.HasPrefix(diag, "550 5.7.1 "+strings.Repeat("word ", 60)+"x"), diag)
	assert.Equal(t, strings.Repeat("x", 2000), strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(diag, "550 5.7.1 "+strings.Repeat("word ", 60)), " end"), " ", ""))
}

func TestComposeBoundaryCollision(t *testing.T) {
	c := newComposer(t, nil)
	msg := append(append([]byte(nil), lunch...), "--=_dsn_7f3a9c\r\n--=_dsn_7f3a9c=1--\r\n"...)
	r := withMessage(failedReport(), msg)
	var buf bytes.Buffer
	_, err := c.Compose(&buf, r)
	require.NoError(t, err)
	assert.Contains(t, buf.String(), `boundary="=_dsn_7f3a9c=2"`)
	p, err := Parse(&buf)
	require.NoError(t, err)
	assert.Equal(t, string(msg), string(p.Returned))
}

func TestComposeOriginal(t *testing.T) {
	bare := []byte("Subject: bare LF\nMessage-ID: <bare@example.com>\n\nline one\nline two") // no final line end
	noBody := []byte("Subject: no body\r\nMessage-ID: not-a-msg-id\r\n")
	hugeHeader := []byte("Subject: x\r\nX-Long: " + strings.Repeat("a", 3000) + "\r\nX-Next: 1\r\n\r\nbody\r\n")
	tests := []struct {
		name      string
		msg       []byte
		ret       Ret
		maxReturn int64
		returned  Return
		content   string
		truncated bool
		inReplyTo string
	}{
		{name: "bare LF full", msg: bare, returned: ReturnFull,
			content: "Subject: bare LF\r\nMessage-ID: <bare@example.com>\r\n\r\nline one\r\nline two\r\n", inReplyTo: "<bare@example.com>"},
		{name: "bare LF hdrs", msg: bare, ret: "hdrs", returned: ReturnHeaders,
			content: "Subject: bare LF\r\nMessage-ID: <bare@example.com>\r\n", inReplyTo: "<bare@example.com>"},
		{name: "no body", msg: noBody, returned: ReturnFull, content: string(noBody)},
		{name: "no body hdrs", msg: noBody, ret: RetHdrs, returned: ReturnHeaders, content: string(noBody)},
		{name: "unknown RET is default", msg: lunch, ret: "BOTH", returned: ReturnFull, content: string(lunch), inReplyTo: "<lunch.42@example.com>"},
		{name: "exactly at the bound", msg: lunch, maxReturn: int64(len(lunch)), returned: ReturnFull, content: string(lunch), inReplyTo: "<lunch.42@example.com>"},
		{name: "one byte over", msg: lunch, maxReturn: int64(len(lunch)) - 1, returned: ReturnHeaders, truncated: true,
			content: string(lunch[:bytes.Index(lunch, []byte("\r\n\r\n"))+2]), inReplyTo: "<lunch.42@example.com>"},
		{name: "header over the bound", msg: hugeHeader, maxReturn: 1024, returned: ReturnHeaders, truncated: true,
			content: "Subject: x\r\n"},
		{name: "empty message", msg: []byte{}, returned: ReturnNone},
		{name: "no message", returned: ReturnNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newComposer(t, func(c *Config) { c.MaxReturn = tt.maxReturn })
			r := failedReport()
			r.Ret = tt.ret
			r.Message, r.Size = nil, 0
			if tt.msg != nil {
				withMessage(r, tt.msg)
			}
			var buf bytes.Buffer
			info, err := c.Compose(&buf, r)
			require.NoError(t, err)
			checkWire(t, buf.Bytes())
			assert.Equal(t, tt.returned, info.Returned)
			assert.Equal(t, tt.truncated, info.Truncated)
			p, err := Parse(bytes.NewReader(buf.Bytes()))
			require.NoError(t, err)
			assert.Equal(t, tt.content, string(p.Returned))
			assert.Equal(t, tt.inReplyTo, p.Header.Get("In-Reply-To"))
			assert.Equal(t, tt.inReplyTo, p.Header.Get("References"))
			if tt.truncated {
				assert.Contains(t, string(p.Text), "so only its header is attached")
			}
			if tt.name == "header over the bound" {
				assert.Contains(t, string(p.Text), "The header itself was cut after 1 KiB.")
			}
		})
	}
}

func TestComposeStatusDefaults(t *testing.T) {
	tests := []struct {
		action Action
		status postern.EnhancedCode
		reply  postern.Reply
		want   string
	}{
		{Failed, postern.EnhancedCode{}, postern.Reply{}, "5.0.0"},
		{Delayed, postern.EnhancedCode{}, postern.Reply{}, "4.0.0"},
		{Delivered, postern.EnhancedCode{}, postern.Reply{}, "2.0.0"},
		{Relayed, postern.EnhancedCode{}, postern.Reply{}, "2.0.0"},
		{Expanded, postern.EnhancedCode{}, postern.Reply{}, "2.0.0"},
		{Failed, postern.EnhancedCode{}, reply(554, postern.EnhancedCode{}, "no"), "5.0.0"},
		{Failed, postern.EnhancedCode{}, reply(550, postern.ESC(5, 7, 1), "no"), "5.7.1"},
		{Failed, postern.ESC(4, 4, 7), reply(451, postern.ESC(4, 4, 1), "expired"), "4.4.7"},
		{Delayed, postern.EnhancedCode{}, reply(421, postern.EnhancedCode{}, "busy"), "4.0.0"},
		{Failed, postern.EnhancedCode{}, reply(550, postern.ESC(9, 9, 9), "odd"), "5.0.0"},
		{Failed, postern.EnhancedCode{}, reply(354, postern.EnhancedCode{}, "odd"), "5.0.0"},
		{Delivered, postern.EnhancedCode{}, reply(650, postern.EnhancedCode{}, "odd"), "2.0.0"},
	}
	for _, tt := range tests {
		rs := RecipientStatus{FinalRecipient: "a@b.example", Action: tt.action, Status: tt.status, Reply: tt.reply}
		assert.Equal(t, tt.want, rs.status().String(), "%+v", tt)
	}
}

func TestComposeInvalid(t *testing.T) {
	c := newComposer(t, nil)
	tests := []struct {
		name string
		mod  func(r *Report)
	}{
		{"null sender", func(r *Report) { r.Sender = "" }},
		{"null sender brackets", func(r *Report) { r.Sender = "<>" }},
		{"no recipients", func(r *Report) { r.Recipients = nil }},
		{"no final recipient", func(r *Report) { r.Recipients[0].FinalRecipient = " \r\n" }},
		{"unknown action", func(r *Report) { r.Recipients[0].Action = "bounced" }},
		{"bad status", func(r *Report) { r.Recipients[0].Status = postern.ESC(3, 1, 1) }},
		{"bad status detail", func(r *Report) { r.Recipients[0].Status = postern.ESC(5, 1000, 1) }},
		{"bad address type", func(r *Report) { r.Recipients[0].OriginalType = "rfc822;x" }},
		{"negative size", func(r *Report) { r.Size = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := failedReport()
			tt.mod(r)
			var buf bytes.Buffer
			_, err := c.Compose(&buf, r)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Zero(t, buf.Len())
		})
	}
	_, err := c.Compose(&bytes.Buffer{}, nil)
	require.ErrorIs(t, err, ErrInvalid)
}

type shortReaderAt struct{}

func (shortReaderAt) ReadAt(p []byte, off int64) (int, error) { return 0, errors.New("disk on fire") }

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("write failed")
	}
	f.n--
	return len(p), nil
}

func TestComposeIOErrors(t *testing.T) {
	c := newComposer(t, nil)
	r := failedReport()
	r.Message = shortReaderAt{}
	_, err := c.Compose(&bytes.Buffer{}, r)
	require.ErrorContains(t, err, "disk on fire")

	r = failedReport()
	r.Size += 10 // the message is shorter than it says
	_, err = c.Compose(&bytes.Buffer{}, r)
	require.ErrorIs(t, err, errShortRead)

	for n := range 3 {
		_, err = c.Compose(&failWriter{n: n}, failedReport())
		require.Error(t, err, "writer failing after %d writes", n)
	}
}

func TestNewConfig(t *testing.T) {
	bad := []Config{
		{},
		{ReportingMTA: "mx example.org"},
		{ReportingMTA: "mx..example.org"},
		{ReportingMTA: "mx.example.org", MaxReturn: -1},
		{ReportingMTA: "mx.example.org", From: "postmaster"},
		{ReportingMTA: "mx.example.org", From: "a b@example.org"},
		{ReportingMTA: "mx.example.org", From: "a@example.org\r\nBcc: x@y"},
		{ReportingMTA: "mx.example.org", FromName: "Mail\r\nBcc: x@y"},
	}
	for _, cfg := range bad {
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	for _, host := range []string{"mx.example.org", "mx.example.org.", "[192.0.2.1]", "localhost"} {
		_, err := New(Config{ReportingMTA: host})
		require.NoError(t, err, host)
	}

	// Defaults: random Message-ID and boundary, the real clock.
	c, err := New(Config{ReportingMTA: "mx.example.org."})
	require.NoError(t, err)
	var a, b bytes.Buffer
	before := time.Now().Add(-time.Second)
	ia, err := c.Compose(&a, failedReport())
	require.NoError(t, err)
	ib, err := c.Compose(&b, failedReport())
	require.NoError(t, err)
	assert.NotEqual(t, ia.MessageID, ib.MessageID)
	assert.True(t, strings.HasSuffix(ia.MessageID, "@mx.example.org>"), ia.MessageID)
	pa, err := Parse(&a)
	require.NoError(t, err)
	assert.Equal(t, `"Mail Delivery System" <MAILER-DAEMON@mx.example.org>`, pa.Header.Get("From"))
	d, err := pa.Header.Date()
	require.NoError(t, err)
	assert.False(t, d.Before(before.Truncate(time.Second)))

	// A configured From, and Message-ID and boundary funcs that return
	// what cannot be used.
	c = newComposer(t, func(c *Config) { c.From = "bounces@example.org"; c.FromName = "Postmaster at Example" })
	require.NoError(t, err)
	a.Reset()
	_, err = c.Compose(&a, failedReport())
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(a.String(), "From: \"Postmaster at Example\" <bounces@example.org>\r\n"), a.String())
	for _, mod := range []func(*Config){
		func(c *Config) { c.MessageID = func() string { return "a b@c" } },
		func(c *Config) { c.MessageID = func() string { return "" } },
		func(c *Config) { c.Boundary = func() string { return "" } },
		func(c *Config) { c.Boundary = func() string { return "has space" } },
		func(c *Config) { c.Boundary = func() string { return strings.Repeat("b", 71) } },
	} {
		_, err := newComposer(t, mod).Compose(&bytes.Buffer{}, failedReport())
		require.ErrorIs(t, err, ErrConfig)
	}
}

func TestWants(t *testing.T) {
	tests := []struct {
		notify []string
		want   map[Action]bool
	}{
		{nil, map[Action]bool{Failed: true, Delayed: true}},
		{[]string{}, map[Action]bool{Failed: true, Delayed: true}},
		{[]string{"NEVER"}, map[Action]bool{}},
		{[]string{"SUCCESS"}, map[Action]bool{Delivered: true, Relayed: true, Expanded: true}},
		{[]string{"FAILURE"}, map[Action]bool{Failed: true}},
		{[]string{"DELAY"}, map[Action]bool{Delayed: true}},
		{[]string{"success", "Failure"}, map[Action]bool{Failed: true, Delivered: true, Relayed: true, Expanded: true}},
		{[]string{"SUCCESS", "FAILURE", "DELAY"}, map[Action]bool{Failed: true, Delayed: true, Delivered: true, Relayed: true, Expanded: true}},
		{[]string{"FAILURE", "NEVER"}, map[Action]bool{}}, // invalid (RFC 3461 §4.1), and NEVER wins
		{[]string{"BOGUS"}, map[Action]bool{}},
	}
	for _, tt := range tests {
		for _, a := range actionOrder {
			assert.Equal(t, tt.want[a], Wants(tt.notify, a), "Wants(%q, %s)", tt.notify, a)
		}
		assert.False(t, Wants(tt.notify, "bogus"))
	}
}

func TestNullSender(t *testing.T) {
	for _, s := range []string{"", "<>", " <> "} {
		assert.True(t, NullSender(s), s)
		assert.False(t, ShouldSend(s, nil, Failed), s)
	}
	for _, s := range []string{"a@example.com", "postmaster"} {
		assert.False(t, NullSender(s), s)
		assert.True(t, ShouldSend(s, nil, Failed), s)
		assert.False(t, ShouldSend(s, nil, Delivered), s)
		assert.False(t, ShouldSend(s, []string{"NEVER"}, Failed), s)
	}
}

func TestCleanHeader(t *testing.T) {
	tests := []struct {
		in            string
		ascii, global string
	}{
		{"plain", "plain", "plain"},
		{"  a \t b\r\n c  ", "a b c", "a b c"},
		{"jürgen@bücher.example", "j?rgen@b?cher.example", "jürgen@bücher.example"},
		{"bad\xffutf8", "bad?utf8", "bad?utf8"},
		{"c1\u0085ctl\u2028ls", "c1 ctl ls", "c1 ctl ls"},
		{"\x00\x7f", "", ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.ascii, cleanHeader(tt.in, false), "%q", tt.in)
		assert.Equal(t, tt.global, cleanHeader(tt.in, true), "%q", tt.in)
	}
}

func TestWriteField(t *testing.T) {
	var b strings.Builder
	writeField(&b, "Subject", "short")
	writeField(&b, "Diagnostic-Code", "smtp; 550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking")
	assert.Equal(t, "Subject: short\r\n"+
		"Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach\r\n"+
		" does not exist. Please try double-checking\r\n", b.String())
}

func TestSizeText(t *testing.T) {
	assert.Equal(t, "1 MiB", sizeText(1<<20))
	assert.Equal(t, "2 KiB", sizeText(2048))
	assert.Equal(t, "1000 bytes", sizeText(1000))
	assert.Equal(t, "1025 KiB", sizeText(1025<<10))
}
