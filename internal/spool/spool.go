// Package spool holds a message being received: the first bytes in
// memory, the rest in an unlinked temporary file, readable at any offset
// once written. smtpserver and smtpserver/milter share it, so a message
// arriving over SMTP and one arriving from an MTA over the milter
// protocol are kept the same way, under the same bounds. Standard
// library only.
//
// The temporary file is not the durable copy of a message (that is the
// hand-off's job): it is removed from the directory as soon as it is
// made, and its space is freed by Release or when the process ends.
package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrTooLarge is returned by Write and ReadFrom once more than the
// spool's limit was written; the bytes past it are not kept.
var ErrTooLarge = errors.New("spool: message too large")

// Spool is one message being received. It is owned by one goroutine.
type Spool struct {
	memLimit int
	max      int64 // 0: no limit
	dir      string
	mem      []byte
	file     *os.File
	size     int64
}

// New returns a spool that keeps up to memLimit bytes in memory and the
// rest in a temporary file in dir (os.TempDir() when ""). sizeHint, the
// size the client announced, sizes the first buffer. max, if positive,
// bounds the message: writing past it fails with ErrTooLarge.
func New(memLimit int, dir string, sizeHint, max int64) *Spool {
	c := int64(4 << 10)
	if sizeHint > c {
		c = sizeHint + 1<<10
	}
	c = min(c, int64(memLimit))
	return &Spool{memLimit: memLimit, max: max, dir: dir, mem: make([]byte, 0, max0(c))}
}

func max0(n int64) int64 {
	if n < 0 {
		return 0
	}
	return n
}

// ReadFrom reads the message straight into the memory buffer, without
// io.Copy's 32 KiB intermediate buffer per message.
func (s *Spool) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for s.file == nil && len(s.mem) < s.memLimit {
		if len(s.mem) == cap(s.mem) {
			s.mem = append(s.mem, 0)[:len(s.mem)] // grow
		}
		free := s.mem[len(s.mem):min(cap(s.mem), s.memLimit)]
		n, err := r.Read(free)
		s.mem = s.mem[:len(s.mem)+n]
		s.size += int64(n)
		total += int64(n)
		if err := s.checkMax(); err != nil {
			return total, err
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
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

// checkMax refuses a message past the limit, and drops what it holds:
// nobody reads a refused message.
func (s *Spool) checkMax() error {
	if s.max > 0 && s.size > s.max {
		s.Release()
		return fmt.Errorf("%w: over %d bytes", ErrTooLarge, s.max)
	}
	return nil
}

// Write appends p.
func (s *Spool) Write(p []byte) (int, error) {
	if s.max > 0 && s.size+int64(len(p)) > s.max {
		s.size += int64(len(p))
		return 0, s.checkMax()
	}
	if s.file == nil {
		room := s.memLimit - len(s.mem)
		if len(p) <= room {
			s.mem = append(s.mem, p...)
			s.size += int64(len(p))
			return len(p), nil
		}
		f, err := os.CreateTemp(s.dir, "postern-data-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		// Unlinked at once: the file disappears with the process.
		_ = os.Remove(f.Name())
		s.file = f
		if _, err := f.Write(s.mem); err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.mem = nil
	}
	n, err := s.file.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("spool: %w", err)
	}
	return n, nil
}

// ReadAt reads the spooled bytes.
func (s *Spool) ReadAt(p []byte, off int64) (int, error) {
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

// Size is the number of bytes written.
func (s *Spool) Size() int64 { return s.size }

// Release frees memory and the temporary file. The spool is empty
// afterwards.
func (s *Spool) Release() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.mem = nil
}

// IsNoSpace reports whether err says the disk (or the quota) is full.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
