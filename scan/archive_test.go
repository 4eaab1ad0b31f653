package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tarOf builds a tar archive of name/content pairs.
func tarOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		data := files[i+1].([]byte)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: files[i].(string), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// gzipOf compresses data, with name in the header when set.
func gzipOf(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Name = name
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// tgzOf builds a .tar.gz of name/content pairs.
func tgzOf(t testing.TB, files ...any) []byte { return gzipOf(t, "", tarOf(t, files...)) }

// zipRaw builds a zip of one entry whose data is written as given, with
// the method and flags said (an encrypted or LZMA entry, say); plain is
// what the data stands for (its CRC and size go into the headers).
func zipRaw(t testing.TB, name string, method, flags uint16, data, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: method, Flags: flags, CRC32: crc32.ChecksumIEEE(plain),
		CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(plain))})
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// tool returns the path of a command-line tool a test uses to build a
// real archive, skipping (failing under CI=true) when it is missing.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; scripts/test-all.sh installs it", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func bzip2Of(t testing.TB, data []byte) []byte {
	t.Helper()
	cmd := exec.Command(tool(t, "bzip2"), "-c", "-9")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	require.NoError(t, err)
	return out
}

// junk is a prefix such as a self-extractor stub or garbage before a zip.
var junk = bytes.Repeat([]byte("\x13\x37junk-"), 400/7+1)[:400]

// checkData checks one attachment, declared as ctype and named name.
func checkData(t testing.TB, cfg AttachmentConfig, ctype, name string, data []byte) []finding {
	t.Helper()
	c, err := walk(t, Limits{}, withParts(attachment(ctype, name, data)))
	require.NoError(t, err)
	a, err := NewAttachmentPolicy(cfg)
	require.NoError(t, err)
	return kinds(a.Check(context.Background(), c))
}

// The bypasses of the issue and their kin: archives are known by
// content, whatever their name, declared type or prefix.
func TestArchiveKinds(t *testing.T) {
	evil := []any{"evil.exe", mzStub}
	prefixed := append(append([]byte{}, junk...), zipOf(t, evil...)...)
	tests := []struct {
		name        string
		ctype, file string
		data        []byte
		want        []finding
	}{
		{"zip after 400 bytes of junk", "application/zip", "archive.zip", prefixed,
			[]finding{{BannedExtension, "archive.zip/evil.exe"}}},
		{"prefixed zip declared text", "text/plain", "notes.txt", prefixed,
			[]finding{{BannedExtension, "notes.txt/evil.exe"}}},
		{"self-extracting zip", "application/octet-stream", "setup.dat", append(append([]byte{}, mzStub...), zipOf(t, "run.vbs", []byte("x"))...),
			[]finding{{ExecutableContent, "setup.dat"}, {BannedExtension, "setup.dat/run.vbs"}}},
		{"tar.gz holding evil.exe", "application/gzip", "files.tar.gz", tgzOf(t, "docs/a.txt", []byte("a"), "evil.exe", mzStub),
			[]finding{{BannedExtension, "files.tar.gz/evil.exe"}}},
		{"tar.gz declared text", "text/plain", "readme.txt", tgzOf(t, evil...),
			[]finding{{BannedExtension, "readme.txt/evil.exe"}}},
		{"plain tar", "application/x-tar", "x.tar", tarOf(t, "run.js", []byte("x")),
			[]finding{{BannedExtension, "x.tar/run.js"}}},
		{"tgz in zip in tar", "application/x-tar", "outer.tar",
			tarOf(t, "bundle.zip", zipOf(t, "inner.tgz", tgzOf(t, evil...))),
			[]finding{{BannedExtension, "outer.tar/bundle.zip/inner.tgz/evil.exe"}}},
		{"gzip of an exe, named by gunzip", "application/gzip", "evil.exe.gz", gzipOf(t, "", mzStub),
			[]finding{{BannedExtension, "evil.exe.gz/evil.exe"}}},
		{"gzip header keeps the name", "application/gzip", "data.gz", gzipOf(t, "evil.scr", []byte("x")),
			[]finding{{BannedExtension, "data.gz/evil.scr"}}},
		{"program under an innocent name in a tar.gz", "application/gzip", "a.tgz", tgzOf(t, "readme.dat", mzStub),
			[]finding{{ExecutableContent, "a.tgz/readme.dat"}}},
		{"program under a document's name in a zip", "application/zip", "a.zip", zipOf(t, "photo.jpg", mzStub),
			[]finding{{TypeMismatch, "a.zip/photo.jpg"}}},
		{"encrypted zip", "application/zip", "secret.zip", zipRaw(t, "secret.doc", zip.Store, 1, []byte("ciphertext"), []byte("plaintext!")),
			[]finding{{EncryptedArchive, "secret.zip/secret.doc"}}},
		{"AES zip", "application/zip", "aes.zip", zipRaw(t, "secret.doc", 99, 1, []byte("ciphertext"), []byte("plaintext!")),
			[]finding{{EncryptedArchive, "aes.zip/secret.doc"}}},
		{"zip entry in LZMA", "application/zip", "lzma.zip", zipRaw(t, "doc.txt", 14, 0, []byte("lzma data"), bytes.Repeat([]byte("x"), 100)),
			[]finding{{UnopenableArchive, "lzma.zip/doc.txt"}}},
		{"rar", "application/octet-stream", "a.rar", []byte("Rar!\x1a\x07\x01\x00rest of a rar 5 archive"),
			[]finding{{UnopenableArchive, "a.rar"}}},
		{"7z under a text name", "text/plain", "a.txt", []byte("7z\xbc\xaf\x27\x1c\x00\x04rest"),
			[]finding{{UnopenableArchive, "a.txt"}}},
		{"xz", "application/octet-stream", "a.xz", []byte("\xfd7zXZ\x00\x00\x04"), []finding{{UnopenableArchive, "a.xz"}}},
		{"rar inside a zip", "application/zip", "a.zip", zipOf(t, "inner.bin", []byte("Rar!\x1a\x07\x00rest")),
			[]finding{{UnopenableArchive, "a.zip/inner.bin"}}},
		{"zip after a zip", "application/zip", "two.zip", append(zipOf(t, "ok.txt", []byte("x")), zipOf(t, evil...)...),
			[]finding{{BannedExtension, "two.zip/evil.exe"}}},
		{"zip before a zip", "application/zip", "two.zip", append(zipOf(t, evil...), zipOf(t, "ok.txt", []byte("x"))...),
			[]finding{{BannedExtension, "two.zip/evil.exe"}}},
		{"zip without its central directory", "application/zip", "cut.zip", noDirectory(t, zipOf(t, evil...)),
			[]finding{{BannedExtension, "cut.zip/evil.exe"}}},
		{"local name differs from the directory's", "application/zip", "x.zip", renameLocal(t, zipOf(t, "aaaaaa.txt", []byte("x")), "aaaaaa.exe"),
			[]finding{{BannedExtension, "x.zip/aaaaaa.exe"}}},
		{"unicode path extra field", "application/zip", "u.zip", unicodeNamed(t, "invoice.pdf", "invoice.exe"),
			[]finding{{BannedExtension, "u.zip/invoice.exe"}}},
		{"directory that claims the next entry's bytes", "application/zip", "h.zip", hideSecond(t),
			// a.txt's CRC is that of its one byte: the longer data is damage.
			[]finding{{UnopenableArchive, "h.zip/a.txt"}, {BannedExtension, "h.zip/evil.exe"}}},
		{"zip appended to a tar", "application/x-tar", "x.tar", append(tarOf(t, "ok.txt", []byte("x")), zipOf(t, evil...)...),
			[]finding{{BannedExtension, "x.tar/evil.exe"}}},
		{"prefixed zip named .zip in a tar.gz", "application/gzip", "x.tgz", tgzOf(t, "inner.zip", prefixed),
			[]finding{{BannedExtension, "x.tgz/inner.zip/evil.exe"}}},
		{"damaged tar.gz", "application/gzip", "cut.tgz", tgzOf(t, "a.txt", bytes.Repeat([]byte("a"), 4000), "b.txt", []byte("b"))[:100],
			[]finding{{UnopenableArchive, "cut.tgz"}}},
		{"clean zip", "application/zip", "ok.zip", zipOf(t, "a.txt", []byte("a"), "dir/b.pdf", []byte("%PDF-1.7\n")), nil},
		{"clean tar.gz", "application/gzip", "ok.tar.gz", tgzOf(t, "a.txt", []byte("a"), "b/c.txt", []byte("c")), nil},
		{"clean docx-like zip in a tar", "application/x-tar", "ok.tar", tarOf(t, "report.docx", zipOf(t, "word/document.xml", []byte("<w/>"))), nil},
		{"text that is no archive", "text/plain", "a.txt", []byte("PK is not a zip, and 1f8b is not gzip\n"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, checkData(t, AttachmentConfig{}, tc.ctype, tc.file, tc.data))
		})
	}
}

// noDirectory cuts a zip before its central directory: the local
// headers are all that is left (streaming extractors read those).
func noDirectory(t testing.TB, z []byte) []byte {
	i := bytes.Index(z, zipCentralHeader)
	require.Positive(t, i)
	return z[:i]
}

// unicodeNamed is a zip of one entry whose Info-ZIP Unicode Path extra
// field (0x7075) names it otherwise: unzip and 7-Zip extract it under
// that name.
func unicodeNamed(t testing.TB, name, unicode string) []byte {
	field := []byte{0x75, 0x70, 0, 0, 1}
	field = binary.LittleEndian.AppendUint32(field, crc32.ChecksumIEEE([]byte(name)))
	field = append(field, unicode...)
	binary.LittleEndian.PutUint16(field[2:], uint16(len(field)-4))
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Extra: field})
	require.NoError(t, err)
	_, _ = w.Write([]byte("%PDF-1.7\n"))
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// hideSecond is a zip of a.txt and evil.exe, stored, whose central
// directory lists only a.txt and says its data runs up to the directory:
// over evil.exe's local header, which streaming extractors still read
// (a.txt's local header says its data is one byte).
func hideSecond(t testing.TB) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{{"a.txt", []byte("x")}, {"evil.exe", mzStub}} {
		w, err := zw.CreateRaw(&zip.FileHeader{Name: f.name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(f.data),
			CompressedSize64: uint64(len(f.data)), UncompressedSize64: uint64(len(f.data))})
		require.NoError(t, err)
		_, _ = w.Write(f.data)
	}
	require.NoError(t, zw.Close())
	z := buf.Bytes()
	dir := bytes.Index(z, zipCentralHeader)
	second := dir + 4 + bytes.Index(z[dir+4:], zipCentralHeader)
	end := bytes.LastIndex(z, zipEndHeader)
	first, ok := parseLocalHeader(z, 0)
	require.True(t, ok)
	record := bytes.Clone(z[dir:second])
	binary.LittleEndian.PutUint32(record[20:], uint32(dir-first.dataOff)) // compressed size
	binary.LittleEndian.PutUint32(record[24:], uint32(dir-first.dataOff)) // uncompressed size
	eocd := bytes.Clone(z[end:])
	binary.LittleEndian.PutUint16(eocd[8:], 1)
	binary.LittleEndian.PutUint16(eocd[10:], 1)
	binary.LittleEndian.PutUint32(eocd[12:], uint32(len(record)))
	out := append(bytes.Clone(z[:dir]), record...)
	return append(out, eocd...)
}

// renameLocal gives the first entry's local header another name of the
// same length, leaving the central directory's as it was.
func renameLocal(t testing.TB, z []byte, name string) []byte {
	h, ok := parseLocalHeader(z, 0)
	require.True(t, ok)
	require.Len(t, name, len(h.name))
	out := bytes.Clone(z)
	copy(out[30:], name)
	return out
}

func TestArchiveBzip2(t *testing.T) {
	tbz := bzip2Of(t, tarOf(t, "evil.exe", mzStub))
	assert.Equal(t, []finding{{BannedExtension, "x.tar.bz2/evil.exe"}}, checkData(t, AttachmentConfig{}, "application/x-bzip2", "x.tar.bz2", tbz))
	inner := bzip2Of(t, mzStub)
	z := zipRaw(t, "readme.dat", 12, 0, inner, mzStub)
	assert.Equal(t, []finding{{ExecutableContent, "b.zip/readme.dat"}}, checkData(t, AttachmentConfig{}, "application/zip", "b.zip", z))
}

// The unopenable archives' action travels with the finding.
func TestUnopenableAction(t *testing.T) {
	enc := zipRaw(t, "secret.doc", zip.Store, 1, []byte("ciphertext"), []byte("plaintext!"))
	for _, a := range []Action{ActDefault, ActReject, ActQuarantine, ActLog} {
		c, err := walk(t, Limits{}, withParts(attachment("application/zip", "s.zip", enc)))
		require.NoError(t, err)
		p, err := NewAttachmentPolicy(AttachmentConfig{UnopenableArchives: a})
		require.NoError(t, err)
		fs := p.Check(context.Background(), c)
		require.Len(t, fs, 1)
		assert.Equal(t, a, fs[0].Action)
	}
	_, err := NewAttachmentPolicy(AttachmentConfig{UnopenableArchives: 42})
	assert.ErrorIs(t, err, ErrConfig)
	assert.Empty(t, checkData(t, AttachmentConfig{SkipArchives: true}, "application/zip", "s.zip", enc))
}

// nestMixed wraps data in n archives, alternating tar, zip and tar.gz.
func nestMixed(t testing.TB, data []byte, n int) []byte {
	for i := range n {
		name := "l" + string(rune('0'+i))
		switch i % 3 {
		case 0:
			data = tarOf(t, name+".tar", data)
		case 1:
			data = zipOf(t, name+".zip", data)
		default:
			data = tgzOf(t, name+".tgz", data)
		}
	}
	return data
}

// zeroSegment is 16 MiB of zeros as deflate blocks (RFC 1951) that end
// on a byte boundary and are not final: copies of it one after another
// are a valid stream of as many times 16 MiB, so that a bomb of 1 GiB
// costs one compression of 16 MiB to build.
var zeroSegment = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = fw.Write(make([]byte, 16<<20))
	_ = fw.Flush()
	return buf.Bytes()
})

// deflateBomb is a raw deflate stream of prefix, zeros bytes of zeros (a
// multiple of 16 MiB) and suffix, and the CRC-32 of all of it.
func deflateBomb(t testing.TB, prefix []byte, zeros int64, suffix []byte) ([]byte, uint32) {
	require.Zero(t, zeros%(16<<20))
	var out bytes.Buffer
	fw, err := flate.NewWriter(&out, flate.BestCompression)
	require.NoError(t, err)
	_, _ = fw.Write(prefix)
	require.NoError(t, fw.Flush())
	crc := crc32.ChecksumIEEE(prefix)
	chunk := make([]byte, 16<<20)
	for range zeros / (16 << 20) {
		out.Write(zeroSegment())
		crc = crc32.Update(crc, crc32.IEEETable, chunk)
	}
	fw, err = flate.NewWriter(&out, flate.BestCompression)
	require.NoError(t, err)
	_, _ = fw.Write(suffix)
	require.NoError(t, fw.Close())
	return out.Bytes(), crc32.Update(crc, crc32.IEEETable, suffix)
}

// tarBomb is a gzip bomb (one gzip member, RFC 1952) around a tar whose
// first member is size bytes of zeros and whose second is evil.exe.
func tarBomb(t testing.TB, size int64) []byte {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}))
	rest := tarOf(t, "evil.exe", mzStub)
	body, crc := deflateBomb(t, hdr.Bytes(), size, rest)
	out := append([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"), body...)
	total := int64(hdr.Len()) + size + int64(len(rest))
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(out, crc), uint32(total))
}

// zipBomb is a zip holding big.zip: a zip local header and then size
// bytes of zeros, deflated.
func zipBomb(t testing.TB, size int64) []byte {
	prefix := []byte("PK\x03\x04")
	body, crc := deflateBomb(t, prefix, size, nil)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "big.zip", Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(len(body)), UncompressedSize64: uint64(size) + uint64(len(prefix))})
	require.NoError(t, err)
	_, err = w.Write(body)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// manyEntries is a tar of n empty files.
func manyEntries(t testing.TB, n int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range n {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "f" + strings.Repeat("x", i%50) + ".txt", Mode: 0o644, Typeflag: tar.TypeReg}))
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// leafContent is a message of one attachment, built without the walker
// (whose message size limit would refuse the larger ones first).
func leafContent(name string, data []byte) *Content {
	return &Content{Parts: []Part{{ID: "0", Parent: -1, Multipart: true},
		{ID: "1", Depth: 1, FileName: name, ContentType: "application/octet-stream", Sniffed: Sniff(data), Size: int64(len(data)), data: data}}}
}

// The bounds hold for every kind: a gzip bomb, a tar of 100,000 entries
// and nesting past the limit are refused within the budget, and the
// memory the walk takes stays far under what the bombs hold.
func TestArchiveBounds(t *testing.T) {
	many := manyEntries(t, 100000)
	tests := []struct {
		name   string
		data   []byte
		detail string
		// maxAlloc bounds the bytes allocated by the check (with room for
		// the race detector's own).
		maxAlloc uint64
	}{
		{"tar.gz with 1 GiB of zeros", tarBomb(t, 1<<30), "more than 67108864 bytes decompressed", 16 << 20},
		{"tar of 100000 entries", many, "more than 2000 entries", 16 << 20},
		{"tar.gz of 100000 entries", gzipOf(t, "", many), "more than 2000 entries", 16 << 20},
		{"zip of 100000 entries", manyStored(t, 100000), "more than 2000 entries", 16 << 20},
		{"nested 6 deep", nestMixed(t, tarOf(t, "evil.exe", mzStub), 6), "archives nested deeper than 4", 16 << 20},
		// A nested zip is read whole (archive/zip needs to seek): its
		// memory is bounded by MaxBytes.
		{"zip of a zip of 1 GiB of zeros", zipBomb(t, 1<<30), "more than 67108864 bytes decompressed", 80 << 20},
	}
	a, err := NewAttachmentPolicy(AttachmentConfig{})
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := leafContent("bomb.bin", tc.data)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			fs := a.Check(context.Background(), c)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: %v, %d KiB allocated, findings %v", len(tc.data), took, alloc>>10, fs)
			var limits []Finding
			for _, f := range fs {
				if f.Kind == ArchiveLimit {
					limits = append(limits, f)
				}
			}
			require.Len(t, limits, 1, "%v", fs)
			assert.Equal(t, tc.detail, limits[0].Detail)
			assert.Less(t, alloc, tc.maxAlloc)
		})
	}
}

// manyStored is a zip of n empty stored files.
func manyStored(t testing.TB, n int) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range n {
		_, err := zw.CreateHeader(&zip.FileHeader{Name: "f" + strings.Repeat("x", i%50) + ".txt", Method: zip.Store})
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// The walk ends when its context does.
func TestArchiveContext(t *testing.T) {
	a, err := NewAttachmentPolicy(AttachmentConfig{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fs := a.Check(ctx, leafContent("x.tgz", tarBomb(t, 64<<20)))
	assert.Empty(t, fs)
}

func TestArchiveMagic(t *testing.T) {
	tests := []struct {
		in   string
		kind archiveKind
	}{
		{"PK\x03\x04", kindZip},
		{"PK\x05\x06" + strings.Repeat("\x00", 18), kindZip},
		{"\x1f\x8b\x08\x00", kindGzip},
		{"\x1f\x8b\x07\x00", kindUnopenable},
		{"BZh91AY&SY", kindBzip2},
		{"BZh9", notArchive},
		{"Rar!\x1a\x07\x00", kindUnopenable},
		{"MSCF\x00\x00\x00\x00", kindUnopenable},
		{"\x00\x00-lh5-", kindUnopenable},
		{"!<arch>\ndebian-binary", kindUnopenable},
		{"070707" + strings.Repeat("0", 70), kindUnopenable},
		{"070707 is a phone number", notArchive},
		{"\x60\xea\x22\x00\x1e\x0b\x01\x02\x10\x00\x02", kindUnopenable},
		{"hello", notArchive},
		{"", notArchive},
	}
	for _, tc := range tests {
		k, _ := archiveMagic([]byte(tc.in))
		assert.Equal(t, tc.kind, k, "%q", tc.in)
	}
	// tar by its magic and, for v7 archives, by the header checksum.
	ustar := tarOf(t, "a.txt", []byte("a"))
	k, _ := archiveMagic(ustar)
	assert.Equal(t, kindTar, k)
	v7 := bytes.Clone(ustar[:512])
	copy(v7[257:265], make([]byte, 8))
	sum := 0
	for i, c := range v7 {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	copy(v7[148:156], []byte(strings.Repeat("0", 6-len(octal(sum)))+octal(sum)+"\x00 "))
	k, _ = archiveMagic(v7)
	assert.Equal(t, kindTar, k)
	v7[0]++
	k, _ = archiveMagic(v7)
	assert.Equal(t, notArchive, k, "a checksum that does not add up")
	assert.Equal(t, TypeTar, Sniff(ustar))
}

func octal(n int) string {
	s := ""
	for ; n > 0; n /= 8 {
		s = string(rune('0'+n%8)) + s
	}
	return s
}

func TestInnerName(t *testing.T) {
	for outer, want := range map[string]string{
		"evil.exe.gz": "evil.exe", "a.tgz": "a.tar", "X.TBZ2": "X.tar", "dir/y.bz2": "y", "plain": "", ".gz": "",
	} {
		assert.Equal(t, want, innerName(outer, ""), outer)
	}
	assert.Equal(t, "kept.exe", innerName("a.gz", "kept.exe"))
}

// Each bzip2 stream costs its decoder's block buffer: a zip of 2000 tiny
// bzip2 entries is refused once the buffers add up to the byte budget,
// instead of allocating 3.6 MB for each.
func TestArchiveBzip2Entries(t *testing.T) {
	inner := bzip2Of(t, mzStub)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 2000 {
		w, err := zw.CreateRaw(&zip.FileHeader{Name: "f" + strings.Repeat("x", i%50) + ".dat", Method: 12, CRC32: crc32.ChecksumIEEE(mzStub),
			CompressedSize64: uint64(len(inner)), UncompressedSize64: uint64(len(mzStub))})
		require.NoError(t, err)
		_, _ = w.Write(inner)
	}
	require.NoError(t, zw.Close())
	a, _ := NewAttachmentPolicy(AttachmentConfig{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	fs := a.Check(context.Background(), leafContent("x.zip", buf.Bytes()))
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes, %v, %d MiB allocated, %d findings", buf.Len(), time.Since(start), alloc>>20, len(fs))
	require.NotEmpty(t, fs)
	last := fs[len(fs)-1]
	assert.Equal(t, ArchiveLimit, last.Kind)
	assert.Equal(t, "more than 67108864 bytes decompressed", last.Detail)
	assert.Less(t, alloc, uint64(100<<20))
}
