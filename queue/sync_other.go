//go:build !linux

package queue

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// syncFilesystem syncs each file and directory named, where there is no
// syncfs(2).
func syncFilesystem(_ string, paths func() []string) error {
	for _, p := range paths() {
		f, err := os.Open(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// lockDir opens dir/lock; without flock(2) the lock is advisory only.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
}
