package integration

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// evilExe is the start of a Windows program (MZ, then a PE header
// offset): what the attachment check must find inside archives.
var evilExe = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"), make([]byte, 64)...)

// tarOf builds a tar of name/content pairs, gzipped when gz is set.
func tarOf(t *testing.T, gz bool, files ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		data := files[i+1].([]byte)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: files[i].(string), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	if !gz {
		return b.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, err := zw.Write(b.Bytes())
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return z.Bytes()
}

// run runs a tool and returns its output, failing the test on error.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return string(out)
}

// The attachment bypasses of the "Security at the seams" issue, against
// the real relay with -ban-attachments: a zip after 400 bytes of junk, a
// tar.gz holding evil.exe, a tgz in a zip in a tar, an archive declared
// text/plain, an encrypted zip made by zip(1), rar and 7z archives. Each
// is refused, saying why; clean archives are delivered. unzip and tar
// show first that the archives are real: they extract evil.exe.
func TestBannedArchivesThroughRelay(t *testing.T) {
	swaks := need(t, "swaks")
	unzip, zipTool, tarTool := need(t, "unzip"), need(t, "zip"), need(t, "tar")
	dir := t.TempDir()

	// A zip after 400 bytes of junk: unzip finds it (and warns about the
	// extra bytes, exit status 1) and extracts evil.exe.
	var inner bytes.Buffer
	zw := zip.NewWriter(&inner)
	w, err := zw.Create("evil.exe")
	require.NoError(t, err)
	_, _ = w.Write(evilExe)
	require.NoError(t, zw.Close())
	prefixed := append(bytes.Repeat([]byte{0x13}, 400), inner.Bytes()...)
	writeFile(t, dir, "prefixed.zip", string(prefixed))
	out, err := exec.Command(unzip, "-p", filepath.Join(dir, "prefixed.zip"), "evil.exe").Output()
	require.Equal(t, evilExe, out, "unzip extracts the prefixed zip (%v)", err)

	// A tgz in a zip in a tar, taken apart by tar and unzip.
	tgz := tarOf(t, true, "evil.exe", evilExe)
	writeFile(t, dir, "files.tar.gz", string(tgz))
	nest := filepath.Join(dir, "nest")
	require.NoError(t, os.Mkdir(nest, 0o755))
	writeFile(t, nest, "inner.tgz", string(tgz))
	run(t, nest, zipTool, "-q", "bundle.zip", "inner.tgz")
	bundle, err := os.ReadFile(filepath.Join(nest, "bundle.zip"))
	require.NoError(t, err)
	writeFile(t, dir, "outer.tar", string(tarOf(t, false, "bundle.zip", bundle)))
	x := filepath.Join(dir, "x")
	require.NoError(t, os.Mkdir(x, 0o755))
	run(t, x, tarTool, "-xf", filepath.Join(dir, "outer.tar"))
	run(t, x, unzip, "-q", "bundle.zip")
	run(t, x, tarTool, "-xzf", "inner.tgz")
	got, err := os.ReadFile(filepath.Join(x, "evil.exe"))
	require.NoError(t, err)
	require.Equal(t, evilExe, got)

	// A really encrypted zip (ZipCrypto, zip -P).
	writeFile(t, nest, "secret.doc", "the plan\n")
	run(t, nest, zipTool, "-q", "-P", "hunter2", "secret.zip", "secret.doc")
	writeFile(t, nest, "readme.txt", "hello\n")
	run(t, nest, zipTool, "-q", "clean.zip", "readme.txt")
	writeFile(t, dir, "clean.tar.gz", string(tarOf(t, true, "docs/readme.txt", []byte("hello\n"))))
	writeFile(t, dir, "a.rar", "Rar!\x1a\x07\x01\x00\x33\x92\xb5\xe5\x0a\x01\x05\x06\x00\x05\x01\x01\x80\x80\x00")
	writeFile(t, dir, "a.7z", "7z\xbc\xaf\x27\x1c\x00\x04\x8d\x9b\xd5\x0f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")

	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-ban-attachments")
	send := func(ctype, name, file string) (string, error) {
		out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test",
			"--attach-type", ctype, "--attach-name", name, "--attach", "@"+file).CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		ctype, name, file, reply string
	}{
		{"application/zip", "prefixed.zip", "prefixed.zip", `552 5.7.0 Message rejected: attachment "prefixed.zip/evil.exe" not allowed (banned-extension)`},
		{"application/gzip", "files.tar.gz", "files.tar.gz", `552 5.7.0 Message rejected: attachment "files.tar.gz/evil.exe" not allowed (banned-extension)`},
		{"text/plain", "notes.txt", "files.tar.gz", `552 5.7.0 Message rejected: attachment "notes.txt/evil.exe" not allowed (banned-extension)`},
		{"application/x-tar", "outer.tar", "outer.tar", `552 5.7.0 Message rejected: attachment "outer.tar/bundle.zip/inner.tgz/evil.exe" not allowed (banned-extension)`},
		{"application/zip", "secret.zip", "nest/secret.zip", `552 5.7.0 Message rejected: attachment "secret.zip/secret.doc" not allowed (encrypted-archive: encrypted zip entry, cannot be inspected)`},
		{"application/octet-stream", "a.rar", "a.rar", `552 5.7.0 Message rejected: attachment "a.rar" not allowed (unopenable-archive: rar archive, cannot be inspected)`},
		{"application/octet-stream", "photos.dat", "a.7z", `552 5.7.0 Message rejected: attachment "photos.dat" not allowed (unopenable-archive: 7z archive, cannot be inspected)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := send(tc.ctype, tc.name, filepath.Join(dir, tc.file))
			require.Error(t, err, out)
			assert.Contains(t, out, tc.reply)
		})
	}
	for _, tc := range []struct{ ctype, name, file string }{
		{"application/zip", "clean.zip", "nest/clean.zip"},
		{"application/gzip", "clean.tar.gz", "clean.tar.gz"},
	} {
		out, err := send(tc.ctype, tc.name, filepath.Join(dir, tc.file))
		require.NoError(t, err, out)
		m := queuedRE.FindStringSubmatch(out)
		require.NotNil(t, m, out)
		r.delivered(t, m[1])
	}

	// -unopenable-archives: quarantine holds the encrypted zip, accept
	// delivers it; a banned name is refused all the same.
	q := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-ban-attachments", "-unopenable-archives", "quarantine")
	out, err = exec.Command(swaks, "--server", q.addr, "--from", "a@example.net", "--to", "bob@example.test",
		"--attach-type", "application/zip", "--attach", "@"+filepath.Join(nest, "secret.zip")).CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	assert.Regexp(t, `msg=queued queue_id=`+m[1]+` .*hold=".*encrypted-archive`, q.logs())

	a := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-ban-attachments", "-unopenable-archives", "accept")
	out, err = exec.Command(swaks, "--server", a.addr, "--from", "a@example.net", "--to", "bob@example.test",
		"--attach-type", "application/zip", "--attach", "@"+filepath.Join(nest, "secret.zip")).CombinedOutput()
	require.NoError(t, err, string(out))
	m = queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	a.delivered(t, m[1])
	assert.Contains(t, a.logs(), "encrypted-archive", "an accepted archive is logged")
	out, err = exec.Command(swaks, "--server", a.addr, "--from", "a@example.net", "--to", "bob@example.test",
		"--attach-type", "application/gzip", "--attach", "@"+filepath.Join(dir, "files.tar.gz")).CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), `"files.tar.gz/evil.exe" not allowed (banned-extension)`)
}

// gzipBomb is a tar.gz (one gzip member) whose first file is 1 GiB of
// zeros and whose second is evil.exe: deflate blocks of 16 MiB of zeros
// that end on a byte boundary, repeated, so that it builds in a moment.
func gzipBomb(t *testing.T) []byte {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	const size = 1 << 30
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}))
	rest := tarOf(t, false, "evil.exe", evilExe)
	var seg bytes.Buffer
	fw, err := flate.NewWriter(&seg, flate.BestCompression)
	require.NoError(t, err)
	_, _ = fw.Write(make([]byte, 16<<20))
	require.NoError(t, fw.Flush())
	var body bytes.Buffer
	fw, err = flate.NewWriter(&body, flate.BestCompression)
	require.NoError(t, err)
	_, _ = fw.Write(hdr.Bytes())
	require.NoError(t, fw.Flush())
	crc := crc32.ChecksumIEEE(hdr.Bytes())
	zeros := make([]byte, 16<<20)
	for range size / (16 << 20) {
		body.Write(seg.Bytes())
		crc = crc32.Update(crc, crc32.IEEETable, zeros)
	}
	fw, err = flate.NewWriter(&body, flate.BestCompression)
	require.NoError(t, err)
	_, _ = fw.Write(rest)
	require.NoError(t, fw.Close())
	crc = crc32.Update(crc, crc32.IEEETable, rest)
	out := append([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"), body.Bytes()...)
	out = binary.LittleEndian.AppendUint32(out, crc)
	return binary.LittleEndian.AppendUint32(out, uint32(int64(hdr.Len())+size+int64(len(rest))))
}

// peakRSS is the relay's peak resident memory in KiB (Linux), 0 if not
// known.
func peakRSS(r *relay) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(r.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// Archive bombs against the real relay: a gzip bomb (1 GiB of zeros
// before evil.exe, real as tar reads it), a tar.gz of
// 100,000 entries and archives nested past the depth are refused as
// archive-limit, the relay's memory stays far from what the bombs hold,
// and mail goes on.
func TestArchiveBombsThroughRelay(t *testing.T) {
	swaks := need(t, "swaks")
	tarTool := need(t, "tar")
	dir := t.TempDir()
	bomb := writeFile(t, dir, "bomb.tar.gz", string(gzipBomb(t)))
	// tar reads it through gzip, which checks the CRC and the length of
	// the 1 GiB at the end: a real bomb.
	out, err := exec.Command(tarTool, "-tzf", bomb).Output()
	require.NoError(t, err)
	require.Equal(t, "zeros.bin\nevil.exe\n", string(out))

	var many bytes.Buffer
	tw := tar.NewWriter(&many)
	for i := range 100000 {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "f" + strconv.Itoa(i) + ".txt", Mode: 0o644, Typeflag: tar.TypeReg}))
	}
	require.NoError(t, tw.Close())
	var manyGz bytes.Buffer
	zw := gzip.NewWriter(&manyGz)
	_, _ = zw.Write(many.Bytes())
	require.NoError(t, zw.Close())
	writeFile(t, dir, "many.tar.gz", manyGz.String())

	deep := tarOf(t, false, "evil.exe", evilExe)
	for i := range 6 {
		if i%2 == 0 {
			deep = tarOf(t, true, "l"+strconv.Itoa(i)+".tgz", deep)
		} else {
			var z bytes.Buffer
			zw := zip.NewWriter(&z)
			w, err := zw.Create("l" + strconv.Itoa(i) + ".zip")
			require.NoError(t, err)
			_, _ = w.Write(deep)
			require.NoError(t, zw.Close())
			deep = z.Bytes()
		}
	}
	writeFile(t, dir, "deep.zip", string(deep))

	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-ban-attachments")
	for _, name := range []string{"bomb.tar.gz", "many.tar.gz", "deep.zip"} {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test",
				"--attach-type", "application/octet-stream", "--attach", "@"+filepath.Join(dir, name)).CombinedOutput()
			require.Error(t, err, string(out))
			assert.Contains(t, string(out), `552 5.7.0 Message rejected: attachment "`+name)
			assert.Contains(t, string(out), `not allowed (archive-limit)`)
		})
	}
	rss := peakRSS(r)
	t.Logf("relay peak RSS after the bombs: %d KiB", rss)
	assert.Less(t, rss, 256<<10, "the relay held no bomb in memory")
	out, err = exec.Command(swaks, "--server", r.addr, "--from", "a@example.net", "--to", "bob@example.test").CombinedOutput()
	require.NoError(t, err, string(out))
	m := queuedRE.FindStringSubmatch(string(out))
	require.NotNil(t, m)
	r.delivered(t, m[1])
}
