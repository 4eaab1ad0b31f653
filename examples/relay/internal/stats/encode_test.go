package stats

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsonLine is the journal's line as encoding/json writes it, the
// reference appendEvent stands for.
func jsonLine(e *Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(e)
	return buf.Bytes(), err
}

var encodeEvent = Event{
	Time: time.Date(2026, 3, 9, 10, 0, 0, 123456789, time.UTC), Kind: Rejected, QueueID: "4XyZ1", ConnID: "c7",
	ClientIP: netip.MustParseAddr("198.51.100.7"), Sender: "alice@example.com", Rcpt: "bob@example.org",
	Stage: "rcpt", Filter: "dnsbl", Code: 554,
	Reason: "dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2",
}

// TestAppendEvent: the hand encoder writes what encoding/json writes,
// for the strings JSON must escape, the numbers it formats in its own
// way and the values it refuses.
func TestAppendEvent(t *testing.T) {
	base := Event{Time: time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC), Kind: Received}
	with := func(f func(*Event)) Event {
		e := base
		f(&e)
		return e
	}
	cases := map[string]Event{
		"full":         encodeEvent,
		"minimal":      base,
		"no kind":      {Time: base.Time},
		"escapes":      with(func(e *Event) { e.Reason = "a\"b\\c\b\f\n\r\t\x00\x01\x1f\x7f <&> \u2028\u2029 é 😀" }),
		"invalid utf8": with(func(e *Event) { e.Sender = "\xff\xfe a\xc3 \xe2\x80 \xed\xa0\x80 end" }),
		"ipv6 zone":    with(func(e *Event) { e.ClientIP = netip.MustParseAddr("fe80::1%eth0\"\n") }),
		"ipv4 in ipv6": with(func(e *Event) { e.ClientIP = netip.MustParseAddr("::ffff:192.0.2.1") }),
		"scores":       with(func(e *Event) { e.Score = -9.25 }),
		"tiny score":   with(func(e *Event) { e.Score = 1e-7 }),
		"huge score":   with(func(e *Event) { e.Score = 1.5e300 }),
		"edge score":   with(func(e *Event) { e.Score = 1e21 }),
		"negative 0":   with(func(e *Event) { e.Score = math.Copysign(0, -1) }),
		"numbers":      with(func(e *Event) { e.Code, e.Size = -1, math.MaxInt64 }),
		"zone offset":  with(func(e *Event) { e.Time = e.Time.In(time.FixedZone("", -(23*3600 + 59*60))) }),
		"bad offset":   with(func(e *Event) { e.Time = e.Time.In(time.FixedZone("", 24*3600)) }),
		"year 10000":   with(func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"year -1":      with(func(e *Event) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"year 0":       with(func(e *Event) { e.Time = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) }),
		"NaN":          with(func(e *Event) { e.Score = math.NaN() }),
		"infinity":     with(func(e *Event) { e.Score = math.Inf(-1) }),
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			want, werr := jsonLine(&e)
			got, gerr := appendEvent([]byte("previous\n"), &e)
			require.Equal(t, werr == nil, gerr == nil, "json: %v, appendEvent: %v", werr, gerr)
			if werr == nil {
				assert.Equal(t, "previous\n"+string(want), string(got))
			}
		})
	}
}

// FuzzAppendEvent is the differential test of the hand encoder: for any
// field values it writes encoding/json's bytes (or refuses what json
// refuses), and the journal's reader reads back the event written, its
// strings as JSON keeps them (an invalid byte becomes U+FFFD).
func FuzzAppendEvent(f *testing.F) {
	e := encodeEvent
	f.Add(e.Time.Unix(), int64(e.Time.Nanosecond()), 0, string(e.Kind), e.QueueID, e.ConnID, "198.51.100.7", "",
		e.Sender, e.Rcpt, e.Stage, e.Filter, e.Reason, e.Code, e.Virus, uint64(0), e.Size)
	f.Add(int64(1e10), int64(-1), 3600, "ham", "\xff", "\u2028", "2001:db8::1", "eth0", "<>", "\"\\", "\x00", "\x7f",
		"a\tb\nc", 0, "Eicar-\u00e9\xed\xa0\x80", math.Float64bits(1e-9), int64(-1))
	f.Add(int64(-62135596801), int64(0), -90000, "", "", "", "", "", "", "", "", "", "", -1, "", math.Float64bits(math.NaN()), int64(0))
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int, kind, queue, conn, ip, zone, sender, rcpt, stage, filter, reason string,
		code int, virus string, score uint64, size int64) {
		e := Event{Time: time.Unix(sec, nsec).In(time.FixedZone("", offset)), Kind: Kind(kind), QueueID: queue, ConnID: conn,
			Sender: sender, Rcpt: rcpt, Stage: stage, Filter: filter, Reason: reason, Code: code, Virus: virus,
			Score: math.Float64frombits(score), Size: size}
		if a, err := netip.ParseAddr(ip); err == nil {
			e.ClientIP = a.WithZone(zone)
		}
		want, werr := jsonLine(&e)
		got, gerr := appendEvent(nil, &e)
		if (werr == nil) != (gerr == nil) || werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("json %q (%v)\nhand %q (%v)", want, werr, got, gerr)
		}
		if gerr != nil || e.Kind == "" || e.Time.IsZero() || offset%60 != 0 {
			// Not an event the reader takes, or a zone offset with
			// seconds, which RFC 3339 cannot write (the journal writes
			// UTC).
			return
		}
		back, ok := decodeEvent(got)
		norm := func(s string) string { return string([]rune(s)) }
		wantBack := e
		for _, s := range []*string{(*string)(&wantBack.Kind), &wantBack.QueueID, &wantBack.ConnID, &wantBack.Sender,
			&wantBack.Rcpt, &wantBack.Stage, &wantBack.Filter, &wantBack.Reason, &wantBack.Virus} {
			*s = norm(*s)
		}
		wantBack.ClientIP = e.ClientIP.WithZone(norm(e.ClientIP.Zone()))
		if p, err := netip.ParseAddr(wantBack.ClientIP.String()); err != nil || p != wantBack.ClientIP {
			return // a zone the address syntax cannot carry: nothing reads that back
		}
		if !ok || !back.Time.Equal(wantBack.Time) {
			t.Fatalf("read back %v %+v from %q", ok, back, got)
		}
		back.Time = wantBack.Time
		if back != wantBack {
			t.Fatalf("read back\n%+v\nwant\n%+v\nline %q", back, wantBack, got)
		}
	})
}

// BenchmarkEncode is the journal's encoding of one event, by hand
// against encoding/json (the encoder it replaced), in the same run.
func BenchmarkEncode(b *testing.B) {
	e := encodeEvent
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		b.ReportAllocs()
		for b.Loop() {
			if buf.Len() >= flushBytes {
				buf.Reset()
			}
			if err := enc.Encode(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			if len(buf) >= flushBytes {
				buf = buf[:0]
			}
			var err error
			if buf, err = appendEvent(buf, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
