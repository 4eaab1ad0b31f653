package dsn

import (
	"bytes"
	"errors"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern"
)

// FuzzParse feeds arbitrary bytes to Parse, seeded with the golden DSNs,
// DSNs in the style of other MTAs and broken ones. Parse never panics;
// it either fails with ErrMalformed or returns a report that has what
// RFC 3464 requires, within the limits.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/golden/*.eml", "testdata/foreign/*.eml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(report("multipart/report; boundary=b", minimalStatus)))
	f.Add([]byte(report("multipart/report; report-type=delivery-status; boundary=b", minimalStatus+"\r\nFinal-Recipient: utf-8; \\x{41}@b\r\nAction: delayed\r\nStatus: 4.4.7 (expired)\r\n")))
	f.Add([]byte("Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\nUmVwb3J0aW5nLU1UQTogZG5zOyB4DQoNCkZpbmFsLVJlY2lwaWVudDogcmZjODIyOyBhQGINCkFjdGlvbjogZmFpbGVkDQpTdGF0dXM6IDUuMC4wDQo=\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nReporting-MTA: dns; =\r\nx\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: text/plain\r\n\r\nhello\r\n"))
	f.Add([]byte("Content-Type: multipart/report; boundary=\"\"\r\n\r\n--\r\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if p != nil {
				t.Fatal("a report with an error")
			}
			return
		}
		if p.ReportingMTA.Value == "" {
			t.Fatal("no Reporting-MTA")
		}
		if len(p.Recipients) == 0 || len(p.Recipients) > DefaultParseMaxRcpts {
			t.Fatalf("%d recipients", len(p.Recipients))
		}
		for _, r := range p.Recipients {
			if r.FinalRecipient.Value == "" || !r.Action.Valid() || !validESC(r.Status) {
				t.Fatalf("recipient %+v", r)
			}
			if rep, ok := r.Reply(); ok && (rep.Code < 200 || rep.Code > 599) {
				t.Fatalf("reply %v from %q", rep, r.DiagnosticCode)
			}
		}
		if len(p.Returned) > DefaultParseMaxReturned || len(p.Text) > DefaultParseMaxText {
			t.Fatalf("kept %d returned and %d text bytes", len(p.Returned), len(p.Text))
		}
		if p.ReturnedTruncated && !returnedTypes[p.ReturnedType] {
			t.Fatalf("truncated returned part of type %q", p.ReturnedType)
		}
	})
}

// FuzzCompose composes DSNs from arbitrary addresses, server replies and
// messages. Compose never panics, and what it writes is a DSN that Parse
// reads back with the same (cleaned) fields: nothing from the input can
// add a header field, a report field or a MIME part.
func FuzzCompose(f *testing.F) {
	f.Add("alice@example.com", "bob@example.net", "Bob@Example.NET", "mx1.example.net", 550, "5.1.1", "User unknown", "", false, uint8(0), lunch)
	f.Add("jürgen@bücher.example", "山田@例え.jp", "", "mx.例え.jp", 550, "5.1.1", "ユーザー不明", "FULL", true, uint8(0), utf8Message)
	f.Add("a@b", "c@d\r\nBcc: e@f", "x\ny", "mx\r\n\r\n--=_dsn_7f3a9c--", 451, "4.7.1", "try\r\nStatus: 2.0.0", "HDRS", false, uint8(1), []byte("--=_dsn_7f3a9c\r\n\r\n"))
	f.Add("a@b", "c@d", "", "", 250, "", "Ok", "", false, uint8(2), []byte("Subject: x\n\nbody without CR\n"))
	f.Add("a@b", "c@d", "", "", 0, "", "", "", false, uint8(4), []byte{})
	f.Add("a@b", "\xff\xfe", "\x00", "\x1b[31m", 999, "9.9.9", strings.Repeat("y", 3000), "x", true, uint8(3), []byte("\r\r\n\n\r"))

	c, err := New(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sender, rcpt, orig, remote string, code int, esc, text, ret string, utf8 bool, action uint8, msg []byte) {
		rep := postern.Reply{Code: code, Lines: []string{text}}
		if e, err := postern.ParseEnhancedCode(esc); err == nil {
			rep.Enhanced = e
		}
		rs := RecipientStatus{
			FinalRecipient:    rcpt,
			OriginalRecipient: orig,
			Action:            actionOrder[int(action)%len(actionOrder)],
			RemoteMTA:         remote,
			Reply:             rep,
			LastAttemptDate:   attempt,
			WillRetryUntil:    giveUpAt,
		}
		r := withMessage(&Report{Sender: sender, EnvID: text, QueueID: orig, ArrivalDate: arrival, SMTPUTF8: utf8,
			Recipients: []RecipientStatus{rs, rs}, Ret: Ret(ret)}, msg)
		var buf bytes.Buffer
		info, err := c.Compose(&buf, r)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v", err)
			}
			return
		}
		out := buf.Bytes()
		if info.Size != int64(len(out)) {
			t.Fatalf("Info.Size %d, wrote %d", info.Size, len(out))
		}
		// Everything before the returned message is ours: CRLF only, and
		// lines within the SMTP limit.
		ours := out
		if i := bytes.Index(out, []byte("Content-Description: Undelivered message")); i >= 0 {
			ours = out[:i]
		} else if i := bytes.Index(out, []byte("Content-Description: Original message")); i >= 0 {
			ours = out[:i]
		}
		for _, line := range bytes.Split(ours, []byte("\r\n")) {
			if bytes.ContainsAny(line, "\r\n") || len(line) > 998 {
				t.Fatalf("bad line %q", line)
			}
		}

		p, err := Parse(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("Parse: %v\n%s", err, out)
		}
		wantHeader := []string{"From", "To", "Subject", "Date", "Message-Id", "Auto-Submitted", "Mime-Version", "Content-Type"}
		if info.EightBit {
			wantHeader = append(wantHeader, "Content-Transfer-Encoding")
		}
		if p.Header.Get("In-Reply-To") != "" {
			wantHeader = append(wantHeader, "In-Reply-To", "References")
		}
		if len(p.Header) != len(wantHeader) {
			t.Fatalf("header fields %v, want %v", p.Header, wantHeader)
		}
		for _, k := range wantHeader {
			if len(p.Header[k]) != 1 {
				t.Fatalf("header field %s: %q", k, p.Header[k])
			}
		}
		if p.Global != info.Global || len(p.Recipients) != 2 {
			t.Fatalf("global %v, %d recipients", p.Global, len(p.Recipients))
		}
		same := func(what, got, want string) {
			// A word no line could hold was cut with spaces.
			if got != want && strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(want, " ", "") {
				t.Fatalf("%s: got %q, want %q", what, got, want)
			}
		}
		same("EnvID", p.EnvID, cleanHeader(text, info.Global))
		for _, got := range p.Recipients {
			same("Final-Recipient", got.FinalRecipient.Value, addrField(rcpt, info.Global))
			// A valid address names the same mailbox for an RFC 5322 reader.
			if a, err := postern.SplitAddress(rcpt); err == nil && a.Domain != "" {
				if m, err := mail.ParseAddress(got.FinalRecipient.Value); err == nil && m.Address != a.String() {
					t.Fatalf("Final-Recipient %q reads as %q, want %q", got.FinalRecipient.Value, m.Address, a.String())
				}
			}
			same("Original-Recipient", got.OriginalRecipient.Value, cleanHeader(orig, info.Global))
			same("Remote-MTA", got.RemoteMTA.Value, cleanHeader(remote, info.Global))
			if !rep.IsZero() {
				same("Diagnostic-Code", got.DiagnosticCode.Value, cutUTF8(cleanHeader(rep.Error(), info.Global), maxDiagnostic))
			}
			if got.Action != rs.Action || got.Status != rs.status() {
				t.Fatalf("action %s status %v, want %s %v", got.Action, got.Status, rs.Action, rs.status())
			}
		}
		switch info.Returned {
		case ReturnFull:
			if !bytes.Equal(p.Returned, normalizeCRLF(msg)) {
				t.Fatalf("returned %q, want %q", p.Returned, msg)
			}
		case ReturnNone:
			if p.ReturnedType != "" {
				t.Fatalf("returned a %s", p.ReturnedType)
			}
		}
	})
}
