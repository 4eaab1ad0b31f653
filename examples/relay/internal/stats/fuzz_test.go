package stats

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadEvents feeds arbitrary bytes as a journal file. Reading never
// panics or fails (the input is in memory); every event it returns has a
// time and a kind and survives a round trip through the journal's
// encoding; bad lines are never more than the lines there are.
func FuzzReadEvents(f *testing.F) {
	good := `{"time":"2026-03-09T10:00:00Z","kind":"received","queue_id":"4XyZ1","client_ip":"192.0.2.10","sender":"a@example.com","size":2048}`
	f.Add([]byte(good + "\n"))
	f.Add([]byte(good + "\n" + good[:40]))
	f.Add([]byte(good + "\n" + good[:40] + "\n" + good + "\n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00.123456789+01:00","kind":"rejected","client_ip":"2001:db8::1","stage":"rcpt","filter":"verify","reason":"no such user","code":550}` + "\r\n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","kind":"spam","score":9.25e0}` + "\n\n   \n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","kind":"virus","virus":"Eicar-\u00e9\ud800"}` + "\n"))
	f.Add([]byte("{}\nnull\n[]\n\"x\"\n{\"time\":1}\n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","kind":"received","size":1e30}` + "\n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","kind":"received","kind":"ham"}`))
	f.Add([]byte("\x00\xff\n{"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","Kind":"spam","code":-0,"size":0,"score":-0.0e+00}` + "\n"))
	f.Add([]byte(`{ "time" : "2026-03-09T10:00:00Z" , "kind" : "received" , "code" : 012 }` + "\n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","kind":"received","code":5.5e2,"client_ip":""}` + "\n"))
	f.Add([]byte(`{"time":"2026-03-09T10:00:00Z","kind":"received","time":"2026-03-10T10:00:00-07:00"}` + "\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		var events []Event
		bad, err := readEvents(bytes.NewReader(data), func(e Event) error {
			events = append(events, e)
			return nil
		})
		if err != nil {
			t.Fatalf("reading from memory failed: %v", err)
		}
		// The fast decoder agrees with encoding/json wherever it decides.
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			fast, ok := decodeFlat(line)
			if !ok {
				continue
			}
			var slow Event
			if err := json.Unmarshal(line, &slow); err != nil {
				t.Fatalf("decodeFlat accepted what json rejects (%v): %q", err, line)
			}
			fb, ferr := json.Marshal(fast)
			sb, serr := json.Marshal(slow)
			if !fast.Time.Equal(slow.Time) || !bytes.Equal(fb, sb) || (ferr == nil) != (serr == nil) {
				t.Fatalf("decodeFlat and json differ on %q:\n%s\n%s", line, fb, sb)
			}
		}
		if lines := bytes.Count(data, []byte("\n")) + 1; bad+len(events) > lines {
			t.Fatalf("%d bad and %d good lines out of %d", bad, len(events), lines)
		}
		for _, e := range events {
			if e.Time.IsZero() || e.Kind == "" {
				t.Fatalf("event without time or kind: %+v", e)
			}
			b, err := json.Marshal(e)
			if err != nil {
				// Only what JSON can hold but a journal never writes: a
				// time outside years 0–9999 after its zone offset.
				if strings.Contains(err.Error(), "year outside of range") {
					continue
				}
				t.Fatalf("re-encoding %+v: %v", e, err)
			}
			e2, ok := decodeEvent(b)
			if !ok {
				t.Fatalf("re-encoded event does not read back: %s", b)
			}
			b2, _ := json.Marshal(e2)
			if !bytes.Equal(b, b2) {
				t.Fatalf("round trip changed the event:\n%s\n%s", b, b2)
			}
			// The reject key is bounded however odd the reason.
			if k := RejectKey(e); utf8.RuneCountInString(k) > len(e.Filter)+len(e.Stage)+len("smtp: 1234567890 ")+classRunes+len("(no reason)") {
				t.Fatalf("reject key too long: %q", k)
			}
		}
	})
}

// FuzzReasonClass feeds arbitrary reasons: the class never panics and
// stays within its bounds.
func FuzzReasonClass(f *testing.F) {
	f.Add("dnsbl", "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2")
	f.Add("verify", "no such user <bob@example.org>")
	f.Add("access", "access: From:a@b REJECT (/etc/access:3); more")
	f.Add("x", "x: ((( [::1] [ ] <> @ = == :")
	f.Add("", "IPv6:2001:db8::1 10.0.0.0/8 127.0.0.1:783 \xff\xfe")
	f.Fuzz(func(t *testing.T, filter, reason string) {
		c := ReasonClass(filter, reason)
		if n := utf8.RuneCountInString(c); n > classRunes {
			t.Fatalf("%d runes: %q", n, c)
		}
		if n := len(strings.Fields(c)); n > classWords {
			t.Fatalf("%d words: %q", n, c)
		}
		if strings.ContainsAny(c, "();") {
			t.Fatalf("parenthesis or semicolon kept: %q", c)
		}
	})
}
