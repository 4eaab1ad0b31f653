package stats_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/examples/relay/internal/stats"
)

func TestOpenConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, nil)
	tests := []struct {
		name string
		cfg  stats.JournalConfig
		err  error
	}{
		{"no dir", stats.JournalConfig{}, stats.ErrConfig},
		{"blank dir", stats.JournalConfig{Dir: "  "}, stats.ErrConfig},
		{"negative buffer", stats.JournalConfig{Dir: t.TempDir(), Buffer: -1}, stats.ErrConfig},
		{"dir is a file", stats.JournalConfig{Dir: file}, nil},
		{"dir under a file", stats.JournalConfig{Dir: filepath.Join(file, "stats")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := stats.Open(tt.cfg)
			require.Error(t, err)
			assert.Nil(t, j)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
			}
			assert.ErrorContains(t, err, "stats: ")
		})
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool", "stats")
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
	require.NoError(t, err)
	require.NoError(t, j.Close())
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	assert.Equal(t, os.FileMode(0o750), fi.Mode().Perm())
}

// Each event goes to the file of its own UTC day; an event without a
// time gets the journal's clock.
func TestJournalDayFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 10, 0, 30, 0, 0, time.UTC)
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: func() time.Time { return now }})
	require.NoError(t, err)
	berlin := time.FixedZone("CET", 3600)
	j.Record(stats.Event{Time: time.Date(2026, 3, 9, 23, 59, 59, 0, time.UTC), Kind: stats.Received, QueueID: "A", Sender: "a@example.com"})
	// 00:10 in CET is still the 9th in UTC.
	j.Record(stats.Event{Time: time.Date(2026, 3, 10, 0, 10, 0, 0, berlin), Kind: stats.Delivered, QueueID: "A", Rcpt: "b@example.org"})
	j.Record(stats.Event{Kind: stats.Rejected, ClientIP: ip("2001:db8::1"), Stage: "rcpt", Filter: "verify", Code: 550, Reason: "no such user <x@example.org>"})
	require.NoError(t, j.Flush(bg))
	require.NoError(t, j.Close())

	assert.Equal(t, []string{
		`{"time":"2026-03-09T23:59:59Z","kind":"received","queue_id":"A","sender":"a@example.com"}`,
		`{"time":"2026-03-09T23:10:00Z","kind":"delivered","queue_id":"A","rcpt":"b@example.org"}`,
	}, lines(t, filepath.Join(dir, "2026-03-09.jsonl")))
	assert.Equal(t, []string{
		`{"time":"2026-03-10T00:30:00Z","kind":"rejected","client_ip":"2001:db8::1","stage":"rcpt","filter":"verify","reason":"no such user <x@example.org>","code":550}`,
	}, lines(t, filepath.Join(dir, "2026-03-10.jsonl")))
	assert.Zero(t, j.Dropped())
}

// A journal reopened after a crash appends to the day file; the line the
// crash tore stays one bad line and costs no other.
func TestJournalTornLine(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":"2026-03-09T10:00:00Z","kind":"received","sender":"a@example.com"}` + "\n"
	torn := `{"time":"2026-03-09T10:00:01Z","kind":"rece`
	path := filepath.Join(dir, "2026-03-09.jsonl")
	writeFile(t, path, []byte(good+torn))

	// Read while torn: the unfinished last line is not counted as bad.
	s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, s.Received)
	assert.Zero(t, s.BadLines)

	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
	require.NoError(t, err)
	j.Record(stats.Event{Time: at(5, 0), Kind: stats.Received, Sender: "b@example.com"})
	require.NoError(t, j.Close())

	got := lines(t, path)
	require.Len(t, got, 3)
	assert.Equal(t, torn, got[1])

	s, err = stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	assert.Equal(t, 2, s.Received)
	assert.Equal(t, 1, s.BadLines)
}

func TestJournalRetention(t *testing.T) {
	days := []string{"2026-01-29", "2026-02-02", "2026-02-03", "2026-02-04", "2026-03-10"}
	others := []string{"notes.txt", "2026-13-01.jsonl", "2026-01-01.jsonl.gz"}
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		for _, n := range days {
			writeFile(t, filepath.Join(dir, n+".jsonl"), []byte("{}\n"))
		}
		for _, n := range others {
			writeFile(t, filepath.Join(dir, n), nil)
		}
		// Not ours to remove, though named like a day file.
		require.NoError(t, os.Mkdir(filepath.Join(dir, "2026-01-02.jsonl"), 0o755))
		return dir
	}
	names := func(t *testing.T, dir string) []string {
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}

	t.Run("default 35 days", func(t *testing.T) {
		dir := setup(t)
		var mu sync.Mutex
		now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
		require.NoError(t, err)
		defer j.Close()
		// Days that ended more than 35 days before noon on March 10 are gone.
		assert.Equal(t, []string{"2026-01-01.jsonl.gz", "2026-01-02.jsonl", "2026-02-03.jsonl", "2026-02-04.jsonl", "2026-03-10.jsonl", "2026-13-01.jsonl", "notes.txt"}, names(t, dir))

		// The next day starts: one more day file expires.
		mu.Lock()
		now = now.Add(24 * time.Hour)
		mu.Unlock()
		require.NoError(t, j.Flush(bg))
		assert.Equal(t, []string{"2026-01-01.jsonl.gz", "2026-01-02.jsonl", "2026-02-04.jsonl", "2026-03-10.jsonl", "2026-13-01.jsonl", "notes.txt"}, names(t, dir))
	})

	t.Run("negative keeps all", func(t *testing.T) {
		dir := setup(t)
		j, err := stats.Open(stats.JournalConfig{Dir: dir, Retain: -1,
			Clock: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }})
		require.NoError(t, err)
		require.NoError(t, j.Close())
		assert.Len(t, names(t, dir), len(days)+len(others)+1)
	})
}

// Many sessions record at once; with room in the buffer nothing is lost.
func TestJournalConcurrent(t *testing.T) {
	const workers, each = 8, 500
	dir := t.TempDir()
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock, Buffer: workers * each})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				j.Record(stats.Event{Time: at(w, i%60), Kind: stats.Received, QueueID: "q", Size: int64(i)})
			}
		})
	}
	wg.Wait()
	require.NoError(t, j.Close())
	assert.Zero(t, j.Dropped())

	s, err := stats.Summarize(bg, dir, periodFrom, periodTo, stats.SummaryOptions{})
	require.NoError(t, err)
	assert.Equal(t, workers*each, s.Received)
	assert.Zero(t, s.BadLines)
}

func TestJournalAfterClose(t *testing.T) {
	dir := t.TempDir()
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
	require.NoError(t, err)
	require.NoError(t, j.Close())
	j.Record(stats.Event{Kind: stats.Received})
	assert.Equal(t, uint64(1), j.Dropped())
	assert.ErrorIs(t, j.Flush(bg), stats.ErrClosed)
	assert.NoError(t, j.Close())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents)
}

// A batch that cannot be written is counted as dropped, and Flush says
// why; the journal keeps going.
func TestJournalWriteError(t *testing.T) {
	dir := t.TempDir()
	// A directory where the day file should be.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "2026-03-09.jsonl"), 0o755))
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
	require.NoError(t, err)
	j.Record(stats.Event{Time: at(1, 0), Kind: stats.Received})
	j.Record(stats.Event{Time: at(1, 1), Kind: stats.Received})
	require.Error(t, j.Flush(bg))
	assert.Equal(t, uint64(2), j.Dropped())

	j.Record(stats.Event{Time: at(20, 0), Kind: stats.Received}) // the 10th
	require.NoError(t, j.Flush(bg))
	require.NoError(t, j.Close())
	assert.Len(t, lines(t, filepath.Join(dir, "2026-03-10.jsonl")), 1)
}

// An event that cannot be encoded is dropped, not written half.
func TestJournalUnencodable(t *testing.T) {
	dir := t.TempDir()
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
	require.NoError(t, err)
	j.Record(stats.Event{Time: at(1, 0), Kind: stats.Spam, Score: math.NaN()})
	j.Record(stats.Event{Time: at(1, 0), Kind: stats.Spam, Score: 7})
	require.NoError(t, j.Close())
	assert.Equal(t, uint64(1), j.Dropped())
	got := lines(t, filepath.Join(dir, "2026-03-09.jsonl"))
	require.Len(t, got, 1)
	var e stats.Event
	require.NoError(t, json.Unmarshal([]byte(got[0]), &e))
	assert.Equal(t, 7.0, e.Score)
}

// Without Flush or Close, what is recorded reaches the file within the
// flush interval (a second), so a crash loses at most that much.
func TestJournalFlushesOnItsOwn(t *testing.T) {
	dir := t.TempDir()
	j, err := stats.Open(stats.JournalConfig{Dir: dir, Clock: clock})
	require.NoError(t, err)
	defer j.Close()
	j.Record(stats.Event{Time: at(1, 0), Kind: stats.Received})
	path := filepath.Join(dir, "2026-03-09.jsonl")
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	}, 10*time.Second, 50*time.Millisecond)
}
