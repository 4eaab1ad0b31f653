package scan

import (
	"archive/zip"
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckName(t *testing.T) {
	a, err := NewAttachmentPolicy(AttachmentConfig{})
	require.NoError(t, err)
	tests := []struct {
		name string
		kind FindingKind // 0: allowed
	}{
		{"report.pdf", 0},
		{"setup.exe", BannedExtension},
		{"SETUP.EXE", BannedExtension},
		{"script.js", BannedExtension},
		{"run.exe. ", BannedExtension},
		{`C:\Users\x\evil.scr`, BannedExtension},
		{"invoice.pdf.exe", DoubleExtension},
		{"photo.jpg     .scr", DoubleExtension},
		{"archive.tar.gz", 0},
		{"invoice\u202efdp.exe", DoubleExtension},
		{"noextension", 0},
		{"exe", 0},
		{"notes.txt.js", DoubleExtension},
		{"data.json", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, d, ok := a.checkName(tc.name)
			if tc.kind == 0 {
				assert.False(t, ok, "%v %s", k, d)
				return
			}
			assert.True(t, ok)
			assert.Equal(t, tc.kind, k, d)
		})
	}

	a, err = NewAttachmentPolicy(AttachmentConfig{BannedExtensions: []string{".PDF"}, AllowDoubleExtensions: true})
	require.NoError(t, err)
	k, _, ok := a.checkName("invoice.pdf")
	assert.True(t, ok)
	assert.Equal(t, BannedExtension, k)
	_, _, ok = a.checkName("setup.exe")
	assert.False(t, ok)

	_, err = NewAttachmentPolicy(AttachmentConfig{BannedExtensions: []string{"a.b"}})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewAttachmentPolicy(AttachmentConfig{Archive: ArchiveLimits{MaxDepth: -1}})
	assert.ErrorIs(t, err, ErrConfig)
}

func checkMsg(t *testing.T, cfg AttachmentConfig, msg string) []Finding {
	t.Helper()
	c, err := walk(t, Limits{}, msg)
	require.NoError(t, err)
	a, err := NewAttachmentPolicy(cfg)
	require.NoError(t, err)
	return a.Check(context.Background(), c)
}

func withParts(parts ...string) string {
	return "Subject: a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		multipart("b", append([]string{"Content-Type: text/plain\r\n\r\nhi\r\n"}, parts...)...)
}

type finding struct {
	kind FindingKind
	name string
}

func kinds(fs []Finding) []finding {
	var out []finding
	for _, f := range fs {
		out = append(out, finding{f.Kind, f.Name})
	}
	return out
}

func TestAttachmentPolicy(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	tests := []struct {
		name string
		cfg  AttachmentConfig
		msg  string
		want []finding
	}{
		{"clean", AttachmentConfig{}, withParts(attachment("image/png", "cat.png", png)), nil},
		{"banned", AttachmentConfig{}, withParts(attachment("application/octet-stream", "setup.exe", mzStub)),
			[]finding{{BannedExtension, "setup.exe"}}},
		{"double", AttachmentConfig{}, withParts(attachment("application/pdf", "invoice.pdf.exe", mzStub)),
			[]finding{{DoubleExtension, "invoice.pdf.exe"}, {TypeMismatch, "invoice.pdf.exe"}}},
		{"executable declared image/jpeg", AttachmentConfig{}, withParts(attachment("image/jpeg", "photo.jpg", mzStub)),
			[]finding{{TypeMismatch, "photo.jpg"}}},
		{"zip declared image", AttachmentConfig{}, withParts(attachment("image/jpeg", "photo.jpg", zipOf(t, "a.txt", []byte("x")))),
			[]finding{{TypeMismatch, "photo.jpg"}}},
		{"mismatch allowed", AttachmentConfig{AllowTypeMismatch: true}, withParts(attachment("image/jpeg", "photo.jpg", mzStub)),
			[]finding{{ExecutableContent, "photo.jpg"}}},
		{"executable under an innocent name", AttachmentConfig{}, withParts(attachment("application/octet-stream", "data.bin", mzStub)),
			[]finding{{ExecutableContent, "data.bin"}}},
		{"executables allowed", AttachmentConfig{AllowExecutables: true}, withParts(attachment("application/octet-stream", "data.bin", mzStub)), nil},
		{"banned inside zip", AttachmentConfig{}, withParts(attachment("application/zip", "a.zip", zipOf(t, "dir/run.vbs", []byte("MsgBox 1"), "ok.txt", []byte("x")))),
			[]finding{{BannedExtension, "a.zip/dir/run.vbs"}}},
		{"executable inside zip", AttachmentConfig{}, withParts(attachment("application/zip", "a.zip", zipOf(t, "readme.dat", mzStub))),
			[]finding{{ExecutableContent, "a.zip/readme.dat"}}},
		{"nested zips", AttachmentConfig{}, withParts(attachment("application/zip", "outer.zip",
			zipOf(t, "inner.zip", zipOf(t, "eicar.com", eicar())))), []finding{{BannedExtension, "outer.zip/inner.zip/eicar.com"}}},
		{"archives skipped", AttachmentConfig{SkipArchives: true}, withParts(attachment("application/zip", "a.zip", zipOf(t, "run.vbs", []byte("x")))), nil},
		{"no name, executable part", AttachmentConfig{}, withParts("Content-Type: application/x-msdownload\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(mzStub)),
			[]finding{{ExecutableContent, ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, kinds(checkMsg(t, tc.cfg, tc.msg)))
		})
	}
}

// nestZip wraps data in n levels of zip archives, each holding "l<i>.zip".
func nestZip(t *testing.T, data []byte, n int) []byte {
	for i := range n {
		data = zipOf(t, "l"+string(rune('0'+i))+".zip", data)
	}
	return data
}

func TestArchiveBombs(t *testing.T) {
	// Nested deeper than MaxDepth.
	deep := nestZip(t, zipOf(t, "x.txt", []byte("bottom")), 6)
	got := kinds(checkMsg(t, AttachmentConfig{}, withParts(attachment("application/zip", "deep.zip", deep))))
	require.Len(t, got, 1)
	assert.Equal(t, ArchiveLimit, got[0].kind)

	// Too many entries.
	var files []any
	for i := range 50 {
		files = append(files, strings.Repeat("f", i+1)+".txt", []byte("x"))
	}
	got = kinds(checkMsg(t, AttachmentConfig{Archive: ArchiveLimits{MaxEntries: 20}}, withParts(attachment("application/zip", "many.zip", zipOf(t, files...)))))
	assert.Equal(t, []finding{{ArchiveLimit, "many.zip"}}, got)

	// A nested archive that inflates past MaxBytes: a zip header and
	// megabytes of zeros compress to almost nothing.
	bomb := append([]byte("PK\x03\x04"), make([]byte, 8<<20)...)
	fs := checkMsg(t, AttachmentConfig{Archive: ArchiveLimits{MaxBytes: 1 << 20}}, withParts(attachment("application/zip", "bomb.zip", zipOf(t, "big.zip", bomb))))
	require.Len(t, fs, 1)
	assert.Equal(t, ArchiveLimit, fs[0].Kind)
	assert.Contains(t, fs[0].Detail, "decompressed")

	// Encrypted entries are reported: nothing can look inside them.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "secret.doc", Method: zip.Store, Flags: 0x1})
	require.NoError(t, err)
	_, _ = w.Write([]byte("ciphertext"))
	require.NoError(t, zw.Close())
	enc := withParts(attachment("application/zip", "secret.zip", buf.Bytes()))
	assert.Equal(t, []finding{{EncryptedArchive, "secret.zip/secret.doc"}}, kinds(checkMsg(t, AttachmentConfig{}, enc)))
}

func TestSniff(t *testing.T) {
	tests := map[string]string{
		"MZ\x90\x00":                         TypeWindowsExecutable,
		"\x7fELF\x02\x01":                    TypeELF,
		"\xcf\xfa\xed\xfe":                   TypeMachO,
		"PK\x03\x04rest":                     "application/zip",
		"%PDF-1.7\n":                         "application/pdf",
		"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1xx": TypeOLE,
		"hello world":                        "text/plain",
		"":                                   "text/plain",
		"\x00\x01\x02\x03":                   "application/octet-stream",
	}
	for in, want := range tests {
		assert.Equal(t, want, Sniff([]byte(in)), "%q", in)
	}
	assert.True(t, IsExecutable(TypeELF))
	assert.False(t, IsExecutable("application/pdf"))
}
