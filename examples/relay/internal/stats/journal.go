package stats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// Journal defaults.
const (
	// DefaultRetain is how long day files are kept.
	DefaultRetain = 35 * 24 * time.Hour
	// DefaultBuffer is how many events may wait for the writer.
	DefaultBuffer = 4096
)

const (
	// flushEvery bounds what a crash can lose.
	flushEvery = time.Second
	// flushBytes writes a batch early when it grows this large.
	flushBytes = 256 << 10
	// dropLogEvery spaces the warnings about dropped events.
	dropLogEvery = time.Minute
	// dayLayout names the day files: Dir/2006-01-02.jsonl.
	dayLayout = "2006-01-02"
	fileExt   = ".jsonl"
)

// JournalConfig configures a Journal. Only Dir is required.
type JournalConfig struct {
	// Dir holds the day files; it is created (0750) if missing.
	Dir string
	// Clock stamps events recorded without a time and decides when a
	// new day starts; nil means time.Now.
	Clock func() time.Time
	// Logger receives warnings about dropped events, with the last write
	// error if any (at most one a minute), and removed day files (Info);
	// nil discards.
	Logger *slog.Logger
	// Retain is how long a day file is kept after its day ended; 0 means
	// DefaultRetain, a negative value keeps every file.
	Retain time.Duration
	// Buffer is how many events may wait for the writer before Record
	// drops them; 0 means DefaultBuffer.
	Buffer int
}

// Journal appends events to one JSON-lines file per UTC day,
// Dir/YYYY-MM-DD.jsonl, chosen by each event's Time.
//
// Record only queues the event: one writer goroutine batches them and
// writes at least once a second, so a crash loses at most the last second
// (statistics are not mail: nothing is synced to disk). When the writer
// falls behind and the buffer is full, events are dropped and counted
// (Dropped), with a warning at most once a minute. A line torn by a crash
// is ended before the next one is appended, and the reader skips it.
//
// At Open and at the first write of each UTC day, day files whose day
// ended more than Retain ago are removed. A Journal is safe for
// concurrent use.
type Journal struct {
	clock    func() time.Time
	ch       chan Event
	flushReq chan chan error
	quit     chan struct{}
	exited   chan struct{}
	closed   atomic.Bool
	dropped  atomic.Uint64
	once     sync.Once
	closeErr error
	w        *writer
}

// Open validates cfg, creates Dir if needed, removes expired day files
// and starts the writer.
func Open(cfg JournalConfig) (*Journal, error) { return open(cfg, nil) }

// open is Open with a gate the writer waits on before it takes its first
// event (tests use it to fill the buffer).
func open(cfg JournalConfig, gate <-chan struct{}) (*Journal, error) {
	switch {
	case strings.TrimSpace(cfg.Dir) == "":
		return nil, fmt.Errorf("%w: Dir is required", ErrConfig)
	case cfg.Buffer < 0:
		return nil, fmt.Errorf("%w: Buffer %d is negative", ErrConfig, cfg.Buffer)
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Retain == 0 {
		cfg.Retain = DefaultRetain
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = postern.DiscardLogger()
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("stats: journal directory: %w", err)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil {
		return nil, fmt.Errorf("stats: journal directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrConfig, cfg.Dir)
	}
	j := &Journal{
		clock:    cfg.Clock,
		ch:       make(chan Event, cfg.Buffer),
		flushReq: make(chan chan error),
		quit:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	j.w = &writer{j: j, dir: cfg.Dir, retain: cfg.Retain, log: cfg.Logger}
	j.w.newDay()
	go j.w.run(gate)
	return j, nil
}

// Record queues e for writing, stamping it with the journal's clock when
// e.Time is zero. It never blocks: when the buffer is full, or after
// Close, the event is dropped and counted.
func (j *Journal) Record(e Event) {
	if j.closed.Load() {
		j.dropped.Add(1)
		return
	}
	if e.Time.IsZero() {
		e.Time = j.clock()
	}
	select {
	case j.ch <- e:
	default:
		j.dropped.Add(1)
	}
}

// Dropped is the number of events lost so far: recorded while the buffer
// was full or after Close, or in a batch that could not be written.
func (j *Journal) Dropped() uint64 { return j.dropped.Load() }

// Flush waits until every event recorded before the call has been
// written, and returns the write error of that flush, if any.
func (j *Journal) Flush(ctx context.Context) error {
	if j.closed.Load() {
		return ErrClosed
	}
	req := make(chan error, 1)
	select {
	case j.flushReq <- req:
	case <-j.exited:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is buffered, closes the current file and stops the
// writer. Events recorded during or after Close may be dropped. Calling
// it again returns the first result.
func (j *Journal) Close() error {
	j.once.Do(func() {
		j.closed.Store(true)
		close(j.quit)
		<-j.exited
		// Events that slipped in after the writer's last look.
		j.dropped.Add(uint64(len(j.ch)))
		j.closeErr = j.w.closeErr
	})
	return j.closeErr
}

// writer is the state of the one goroutine that writes.
type writer struct {
	j      *Journal
	dir    string
	retain time.Duration
	log    *slog.Logger

	buf    []byte // lines of the batch (appendEvent: JSON, "<>" kept readable for grep)
	bufDay string // day of the events in buf
	bufN   int    // events in buf

	lastDate dayName // the last event's day (dayOf)

	f       *os.File
	fileDay string

	today    string // UTC day of the last retention check
	reported uint64 // drops already logged
	lastLog  time.Time
	lastErr  error
	closeErr error
}

func (w *writer) run(gate <-chan struct{}) {
	defer close(w.j.exited)
	if gate != nil {
		select {
		case <-gate:
		case <-w.j.quit:
		}
	}
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case e := <-w.j.ch:
			w.add(e)
			w.drain()
		case <-tick.C:
			w.flush()
			w.logDrops(false)
		case req := <-w.j.flushReq:
			w.drain()
			req <- w.flush()
		case <-w.j.quit:
			w.drain()
			w.flush()
			w.logDrops(true)
			if w.f != nil {
				w.closeErr = w.f.Close()
				w.f = nil
			}
			return
		}
	}
}

// drain takes what is waiting, at most one buffer's worth so that ticks
// and flush requests are served under a steady stream.
func (w *writer) drain() {
	for range cap(w.j.ch) {
		select {
		case e := <-w.j.ch:
			w.add(e)
		default:
			return
		}
	}
}

func (w *writer) add(e Event) {
	e.Time = e.Time.UTC()
	day := w.dayOf(e.Time)
	if day != w.bufDay && w.bufN > 0 {
		w.flush()
	}
	w.bufDay = day
	b, err := appendEvent(w.buf, &e)
	if err != nil {
		// Only a NaN or infinite Score, or a year past 9999, gets here.
		w.j.dropped.Add(1)
		w.lastErr = err
		return
	}
	w.buf = b
	w.bufN++
	if len(w.buf) >= flushBytes {
		w.flush()
	}
}

// dayOf is the day file name of a UTC time, formatted once per day
// rather than once per event.
func (w *writer) dayOf(t time.Time) string {
	y, m, d := t.Date()
	if y != w.lastDate.y || m != w.lastDate.m || d != w.lastDate.d || w.lastDate.name == "" {
		w.lastDate = dayName{y, m, d, t.Format(dayLayout)}
	}
	return w.lastDate.name
}

// dayName is a date and its day file name.
type dayName struct {
	y    int
	m    time.Month
	d    int
	name string
}

// flush writes the batch to its day file. A batch that cannot be written
// is dropped and counted: holding it would only grow memory while the
// disk is full.
func (w *writer) flush() error {
	w.newDay()
	if w.bufN == 0 {
		return nil
	}
	err := w.write()
	if err != nil {
		w.j.dropped.Add(uint64(w.bufN))
		w.lastErr = err // logged with the drops, at most once a minute
		if w.f != nil {
			w.f.Close() // reopened, and its torn line ended, next time
			w.f, w.fileDay = nil, ""
		}
	}
	w.buf = w.buf[:0]
	w.bufN = 0
	return err
}

func (w *writer) write() error {
	if w.f == nil || w.fileDay != w.bufDay {
		if w.f != nil {
			w.f.Close()
			w.f, w.fileDay = nil, ""
		}
		f, err := openDayFile(w.path(w.bufDay))
		if err != nil {
			return err
		}
		w.f, w.fileDay = f, w.bufDay
	}
	_, err := w.f.Write(w.buf)
	return err
}

func (w *writer) path(day string) string { return filepath.Join(w.dir, day+fileExt) }

// openDayFile opens a day file for appending. If the last write before a
// crash was torn, the partial line is ended so that it stays one bad
// line instead of swallowing the next good one.
func openDayFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() > 0 {
		var last [1]byte
		if _, err = f.ReadAt(last[:], fi.Size()-1); err == nil && last[0] != '\n' {
			_, err = f.Write([]byte{'\n'})
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// newDay removes expired day files once per UTC day.
func (w *writer) newDay() {
	now := w.j.clock().UTC()
	today := now.Format(dayLayout)
	if today == w.today {
		return
	}
	w.today = today
	if w.retain < 0 {
		return
	}
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		w.log.Warn("stats: cannot list journal directory", "dir", w.dir, "error", err)
		return
	}
	for _, de := range ents {
		day, ok := parseDayFile(de.Name())
		if !ok || !de.Type().IsRegular() || day.Add(24*time.Hour).After(now.Add(-w.retain)) {
			continue
		}
		if de.Name() == w.fileDay+fileExt && w.f != nil {
			w.f.Close()
			w.f, w.fileDay = nil, ""
		}
		if err := os.Remove(filepath.Join(w.dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("stats: cannot remove old journal file", "error", err)
			continue
		}
		w.log.Info("stats: removed old journal file", "file", filepath.Join(w.dir, de.Name()))
	}
}

// parseDayFile returns the day a journal file name stands for.
func parseDayFile(name string) (time.Time, bool) {
	base, ok := strings.CutSuffix(name, fileExt)
	if !ok || len(base) != len(dayLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(dayLayout, base)
	return t, err == nil
}

// logDrops warns about events dropped since the last warning, at most
// once per dropLogEvery (always when the journal closes).
func (w *writer) logDrops(final bool) {
	total := w.j.dropped.Load()
	if total == w.reported {
		return
	}
	now := w.j.clock()
	if !final && !w.lastLog.IsZero() && now.Sub(w.lastLog) < dropLogEvery {
		return
	}
	attrs := []any{"dropped", total - w.reported, "dropped_total", total}
	if w.lastErr != nil {
		attrs = append(attrs, "error", w.lastErr)
	}
	w.log.Warn("stats: journal events dropped", attrs...)
	w.reported, w.lastLog, w.lastErr = total, now, nil
}

var _ io.Closer = (*Journal)(nil)
