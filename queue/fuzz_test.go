package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

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

// FuzzHandoff hands over transactions with arbitrary IDs, addresses,
// MAIL and RCPT parameters, quarantine reasons and message bytes (what a
// hostile client and the filters can put there): Handoff never panics;
// what it queues is what it was given, under a valid queue ID; and what
// the queue holds in memory is what a reopened spool would read back
// (the envelope's JSON round trip), so a restart changes nothing.
func FuzzHandoff(f *testing.F) {
	f.Add("TXN1", "alice@example.org", "bob@example.net", "rfc822", "Bob@Example.NET", "env-1", "SUCCESS,FAILURE", "", []byte("Subject: x\r\n\r\nhi\r\n"))
	f.Add("../x", "", "Postmaster", "", "", "", "NEVER", "virus", []byte("\r\n.\r\n"))
	f.Add(strings.Repeat("A", 64), "<>", "\"a b\"@example.net", "utf-8", "\xff\xfe", "\x00\x7f", "", "spam\r\nX-Injected: 1", []byte{})
	f.Add("T-2", "ä@bücher.example", "ü@bücher.example", "", "", "\xc3", "DELAY", "", []byte("\xff\x00"))
	q, err := Open(Config{Dir: f.TempDir(), Hostname: "relay.example.org", Postmaster: "postmaster@example.org",
		CheckpointInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close() })
	f.Fuzz(func(t *testing.T, txnID, from, rcpt, orcptType, orcpt, envID, notify, quarantine string, body []byte) {
		m, err := postern.NewMessage(bytes.NewReader(body), int64(len(body)), 0)
		if err != nil {
			return // smtpserver refuses such a message before the hand-off
		}
		txn := &postern.Txn{ID: txnID, From: from, Quarantine: quarantine, Mail: postern.MailParams{EnvID: envID},
			Rcpts: []*postern.Rcpt{{Addr: rcpt, Original: rcpt, ORcptType: orcptType, ORcpt: orcpt,
				Notify: strings.FieldsFunc(notify, func(r rune) bool { return r == ',' })}}}
		id, err := (&Handoff{Queue: q}).Handoff(context.Background(), &postern.Conn{ID: "c"}, txn, m)
		if err != nil {
			if rcpt == "" || errors.Is(err, ErrConfig) {
				return
			}
			t.Fatalf("hand-off failed: %v", err)
		}
		defer q.Delete(id)
		if !validID(id) || (validID(txnID) && id != txnID) {
			t.Fatalf("queue ID %q for transaction %q", id, txnID)
		}
		info, err := q.Show(id)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Envelope.Recipients[0].Addr; got != strings.ToValidUTF8(rcpt, "\uFFFD") && postern.AddrDomain(rcpt) != "" {
			t.Fatalf("recipient %q queued as %q", rcpt, got)
		}
		if (info.State.Hold != "") != (quarantine != "") {
			t.Fatalf("quarantine %q: hold %q", quarantine, info.State.Hold)
		}
		var disk Envelope
		line, _ := json.Marshal(&info.Envelope)
		if err := json.Unmarshal(line, &disk); err != nil {
			t.Fatal(err)
		}
		disk.ID = info.Envelope.ID
		if !disk.Received.Equal(info.Envelope.Received) {
			t.Fatalf("received %v read back as %v", info.Envelope.Received, disk.Received)
		}
		disk.Received = info.Envelope.Received
		if !reflect.DeepEqual(disk, info.Envelope) {
			t.Fatalf("a restart would change the envelope:\nmemory %#v\ndisk   %#v", info.Envelope, disk)
		}
		rc, err := q.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, _ := io.ReadAll(rc)
		var want bytes.Buffer
		m.Render(&want)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("queued %q, rendered %q", got, want.Bytes())
		}
	})
}
