package scan

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// archiveSeeds are the real archives the tests build: every kind, the
// bypasses of the issue, damaged ones and small bombs.
func archiveSeeds(t testing.TB) [][]byte {
	evil := []any{"evil.exe", mzStub}
	prefixed := append(append([]byte{}, junk...), zipOf(t, evil...)...)
	return [][]byte{
		zipOf(t, evil...),
		prefixed,
		append(append([]byte{}, mzStub...), zipOf(t, "run.vbs", []byte("x"))...),
		tgzOf(t, "docs/a.txt", []byte("a"), "evil.exe", mzStub),
		tarOf(t, "bundle.zip", zipOf(t, "inner.tgz", tgzOf(t, evil...))),
		gzipOf(t, "evil.scr", []byte("x")),
		zipRaw(t, "secret.doc", 0, 1, []byte("ciphertext"), []byte("plaintext!")),
		zipRaw(t, "secret.doc", 99, 1, []byte("ciphertext"), []byte("plaintext!")),
		zipRaw(t, "doc.txt", 14, 0, []byte("lzma data"), []byte("plain")),
		[]byte("Rar!\x1a\x07\x01\x00rest of a rar 5 archive"),
		[]byte("7z\xbc\xaf\x27\x1c\x00\x04rest"),
		append(zipOf(t, "ok.txt", []byte("x")), zipOf(t, evil...)...),
		noDirectory(t, zipOf(t, evil...)),
		renameLocal(t, zipOf(t, "aaaaaa.txt", []byte("x")), "aaaaaa.exe"),
		append(tarOf(t, "ok.txt", []byte("x")), zipOf(t, evil...)...),
		tgzOf(t, "inner.zip", prefixed),
		nestMixed(t, tarOf(t, "evil.exe", mzStub), 6),
		tarBomb(t, 16<<20),
		zipBomb(t, 16<<20),
		manyEntries(t, 300),
	}
}

// FuzzArchive walks arbitrary bytes as an attachment, within small
// bounds. It never panics; findings are well formed and name the
// attachment or a path inside it; the entry budget is never overdrawn,
// an overdrawn byte budget always ends in its ArchiveLimit finding, and
// at most one such finding is made; unopenable archives carry the
// configured action. The two ways of recognising an archive agree: by
// its first 512 bytes (a member read as a stream) and by all of it (in
// memory).
func FuzzArchive(f *testing.F) {
	for _, s := range archiveSeeds(f) {
		f.Add(s)
	}
	lim := ArchiveLimits{MaxDepth: 4, MaxEntries: 200, MaxBytes: 1 << 20}
	a, err := NewAttachmentPolicy(AttachmentConfig{Archive: lim, UnopenableArchives: ActQuarantine})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, _ := archiveMagic(data)
		if head, _ := archiveMagic(data[:min(len(data), headSize)]); head != whole {
			t.Fatalf("kind %d from the head, %d from the whole", head, whole)
		}
		var out []Finding
		w := &archiveWalk{a: a, ctx: context.Background(), part: "1", entriesLeft: lim.MaxEntries, bytesLeft: lim.MaxBytes, out: &out}
		w.blob(data, "a.bin", 1)
		limits := 0
		for _, fd := range out {
			switch {
			case fd.Part != "1" || fd.Detail == "" || (fd.Name != "a.bin" && !strings.HasPrefix(fd.Name, "a.bin/")):
				t.Fatalf("finding %+v", fd)
			case fd.Kind == ArchiveLimit:
				limits++
			case fd.Kind == EncryptedArchive || fd.Kind == UnopenableArchive:
				if fd.Action != ActQuarantine {
					t.Fatalf("finding %+v without its action", fd)
				}
			case fd.Kind == KeywordMatch || fd.Kind > UnopenableArchive || fd.Kind < BannedExtension:
				t.Fatalf("finding %+v", fd)
			}
		}
		if limits > 1 || w.entriesLeft < 0 || (w.bytesLeft < 0 && limits == 0) {
			t.Fatalf("%d limit findings, %d entries and %d bytes left: %v", limits, w.entriesLeft, w.bytesLeft, out)
		}
	})
}

// FuzzContentWins is a differential target: the same bytes attached
// declared text/plain and declared application/octet-stream give the
// same archive findings. The walker keeps the bytes of a text part whose
// content is an archive, and the check looks inside it as it does for
// any other part.
func FuzzContentWins(f *testing.F) {
	for _, s := range archiveSeeds(f) {
		if len(s) < 64<<10 {
			f.Add(s)
		}
	}
	w, err := NewWalker(WalkerConfig{})
	if err != nil {
		f.Fatal(err)
	}
	a, err := NewAttachmentPolicy(AttachmentConfig{Archive: ArchiveLimits{MaxEntries: 200, MaxBytes: 1 << 20}})
	if err != nil {
		f.Fatal(err)
	}
	inside := func(ctype string, data []byte) string {
		c, err := w.WalkBytes(context.Background(), []byte(withParts(attachment(ctype, "blob.bin", data))))
		if err != nil {
			return "walk: " + err.Error()
		}
		var b bytes.Buffer
		for _, fd := range a.Check(context.Background(), c) {
			// The part's own content check depends on the declared type.
			if fd.Name == "blob.bin" && (fd.Kind == TypeMismatch || fd.Kind == ExecutableContent) {
				continue
			}
			b.WriteString(fd.String() + "\n")
		}
		return b.String()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if text, bin := inside("text/plain", data), inside("application/octet-stream", data); text != bin {
			t.Fatalf("declared text:\n%s\ndeclared binary:\n%s", text, bin)
		}
	})
}
