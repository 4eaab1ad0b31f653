package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWatchInterval is how often Watch looks at a file's modification
// time when given 0.
const DefaultWatchInterval = 5 * time.Second

// fileTable is a table parsed from a file, replaced as a whole when the
// file changes: readers load the current table without locks, a reload
// that fails keeps the old one.
type fileTable[T any] struct {
	path  string
	what  string
	parse func(r io.Reader, name string) (*T, error)
	log   *slog.Logger

	cur   atomic.Pointer[T]
	mu    sync.Mutex // serializes reloads
	stamp os.FileInfo
}

func (ft *fileTable[T]) table() *T { return ft.cur.Load() }

// reload reads and parses the file and swaps the table in.
func (ft *fileTable[T]) reload() error {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.reloadLocked()
}

func (ft *fileTable[T]) reloadLocked() error {
	f, err := os.Open(ft.path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	t, err := ft.parse(f, ft.path)
	if err != nil {
		return err
	}
	ft.cur.Store(t)
	ft.stamp = fi
	return nil
}

// reloadIfChanged reloads when the file's modification time, size or
// identity (a new file renamed over the old one) changed since the last
// load.
func (ft *fileTable[T]) reloadIfChanged() (bool, error) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	fi, err := os.Stat(ft.path)
	if err != nil {
		return false, err
	}
	if old := ft.stamp; old != nil && os.SameFile(old, fi) && fi.ModTime().Equal(old.ModTime()) && fi.Size() == old.Size() {
		return false, nil
	}
	if err := ft.reloadLocked(); err != nil {
		return false, err
	}
	return true, nil
}

// watch calls reloadIfChanged every interval until ctx is done. Failures
// are logged and the old table is kept.
func (ft *fileTable[T]) watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		changed, err := ft.reloadIfChanged()
		switch {
		case err != nil:
			ft.log.LogAttrs(ctx, slog.LevelWarn, "auth: reload failed, keeping the old "+ft.what,
				slog.String("file", ft.path), slog.String("error", err.Error()))
		case changed:
			ft.log.LogAttrs(ctx, slog.LevelInfo, "auth: reloaded "+ft.what, slog.String("file", ft.path))
		}
	}
}

// lineError formats a parse error naming file and line.
func lineError(sentinel error, name string, line int, format string, args ...any) error {
	return fmt.Errorf("%w: %s:%d: %s", sentinel, name, line, fmt.Sprintf(format, args...))
}
