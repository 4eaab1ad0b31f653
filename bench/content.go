package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"github.com/postern/postern/scan"
)

const contentSetup = `In this process, the same mix of messages is processed over and over,
pass by pass in turn, for a fixed time: by the relay's content path (package scan: a Walker with the default limits,
then the default AttachmentPolicy on what it found) and, as the reference, by a bare
enmime.ReadEnvelope of the same bytes. MB/s = 10⁶ bytes of raw message per second, from the
median time of a pass over the mix within each repetition; the same again for ordinary mail alone
(the mix's plain-text and text+HTML messages).
The mix (one of each): a short plain-text mail, a text+HTML alternative, a mail with a
200 KiB PDF and a zip attachment, a forwarded message (message/rfc822 with its own
multipart and a PNG) beside a quoted-printable Latin-1 part, a 512 KiB binary attachment,
and an "invoice.pdf.exe" program inside a zip (which the policy must find).`

func contentSection(ctx context.Context, h *harness) *Section {
	s := newSection("content", "Content: MIME walk and attachment policy against bare enmime", contentSetup)
	if err := runContent(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

func runContent(ctx context.Context, h *harness, s *Section) error {
	mix, err := contentMix()
	if err != nil {
		return err
	}
	var total int
	for _, m := range mix {
		total += len(m)
	}
	w, err := scan.NewWalker(scan.WalkerConfig{})
	if err != nil {
		return err
	}
	policy, err := scan.NewAttachmentPolicy(scan.AttachmentConfig{})
	if err != nil {
		return err
	}
	// The policy must see what is in the mix, or the walk is not doing
	// the work it does on real mail.
	findings := 0
	for _, m := range mix {
		c, err := w.Walk(ctx, bytes.NewReader(m))
		if err != nil {
			return fmt.Errorf("walk: %w", err)
		}
		findings += len(policy.Check(ctx, c))
	}
	if findings == 0 {
		return fmt.Errorf("the attachment policy found nothing in the mix: the benchmark is broken")
	}
	window := time.Duration(float64(time.Second) * min(h.o.scale*2, 1))
	// Ordinary mail: the first two of the mix, the plain-text and the
	// text+HTML messages, as most mail is.
	ordinary := mix[:2]
	s.figure("walk", fmt.Sprintf("scan.Walker + AttachmentPolicy, mix of %d messages (%d KiB)", len(mix), total>>10), "MB/s")
	s.figure("enmime", "enmime.ReadEnvelope, the same mix", "MB/s")
	s.figure("walk-ordinary", "scan.Walker + AttachmentPolicy, ordinary mail (the plain-text and the text+HTML messages)", "MB/s")
	s.figure("enmime-ordinary", "enmime.ReadEnvelope, the same ordinary mail", "MB/s")
	s.ratio("walk-enmime", "MIME walk + policy/bare enmime", "walk", "enmime").inChart()
	s.ratio("walk-enmime-ordinary", "MIME walk + policy/bare enmime, ordinary mail", "walk-ordinary", "enmime-ordinary")
	walkPass := func(msgs [][]byte) func() error {
		return func() error {
			for _, m := range msgs {
				c, err := w.Walk(ctx, bytes.NewReader(m))
				if err != nil {
					return err
				}
				policy.Check(ctx, c)
			}
			return nil
		}
	}
	parsePass := func(msgs [][]byte) func() error {
		return func() error {
			for _, m := range msgs {
				if _, err := enmime.ReadEnvelope(bytes.NewReader(m)); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for rep := range h.o.reps {
		walk, parse, err := alternate(window, total, walkPass(mix), parsePass(mix))
		if err != nil {
			return err
		}
		s.add("walk", walk)
		s.add("enmime", parse)
		walkO, parseO, err := alternate(window, len(ordinary[0])+len(ordinary[1]), walkPass(ordinary), parsePass(ordinary))
		if err != nil {
			return err
		}
		s.add("walk-ordinary", walkO)
		s.add("enmime-ordinary", parseO)
		h.logf("content rep %d/%d walk+policy %.1f MB/s, enmime %.1f MB/s; ordinary mail %.1f and %.1f MB/s", rep+1, h.o.reps, walk, parse, walkO, parseO)
	}
	s.Checks = append(s.Checks, fmt.Sprintf("The attachment policy reported %d finding(s) per pass over the mix, as designed.", findings))
	return nil
}

// alternate runs a pass of a, then one of b, and so on, each timed on
// its own, until both together have run for twice window; it returns the
// MB/s of each (a pass is over size bytes) from its median pass time.
// Taking turns pass by pass, and the median, keep a stall of the machine
// (another process, a GC) from deciding the ratio.
func alternate(window time.Duration, size int, a, b func() error) (float64, float64, error) {
	var ta, tb []float64
	var total time.Duration
	for total < 2*window || len(ta) < 3 {
		t0 := time.Now()
		if err := a(); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		if err := b(); err != nil {
			return 0, 0, err
		}
		t2 := time.Now()
		ta, tb = append(ta, t1.Sub(t0).Seconds()), append(tb, t2.Sub(t1).Seconds())
		total += t2.Sub(t0)
	}
	mb := float64(size) / 1e6
	return mb / Quantile(ta, 0.5), mb / Quantile(tb, 0.5), nil
}

// contentMix builds the messages; the same bytes every run (a seeded
// generator).
func contentMix() ([][]byte, error) {
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'o', 's', 't', 'e', 'r', 'n'}))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	head := func(subject, ctype string) string {
		return "From: Alice Example <alice@origin.test>\r\nTo: bob@example.test\r\nSubject: " + subject + "\r\n" +
			"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@origin.test>\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: " + ctype + "\r\n"
	}
	prose := strings.Repeat("Dear Bob, the minutes of Tuesday's meeting are below; see https://origin.test/minutes for the slides.\r\n", 30)
	html := "<html><body><p>" + strings.Repeat("The minutes of <b>Tuesday's</b> meeting, see <a href=\"https://origin.test/m\">the slides</a>. ", 40) + "</p></body></html>\r\n"

	plain := head("minutes", "text/plain; charset=utf-8") + "\r\n" + prose
	alt := head("newsletter", `multipart/alternative; boundary="alt-1"`) + "\r\n" + multipart("alt-1",
		textPart("text/plain; charset=utf-8", prose), textPart("text/html; charset=utf-8", html))

	zipped, err := zipOf(map[string][]byte{"budget.csv": []byte(strings.Repeat("2026,Q4,travel,1200\r\n", 400)),
		"notes.txt": []byte(prose), "photo.jpg": append([]byte{0xff, 0xd8, 0xff, 0xe0}, random(8<<10)...)})
	if err != nil {
		return nil, err
	}
	attach := head("report", `multipart/mixed; boundary="mix-1"`) + "\r\n" + multipart("mix-1",
		textPart("text/plain; charset=utf-8", prose),
		binaryPart("application/pdf", "report.pdf", append([]byte("%PDF-1.7\n"), random(200<<10)...)),
		binaryPart("application/zip", "data.zip", zipped))

	png := append([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, random(50<<10)...)
	inner := head("original", `multipart/mixed; boundary="in-1"`) + "\r\n" + multipart("in-1",
		textPart("text/plain; charset=utf-8", prose), binaryPart("image/png", "chart.png", png))
	var qp bytes.Buffer
	qw := quotedprintable.NewWriter(&qp)
	qw.Write([]byte(strings.Repeat("Gr\xfc\xdfe aus K\xf6ln, \xe0 bient\xf4t. ", 60)))
	qw.Close()
	nested := head("Fwd: original", `multipart/mixed; boundary="fwd-1"`) + "\r\n" + multipart("fwd-1",
		"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+qp.String()+"\r\n",
		"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"+inner)

	large := head("backup", `multipart/mixed; boundary="big-1"`) + "\r\n" + multipart("big-1",
		textPart("text/plain; charset=utf-8", "The backup is attached.\r\n"),
		binaryPart("application/octet-stream", "backup.bin", random(512<<10)))

	exe, err := zipOf(map[string][]byte{"invoice.pdf.exe": append([]byte("MZ\x90\x00\x03\x00\x00\x00"), random(16<<10)...)})
	if err != nil {
		return nil, err
	}
	banned := head("invoice", `multipart/mixed; boundary="bad-1"`) + "\r\n" + multipart("bad-1",
		textPart("text/plain; charset=utf-8", "Please find the invoice attached.\r\n"),
		binaryPart("application/zip", "invoice.zip", exe))

	var out [][]byte
	for _, m := range []string{plain, alt, attach, nested, large, banned} {
		out = append(out, []byte(m))
	}
	return out, nil
}

func multipart(boundary string, parts ...string) string {
	var b strings.Builder
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p)
		if !strings.HasSuffix(p, "\r\n") {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.String()
}

func textPart(ctype, body string) string {
	return "Content-Type: " + ctype + "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
}

func binaryPart(ctype, name string, data []byte) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	fmt.Fprintf(&b, "Content-Type: %s; name=%q\r\nContent-Disposition: attachment; filename=%q\r\nContent-Transfer-Encoding: base64\r\n\r\n", ctype, name, name)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.String()
}

func zipOf(files map[string][]byte) ([]byte, error) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"budget.csv", "notes.txt", "photo.jpg", "invoice.pdf.exe"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)})
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
