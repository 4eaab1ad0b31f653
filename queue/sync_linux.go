package queue

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync syncs a file's data (and the metadata needed to read it back).
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// syncFilesystem makes everything written to the file system holding dir
// durable with one syncfs(2): one journal commit for a whole checkpoint
// instead of one fsync per message file. It reports writeback errors since
// Linux 5.8.
func syncFilesystem(dir string, _ func() []string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// lockDir takes an exclusive, non-blocking lock on dir/lock so two
// processes never run one queue.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, ErrLocked
	}
	return f, nil
}
