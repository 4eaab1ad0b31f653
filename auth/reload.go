package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/postern/postern/internal/filewatch"
)

// DefaultWatchInterval is how often Run looks at a file when the
// configured interval is 0.
const DefaultWatchInterval = filewatch.DefaultInterval

// watchFile loads the file at path through filewatch, the one watcher
// behind every reloadable file of Postern: a change is read once it has
// settled, a broken file is logged once per content and leaves the
// previous table in force. count gives the number of entries for the
// "loaded" log line.
func watchFile[T any](path, what string, sentinel error, interval time.Duration, log *slog.Logger,
	parse func(io.Reader, string) (*T, error), count func(*T) int) (*filewatch.Watcher[*T], error) {
	fw, err := filewatch.New(filewatch.Config[*T]{Path: path, What: what, Parse: parse, Logger: log, Interval: interval,
		Loaded: func(_ context.Context, t *T) []slog.Attr { return []slog.Attr{slog.Int("entries", count(t))} },
		Line: func(err error) (int, bool) {
			var le *lineErr
			if errors.As(err, &le) {
				return le.line, true
			}
			return 0, false
		}})
	if errors.Is(err, filewatch.ErrConfig) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		return nil, fileErr(sentinel, err)
	}
	return fw, nil
}

// fileErr wraps an error of reading a file in sentinel; the file
// system's errors name the file themselves, parse errors already wrap it.
func fileErr(sentinel error, err error) error {
	if err == nil || errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// lineErr is an error at one line of a file: "sentinel: name:line: msg".
type lineErr struct {
	sentinel error
	name     string
	line     int
	msg      string
}

func (e *lineErr) Error() string {
	return fmt.Sprintf("%v: %s:%d: %s", e.sentinel, e.name, e.line, e.msg)
}
func (e *lineErr) Unwrap() error { return e.sentinel }

// lineError formats a parse error naming file and line.
func lineError(sentinel error, name string, line int, format string, args ...any) error {
	return &lineErr{sentinel: sentinel, name: name, line: line, msg: fmt.Sprintf(format, args...)}
}
