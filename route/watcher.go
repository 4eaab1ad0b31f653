package route

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

	"github.com/postern/postern"
)

// DefaultWatchInterval is how often a Watcher looks at its file.
const DefaultWatchInterval = 5 * time.Second

// mtimeSlack covers file systems with coarse modification times: a file
// written again within this long of our last read is read once more.
const mtimeSlack = 2 * time.Second

// WatcherConfig configures a Watcher. The zero value is usable.
type WatcherConfig struct {
	// Logger receives reload results; nil discards.
	Logger *slog.Logger
	// Interval between checks of the file; 0 means DefaultWatchInterval.
	Interval time.Duration
	// OnReload, if set, is called after every load of new content, with
	// nil or the error that kept the previous version in force.
	OnReload func(err error)
}

// Watcher keeps a parsed file current: a mailertable
// (NewMailertableWatcher) or a recipients list (NewRecipientsWatcher).
// Under Run it checks the file every Interval; when its size or
// modification time changed (or it was written within two seconds of the
// last read) it reads it, and if the content differs it parses it. A file
// that does not parse leaves the previous version in force and is logged
// with its file and line, once per broken content. Writing a new file and
// renaming it over the old one is safest. Current is safe for concurrent
// use.
type Watcher[T any] struct {
	path     string
	what     string
	parse    func(io.Reader, string) (T, error)
	count    func(T) int
	log      *slog.Logger
	interval time.Duration
	onReload func(error)
	cur      atomic.Pointer[T]

	mu       sync.Mutex // serialises loads; guards the fields below
	size     int64
	mtime    time.Time
	lastRead time.Time
	hash     [sha256.Size]byte
	badHash  [sha256.Size]byte
	hasBad   bool
	badErr   error
	lastFail string
}

// NewMailertableWatcher loads the mailertable at path and returns a
// Watcher serving it; it fails if the first load fails.
func NewMailertableWatcher(path string, cfg WatcherConfig) (*Watcher[*Table], error) {
	return newWatcher(path, "mailertable", ParseMailertable, (*Table).Len, cfg)
}

// NewRecipientsWatcher loads the recipients list at path and returns a
// Watcher serving it; it fails if the first load fails.
func NewRecipientsWatcher(path string, cfg WatcherConfig) (*Watcher[*Recipients], error) {
	return newWatcher(path, "recipients", ParseRecipients, (*Recipients).Len, cfg)
}

func newWatcher[T any](path, what string, parse func(io.Reader, string) (T, error), count func(T) int, cfg WatcherConfig) (*Watcher[T], error) {
	if path == "" {
		return nil, fmt.Errorf("%w: watcher needs a path", ErrConfig)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: negative watch interval %v", ErrConfig, cfg.Interval)
	}
	w := &Watcher[T]{path: path, what: what, parse: parse, count: count, log: cfg.Logger,
		interval: cfg.Interval, onReload: cfg.OnReload}
	if w.log == nil {
		w.log = postern.DiscardLogger()
	}
	if w.interval == 0 {
		w.interval = DefaultWatchInterval
	}
	if err := w.load(context.Background(), true); err != nil {
		return nil, err
	}
	return w, nil
}

// Current returns the version in force.
func (w *Watcher[T]) Current() T {
	var zero T
	if w == nil {
		return zero
	}
	if p := w.cur.Load(); p != nil {
		return *p
	}
	return zero
}

// Path returns the watched file.
func (w *Watcher[T]) Path() string { return w.path }

// Reload reads and parses the file now, changed or not (for SIGHUP). On
// error the previous version stays in force.
func (w *Watcher[T]) Reload() error { return w.load(context.Background(), true) }

// Run checks the file every Interval until ctx is done and returns
// ctx.Err().
func (w *Watcher[T]) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_ = w.load(ctx, false) // logged inside; the old version stays
		}
	}
}

func (w *Watcher[T]) load(ctx context.Context, force bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if err != nil {
		err = fmt.Errorf("route: %w", err)
		w.fail(ctx, err)
		return err
	}
	recent := !fi.ModTime().Before(w.lastRead.Add(-mtimeSlack))
	if !force && fi.Size() == w.size && fi.ModTime().Equal(w.mtime) && !recent {
		return nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		err = fmt.Errorf("route: %w", err)
		w.fail(ctx, err)
		return err
	}
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
	v, err := w.parse(bytes.NewReader(b), w.path)
	if err != nil {
		w.badHash, w.hasBad, w.badErr = h, true, err
		w.fail(ctx, err)
		if w.onReload != nil {
			w.onReload(err)
		}
		return err
	}
	w.hash, w.hasBad, w.badErr, w.lastFail = h, false, nil, ""
	w.cur.Store(&v)
	w.log.LogAttrs(ctx, slog.LevelInfo, w.what+" loaded",
		slog.String("file", w.path), slog.Int("entries", w.count(v)))
	if w.onReload != nil {
		w.onReload(nil)
	}
	return nil
}

// fail logs a failed load once per distinct error, so a broken file does
// not flood the log every Interval.
func (w *Watcher[T]) fail(ctx context.Context, err error) {
	if err.Error() == w.lastFail {
		return
	}
	w.lastFail = err.Error()
	attrs := []slog.Attr{slog.String("file", w.path), slog.String("error", err.Error())}
	var pe *ParseError
	if errors.As(err, &pe) {
		attrs = append(attrs, slog.Int("line", pe.Line))
	}
	msg := w.what + " not loaded"
	if w.cur.Load() != nil {
		msg = w.what + " not reloaded, previous version stays in force"
	}
	w.log.LogAttrs(ctx, slog.LevelError, msg, attrs...)
}
