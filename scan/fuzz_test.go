package scan

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
)

// enmimeShape counts the entities of enmime's tree and its depth.
func enmimeShape(p *enmime.Part, depth int) (n, maxDepth int) {
	n, maxDepth = 1, depth
	for c := p.FirstChild; c != nil; c = c.NextSibling {
		cn, cd := enmimeShape(c, depth+1)
		n += cn
		maxDepth = max(maxDepth, cd)
	}
	return n, maxDepth
}

func fuzzSeeds() []string {
	return []string{
		"Subject: hi\r\n\r\nhello\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--\r\nepi\r\n",
		"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--a\r\n\r\ny\r\n--a--\r\n",
		"Content-Type: multipart/mixed; boundary=b\n\nx --b \nContent-Type: multipart/mixed; boundary=c\n\n--c\n\nz\n--c--\n--b--\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nbody\rX--b \r\nmore --b \r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\n--c--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64***\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=4\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n-b\r\n--b \r\nX\r\n\r\n--bb\r\n--b--",
		"Content-Type: multipart/mixed;\r\n boundary=q\r\nContent-Type: multipart/mixed; boundary=r\r\n\r\n--q\r\n\r\n--r\r\n\r\n--q--\r\n",
		" Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type : multipart/mixed; boundary=c\r\nnot indented\r\n\r\n--c\r\n\r\n--c--\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n\r\n--b\r\n\r\n\r\n\r--b \r\n\r\n--b--\r\n",
		"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B\r\n",
	}
}

// FuzzWalk feeds arbitrary messages to the walker. It never panics, every
// failure is a limit or a malformed message, the result keeps the
// limits, and the pre-scan never counts fewer entities or less depth than
// enmime builds: the limits it enforces hold for what enmime does.
func FuzzWalk(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	lim := Limits{MaxDepth: 6, MaxParts: 40, MaxHeaderBytes: 4096, MaxLineLength: 2048, Timeout: 10 * time.Second}
	w, err := NewWalker(WalkerConfig{Limits: lim})
	if err != nil {
		f.Fatal(err)
	}
	wide := Limits{MaxDepth: 1 << 20, MaxParts: 1 << 20, MaxHeaderBytes: 1 << 30, MaxLineLength: 1 << 30}
	wide, _ = wide.withDefaults()
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		// The pre-scan against enmime itself, limits out of the way.
		st, err := prescan(ctx, data, &wide, 0, "0", wide.MaxParts)
		if err == nil {
			if root, perr := w.parser.ReadParts(bytes.NewReader(data)); perr == nil {
				n, d := enmimeShape(root, 0)
				if n > st.parts || d > st.maxDepth {
					t.Fatalf("enmime built %d entities %d deep, pre-scan counted %d, %d deep", n, d, st.parts, st.maxDepth)
				}
			}
		}
		buf := bytes.Clone(data)
		c, err := w.WalkBytes(ctx, buf)
		if err != nil {
			if !errors.Is(err, ErrLimit) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// The Content keeps nothing of the walked buffer (WalkMessage
		// reuses it): scribbled over, it still equals a fresh walk.
		for i := range buf {
			buf[i] = 'X'
		}
		if again, err := w.WalkBytes(ctx, data); err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("walk changed with its buffer (%v)", err)
		}
		if len(c.Parts) == 0 || len(c.Parts) > lim.MaxParts {
			t.Fatalf("%d parts", len(c.Parts))
		}
		ids := map[string]bool{}
		for i, p := range c.Parts {
			if p.Depth > lim.MaxDepth || ids[p.ID] || p.Parent >= i || (i > 0) != (p.Parent >= 0) {
				t.Fatalf("part %d: %+v", i, p)
			}
			ids[p.ID] = true
			if txt, ok := p.Text(); ok && (!utf8.ValidString(txt) || int64(len(txt)) != p.Size) {
				t.Fatalf("part %s: text of %d bytes, size %d, valid %v", p.ID, len(txt), p.Size, utf8.ValidString(txt))
			}
		}
		if !utf8.ValidString(c.Subject) {
			t.Fatalf("subject %q", c.Subject)
		}
		for _, u := range c.URLs {
			if !strings.Contains(u, "://") {
				t.Fatalf("url %q", u)
			}
		}
	})
}

// FuzzPolicy runs the attachment policy over an arbitrary attachment:
// any name, declared type and content, archives included. It never
// panics, findings are well formed, and a name ending in a banned
// extension is always reported.
func FuzzPolicy(f *testing.F) {
	f.Add("invoice.pdf.exe", "application/pdf", mzStub)
	f.Add("photo.jpg", "image/jpeg", mzStub)
	f.Add("a.zip", "application/zip", zipOf(f, "dir/run.vbs", []byte("x"), "inner.zip", zipOf(f, "eicar.com", eicar())))
	f.Add("deep.zip", "application/zip", zipOf(f, "1.zip", zipOf(f, "2.zip", zipOf(f, "3.zip", zipOf(f, "4.zip", zipOf(f, "x.exe", mzStub))))))
	f.Add("x\u202etxt.scr", "text/plain", []byte("hello"))
	f.Add("", "", []byte("PK\x03\x04"))
	a, err := NewAttachmentPolicy(AttachmentConfig{Archive: ArchiveLimits{MaxBytes: 1 << 20, MaxEntries: 200}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, ctype string, data []byte) {
		p := Part{ID: "1", Parent: 0, Depth: 1, FileName: name, ContentType: ctype, Sniffed: Sniff(data), Size: int64(len(data)), data: data}
		c := &Content{Parts: []Part{{ID: "0", Parent: -1, Multipart: true}, p}}
		fs := a.Check(context.Background(), c)
		for _, fd := range fs {
			if fd.Kind < BannedExtension || fd.Kind > UnopenableArchive || fd.Kind == KeywordMatch || fd.Part != "1" || fd.Detail == "" {
				t.Fatalf("finding %+v", fd)
			}
		}
		base := name
		if i := strings.LastIndexAny(base, "/\\"); i >= 0 {
			base = base[i+1:]
		}
		clean := strings.TrimRight(strings.ToLower(base), ". \t")
		if i := strings.LastIndexByte(clean, '.'); i >= 0 && a.banned[clean[i+1:]] {
			found := false
			for _, fd := range fs {
				found = found || (fd.Name == name && (fd.Kind == BannedExtension || fd.Kind == DoubleExtension))
			}
			if !found {
				t.Fatalf("%q not reported: %v", name, fs)
			}
		}
	})
}

// FuzzParsePolicy parses arbitrary policy files: never a panic, errors
// name the file and a line, and every entry parsed is found again by its
// key.
func FuzzParsePolicy(f *testing.F) {
	f.Add(samplePolicy)
	f.Add("a@b.example spam=off\n  allow=<>,@x.example\n")
	f.Add("* tag=1e3 reject=off\n@.x.example deny=@.y.example\n")
	f.Add("a@b spam=on\na@b spam=off\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(strings.NewReader(text), "f")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "f" || pe.Line < 1 || pe.Line > strings.Count(text, "\n")+2 {
				t.Fatalf("error %v", err)
			}
			return
		}
		for key, e := range p.entries {
			if key == "*" || strings.HasPrefix(key, "@") {
				continue
			}
			if got := p.Lookup(key); got.Key != e.Key {
				t.Fatalf("Lookup(%q) found %q", key, got.Key)
			}
			_ = e.Sender("x@y.example")
			_ = e.Sender("")
		}
	})
}
