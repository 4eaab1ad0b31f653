package scan

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"github.com/postern/postern"
)

// ordinaryHead is the header block of the ordinary messages: what a
// relay sees on mail from a common client, a trace field included.
const ordinaryHead = "Received: from mail.example.org (mail.example.org [192.0.2.25])\r\n" +
	"\tby mx.example.com with ESMTPS id 4XyZ1; Wed, 25 Nov 2026 09:00:01 +0000\r\n" +
	"From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.com>\r\n" +
	"Subject: Lunch on Thursday?\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <20261125090000.1234@example.org>\r\nMIME-Version: 1.0\r\n"

// ordinaryMessages are the walk+policy benchmark's mail: a 1 KiB
// single-part text message (the relay benchmark's message), a
// multipart/alternative text and HTML message, and one with a 24 KiB PDF
// attached.
func ordinaryMessages(tb testing.TB) map[string][]byte {
	tb.Helper()
	line := "Shall we meet at the usual place? The menu is at https://example.com/menu.\r\n"
	text := ordinaryHead + "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n\r\n" + strings.Repeat(line, 1024/len(line)-5)
	plain := "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		strings.Repeat("Shall we meet at the usual place? The menu is at https://example.com/menu =\r\nand it changes on Fridays.\r\n", 8)
	html := "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<html><body>" + strings.Repeat("<p>Shall we meet at the <b>usual place</b>? The <a href=3D\"https://example.com/menu\">menu</a> =\r\nchanges on Fridays.</p>\r\n", 8) +
		"</body></html>\r\n"
	alt := ordinaryHead + "Content-Type: multipart/alternative; boundary=\"=_alt\"\r\n\r\n" + multipart("=_alt", plain, html)
	pdf := make([]byte, 24<<10)
	_, _ = rand.Read(pdf)
	copy(pdf, "%PDF-1.7\n")
	mixed := ordinaryHead + "Content-Type: multipart/mixed; boundary=\"=_mix\"\r\n\r\n" + multipart("=_mix",
		"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThe minutes are attached — see you then.\r\n",
		attachment("application/pdf", "minutes.pdf", pdf))
	return map[string][]byte{"1KiB-text": []byte(text), "alternative": []byte(alt), "attachment": []byte(mixed)}
}

var ordinaryNames = []string{"1KiB-text", "alternative", "attachment"}

// walkPolicy is the content part of the relay's scan filter: the walk of
// the spooled message and the attachment policy (no scanners).
func walkPolicy(tb testing.TB, fast bool) func(m *postern.Message) {
	tb.Helper()
	w, err := NewWalker(WalkerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	w.noFast = !fast
	a, err := NewAttachmentPolicy(AttachmentConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	f, err := NewFilter(FilterConfig{Walker: w, Attachments: a})
	if err != nil {
		tb.Fatal(err)
	}
	c, t := session("bob@example.com")
	return func(m *postern.Message) {
		if v, err := f.CheckData(context.Background(), c, t, m); err != nil || v.Action != postern.Continue {
			tb.Fatal(v, err)
		}
	}
}

// BenchmarkWalkPolicy is the scan filter's walk and attachment policy on
// ordinary mail against a bare enmime.ReadEnvelope of the same bytes,
// interleaved in one loop so that both see the same machine: the
// x-enmime metric is enmime's time over ours (above 1: faster than a
// bare parse). The "full" variants turn the single-part fast path off.
func BenchmarkWalkPolicy(b *testing.B) {
	msgs := ordinaryMessages(b)
	for _, name := range ordinaryNames {
		data := msgs[name]
		m := spool(b, string(data))
		for _, v := range []struct {
			name string
			fast bool
		}{{"fast", true}, {"full", false}} {
			check := walkPolicy(b, v.fast)
			b.Run("ratio-"+v.name+"/"+name, func(b *testing.B) {
				var ours, theirs time.Duration
				for b.Loop() {
					t0 := time.Now()
					check(m)
					t1 := time.Now()
					if _, err := enmime.ReadEnvelope(bytes.NewReader(data)); err != nil {
						b.Fatal(err)
					}
					ours, theirs = ours+t1.Sub(t0), theirs+time.Since(t1)
				}
				b.ReportMetric(float64(theirs)/float64(ours), "x-enmime")
				b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "walk-ns/op")
				b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N), "enmime-ns/op")
			})
			b.Run("walk+policy-"+v.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					check(m)
				}
			})
		}
		b.Run("enmime/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enmime.ReadEnvelope(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
