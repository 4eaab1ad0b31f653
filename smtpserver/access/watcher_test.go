package access

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFile writes the file with its modification time on the test's
// clock (the bubble's, in a synctest bubble), as the watcher compares
// the two.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	now := time.Now()
	require.NoError(t, os.Chtimes(path, now, now))
}

func TestWatcherFirstLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := NewWatcher(filepath.Join(dir, "missing"), WatcherConfig{})
	assert.ErrorIs(t, err, os.ErrNotExist)

	path := filepath.Join(dir, "access")
	writeFile(t, path, "ok.example OK\nbad.example NOPE\n")
	_, err = NewWatcher(path, WatcherConfig{})
	assert.ErrorIs(t, err, ErrSyntax)
	assert.Contains(t, err.Error(), path+":2: ")

	_, err = NewWatcher("", WatcherConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewWatcher(path, WatcherConfig{Interval: -1})
	assert.ErrorIs(t, err, ErrConfig)
}

// TestWatcherReloadKeepsLastGood: a broken edit leaves the previous map in
// force, and the error names file and line.
func TestWatcherReloadKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access")
	writeFile(t, path, "spammers.net REJECT\n")
	var buf syncBuffer
	w, err := NewWatcher(path, WatcherConfig{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	first := w.Current()
	require.Equal(t, 1, first.Len())

	writeFile(t, path, "spammers.net REJECT\nspam.example REJCT\n")
	err = w.Reload()
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+":2: spam.example: unknown action \"REJCT\"")
	assert.Same(t, first, w.Current(), "the previous good map stays in force")
	assert.Contains(t, buf.String(), "access map not reloaded, previous map stays in force")
	assert.Contains(t, buf.String(), "line=2")

	writeFile(t, path, "spammers.net REJECT\nspam.example REJECT\n")
	require.NoError(t, w.Reload())
	assert.Equal(t, 2, w.Current().Len())
}

func TestWatcherRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = time.Second
		// A change is in force within two looks (see internal/filewatch).
		twoLooks := func() {
			time.Sleep(2 * every)
			synctest.Wait()
		}
		path := filepath.Join(t.TempDir(), "access")
		writeFile(t, path, "a.example OK\n")
		type event struct {
			m   *Map
			err error
		}
		var mu sync.Mutex
		var events []event
		var buf syncBuffer
		w, err := NewWatcher(path, WatcherConfig{
			Interval: every,
			Logger:   slog.New(slog.NewTextHandler(&buf, nil)),
			OnReload: func(m *Map, _ []Warning, err error) {
				mu.Lock()
				events = append(events, event{m, err})
				mu.Unlock()
			},
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		defer func() {
			cancel()
			assert.ErrorIs(t, <-done, context.Canceled)
		}()
		nEvents := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(events)
		}
		require.Equal(t, 1, nEvents(), "the first load is reported too")

		// A changed file is picked up.
		writeFile(t, path, "a.example OK\nb.example REJECT\n")
		twoLooks()
		assert.Equal(t, 2, w.Current().Len())

		// A broken file is reported once and the map stays.
		good := w.Current()
		writeFile(t, path, "a.example OK\nb.example\n")
		twoLooks()
		assert.Equal(t, 3, nEvents())
		time.Sleep(10 * every) // several more looks
		synctest.Wait()
		assert.Equal(t, 3, nEvents())
		assert.Same(t, good, w.Current())
		assert.Equal(t, 1, strings.Count(buf.String(), "not reloaded"), buf.String())
		mu.Lock()
		assert.Nil(t, events[2].m)
		assert.ErrorIs(t, events[2].err, ErrSyntax)
		mu.Unlock()

		// Same size, same mtime, new content: the hash of a recently touched
		// file catches it.
		writeFile(t, path, "a.example OK\nc.example OK\n")
		twoLooks()
		_, ok := w.Current().Exact("", "c.example")
		assert.True(t, ok)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		writeFile(t, path, "a.example OK\nd.example OK\n")
		require.NoError(t, os.Chtimes(path, fi.ModTime(), fi.ModTime()))
		twoLooks()
		_, ok = w.Current().Exact("", "d.example")
		assert.True(t, ok)

		// A vanished file keeps the map and is logged once.
		last := w.Current()
		require.NoError(t, os.Remove(path))
		time.Sleep(10 * every)
		synctest.Wait()
		assert.Same(t, last, w.Current())
		assert.Equal(t, 1, strings.Count(buf.String(), "no such file"), buf.String())
	})
}

// TestWatcherConcurrentReads reads Current while reloads happen.
func TestWatcherConcurrentReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access")
	writeFile(t, path, "a.example OK\n")
	w, err := NewWatcher(path, WatcherConfig{})
	require.NoError(t, err)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_, _ = w.Current().LookupAddr("From", "x@a.example")
			}
		}()
	}
	for i := 0; i < 20; i++ {
		writeFile(t, path, "a.example OK\n"+strings.Repeat("b.example REJECT\n", i%2))
		_ = w.Reload()
	}
	stop.Store(true)
	wg.Wait()
	assert.Equal(t, path, w.Path())
}
