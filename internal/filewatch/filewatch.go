// Package filewatch keeps a value parsed from a file current: the access
// map, the mailertable, the recipients list, the scan policy, the
// credentials and the senders file all reload the same way. It imports only the standard library, so the public
// packages that use it gain no dependency.
//
// A Watcher loads the file at creation and then, under Run, looks at it
// every Interval. It reads the file again when its size or modification
// time changed, or it was written within two seconds of the last read
// (modification times can be coarse), and only once both look as they did
// at the previous look, so a file still being written is left alone. The
// content is hashed: an unchanged file is not parsed again, nor is a
// broken one already reported. A file that does not parse leaves the
// previous value in force and is logged with its file (and line, when the
// error has one), once per broken content. Writing a new file and renaming
// it over the old one is safest.
package filewatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a Watcher looks at its file.
const DefaultInterval = 5 * time.Second

// mtimeSlack covers file systems with coarse modification times: a file
// written again in the same tick as our read keeps its mtime, so a file
// touched this recently is hashed again.
const mtimeSlack = 2 * time.Second

// Config says what to watch and how to report it.
type Config[T any] struct {
	// Path is the file. Required.
	Path string
	// What names the value in log lines ("access map", "mailertable").
	What string
	// Kept names what stays in force after a failed reload ("previous
	// map stays in force"); default "version".
	Kept string
	// Prefix starts errors of the file system ("route" gives
	// "route: open …"); "" leaves them as the os package words them
	// (they name the file).
	Prefix string
	// Parse reads the value; name is the file for its error messages.
	Parse func(r io.Reader, name string) (T, error)
	// Loaded returns the attributes of the "<What> loaded" line (entries,
	// warnings) and may log more; nil logs the file only.
	Loaded func(ctx context.Context, v T) []slog.Attr
	// Line extracts the line number of a parse error, for the log; nil
	// logs none.
	Line func(err error) (int, bool)
	// OnReload, if set, is called after every load of new content with
	// the value, or with the error that kept the previous value.
	OnReload func(v T, err error)
	// Logger receives loads and failures; nil discards.
	Logger *slog.Logger
	// Interval between looks at the file; 0 means DefaultInterval.
	Interval time.Duration
}

// Watcher serves the value of one file. Current is safe for concurrent
// use; loads are serialised.
type Watcher[T any] struct {
	cfg Config[T]
	cur atomic.Pointer[T]

	mu sync.Mutex // serialises loads; guards the fields below
	// obsSize and obsMtime are what the last look saw; size and mtime
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

// ErrConfig is returned (wrapped by callers as they like) for a missing
// path or a negative interval.
var ErrConfig = errors.New("filewatch: bad configuration")

// New loads the file and returns a Watcher serving it; it fails if the
// first load fails.
func New[T any](cfg Config[T]) (*Watcher[T], error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: watcher needs a path", ErrConfig)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: negative interval %v", ErrConfig, cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Kept == "" {
		cfg.Kept = "version"
	}
	w := &Watcher[T]{cfg: cfg}
	if err := w.load(context.Background(), true); err != nil {
		return nil, err
	}
	return w, nil
}

// Current returns the value in force.
func (w *Watcher[T]) Current() T {
	if p := w.cur.Load(); p != nil {
		return *p
	}
	var zero T
	return zero
}

// Path returns the watched file.
func (w *Watcher[T]) Path() string { return w.cfg.Path }

// Reload reads and parses the file now, changed or not (for SIGHUP). On
// error the previous value stays in force.
func (w *Watcher[T]) Reload() error { return w.load(context.Background(), true) }

// Run looks at the file every Interval until ctx is done and returns
// ctx.Err().
func (w *Watcher[T]) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_ = w.load(ctx, false) // logged inside; the old value stays
		}
	}
}

func (w *Watcher[T]) load(ctx context.Context, force bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.cfg.Path)
	if err != nil {
		return w.fail(ctx, w.fsErr(err))
	}
	stable := fi.Size() == w.obsSize && fi.ModTime().Equal(w.obsMtime)
	w.obsSize, w.obsMtime = fi.Size(), fi.ModTime()
	if !force && !stable {
		return nil
	}
	recent := !fi.ModTime().Before(w.lastRead.Add(-mtimeSlack))
	if !force && fi.Size() == w.size && fi.ModTime().Equal(w.mtime) && !recent {
		return nil
	}
	b, err := os.ReadFile(w.cfg.Path)
	if err != nil {
		return w.fail(ctx, w.fsErr(err))
	}
	// Stat before read: a change between the two shows as a new mtime at
	// the next look.
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
	v, err := w.cfg.Parse(bytes.NewReader(b), w.cfg.Path)
	if err != nil {
		w.badHash, w.hasBad, w.badErr = h, true, err
		w.fail(ctx, err)
		if w.cfg.OnReload != nil {
			var zero T
			w.cfg.OnReload(zero, err)
		}
		return err
	}
	w.hash, w.hasBad, w.badErr, w.lastFail = h, false, nil, ""
	w.cur.Store(&v)
	attrs := []slog.Attr{slog.String("file", w.cfg.Path)}
	if w.cfg.Loaded != nil {
		attrs = append(attrs, w.cfg.Loaded(ctx, v)...)
	}
	w.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, w.cfg.What+" loaded", attrs...)
	if w.cfg.OnReload != nil {
		w.cfg.OnReload(v, nil)
	}
	return nil
}

// fsErr prefixes an error of the file system with Config.Prefix.
func (w *Watcher[T]) fsErr(err error) error {
	if w.cfg.Prefix == "" {
		return err
	}
	return fmt.Errorf("%s: %w", w.cfg.Prefix, err)
}

// fail logs a failed load once per distinct error, so a missing or broken
// file does not flood the log every Interval, and returns err.
func (w *Watcher[T]) fail(ctx context.Context, err error) error {
	if err.Error() == w.lastFail {
		return err
	}
	w.lastFail = err.Error()
	attrs := []slog.Attr{slog.String("file", w.cfg.Path), slog.String("error", err.Error())}
	if w.cfg.Line != nil {
		if n, ok := w.cfg.Line(err); ok {
			attrs = append(attrs, slog.Int("line", n))
		}
	}
	msg := w.cfg.What + " not loaded"
	if w.cur.Load() != nil {
		msg = w.cfg.What + " not reloaded, previous " + w.cfg.Kept + " stays in force"
	}
	w.cfg.Logger.LogAttrs(ctx, slog.LevelError, msg, attrs...)
	return err
}
