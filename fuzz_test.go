package postern_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"
	"testing"

	"github.com/postern/postern"
)

// FuzzParseReply checks that ParseReply never panics, fails only with the
// documented errors, and that what it accepts survives Wire and a second
// parse unchanged. More seeds are in testdata/fuzz/FuzzParseReply.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"250 OK\r\n",
		"250 2.0.0 OK\r\n",
		"250\r\n",
		"550-5.7.1 Relay denied\r\n550 5.7.1 bye\r\n",
		"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
		"250-2.0.0 a\r\n250 b\r\n",
		"550-5.1.1 a\r\n550 5.7.1 b\r\n",
		"550 4.7.1 wrong class\r\n",
		"451-4.3.0 a\n451 4.3.0 b\n",
		"250-a\r\n251 b\r\n",
		"250-a\r\n",
		"250 a\rb\r\n",
		"250 2.00.0 x \r\n",
		"550-5.+7.1 x\r\n550 y\r\n",
		"354 go\r\n",
		"",
		"25",
		"\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := postern.ParseReply(bufio.NewReader(strings.NewReader(s)))
		if err != nil {
			if !errors.Is(err, postern.ErrReplySyntax) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if !r.IsZero() {
				t.Fatalf("error %v with a non-zero reply %#v", err, r)
			}
			return
		}
		if r.Code < 200 || r.Code > 599 {
			t.Fatalf("code %d out of range", r.Code)
		}
		if len(r.Lines) == 0 || len(r.Lines) > 512 {
			t.Fatalf("%d lines", len(r.Lines))
		}
		if !r.Enhanced.IsZero() && r.Enhanced[0] != r.Code/100 {
			t.Fatalf("enhanced code %s kept for reply code %d", r.Enhanced, r.Code)
		}
		w := r.Wire()
		if n := strings.Count(w, "\n"); n != len(r.Lines) || strings.Count(w, "\r") != n || strings.Count(w, "\r\n") != n {
			t.Fatalf("wire form %q of %d lines has stray line ends", w, len(r.Lines))
		}
		r2, err := postern.ParseReplyString(w)
		if err != nil {
			t.Fatalf("reparse of %q (from %q): %v", w, s, err)
		}
		if !equalReply(r, r2) {
			t.Fatalf("round trip changed the reply\ninput: %q\nfirst: %#v\nwire:  %q\nagain: %#v", s, r, w, r2)
		}
		if w2 := r2.Wire(); w2 != w {
			t.Fatalf("wire form not stable: %q then %q", w, w2)
		}
	})
}

func equalReply(a, b postern.Reply) bool {
	if a.Code != b.Code || a.Enhanced != b.Enhanced || len(a.Lines) != len(b.Lines) {
		return false
	}
	for i := range a.Lines {
		if a.Lines[i] != b.Lines[i] {
			return false
		}
	}
	return true
}

// fuzzMaxHeader is small so the ErrHeaderTooLarge path is reached too.
const fuzzMaxHeader = 2048

// FuzzNewMessage checks that NewMessage never panics, that its fields tile
// the start of the message, that Render without edits gives back the input
// byte for byte, and that deleting the first field removes exactly its raw
// bytes. More seeds are in testdata/fuzz/FuzzNewMessage.
func FuzzNewMessage(f *testing.F) {
	for _, s := range []string{
		"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n",
		"From: a@example.test\nSubject: hi\n\nbody\n",
		"Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\n",
		"Subject: x\r\nTo: y",
		"Subject: x\r\nbody line\r\n",
		"Subject : obsolete\r\n\r\n",
		" continuation first\r\n\r\n",
		"\r\nbody only",
		"A: 1\r\n\r",
		"X:\r\n \r\n\r\n",
		"",
		"Subject: " + strings.Repeat("a", 5000) + "\r\n\r\nbody",
		strings.Repeat("X-A: 0123456789\r\n", 200) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := postern.NewMessage(bytes.NewReader(data), int64(len(data)), fuzzMaxHeader)
		if err != nil {
			if !errors.Is(err, postern.ErrHeaderTooLarge) {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(data) <= fuzzMaxHeader {
				t.Fatalf("ErrHeaderTooLarge for a %d-byte message", len(data))
			}
			return
		}
		if m.Size() != int64(len(data)) {
			t.Fatalf("Size %d, want %d", m.Size(), len(data))
		}

		// The fields are the first bytes of the message, in order.
		var hdr []byte
		for _, fl := range m.Fields() {
			if !bytes.HasPrefix(fl.Raw, []byte(fl.Name)) || fl.Name == "" {
				t.Fatalf("field %q does not start with its name %q", fl.Raw, fl.Name)
			}
			hdr = append(hdr, fl.Raw...)
		}
		if !bytes.HasPrefix(data, hdr) {
			t.Fatalf("fields %q are not the start of the message", hdr)
		}
		if len(hdr) > fuzzMaxHeader {
			t.Fatalf("%d header bytes accepted over a limit of %d", len(hdr), fuzzMaxHeader)
		}
		off := m.BodyOffset()
		if off < int64(len(hdr)) || off > int64(len(data)) {
			t.Fatalf("body offset %d outside [%d, %d]", off, len(hdr), len(data))
		}
		if sep := data[len(hdr):off]; len(sep) > 0 && (len(bytes.TrimRight(sep, "\r\n")) != 0 || sep[len(sep)-1] != '\n') {
			t.Fatalf("bytes %q between the fields and the body are not a blank line", sep)
		}
		body, err := io.ReadAll(m.NewBodyReader())
		if err != nil || !bytes.Equal(body, data[off:]) {
			t.Fatalf("body reader gave %q, %v", body, err)
		}
		n := 0
		for _, v := range m.Header() {
			n += len(v)
		}
		if n != len(m.Fields()) {
			t.Fatalf("Header has %d values for %d fields", n, len(m.Fields()))
		}

		// Render without edits reproduces the input.
		var out bytes.Buffer
		if err := m.Render(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("Render changed the message\nin:  %q\nout: %q", data, out.Bytes())
		}

		// Deleting the first field removes exactly its bytes.
		if len(m.Fields()) == 0 {
			return
		}
		first := m.Fields()[0]
		m2, err := postern.NewMessage(bytes.NewReader(data), int64(len(data)), fuzzMaxHeader)
		if err != nil {
			t.Fatal(err)
		}
		if !m2.DeleteHeader(first.Name, 0) {
			t.Fatalf("DeleteHeader(%q, 0) found nothing", first.Name)
		}
		out.Reset()
		if err := m2.Render(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data[len(first.Raw):]) {
			t.Fatalf("delete of %q\nin:  %q\nout: %q", first.Raw, data, out.Bytes())
		}
	})
}

// FuzzAddress checks the two spellings of an address against each other
// and against net/mail: whatever SplitAddress takes has a wire form that
// ParseMailbox reads back as the same address, whose canonical form
// SplitAddress takes unchanged; whatever ParseMailbox takes survives the
// same round trip. The go-smtp round trip (the real client and server) is
// smtpserver's FuzzAddressRoundTrip.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"ceo@example.test", "ceo(x)@example.test", `"ceo(x)"@example.test`, "a b@example.test", `"a\"b"@x.test`,
		`a\b@x.test`, "a@b@example.test", `"a@b"@example.test`, ".ceo.@x.test", "Postmaster", "x@[192.0.2.1]",
		"x@[IPv6:2001:db8::1]", "山田@例え.jp", "ceo@EXAMPLE.test.", "\"\"@x", "ceo@example.test(x)", "c\x00@x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(a postern.Address, from string) {
			t.Helper()
			w := a.Wire()
			if a.Domain == "" {
				if !strings.EqualFold(a.Local, "postmaster") || w != a.Local {
					t.Fatalf("%q: domainless %#v, wire %q", from, a, w)
				}
				return
			}
			back, err := postern.ParseMailbox(w)
			if err != nil || back != a {
				t.Fatalf("%q: wire %q parses to %#v, %v; want %#v", from, w, back, err, a)
			}
			again, err := postern.SplitAddress(a.String())
			if err != nil || again != a {
				t.Fatalf("%q: canonical %q splits to %#v, %v; want %#v", from, a.String(), again, err, a)
			}
			if postern.WireAddr(a.String()) != w {
				t.Fatalf("%q: WireAddr %q, Wire %q", from, postern.WireAddr(a.String()), w)
			}
			if a.NeedsQuoting() != strings.HasPrefix(w, `"`) {
				t.Fatalf("%q: NeedsQuoting %v for wire %q", from, a.NeedsQuoting(), w)
			}
			// RFC 5322 reads the same mailbox (DSN fields, headers).
			if m, err := mail.ParseAddress("<" + w + ">"); err == nil && m.Address != a.String() {
				t.Fatalf("%q: net/mail reads wire %q as %q, want %q", from, w, m.Address, a.String())
			}
		}
		if a, err := postern.SplitAddress(s); err == nil {
			check(a, s)
		} else if !errors.Is(err, postern.ErrAddressSyntax) {
			t.Fatalf("SplitAddress(%q): %v", s, err)
		}
		if a, err := postern.ParseMailbox(s); err == nil {
			check(a, s)
		} else if !errors.Is(err, postern.ErrAddressSyntax) {
			t.Fatalf("ParseMailbox(%q): %v", s, err)
		}
	})
}

// FuzzErrorPolicyText checks that UnmarshalText never panics, accepts only
// the policy words (any case) and the empty string, leaves the value alone
// on error, and that what it accepts marshals back to a word it reads as
// the same policy.
func FuzzErrorPolicyText(f *testing.F) {
	for _, s := range []string{"tempfail", "accept", "reject", "default", "", "TempFail", "REJECT",
		"fail_open", "tempfail ", " accept", "reject\x00", "acceptt", "quarantine", "\xff", "defaul"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := postern.OnErrorReject + 7 // a value no word gives
		err := p.UnmarshalText([]byte(s))
		if err != nil {
			if !errors.Is(err, postern.ErrErrorPolicy) {
				t.Fatalf("%q: error %v does not wrap ErrErrorPolicy", s, err)
			}
			if p != postern.OnErrorReject+7 {
				t.Fatalf("%q: failed but changed the value to %v", s, p)
			}
			if len(err.Error()) > 300 { // 40 bytes shown, each at most \xNN
				t.Fatalf("%q: error of %d bytes", s, len(err.Error()))
			}
			return
		}
		if !p.Valid() {
			t.Fatalf("%q read as invalid %v", s, p)
		}
		if s != "" && !strings.EqualFold(s, p.String()) {
			t.Fatalf("%q read as %v", s, p)
		}
		b, err := p.MarshalText()
		if err != nil {
			t.Fatalf("%v: MarshalText: %v", p, err)
		}
		var q postern.ErrorPolicy
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Fatalf("%v marshals to %q, read back as %v (%v)", p, b, q, err)
		}
	})
}
