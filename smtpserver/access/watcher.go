package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/postern/postern/internal/filewatch"
)

// DefaultInterval is how often a Watcher looks at its file.
const DefaultInterval = filewatch.DefaultInterval

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
	fw *filewatch.Watcher[parsed]
}

// parsed is what one load of the file gives.
type parsed struct {
	m     *Map
	warns []Warning
}

// NewWatcher loads path and returns a Watcher serving it. It fails if the
// first load fails: a relay must not start without its access map.
func NewWatcher(path string, cfg WatcherConfig) (*Watcher, error) {
	fc := filewatch.Config[parsed]{Path: path, What: "access map", Kept: "map", Prefix: "access",
		Logger: cfg.Logger, Interval: cfg.Interval,
		Parse: func(r io.Reader, name string) (parsed, error) {
			m, warns, err := Parse(r, name)
			return parsed{m, warns}, err
		},
		Loaded: func(ctx context.Context, p parsed) []slog.Attr {
			if cfg.Logger != nil {
				for _, wn := range p.warns {
					cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "access map warning",
						slog.String("file", wn.File), slog.Int("line", wn.Line), slog.String("warning", wn.Msg))
				}
			}
			return []slog.Attr{slog.Int("entries", p.m.Len()), slog.Int("warnings", len(p.warns))}
		},
		Line: func(err error) (int, bool) {
			var pe *ParseError
			if errors.As(err, &pe) {
				return pe.Line, true
			}
			return 0, false
		}}
	if cfg.OnReload != nil {
		fc.OnReload = func(p parsed, err error) { cfg.OnReload(p.m, p.warns, err) }
	}
	fw, err := filewatch.New(fc)
	if errors.Is(err, filewatch.ErrConfig) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		return nil, err
	}
	return &Watcher{fw: fw}, nil
}

// Current returns the map in force; nil only for a nil Watcher.
func (w *Watcher) Current() *Map {
	if w == nil {
		return nil
	}
	return w.fw.Current().m
}

// Path returns the watched file.
func (w *Watcher) Path() string { return w.fw.Path() }

// Reload reads and parses the file now, whether or not it changed (for
// SIGHUP). On error the previous map stays in force.
func (w *Watcher) Reload() error { return w.fw.Reload() }

// Run checks the file every Interval until ctx is done and returns
// ctx.Err().
func (w *Watcher) Run(ctx context.Context) error { return w.fw.Run(ctx) }
