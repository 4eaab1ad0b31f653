package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/postern/postern/internal/filewatch"
)

// DefaultWatchInterval is how often a Watcher looks at its file.
const DefaultWatchInterval = filewatch.DefaultInterval

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
// last read) and has stayed so for one more check, it reads it, and if the
// content differs it parses it. A file that does not parse leaves the
// previous version in force and is logged with its file and line, once per
// broken content. Writing a new file and renaming it over the old one is
// safest. Current is safe for concurrent use.
type Watcher[T any] struct {
	fw *filewatch.Watcher[T]
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
	fc := filewatch.Config[T]{Path: path, What: what, Prefix: "route", Parse: parse, Logger: cfg.Logger,
		Interval: cfg.Interval,
		Loaded:   func(_ context.Context, v T) []slog.Attr { return []slog.Attr{slog.Int("entries", count(v))} },
		Line: func(err error) (int, bool) {
			var pe *ParseError
			if errors.As(err, &pe) {
				return pe.Line, true
			}
			return 0, false
		}}
	if cfg.OnReload != nil {
		fc.OnReload = func(_ T, err error) { cfg.OnReload(err) }
	}
	fw, err := filewatch.New(fc)
	if errors.Is(err, filewatch.ErrConfig) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		return nil, err
	}
	return &Watcher[T]{fw: fw}, nil
}

// Current returns the version in force.
func (w *Watcher[T]) Current() T {
	if w == nil {
		var zero T
		return zero
	}
	return w.fw.Current()
}

// Path returns the watched file.
func (w *Watcher[T]) Path() string { return w.fw.Path() }

// Reload reads and parses the file now, changed or not (for SIGHUP). On
// error the previous version stays in force.
func (w *Watcher[T]) Reload() error { return w.fw.Reload() }

// Run checks the file every Interval until ctx is done and returns
// ctx.Err().
func (w *Watcher[T]) Run(ctx context.Context) error { return w.fw.Run(ctx) }
