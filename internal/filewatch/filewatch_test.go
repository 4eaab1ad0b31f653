package filewatch

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestWatcher(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	write(t, p, "one")
	var logs testutil.LogBuffer
	var reloads []error
	w, err := New(Config[string]{Path: p, What: "thing", Parse: parseUpper, Logger: logs.Logger(),
		Interval: 5 * time.Millisecond, OnReload: func(_ string, err error) { reloads = append(reloads, err) }})
	require.NoError(t, err)
	assert.Equal(t, "ONE", w.Current())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	write(t, p, "bad")
	require.Eventually(t, func() bool { return len(logs.Records(t, "thing not reloaded, previous version stays in force")) == 1 },
		5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // several more looks at the same broken file
	assert.Len(t, logs.Records(t, "thing not reloaded, previous version stays in force"), 1, "logged once per broken content")
	assert.Equal(t, "ONE", w.Current(), "the previous value stays")
	write(t, p, "two")
	require.Eventually(t, func() bool { return w.Current() == "TWO" }, 5*time.Second, 5*time.Millisecond)
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
}
