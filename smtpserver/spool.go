package smtpserver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// spool holds a message being received: the first memLimit bytes in memory,
// the rest in a temporary file, readable at any offset once written. The
// temporary file is not the durable copy (that is the Handoff's job) and is
// removed by Release.
type spool struct {
	memLimit int
	dir      string
	mem      []byte
	file     *os.File
	size     int64
}

func newSpool(memLimit int, dir string) *spool {
	return &spool{memLimit: memLimit, dir: dir}
}

func (s *spool) Write(p []byte) (int, error) {
	n := 0
	if s.file == nil {
		room := s.memLimit - len(s.mem)
		if len(p) <= room {
			s.mem = append(s.mem, p...)
			s.size += int64(len(p))
			return len(p), nil
		}
		f, err := os.CreateTemp(s.dir, "postern-data-*")
		if err != nil {
			return 0, fmt.Errorf("smtpserver: spool: %w", err)
		}
		// Unlinked at once: the file disappears with the process.
		_ = os.Remove(f.Name())
		s.file = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, fmt.Errorf("smtpserver: spool: %w", err)
		}
		s.mem = nil
	}
	m, err := s.file.Write(p[n:])
	s.size += int64(m)
	if err != nil {
		return n + m, fmt.Errorf("smtpserver: spool: %w", err)
	}
	return n + m, nil
}

// ReadAt reads the spooled bytes.
func (s *spool) ReadAt(p []byte, off int64) (int, error) {
	if s.file != nil {
		return s.file.ReadAt(p, off)
	}
	if off >= int64(len(s.mem)) {
		return 0, io.EOF
	}
	n := copy(p, s.mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *spool) Size() int64 { return s.size }

// Release frees memory and the temporary file.
func (s *spool) Release() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.mem = nil
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
