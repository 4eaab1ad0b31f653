package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Watcher looks at its file.
const DefaultInterval = 5 * time.Second

// mtimeSlack covers file systems whose modification times are coarse: a
// second write in the same tick as our read leaves mtime unchanged, so a
// file touched this recently is hashed again.
const mtimeSlack = 2 * time.Second

// WatcherConfig configures a Watcher. The zero value is usable.
type WatcherConfig struct {
	// Logger receives reload results; nil discards.
	Logger *slog.Logger
	// Interval between checks of the file; 0 means DefaultInterval.
	Interval time.Duration
	// OnReload, if set, is called after every load attempt that read new
	// content: with the new map and its warnings, or with a nil map and the
	// error (the previous map stays in force). It runs on the goroutine
	// that loaded.
	OnReload func(m *Map, warnings []Warning, err error)
}

// Watcher keeps the map of one access file current. It loads the file
// once at creation and then, under Run, checks it every Interval. When the
// size or modification time changed, or the file was touched within the
// last two seconds (mtimes can be coarse), and both look as they did at the
// previous check (so a file still being written is left alone), it reads
// and hashes the content; a new map replaces the old one only if the
// content differs and parses. An edit thus takes effect within two
// intervals; writing a new file and renaming it over the old one is
// safest. A broken file leaves the previous good map in force and is
// logged with its file and line, once per broken content. Current is safe
// for concurrent use.
type Watcher struct {
	path     string
	log      *slog.Logger
	interval time.Duration
	onReload func(*Map, []Warning, error)
	cur      atomic.Pointer[Map]

	mu sync.Mutex // serialises loads; guards the fields below
	// obsSize and obsMtime are what the last check saw; size and mtime
	// belong to the content last read.
	obsSize  int64
	obsMtime time.Time
	size     int64
	mtime    time.Time
	lastRead time.Time
	hash     [sha256.Size]byte
	badHash  [sha256.Size]byte
	hasBad   bool
	badErr   error
	lastFail string
}

// NewWatcher loads path and returns a Watcher serving it. It fails if the
// first load fails: a relay must not start without its access map.
func NewWatcher(path string, cfg WatcherConfig) (*Watcher, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: watcher needs a path", ErrConfig)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: negative interval %v", ErrConfig, cfg.Interval)
	}
	w := &Watcher{path: path, log: cfg.Logger, interval: cfg.Interval, onReload: cfg.OnReload}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.interval == 0 {
		w.interval = DefaultInterval
	}
	if err := w.load(context.Background(), true); err != nil {
		return nil, err
	}
	return w, nil
}

// Current returns the map in force; nil only for a nil Watcher.
func (w *Watcher) Current() *Map {
	if w == nil {
		return nil
	}
	return w.cur.Load()
}

// Path returns the watched file.
func (w *Watcher) Path() string { return w.path }

// Reload reads and parses the file now, whether or not it changed (for
// SIGHUP). On error the previous map stays in force.
func (w *Watcher) Reload() error { return w.load(context.Background(), true) }

// Run checks the file every Interval until ctx is done and returns
// ctx.Err().
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_ = w.load(ctx, false) // logged inside; the old map stays
		}
	}
}

func (w *Watcher) load(ctx context.Context, force bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if err != nil {
		err = fmt.Errorf("access: %w", err)
		w.fail(ctx, err)
		return err
	}
	// Wait until the file has looked the same at two checks in a row, so
	// a file being written (truncated, half copied) is not loaded.
	stable := fi.Size() == w.obsSize && fi.ModTime().Equal(w.obsMtime)
	w.obsSize, w.obsMtime = fi.Size(), fi.ModTime()
	if !force && !stable {
		return nil
	}
	recent := !fi.ModTime().Before(w.lastRead.Add(-mtimeSlack))
	if !force && fi.Size() == w.size && fi.ModTime().Equal(w.mtime) && !recent {
		return nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		err = fmt.Errorf("access: %w", err)
		w.fail(ctx, err)
		return err
	}
	// Stat before read: a change between the two shows as a new mtime at
	// the next check.
	w.size, w.mtime, w.lastRead = fi.Size(), fi.ModTime(), time.Now()
	h := sha256.Sum256(b)
	if !force {
		if w.cur.Load() != nil && h == w.hash {
			w.lastFail = ""
			return nil
		}
		if w.hasBad && h == w.badHash {
			return w.badErr
		}
	}
	m, warns, err := Parse(bytes.NewReader(b), w.path)
	if err != nil {
		w.badHash, w.hasBad, w.badErr = h, true, err
		w.fail(ctx, err)
		if w.onReload != nil {
			w.onReload(nil, warns, err)
		}
		return err
	}
	w.hash, w.hasBad, w.badErr, w.lastFail = h, false, nil, ""
	w.cur.Store(m)
	for _, wn := range warns {
		w.log.LogAttrs(ctx, slog.LevelWarn, "access map warning",
			slog.String("file", wn.File), slog.Int("line", wn.Line), slog.String("warning", wn.Msg))
	}
	w.log.LogAttrs(ctx, slog.LevelInfo, "access map loaded",
		slog.String("file", w.path), slog.Int("entries", m.Len()), slog.Int("warnings", len(warns)))
	if w.onReload != nil {
		w.onReload(m, warns, nil)
	}
	return nil
}

// fail logs a failed load once per distinct error, so a missing or broken
// file does not flood the log every Interval.
func (w *Watcher) fail(ctx context.Context, err error) {
	if err.Error() == w.lastFail {
		return
	}
	w.lastFail = err.Error()
	attrs := []slog.Attr{slog.String("file", w.path), slog.String("error", err.Error())}
	var pe *ParseError
	if errors.As(err, &pe) {
		attrs = append(attrs, slog.Int("line", pe.Line))
	}
	msg := "access map not loaded"
	if w.cur.Load() != nil {
		msg = "access map not reloaded, previous map stays in force"
	}
	w.log.LogAttrs(ctx, slog.LevelError, msg, attrs...)
}
