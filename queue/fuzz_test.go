package queue

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadSegment feeds arbitrary bytes to log replay: a crash can leave
// any tail, and replay must stop at damage, never panic or over-allocate.
func FuzzReadSegment(f *testing.F) {
	w := &wal{}
	w.buf = nil
	w.appendRecord(recMessage, "ABC", nil, []byte("{\"from\":\"a@b\"}\n"), []byte("Subject: x\r\n\r\nbody\r\n"))
	w.appendRecord(recState, "ABC", nil, []byte(`{"rcpts":[{"status":"pending"}]}`))
	w.appendRecord(recRemove, "ABC", nil)
	f.Add(w.buf)
	f.Add(w.buf[:len(w.buf)-3])
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 0, 'M', 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "seg.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Skip()
		}
		n := 0
		err := readSegment(path, func(r walRecord) error {
			n++
			if len(r.id) > 0xffff || n > len(data) {
				t.Fatalf("impossible record %d", n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReadEnvelope feeds arbitrary data files to the loader.
func FuzzReadEnvelope(f *testing.F) {
	f.Add([]byte("{\"from\":\"a@example.org\",\"rcpts\":[{\"addr\":\"b@example.net\"}],\"received\":\"2026-11-25T08:00:00Z\"}\nSubject: x\r\n\r\nhi\r\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte("no envelope"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "msg")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Skip()
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Skip()
		}
		defer fh.Close()
		env, off, size, err := readEnvelope(fh)
		if err == nil && (env == nil || off < 0 || size < 0 || off+size != int64(len(data))) {
			t.Fatalf("bad result: %v %d %d", env, off, size)
		}
	})
}
