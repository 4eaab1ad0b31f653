package route

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, []byte(text), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func hopOf(t *testing.T, w *Watcher[*Table], domain string) string {
	t.Helper()
	e, ok := w.Current().Lookup(domain)
	if !ok {
		return ""
	}
	return e.Hop.String()
}

func TestWatcherKeepsOldTableOnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mailertable")
	writeFile(t, p, "nix.co.jj esmtp:[192.168.1.1]\n")
	var logs testutil.LogBuffer
	var reloads []error
	w, err := NewMailertableWatcher(p, WatcherConfig{Logger: logs.Logger(), OnReload: func(err error) { reloads = append(reloads, err) }})
	require.NoError(t, err)
	assert.Equal(t, "esmtp:[192.168.1.1]", hopOf(t, w, "nix.co.jj"))

	writeFile(t, p, "nix.co.jj esmtp:[192.168.1.9]\nbroken.example\n")
	err = w.Reload()
	require.ErrorIs(t, err, ErrSyntax)
	assert.Contains(t, err.Error(), p+":2:")
	assert.Equal(t, "esmtp:[192.168.1.1]", hopOf(t, w, "nix.co.jj"), "the previous table stays")
	recs := logs.Records(t, "mailertable not reloaded, previous version stays in force")
	require.Len(t, recs, 1)
	assert.EqualValues(t, 2, recs[0]["line"])

	writeFile(t, p, "nix.co.jj esmtp:[192.168.1.9]\n")
	require.NoError(t, w.Reload())
	assert.Equal(t, "esmtp:[192.168.1.9]", hopOf(t, w, "nix.co.jj"))
	require.Len(t, reloads, 3)
	assert.Error(t, reloads[1])
	assert.NoError(t, reloads[2])

	require.NoError(t, os.Remove(p))
	require.Error(t, w.Reload())
	assert.Equal(t, "esmtp:[192.168.1.9]", hopOf(t, w, "nix.co.jj"))
}

func TestWatcherRunPicksUpChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 10 * time.Second
		p := filepath.Join(t.TempDir(), "mailertable")
		writeFile(t, p, "a.example esmtp:[10.0.0.1]\n")
		w, err := NewMailertableWatcher(p, WatcherConfig{Interval: every})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		// A change is in force within two looks (see filewatch).
		twoLooks := func() {
			time.Sleep(2 * every)
			synctest.Wait()
		}
		writeFile(t, p, "a.example esmtp:[10.0.0.2]\n")
		twoLooks()
		assert.Equal(t, "esmtp:[10.0.0.2]", hopOf(t, w, "a.example"))
		writeFile(t, p, "a.example esmtp:[10.0.0.3\n") // broken: ignored
		twoLooks()
		assert.Equal(t, "esmtp:[10.0.0.2]", hopOf(t, w, "a.example"))
		writeFile(t, p, "a.example esmtp:[10.0.0.4]\n")
		twoLooks()
		assert.Equal(t, "esmtp:[10.0.0.4]", hopOf(t, w, "a.example"))
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestWatcherConfig(t *testing.T) {
	_, err := NewMailertableWatcher("", WatcherConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	p := filepath.Join(t.TempDir(), "mailertable")
	_, err = NewMailertableWatcher(p, WatcherConfig{})
	assert.Error(t, err, "missing file")
	writeFile(t, p, "bad line here\n")
	_, err = NewMailertableWatcher(p, WatcherConfig{})
	assert.ErrorIs(t, err, ErrSyntax)
	writeFile(t, p, "")
	_, err = NewMailertableWatcher(p, WatcherConfig{Interval: -1})
	assert.ErrorIs(t, err, ErrConfig)
	var nilW *Watcher[*Table]
	assert.Nil(t, nilW.Current())
}
