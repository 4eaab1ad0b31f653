package filewatch

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

var errBad = errors.New("bad content")

func parseUpper(r io.Reader, _ string) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	if strings.Contains(string(b), "bad") {
		return "", errBad
	}
	return strings.ToUpper(strings.TrimSpace(string(b))), nil
}

func write(t *testing.T, p, s string) {
	t.Helper()
	require.NoError(t, os.WriteFile(p+".new", []byte(s), 0o644))
	require.NoError(t, os.Rename(p+".new", p))
}

// The watcher runs in a synctest bubble: its looks come every Interval of
// the bubble's clock. A change is read within two looks: the file must
// look the same twice (one still being written is not read), unless its
// modification time says nothing (the kernel's clock is coarse).
func TestWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 5 * time.Second
		p := filepath.Join(t.TempDir(), "f")
		write(t, p, "one")
		var logs testutil.LogBuffer
		var reloads []error
		w, err := New(Config[string]{Path: p, What: "thing", Parse: parseUpper, Logger: logs.Logger(),
			Interval: every, OnReload: func(_ string, err error) { reloads = append(reloads, err) }})
		require.NoError(t, err)
		assert.Equal(t, "ONE", w.Current())

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		looks := func(n int) {
			time.Sleep(time.Duration(n) * every)
			synctest.Wait()
		}
		const notReloaded = "thing not reloaded, previous version stays in force"
		write(t, p, "bad")
		looks(2)
		assert.Len(t, logs.Records(t, notReloaded), 1)
		looks(10)
		assert.Len(t, logs.Records(t, notReloaded), 1, "logged once per broken content")
		assert.Equal(t, "ONE", w.Current(), "the previous value stays")
		write(t, p, "two")
		looks(2)
		assert.Equal(t, "TWO", w.Current())
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		require.Len(t, reloads, 3, "the first load, the broken file, the fix")
		assert.NoError(t, reloads[0])
		assert.ErrorIs(t, reloads[1], errBad)
		assert.NoError(t, reloads[2])

		require.NoError(t, os.Remove(p))
		assert.Error(t, w.Reload())
		assert.Equal(t, "TWO", w.Current())

		_, err = New(Config[string]{Parse: parseUpper})
		assert.ErrorIs(t, err, ErrConfig)
		_, err = New(Config[string]{Path: p, Parse: parseUpper})
		assert.Error(t, err, "a missing file fails the first load")
	})
}
