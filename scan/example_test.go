package scan_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/postern/postern"
	"github.com/postern/postern/scan"
)

const exampleMsg = "From: sender@example.org\r\n" +
	"To: user@example.com\r\n" +
	"Subject: =?ISO-2022-JP?B?GyRCOGZAQTVhPXEkTiQqQ04kaSQ7GyhC?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=ISO-2022-JP\r\n" +
	"\r\n" +
	"\x1b$B$*@A5a=q$G$9\x1b(B https://pay.example.net/invoice\r\n" +
	"--b1\r\n" +
	"Content-Type: image/jpeg; name=\"invoice.pdf.exe\"\r\n" +
	"Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n" +
	"--b1--\r\n"

func ExampleWalker() {
	w, err := scan.NewWalker(scan.WalkerConfig{Limits: scan.Limits{MaxDepth: 10, MaxParts: 100}})
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := w.Walk(context.Background(), strings.NewReader(exampleMsg))
	if err != nil {
		fmt.Println(err) // errors.Is(err, scan.ErrLimit) for a hostile tree
		return
	}
	fmt.Println("Subject:", c.Subject)
	for _, p := range c.Parts {
		text, _ := p.Text()
		fmt.Printf("%s depth %d %s %q sniffed %s, %d bytes %q\n", p.ID, p.Depth, p.ContentType, p.FileName, p.Sniffed, p.Size, strings.TrimSpace(text))
	}
	fmt.Println("URLs:", c.URLs)
	// Output:
	// Subject: 御請求書のお知らせ
	// 0 depth 0 multipart/mixed "" sniffed , 0 bytes ""
	// 1 depth 1 text/plain "" sniffed text/plain, 50 bytes "お請求書です https://pay.example.net/invoice"
	// 2 depth 1 image/jpeg "invoice.pdf.exe" sniffed application/x-msdownload, 32 bytes ""
	// URLs: [https://pay.example.net/invoice]
}

func ExampleAttachmentPolicy() {
	w, _ := scan.NewWalker(scan.WalkerConfig{})
	c, _ := w.Walk(context.Background(), strings.NewReader(exampleMsg))
	a, err := scan.NewAttachmentPolicy(scan.AttachmentConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range a.Check(context.Background(), c) {
		fmt.Println(f)
	}
	// Output:
	// double-extension in part 2 "invoice.pdf.exe": .pdf before .exe
	// type-mismatch in part 2 "invoice.pdf.exe": declared image/jpeg, content application/x-msdownload
}

// Archives are known by their content: a .tar.gz sent as notes.txt,
// declared text/plain, is looked into all the same, and a rar archive,
// which the check cannot open, is a finding of its own.
func ExampleAttachmentPolicy_archives() {
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "setup.exe", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("MZ"))
	_ = tw.Close()
	_ = gz.Close()
	part := func(ctype, name string, data []byte) string {
		return "--b\r\nContent-Type: " + ctype + "\r\nContent-Disposition: attachment; filename=" + name +
			"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(data) + "\r\n"
	}
	msg := "Subject: notes\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		part("text/plain", "notes.txt", tgz.Bytes()) +
		part("application/octet-stream", "old.rar", []byte("Rar!\x1a\x07\x00...")) + "--b--\r\n"

	w, _ := scan.NewWalker(scan.WalkerConfig{})
	c, _ := w.Walk(context.Background(), strings.NewReader(msg))
	// Hold archives nothing can look into for review rather than refuse them.
	a, _ := scan.NewAttachmentPolicy(scan.AttachmentConfig{UnopenableArchives: scan.ActQuarantine})
	for _, f := range a.Check(context.Background(), c) {
		fmt.Println(f, "->", f.Action)
	}
	// Output:
	// banned-extension in part 1 "notes.txt/setup.exe": extension .exe -> default
	// unopenable-archive in part 2 "old.rar": rar archive -> quarantine
}

func ExampleParsePolicy() {
	p, err := scan.ParsePolicy(strings.NewReader(`
# Everyone: tag at 6.8 (the default for unknown recipients too).
*                   tag=6.8
# Alice has turned spam filtering off.
alice@example.com   spam=off
# Bob trusts his partner, never wants the spammer.
bob@example.com     allow=@partner.example deny=spammer@junk.example
`), "scan-policy")
	if err != nil {
		fmt.Println(err) // "scan-policy:LINE: ..."
		return
	}
	for _, rcpt := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
		rp := p.Lookup(rcpt)
		fmt.Println(rcpt, rp.Source, "filtering:", rp.SpamFiltering(), "tag:", rp.TagScore,
			"partner:", rp.Sender("x@partner.example"), "spammer:", rp.Sender("spammer@junk.example"))
	}
	// Output:
	// alice@example.com scan-policy:5 filtering: false tag: 0 partner: unlisted spammer: unlisted
	// bob@example.com scan-policy:7 filtering: true tag: 0 partner: allowed spammer: denied
	// carol@example.com scan-policy:3 filtering: true tag: 6.8 partner: unlisted spammer: unlisted
}

// A message to two recipients, one of whom has spam filtering off: it is
// scored once, and the relay delivers one copy per group.
func ExampleGroups() {
	scorer := scan.ScannerFunc("spamd", func(_ context.Context, r io.Reader, _ *scan.Envelope) (scan.Result, error) {
		_, _ = io.Copy(io.Discard, r)
		return scan.Result{Scored: true, Score: 9.1, Threshold: 5, Spam: true,
			Symbols: []scan.Symbol{{Name: "BAYES_99"}, {Name: "URIBL_BLACK"}}}, nil
	})
	pol, _ := scan.ParsePolicy(strings.NewReader("alice@example.com spam=off\n"), "policy")
	f, err := scan.NewFilter(scan.FilterConfig{
		Spam:          []scan.ScannerEntry{{Scanner: scorer}},
		Policy:        pol,
		TagScore:      6.8,
		SubjectPrefix: "[SPAM]",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	msg := "From: sender@example.org\r\nSubject: Cheap offer\r\n\r\nBuy now.\r\n"
	m, _ := postern.NewMessage(strings.NewReader(msg), int64(len(msg)), 0)
	c := &postern.Conn{ID: "C1", Remote: netip.MustParseAddrPort("192.0.2.1:1234")}
	t := &postern.Txn{ID: "Q1", From: "sender@example.org", Rcpts: []*postern.Rcpt{
		{Addr: "alice@example.com"}, {Addr: "bob@example.com"},
	}}
	v, _ := f.CheckData(context.Background(), c, t, m)
	fmt.Println("verdict:", v.Action)
	for _, g := range scan.Groups(t, m, nil) {
		fmt.Printf("-- to %s (tagged %v):\n", g.Rcpts[0].Addr, g.Tagged)
		var b strings.Builder
		_ = g.Render(&b)
		fmt.Print(strings.ReplaceAll(b.String(), "\r\n", "\n"))
	}
	// Output:
	// verdict: continue
	// -- to alice@example.com (tagged false):
	// From: sender@example.org
	// Subject: Cheap offer
	//
	// Buy now.
	// -- to bob@example.com (tagged true):
	// Subject: [SPAM] Cheap offer
	// X-Spam-Flag: YES
	// X-Spam-Score: 9.1
	// X-Spam-Status: Yes, score=9.1 required=6.8 scanner=spamd tests=BAYES_99,URIBL_BLACK
	// From: sender@example.org
	//
	// Buy now.
}
