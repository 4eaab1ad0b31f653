package scan

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
)

// benchMessages are the three sizes of the walk benchmarks: a short text
// mail, a mail with a 100 KiB attachment, and one of 10 MiB with five
// attachments.
func benchMessages(b *testing.B) map[string][]byte {
	b.Helper()
	text := "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n" +
		"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <b@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. See https://example.com/x\r\n", 22)
	random := func(n int) []byte {
		p := make([]byte, n)
		_, _ = rand.Read(p)
		return p
	}
	head := "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n"
	body := "Content-Type: multipart/alternative; boundary=\"=_a\"\r\n\r\n" + multipart("=_a",
		"Content-Type: text/plain; charset=utf-8\r\n\r\nThe files are attached.\r\n",
		"Content-Type: text/html; charset=utf-8\r\n\r\n<p>The <a href=\"https://example.com/f\">files</a> are attached.</p>\r\n")
	small := head + multipart("=_b", body, attachment("application/pdf", "report.pdf", append([]byte("%PDF-1.7\n"), random(100<<10)...)))
	var parts []string
	parts = append(parts, body)
	for i := range 5 {
		parts = append(parts, attachment("application/octet-stream", "data"+string(rune('1'+i))+".bin", random(1536<<10)))
	}
	large := head + multipart("=_b", parts...)
	return map[string][]byte{"2KiB-text": []byte(text), "100KiB-attachment": []byte(small), "10MiB-5-attachments": []byte(large)}
}

var benchSizes = []string{"2KiB-text", "100KiB-attachment", "10MiB-5-attachments"}

// BenchmarkWalk is the walker (pre-scan, enmime, hashing, sniffing, text
// and URLs) against a bare enmime.ReadEnvelope of the same bytes.
func BenchmarkWalk(b *testing.B) {
	msgs := benchMessages(b)
	w, err := NewWalker(WalkerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range benchSizes {
		data := msgs[name]
		b.Run("walk/"+name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.WalkBytes(ctx, data); err != nil {
					b.Fatal(err)
				}
			}
		})
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

// BenchmarkPrescan is the pre-scan alone.
func BenchmarkPrescan(b *testing.B) {
	msgs := benchMessages(b)
	lim, _ := Limits{}.withDefaults()
	for _, name := range benchSizes {
		data := msgs[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := prescan(context.Background(), data, &lim, 0, "0", lim.MaxParts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAttachmentPolicy checks a walked message with a nested zip.
func BenchmarkAttachmentPolicy(b *testing.B) {
	c, err := walk(b, Limits{}, nestedEICAR(b))
	if err != nil {
		b.Fatal(err)
	}
	a, _ := NewAttachmentPolicy(AttachmentConfig{})
	b.ReportAllocs()
	for b.Loop() {
		if len(a.Check(context.Background(), c)) != 1 {
			b.Fatal("want one finding")
		}
	}
}

// BenchmarkHostile: what the pre-scan saves. The walker refuses these
// trees at once; bare enmime parses them in full (run with -benchtime 1x:
// enmime takes seconds on the deep one).
func BenchmarkHostile(b *testing.B) {
	w, err := NewWalker(WalkerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"10000-parts", []byte(manyParts(10000))},
		{"3000-deep", []byte(deepNesting(3000))},
	} {
		b.Run("walk/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.WalkBytes(context.Background(), tc.msg); err == nil {
					b.Fatal("not refused")
				}
			}
		})
		b.Run("enmime/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = enmime.ReadParts(bytes.NewReader(tc.msg))
			}
		})
	}
}

// BenchmarkCheck is the attachment policy over the walked benchmark
// messages (ordinary mail: its cost is the sniffing of every attachment
// for archives).
func BenchmarkCheck(b *testing.B) {
	msgs := benchMessages(b)
	w, err := NewWalker(WalkerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	a, _ := NewAttachmentPolicy(AttachmentConfig{})
	for _, name := range benchSizes {
		c, err := w.WalkBytes(context.Background(), msgs[name])
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if fs := a.Check(context.Background(), c); len(fs) != 0 {
					b.Fatal(fs)
				}
			}
		})
	}
}

// BenchmarkArchiveBounds is what a hostile archive costs the check: each
// is refused with an ArchiveLimit finding.
func BenchmarkArchiveBounds(b *testing.B) {
	a, _ := NewAttachmentPolicy(AttachmentConfig{})
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"tar.gz-1GiB-of-zeros", tarBomb(b, 1<<30)},
		{"zip-of-zip-1GiB-of-zeros", zipBomb(b, 1<<30)},
		{"tar-100000-entries", manyEntries(b, 100000)},
		{"tar.gz-100000-entries", gzipOf(b, "", manyEntries(b, 100000))},
		{"nested-6-deep", nestMixed(b, tarOf(b, "evil.exe", mzStub), 6)},
	} {
		c := leafContent("bomb.bin", tc.data)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fs := a.Check(context.Background(), c)
				if len(fs) == 0 || fs[len(fs)-1].Kind != ArchiveLimit {
					b.Fatal(fs)
				}
			}
		})
	}
}
