package stats

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a log destination the writer goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// When the writer cannot keep up, Record drops instead of blocking, counts
// the drops and the journal warns about them.
func TestJournalDropsWhenFull(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	gate := make(chan struct{})
	day := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	j, err := open(JournalConfig{
		Dir:    dir,
		Buffer: 2,
		Clock:  func() time.Time { return day },
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, gate)
	require.NoError(t, err)

	for range 5 {
		j.Record(Event{Kind: Received}) // the writer is held: two fit
	}
	assert.Equal(t, uint64(3), j.Dropped())

	close(gate)
	require.NoError(t, j.Flush(context.Background()))
	j.Record(Event{Kind: Received})
	require.NoError(t, j.Close())

	b, err := os.ReadFile(filepath.Join(dir, "2026-03-09.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, 3, strings.Count(string(b), "\n"))
	assert.Equal(t, uint64(3), j.Dropped())
	// One warning for the three, however many ticks passed.
	assert.Equal(t, 1, strings.Count(logs.String(), "journal events dropped"), logs.String())
	assert.Contains(t, logs.String(), "dropped=3 dropped_total=3")
}

// Drop warnings are spaced: new drops within a minute of the last warning
// wait for the next one (or for Close).
func TestDropWarningsSpaced(t *testing.T) {
	var logs syncBuffer
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	j := &Journal{clock: func() time.Time { return now }}
	w := &writer{j: j, log: slog.New(slog.NewTextHandler(&logs, nil))}

	w.logDrops(false) // nothing dropped: silent
	assert.Empty(t, logs.String())

	j.dropped.Add(2)
	w.logDrops(false)
	now = now.Add(30 * time.Second)
	j.dropped.Add(5)
	w.logDrops(false) // too soon
	assert.Equal(t, 1, strings.Count(logs.String(), "\n"))

	now = now.Add(30 * time.Second)
	w.logDrops(false)
	out := logs.String()
	assert.Equal(t, 2, strings.Count(out, "\n"))
	assert.Contains(t, out, "dropped=2 dropped_total=2")
	assert.Contains(t, out, "dropped=5 dropped_total=7")

	j.dropped.Add(1)
	w.lastErr = errors.New("write 2026-03-09.jsonl: no space left on device")
	w.logDrops(true) // closing: always
	assert.Contains(t, logs.String(), `dropped=1 dropped_total=8 error="write 2026-03-09.jsonl: no space left on device"`)
}
