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

// TestWatcher runs in synctest's time, so the looks are counted, not
// timed: a broken file is logged once in a hundred looks.
func TestWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "f")
		write(t, p, "one")
		var logs testutil.LogBuffer
		var reloads []error
		w, err := New(Config[string]{Path: p, What: "thing", Parse: parseUpper, Logger: logs.Logger(),
			Interval: 5 * time.Millisecond, OnReload: func(_ string, err error) { reloads = append(reloads, err) }})
		require.NoError(t, err)
		assert.Equal(t, "ONE", w.Current())

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		write(t, p, "bad")
		time.Sleep(500 * time.Millisecond) // a hundred looks at the same broken file
		synctest.Wait()
		assert.Len(t, logs.Records(t, "thing not reloaded, previous version stays in force"), 1, "logged once per broken content")
		assert.Equal(t, "ONE", w.Current(), "the previous value stays")
		write(t, p, "two")
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, "TWO", w.Current())
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		require.Len(t, reloads, 3, "the first load, the broken file, the fix")
		assert.NoError(t, reloads[0])
		assert.ErrorIs(t, reloads[1], errBad)
		assert.NoError(t, reloads[2])

		require.NoError(t, os.Remove(p))
		err = w.Reload()
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.Equal(t, "stat "+p+": no such file or directory", err.Error(), "no Prefix: the os error as it is")
		assert.Equal(t, "TWO", w.Current())

		_, err = New(Config[string]{Parse: parseUpper})
		assert.ErrorIs(t, err, ErrConfig)
		_, err = New(Config[string]{Path: p, Parse: parseUpper, Prefix: "route"})
		assert.ErrorIs(t, err, os.ErrNotExist, "a missing file fails the first load")
		assert.Equal(t, "route: stat "+p+": no such file or directory", err.Error())
	})
}
