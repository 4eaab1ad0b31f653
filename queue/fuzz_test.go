package queue

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/postern/postern"
)

// FuzzReadSegment feeds arbitrary bytes to log replay: a crash can leave
// any tail, and replay must stop at damage, never panic or over-allocate.
func FuzzReadSegment(f *testing.F) {
	w := &wal{}
	w.buf = nil
	w.appendRecord(recMessage, "ABC", nil, []byte("{\"from\":\"a@b\"}\n"), []byte("Subject: x\r\n\r\nbody\r\n"))
	w.appendRecord(recState, "ABC", nil, []byte(`{"rcpts":[{"status":"pending"}]}`))
	w.appendRecord(recRemove, "ABC", nil)
	f.Add(w.buf)
	f.Add(w.buf[:len(w.buf)-3])
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 0, 'M', 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "seg.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Skip()
		}
		n := 0
		err := readSegment(path, func(r walRecord) error {
			n++
			if len(r.id) > 0xffff || n > len(data) {
				t.Fatalf("impossible record %d", n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReadEnvelope feeds arbitrary data files to the loader.
func FuzzReadEnvelope(f *testing.F) {
	f.Add([]byte("{\"from\":\"a@example.org\",\"rcpts\":[{\"addr\":\"b@example.net\"}],\"received\":\"2026-11-25T08:00:00Z\"}\nSubject: x\r\n\r\nhi\r\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte("no envelope"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "msg")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Skip()
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Skip()
		}
		defer fh.Close()
		env, off, size, err := readEnvelope(fh)
		if err == nil && (env == nil || off < 0 || size < 0 || off+size != int64(len(data))) {
			t.Fatalf("bad result: %v %d %d", env, off, size)
		}
	})
}

// FuzzReplyPattern parses arbitrary selection patterns and checks them
// against replies built from the fuzzer's code, enhanced code and text:
// parsing never panics, and the three ways an operator writes a reply
// they saw (its code, its enhanced code, the reply as logged) each
// select it, while a pattern of another code does not.
func FuzzReplyPattern(f *testing.F) {
	f.Add("4xx", 450, 4, 1, 1, "User unknown")
	f.Add("5.1.1", 550, 5, 1, 1, "<bob@example.org>: Recipient address rejected")
	f.Add("user unknown", 452, 4, 2, 2, "Mailbox full")
	f.Add("4.x.x", 421, 0, 0, 0, "")
	f.Add(" 450 4.1.1 ", 450, 4, 1, 1, "x")
	f.Add("\x00\xff.\u202e", 999, 9, 999, 1000, "\r\n")
	f.Fuzz(func(t *testing.T, pattern string, code, class, subject, detail int, text string) {
		p := ParseReplyPattern(pattern)
		_ = p.String()
		if p.IsZero() != (strings.TrimSpace(pattern) == "") {
			t.Fatalf("pattern %q: zero %v", pattern, p.IsZero())
		}
		if code < 200 || code > 599 || subject < 0 || subject > 999 || detail < 0 || detail > 999 {
			return
		}
		var esc postern.EnhancedCode
		if class == 2 || class == 4 || class == 5 {
			esc = postern.ESC(class, subject, detail)
		}
		r := postern.NewReply(code, esc, text)
		p.Match(r)
		if !ParseReplyPattern(strconv.Itoa(code)).Match(r) {
			t.Fatalf("code %d does not select %q", code, r.Error())
		}
		if other := code%100 + 100*(2+code/100%3); other != code && ParseReplyPattern(strconv.Itoa(other)).Match(r) {
			t.Fatalf("code %d selects %q", other, r.Error())
		}
		if !esc.IsZero() && !ParseReplyPattern(esc.String()).Match(r) {
			t.Fatalf("enhanced code %s does not select %q", esc, r.Error())
		}
		if logged := r.Error(); strings.TrimSpace(logged) != "" && !ParseReplyPattern(logged).Match(r) {
			t.Fatalf("the reply as logged, %q, does not select it", logged)
		}
	})
}
