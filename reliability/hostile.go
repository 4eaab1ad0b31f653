package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/postern/postern/queue"
)

//go:embed testdata/enmime testdata/postern
var corpus embed.FS

// HostileConfig bounds the hostile-input scenario. The zero value is the
// full run.
type HostileConfig struct {
	// MaxCaseTime bounds one case, connect to last reply; default 30s.
	// The error tarpit (1 s per error past 10) is part of the time.
	MaxCaseTime time.Duration
	// MaxRSSKiB bounds the relay's peak resident set; default 512 MiB.
	MaxRSSKiB int64
	// Sample, when positive, runs only every Sample-th case of each kind
	// (the smoke test); 0 runs all.
	Sample int
}

func (c HostileConfig) withDefaults() HostileConfig {
	setDefault(&c.MaxCaseTime, 30*time.Second)
	setDefault(&c.MaxRSSKiB, 512<<10)
	return c
}

// HostileResult summarises the hostile-input scenario.
type HostileResult struct {
	Outcome
	Dialogs     int            `json:"dialogs"`
	Messages    int            `json:"messages"`
	Answered    int            `json:"answered"`
	Replies     map[string]int `json:"message_replies"`
	MaxMillis   float64        `json:"max_case_ms"`
	MaxCase     string         `json:"max_case"`
	MaxRSSKiB   int64          `json:"max_rss_kib"`
	PeakRSSKiB  int64          `json:"peak_rss_kib"`
	StartRSSKiB int64          `json:"start_rss_kib"`
	Alive       bool           `json:"relay_alive"`
	CleanStop   bool           `json:"clean_stop"`
	Panics      int            `json:"panic_log_lines"`
	Delivered   int            `json:"delivered"`
	LeftInQueue int            `json:"left_in_queue"`
	Cases       []*HostileCase `json:"cases"`
	BoundMillis float64        `json:"bound_case_ms"`
	BoundRSSKiB int64          `json:"bound_rss_kib"`
	FailedCases []string       `json:"failed_cases,omitempty"`
	KnownIssues []string       `json:"known_issues,omitempty"`
}

// HostileCase is one dialog or message and how the relay answered it.
type HostileCase struct {
	Kind   string  `json:"kind"` // dialog or mime
	Name   string  `json:"name"`
	Bytes  int     `json:"bytes"`
	Codes  string  `json:"codes"` // final reply codes in order
	Millis float64 `json:"ms"`
	RSSKiB int64   `json:"rss_kib"`
	Status string  `json:"status"` // pass, fail or known (a known issue)
	Error  string  `json:"error,omitempty"`
	Known  string  `json:"known_issue,omitempty"`
}

// StatusKnown marks a case that fails in a way already reported.
const StatusKnown = "known"

// step is one write of a dialog and the replies it must get.
type step struct {
	send []byte
	// replies is how many final replies to wait for; -1 waits for the
	// relay to close the connection.
	replies int
	// closeWrite half-closes after the write (the client is done);
	// reset aborts the connection with a TCP RST.
	closeWrite, reset bool
}

// dialog is a hostile SMTP conversation. want matches the final reply
// codes, space-separated, banner first ("220 250 500 221"). known, when
// set, describes a deviation already reported: the case failing that way
// is listed as a known issue rather than a failure.
type dialog struct {
	name  string
	steps []step
	want  string
	known string
}

const (
	ehlo   = "EHLO hostile.reliability.test\r\n"
	mailOK = "MAIL FROM:<h@example.net>\r\n"
	rcptOK = "RCPT TO:<h@example.test>\r\n"
)

// w is a step that writes s at once (pipelined) and waits for replies
// final replies.
func w(s string, replies int) step { return step{send: []byte(s), replies: replies} }

func dialogs(rng *rand.Rand) []dialog {
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	var rcpts strings.Builder
	for i := range 1001 {
		fmt.Fprintf(&rcpts, "RCPT TO:<r%d@example.test>\r\n", i)
	}
	var rcpts1100 strings.Builder
	for i := range 1100 {
		fmt.Fprintf(&rcpts1100, "RCPT TO:<o%d@example.test>\r\n", i)
	}
	var bigHeader strings.Builder
	for bigHeader.Len() < 300<<10 {
		bigHeader.WriteString("X-Filler: " + strings.Repeat("h", 88) + "\r\n")
	}
	long := strings.Repeat("x", 100<<10)
	return []dialog{
		{"bare LF line ends in commands", []step{w("EHLO bare.test\nMAIL FROM:<h@example.net>\nRCPT TO:<h@example.test>\nRSET\n", 4)},
			`^220 250 250 250 250 221$`, ""},
		// SMTP smuggling: a bare-LF "." must not end DATA, so the
		// smuggled MAIL/RCPT/DATA stay content of one message.
		{"SMTP smuggling with LF.LF", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4),
			w("Subject: smuggle\r\n\r\nhello\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n", 1)},
			`^220 250 250 250 354 250 221$`, ""},
		{"SMTP smuggling with CR.CR", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4),
			w("Subject: smuggle\r\n\r\nhello\r.\rMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n", 1)},
			`^220 250 250 250 354 250 221$`, ""},
		{"SMTP smuggling with CRLF.LF", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4),
			w("Subject: smuggle\r\n\r\nhello\r\n.\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n", 1)},
			`^220 250 250 250 354 250 221$`, ""},
		// The streams of "Security at the seams": ".\r\r\n" is no end, the
		// ".\r\n" after it is, and the commands after it are commands.
		{"DATA end after . CR CR LF", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4),
			w("Subject: x\r\n\r\nline\r\n.\r\r\n.\r\n"+mailOK+rcptOK+"BDAT 3 LAST\r\nabc", 4)},
			`^220 250 250 250 354 250 250 250 250 221$`, ""},
		{"dot CR X in DATA", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), w("Subject: x\r\n\r\nline\r\n.\rX\r\n.\r\n", 1)},
			`^220 250 250 250 354 250 221$`, ""},
		// Recipients past the limit are answered 452 and are no errors:
		// the session goes on to deliver to the first 1000.
		{"1100 recipients then DATA", []step{w(ehlo+mailOK+rcpts1100.String()+"DATA\r\n", 1103), w("Subject: many\r\n\r\nx\r\n.\r\n", 1)},
			`^220 250 250( 250){1000}( 452){100} 354 250 221$`, ""},
		{"100 KiB command line", []step{w(ehlo+"NOOP "+long+"\r\nNOOP\r\n", 3)}, `^220 250 500 250 221$`, ""},
		{"3000-octet EHLO", []step{w("EHLO "+strings.Repeat("a", 3000)+"\r\n"+ehlo, 2)}, `^220 500 250 221$`, ""},
		{"100 KiB line in DATA", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), w("Subject: long\r\n\r\n"+long+"\r\n.\r\n", 1)},
			`^220 250 250 250 354 (250|5\d\d) 221$`, ""},
		{"NUL in a command", []step{w("EHLO a\x00b\r\nNOOP\r\n", 2)}, `^220 500 250 221$`, ""},
		{"NUL bytes in DATA", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), w("Subject: nul\r\n\r\nnul\x00here\x00\r\n.\r\n", 1)},
			`^220 250 250 250 354 (250|5\d\d) 221$`, ""},
		{"lone CR in header and body", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4),
			w("Subject: cr\rX-Evil: y\r\n\r\nbody\rmore\r\n.\r\n", 1)}, `^220 250 250 250 354 (250|5\d\d) 221$`, ""},
		{"dot-stuffing edge lines", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), w("Subject: dots\r\n\r\n..\r\n.x\r\n...\r\n. \r\n.\r\n", 1)},
			`^220 250 250 250 354 250 221$`, ""},
		{"500 pipelined NOOPs", []step{w(ehlo+strings.Repeat("NOOP\r\n", 500), 501)}, `^220 250( 250){500} 221$`, ""},
		{"pipelined body after refused DATA", []step{w(ehlo+mailOK+"RCPT TO:<x@elsewhere.invalid>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n", 8)},
			`^220 250 250 5\d\d 5\d\d 500 500 500 500 221$`, ""},
		{"pipelined transaction before the 354", []step{w(ehlo+mailOK+rcptOK+"DATA\r\nSubject: early\r\n\r\nbody\r\n.\r\n", 5)},
			`^220 250 250 250 354 250 221$`, ""},
		// RFC 5321 §4.2.4 wants 503 for a bad sequence; go-smtp says 502,
		// and takes a nested MAIL as a new transaction. Both are answers.
		{"commands out of order", []step{w(ehlo+"DATA\r\n"+rcptOK+mailOK+mailOK+"RSET\r\n", 6)}, `^220 250 50[23] 50[23] 250 (250|503) 250 221$`, ""},
		{"no HELO first", []step{w(mailOK+rcptOK+"DATA\r\nRSET\r\n", 4)}, `^220 50[23] 50[23] 50[23] 250 221$`, ""},
		{"1001 recipients", []step{w(ehlo+mailOK+rcpts.String()+"RSET\r\n", 1004)}, `^220 250 250( 250){1000} 452 250 221$`, ""},
		{"64 KiB AUTH PLAIN line", []step{w(ehlo+"AUTH PLAIN "+strings.Repeat("QUFB", 16<<10)+"\r\nNOOP\r\n", 3)}, `^220 250 5\d\d 250 221$`, ""},
		{"AUTH LOGIN then 64 KiB response", []step{w(ehlo+"AUTH LOGIN\r\n", 2), w(strings.Repeat("QUFB", 16<<10)+"\r\nNOOP\r\n", 2)},
			`^220 250 (334 5\d\d|5\d\d 500) 250 221$`, ""},
		{"AUTH on a port without AUTH", []step{w(ehlo+"AUTH PLAIN AHUAcA==\r\n", 2)}, `^220 250 5\d\d 221$`, ""},
		{"BDAT without a size", []step{w(ehlo+mailOK+rcptOK+"BDAT\r\nBDAT LAST\r\nBDAT -5\r\nBDAT 99999999999 LAST\r\nRSET\r\n", 8)},
			`^220 250 250 250 501 501 501 501 250 221$`, ""},
		{"BDAT chunks, then DATA", []step{w(ehlo+mailOK+rcptOK+"BDAT 5\r\nabcdeDATA\r\nBDAT 0 LAST\r\n", 6)},
			`^220 250 250 250 250 50[23] 250 221$`, ""},
		{"BDAT before RCPT", []step{w(ehlo+mailOK+"BDAT 5 LAST\r\nabcdeRSET\r\n", 4)}, `^220 250 250 5\d\d 250 221$`, ""},
		// A chunk the client never finished is no message (RFC 3030 §2:
		// the chunk is exactly the size given).
		{"BDAT chunk cut short", []step{w(ehlo+mailOK+rcptOK, 3), {send: []byte("BDAT 100 LAST\r\n0123456789"), replies: -1, closeWrite: true}},
			`^220 250 250 250( [45]\d\d){0,2}$`, ""}, // 554 for the transaction, 421 as the edge closes
		{"DATA cut short", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), {send: []byte("Subject: cut\r\n\r\npartial"), replies: -1, closeWrite: true}},
			`^220 250 250 250 354( [45]\d\d)?$`, ""},
		{"reset during DATA", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), {send: []byte("Subject: rst\r\n\r\npartial"), reset: true}},
			`^220 250 250 250 354$`, ""},
		{"MAIL parameters of junk", []step{w(ehlo+"MAIL FROM:<h@example.net> RET=XYZ\r\nMAIL FROM:<h@example.net> ENVID=\x01\x02\r\n"+
			"MAIL FROM:<h@example.net> SIZE=-1\r\nMAIL FROM:<h@example.net> SIZE=abc\r\nMAIL FROM:<h@example.net> BODY=9BIT\r\n"+
			"MAIL FROM:<h@example.net> FOO=BAR\r\nRSET\r\n", 8)}, `^220 250( 5\d\d){6} 250 221$`, ""},
		{"SIZE over the limit", []step{w(ehlo+"MAIL FROM:<h@example.net> SIZE=999999999\r\n", 2)}, `^220 250 552 221$`, ""},
		{"broken addresses", []step{w(ehlo+"MAIL FROM:<<<>>>\r\nMAIL FROM:h@example.net\r\nRSET\r\nMAIL FROM:<jörg@example.net>\r\nRSET\r\n"+
			"MAIL FROM:<@a,@b:h@example.net>\r\nRSET\r\n", 7)}, `^220 250 5\d\d (250|5\d\d) 250 (250|5\d\d) 250 (250|5\d\d) 250 221$`, ""},
		// RFC 5321 §4.5.3.1.3: a path has at most 256 octets;
		// §4.5.3.1.5: a reply line at most 512 (go-smtp's 250 to MAIL
		// repeats the address, so smtpserver refuses longer paths).
		{"1900-octet local part", []step{w(ehlo+"MAIL FROM:<"+strings.Repeat("a", 1900)+"@example.net>\r\nRSET\r\n", 3)},
			`^220 250 (250|5\d\d) 250 221$`, ""},
		{"300 KiB header", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4), w(bigHeader.String()+"\r\nbody\r\n.\r\n", 1)},
			`^220 250 250 250 354 552 221$`, ""},
		{"11 MiB message", []step{w(ehlo+mailOK+rcptOK+"DATA\r\n", 4),
			w("Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("b", 998)+"\r\n", 11<<10)+".\r\n", 1)},
			`^220 250 250 250 354 552 221$`, ""},
		{"STARTTLS without TLS", []step{w(ehlo+"STARTTLS\r\nNOOP\r\n", 3)}, `^220 250 (454|502) 250 221$`, ""},
		{"TLS ClientHello on the plain port", []step{w("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"+strings.Repeat("\x42", 32)+"\r\nNOOP\r\n", 2)},
			`^220 500 250 221$`, ""},
		{"HTTP request", []step{w("GET / HTTP/1.1\r\nHost: relay\r\nUser-Agent: x\r\n\r\n", 4)}, `^220 500 500 500 500 221$`, ""},
		{"VRFY EXPN HELP TURN", []step{w(ehlo+"VRFY root\r\nEXPN staff\r\nHELP\r\nTURN\r\n", 5)}, `^220 250( [25]\d\d){4} 221$`, ""},
		{"bare Postmaster recipient", []step{w(ehlo+mailOK+"RCPT TO:<Postmaster>\r\nDATA\r\n", 4), w("Subject: pm\r\n\r\nhi\r\n.\r\n", 1)},
			`^220 250 250 250 354 250 221$`, ""},
		{"error flood to the hard limit", []step{{send: []byte(ehlo + strings.Repeat("XYZZY\r\n", 25)), replies: -1}},
			`^220 250( 500){19,20} 421$`, ""},
		{"64 KiB of random bytes", []step{{send: garbage, replies: -1}}, `^220( [45]\d\d)+$`, ""},
	}
}

// mimeCase is a message sent whole through a normal transaction. The
// client writes it as SMTP requires (CRLF line ends, dot-stuffed): odd
// line ends and dots on the wire are the dialogs' business.
type mimeCase struct {
	name string
	data []byte
}

func mimeCases() ([]mimeCase, error) {
	var out []mimeCase
	err := fs.WalkDir(corpus, "testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".raw" {
			return err
		}
		b, err := corpus.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, mimeCase{strings.TrimPrefix(p, "testdata/"), b})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return append(generatedMIME(), out...), nil
}

// generatedMIME builds the shapes that hurt MIME parsers, as scan's own
// tests know them: deep nesting, many parts, endless lines, broken
// boundaries and encodings, archives inside archives.
func generatedMIME() []mimeCase {
	hdr := "From: <h@example.net>\r\nTo: <h@example.test>\r\nSubject: hostile\r\nMIME-Version: 1.0\r\n"
	deep := func(n int) string {
		var b strings.Builder
		b.WriteString(hdr)
		for i := range n {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
		}
		b.WriteString("Content-Type: text/plain\r\n\r\ncore\r\n")
		for i := n - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "--b%d--\r\n", i)
		}
		return b.String()
	}
	many := func(n int) string {
		var b strings.Builder
		b.WriteString(hdr + "Content-Type: multipart/mixed; boundary=m\r\n\r\n")
		for i := range n {
			fmt.Fprintf(&b, "--m\r\n\r\n%d\r\n", i)
		}
		b.WriteString("--m--\r\n")
		return b.String()
	}
	rfc822 := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString("Content-Type: message/rfc822\r\n\r\n")
		}
		b.WriteString("Subject: innermost\r\n\r\ncore\r\n")
		return hdr + b.String()
	}
	var manyHeaders strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&manyHeaders, "X-H%d: v\r\n", i)
	}
	mp := func(parts ...string) string {
		return hdr + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + strings.Join(parts, "\r\n--b\r\n") + "\r\n--b--\r\n"
	}
	zip := nestedZip(5, "payload.exe", []byte("MZ\x90\x00"))
	b64 := func(b []byte) string { return wrap76(encodeBase64(b)) }
	cases := []mimeCase{
		{"generated/100-deep multipart", []byte(deep(100))},
		{"generated/3000-deep multipart", []byte(deep(3000))},
		{"generated/10000 tiny parts", []byte(many(10000))},
		{"generated/200-deep message/rfc822", []byte(rfc822(200))},
		{"generated/1 MiB header line", []byte(hdr + "X-Long: " + strings.Repeat("A", 1<<20) + "\r\n\r\nbody\r\n")},
		{"generated/1 MiB part header line", []byte(mp("X-Long: " + strings.Repeat("A", 1<<20) + "\r\n\r\nx"))},
		{"generated/10000 header fields", []byte(hdr + manyHeaders.String() + "\r\nbody\r\n")},
		{"generated/2000-octet boundary", []byte(hdr + "Content-Type: multipart/mixed; boundary=" + strings.Repeat("b", 2000) + "\r\n\r\nx\r\n")},
		{"generated/multipart without boundary", []byte(hdr + "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n--x--\r\n")},
		{"generated/boundary never used", []byte(hdr + "Content-Type: multipart/mixed; boundary=b\r\n\r\njust text\r\n")},
		{"generated/no closing delimiter", []byte(hdr + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nunterminated\r\n")},
		{"generated/mismatched boundaries", []byte(hdr + "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ninner\r\n--a--\r\n--b--\r\n")},
		{"generated/broken base64", []byte(mp("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQ!!!!AAMA***AAEAAAA@@",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=garbage="))},
		{"generated/broken quoted-printable", []byte(hdr + "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =ZZ =\r\n=4 trailing=\r\n")},
		{"generated/unknown charset and 8-bit header", []byte(hdr + "X-8bit: \xff\xfe\xc3\x28\r\nContent-Type: text/plain; charset=x-unknown-42\r\n\r\n\xe9t\xe9\r\n")},
		{"generated/iso-2022-jp escapes", []byte(hdr + "Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B\x1b$B\r\n")},
		{"generated/header without body", []byte(hdr)},
		{"generated/no header at all", []byte("\r\njust a body\r\n")},
		{"generated/5-deep nested zip with an exe", []byte(mp("Content-Type: application/zip; name=a.zip\r\nContent-Disposition: attachment; filename=a.zip\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + b64(zip)))},
		{"generated/double extension attachment", []byte(mp("Content-Type: application/pdf; name=\"invoice.pdf.exe\"\r\n" +
			"Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64([]byte("MZ\x90\x00 not really"))))},
		{"generated/RFC 2231 filename continuations", []byte(mp("Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n" +
			" filename*0*=utf-8''%E2%80%AEtxt; filename*1=.exe; filename*99=x\r\n\r\ndata"))},
		{"generated/4 MiB base64 attachment", []byte(mp("Content-Type: application/octet-stream; name=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			b64(make([]byte, 3<<20))))},
	}
	return cases
}

func runHostile(ctx context.Context, s *suite, cfg HostileConfig) *HostileResult {
	cfg = cfg.withDefaults()
	res := &HostileResult{Replies: map[string]int{}, BoundMillis: float64(cfg.MaxCaseTime.Milliseconds()), BoundRSSKiB: cfg.MaxRSSKiB}
	defer res.settle()
	if err := hostile(ctx, s, cfg, res); err != nil {
		res.fail("%v", err)
	}
	res.require(len(res.FailedCases) == 0, "%d cases failed: %s", len(res.FailedCases), strings.Join(res.FailedCases, "; "))
	res.require(res.Alive, "the relay died")
	res.require(res.Panics == 0, "%d panic lines in the relay's log", res.Panics)
	res.require(res.PeakRSSKiB <= cfg.MaxRSSKiB, "peak RSS %d KiB over the bound %d KiB", res.PeakRSSKiB, cfg.MaxRSSKiB)
	res.require(res.LeftInQueue == 0, "%d accepted messages left in the queue", res.LeftInQueue)
	return res
}

func hostile(ctx context.Context, s *suite, cfg HostileConfig, res *HostileResult) error {
	dir, err := s.dir("hostile")
	if err != nil {
		return err
	}
	down, err := s.startSink("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer down.stop()
	mt, err := writeMailertable(dir, down.addr)
	if err != nil {
		return err
	}
	spool := filepath.Join(dir, "spool")
	// Loopback clients are outsiders, so every filter sees them; the
	// attachment policy makes the walker look into archives too.
	r, err := s.startRelay(ctx, dir, filepath.Join(dir, "relay.log"), "-listen", "127.0.0.1:0", "-spool", spool,
		"-greet-pause", "0", "-trusted", "192.0.2.0/24", "-mailertable", mt, "-ban-attachments",
		"-min-backoff", "1s", "-max-backoff", "2s", "-hostname", "relay.reliability.test")
	if err != nil {
		return err
	}
	defer r.kill()
	res.StartRSSKiB, _, _ = memStatus(r.pid())
	record := func(c *HostileCase, start time.Time, end time.Time, known string) {
		c.Millis = float64(end.Sub(start).Microseconds()) / 1000
		if rss, _, err := memStatus(r.pid()); err == nil {
			c.RSSKiB = rss
			res.MaxRSSKiB = max(res.MaxRSSKiB, rss)
		}
		if c.Millis > res.MaxMillis {
			res.MaxMillis, res.MaxCase = c.Millis, c.Name
		}
		switch {
		case !r.alive():
			c.Error = "the relay died: " + r.tail()
		case c.Error == "":
			if b := firstLine(r.addr, "127.0.0.3"); !strings.HasPrefix(b, "220 ") {
				c.Error = "a fresh connection then got " + b
			} else if c.Millis > float64(cfg.MaxCaseTime.Milliseconds()) {
				c.Error = fmt.Sprintf("took %.0f ms, bound %v", c.Millis, cfg.MaxCaseTime)
			}
		}
		c.Status = StatusPass
		switch {
		case c.Error != "" && known != "" && r.alive():
			c.Status, c.Known = StatusKnown, known
			res.KnownIssues = append(res.KnownIssues, c.Name+": "+known)
			res.Answered++ // answered, if not as it should be
		case c.Error != "":
			c.Status = StatusFail
			res.FailedCases = append(res.FailedCases, c.Kind+" "+c.Name+": "+c.Error)
		case known != "":
			res.Answered++
			res.note("%q passes now: its known-issue mark can go", c.Name)
		default:
			res.Answered++
		}
		res.Cases = append(res.Cases, c)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i, d := range dialogs(rng) {
		if cfg.Sample > 0 && i%cfg.Sample != 0 || !r.alive() {
			continue
		}
		res.Dialogs++
		c, start, end := runDialog(ctx, r.addr, d)
		record(c, start, end, d.known)
	}
	cases, err := mimeCases()
	if err != nil {
		return err
	}
	for i, m := range cases {
		if cfg.Sample > 0 && i%cfg.Sample != 0 || !r.alive() {
			continue
		}
		res.Messages++
		c := &HostileCase{Kind: "mime", Name: m.name, Bytes: len(m.data)}
		start := time.Now()
		o := send(ctx, txn{addr: r.addr, src: outside, from: "h@example.net", to: []string{"h@example.test"}, body: m.data, timeout: time.Minute})
		end := time.Now()
		c.Codes = o.class()
		res.Replies[o.class()]++
		// A message is accepted or refused for good: a 4xx would have the
		// sender retry the same bytes forever.
		if o.Code != 250 && (o.Code < 500 || o.Code > 599) {
			c.Error = fmt.Sprintf("answered %s at %s (%s %v), want 250 or 5xx", o.class(), o.Stage, o.Text, o.Err)
		}
		record(c, start, end, "")
	}
	res.Alive = r.alive()
	_, res.PeakRSSKiB, _ = memStatus(r.pid())
	// Accepted messages must leave: wait for the sink to go quiet, stop
	// the relay cleanly and look into the spool.
	waitFor(ctx, 2*time.Minute, func() bool { return down.quietFor(5 * time.Second) })
	res.Panics = r.panicLines()
	if res.Alive {
		if err := r.stop(); err != nil {
			res.fail("stopping the relay: %v", err)
		} else {
			res.CleanStop = true
		}
		q, err := queue.Open(queue.Config{Dir: spool})
		if err != nil {
			return fmt.Errorf("reopening the spool: %w", err)
		}
		res.LeftInQueue, _ = q.Len()
		_ = q.Close()
	}
	res.Delivered, _ = down.count()
	s.progress("hostile: %d dialogs, %d messages, %d answered properly, max %.0f ms (%s), peak RSS %d KiB",
		res.Dialogs, res.Messages, res.Answered, res.MaxMillis, res.MaxCase, res.PeakRSSKiB)
	return nil
}

// runDialog plays one dialog from an outside address and checks every
// reply line.
func runDialog(ctx context.Context, addr string, d dialog) (c *HostileCase, start, end time.Time) {
	c = &HostileCase{Kind: "dialog", Name: d.name}
	for _, st := range d.steps {
		c.Bytes += len(st.send)
	}
	start = time.Now()
	end = start
	dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(outside)}, Timeout: 10 * time.Second}
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.Error = "connect: " + err.Error()
		return c, start, end
	}
	defer conn.Close()
	lines := make(chan replyLine, 4096)
	go readReplies(conn, lines)
	var codes, bad []string
	eof := false
	// wait reads until n final replies (or EOF for n < 0) or the timeout.
	wait := func(n int, timeout time.Duration) bool {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		for got := 0; n < 0 || got < n; {
			select {
			case l, ok := <-lines:
				if !ok {
					eof = true
					return n < 0
				}
				end = l.At
				if l.Err != "" {
					bad = append(bad, fmt.Sprintf("%q: %s", l.Raw, l.Err))
				}
				if l.Final {
					codes = append(codes, l.Code)
					got++
				}
			case <-timer.C:
				return false
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	ok := wait(1, 10*time.Second)
	for _, st := range d.steps {
		if !ok || eof {
			break
		}
		if st.send != nil {
			_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := conn.Write(st.send); err != nil && st.replies >= 0 {
				c.Error = "write: " + err.Error()
				break
			}
		}
		if st.reset {
			_ = conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			eof = true
			break
		}
		if st.closeWrite {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
		// The tarpit delays each error past the soft limit by a second.
		ok = wait(st.replies, 20*time.Second+time.Duration(max(st.replies, 30))*1100*time.Millisecond)
	}
	if ok && !eof {
		_, _ = conn.Write([]byte("QUIT\r\n"))
		wait(1, 10*time.Second)
		wait(-1, 10*time.Second)
	}
	c.Codes = strings.Join(codes, " ")
	switch {
	case c.Error != "":
	case len(bad) > 0:
		c.Error = fmt.Sprintf("%d malformed reply lines, first %s", len(bad), bad[0])
	case !ok:
		c.Error = "timed out waiting for replies"
	case !regexp.MustCompile(d.want).MatchString(c.Codes):
		c.Error = fmt.Sprintf("replies %s, want %s", abbreviate(c.Codes), d.want)
	}
	if len(c.Codes) > 120 {
		c.Codes = abbreviate(c.Codes)
	}
	return c, start, end
}

// abbreviate runs of the same code: "250 250 250" -> "250x3".
func abbreviate(codes string) string {
	f := strings.Fields(codes)
	var out []string
	for i := 0; i < len(f); {
		j := i
		for j < len(f) && f[j] == f[i] {
			j++
		}
		if j-i > 2 {
			out = append(out, fmt.Sprintf("%sx%d", f[i], j-i))
		} else {
			out = append(out, f[i:j]...)
		}
		i = j
	}
	return strings.Join(out, " ")
}
