package dsn

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/postern/postern"
)

// message10K is lunch with a body making it 10 KiB.
func message10K() []byte {
	msg := append([]byte(nil), lunch...)
	line := "The quick brown fox jumps over the lazy dog, again and again.\r\n"
	for len(msg)+len(line) <= 10<<10 {
		msg = append(msg, line...)
	}
	return append(msg, strings.Repeat("x", 10<<10-len(msg))...)
}

// BenchmarkCompose composes a failure DSN returning a 10 KiB message.
func BenchmarkCompose(b *testing.B) {
	c := newComposer(b, nil)
	msg := message10K()
	r := withMessage(failedReport(), msg)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Compose(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComposeMixed composes a DSN for ten recipients with mixed
// outcomes, returning the header of a 10 KiB message.
func BenchmarkComposeMixed(b *testing.B) {
	c := newComposer(b, nil)
	r := withMessage(failedReport(), message10K())
	r.Ret = RetHdrs
	base := r.Recipients[0]
	r.Recipients = nil
	for i := range 10 {
		rs := base
		if i%2 == 1 {
			rs.Action, rs.Reply, rs.WillRetryUntil = Delayed, reply(451, postern.ESC(4, 7, 1), "Greylisted"), giveUpAt
		}
		r.Recipients = append(r.Recipients, rs)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Compose(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse reads back the DSN of BenchmarkCompose.
func BenchmarkParse(b *testing.B) {
	var buf bytes.Buffer
	if _, err := newComposer(b, nil).Compose(&buf, withMessage(failedReport(), message10K())); err != nil {
		b.Fatal(err)
	}
	dsn := buf.Bytes()
	b.SetBytes(int64(len(dsn)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(dsn)); err != nil {
			b.Fatal(err)
		}
	}
}
