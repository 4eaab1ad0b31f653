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

func newSpool(memLimit int, dir string, sizeHint int64) *spool {
	c := int64(4 << 10)
	if sizeHint > c {
		c = sizeHint + 1<<10
	}
	c = min(c, int64(memLimit))
	return &spool{memLimit: memLimit, dir: dir, mem: make([]byte, 0, c)}
}

// ReadFrom reads the message straight into the memory buffer, without
// io.Copy's 32 KiB intermediate buffer per message.
func (s *spool) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if s.file == nil && len(s.mem) < s.memLimit {
			if len(s.mem) == cap(s.mem) {
				s.mem = append(s.mem, 0)[:len(s.mem)] // grow
			}
			free := s.mem[len(s.mem):min(cap(s.mem), s.memLimit)]
			n, err := r.Read(free)
			s.mem = s.mem[:len(s.mem)+n]
			s.size += int64(n)
			total += int64(n)
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
			continue
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if _, werr := s.Write(buf[:n]); werr != nil {
					return total, werr
				}
				total += int64(n)
			}
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
		}
	}
}

func (s *spool) Write(p []byte) (int, error) {
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
	n, err := s.file.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("smtpserver: spool: %w", err)
	}
	return n, nil
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
