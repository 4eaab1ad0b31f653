package queue

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue/dsn"
)

// Errors of the queue.
var (
	ErrClosed   = errors.New("queue: closed")
	ErrLocked   = errors.New("queue: spool directory is in use by another process")
	ErrNotFound = errors.New("queue: no such message")
	ErrCorrupt  = errors.New("queue: corrupt spool file")
	ErrConfig   = errors.New("queue: bad configuration")
	ErrBusy     = errors.New("queue: message is being delivered")
)

// Config configures a Queue. The zero value of every field but Dir is the
// documented default.
type Config struct {
	// Dir is the spool directory (created if missing). Required.
	Dir string
	// Hostname names this MTA in DSNs (Reporting-MTA, the From address
	// MAILER-DAEMON@Hostname); default os.Hostname().
	Hostname string
	// Deliverer delivers messages; required by Run, not by Enqueue or the
	// admin API.
	Deliverer Deliverer
	// Logger gets one line per enqueue, per delivery attempt and recipient
	// group, and per admin action; nil discards.
	Logger *slog.Logger
	// Observer, when set, is called for every Event (metrics, statistics).
	// An event comes after the change it reports is durable (its log
	// record synced), so Show, called from the Observer or after it,
	// returns that state or a later one. Events come in the order of the
	// changes, from one goroutine at a time: a message's "enqueued" before
	// anything else about it, "delivered" after it. Each method returns
	// only once the Observer has seen its events (a Hold or Delete of a
	// message being delivered takes effect, and is reported, when the
	// attempt ends). The Observer must not
	// block and must not change the queue (Enqueue, Hold, Delete...): that
	// would wait for its own return. It may read it (Show, List, Len).
	Observer func(Event)
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
	// NewID makes queue IDs (letters, digits, '-' and '_', at most 64);
	// default: time-ordered and random, 16 characters.
	NewID func() string
	// Rand returns a number in [0,1) for retry jitter and nothing else;
	// default math/rand/v2.
	Rand func() float64

	// MinBackoff is the delay after the first failed attempt; it doubles
	// with each attempt up to MaxBackoff. Defaults 5 minutes and 4000
	// seconds (Postfix's minimal_backoff_time and maximal_backoff_time).
	// Each delay is spread by ±10 % so retries do not arrive in waves.
	MinBackoff, MaxBackoff time.Duration
	// WarnAfter is the age at which senders get a delay DSN (sendmail
	// Timeout.queuewarn); default 4h, negative never.
	WarnAfter time.Duration
	// ReturnAfter is the age at which delivery is given up and a failure
	// DSN sent (sendmail Timeout.queuereturn, Postfix
	// maximal_queue_lifetime); default 5 days.
	ReturnAfter time.Duration

	// Concurrency bounds delivery attempts running at once; default 100.
	Concurrency int
	// DestinationConcurrency bounds attempts to one destination at once
	// (Postfix default_destination_concurrency_limit); default 20.
	DestinationConcurrency int
	// AttemptTimeout bounds one delivery attempt; default 10 minutes.
	AttemptTimeout time.Duration

	// Postmaster receives double bounces: failure notices for undeliverable
	// messages from the null sender. Empty: they are dropped and logged.
	Postmaster string
	// MaxReturned bounds how much of the original message a DSN carries
	// (beyond it only the header is returned); default 1 MiB.
	MaxReturned int64

	// CheckpointInterval is how often the write-ahead log is folded into
	// the message files; default 10s. Messages delivered within it never
	// get a file of their own. SegmentSize starts a checkpoint early when
	// a log segment grows past it; default 64 MiB.
	CheckpointInterval time.Duration
	SegmentSize        int64
	// LogResidence: messages younger than this stay in the log at a
	// checkpoint (appended again, with their state, to the current
	// segment) instead of getting files of their own; default 1 minute.
	// Most mail is delivered by then and never costs a file.
	LogResidence time.Duration
	// InlineLimit: messages up to this size go through the group-committed
	// log; larger ones are synced in their own file (their size pays for
	// the fsync). Default 1 MiB.
	InlineLimit int

	// Faults injects file-system errors (tests only).
	Faults Faults
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: Dir is required", ErrConfig)
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "localhost"
		}
		c.Hostname = h
	}
	if c.Logger == nil {
		c.Logger = postern.DiscardLogger()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.NewID == nil {
		c.NewID = newIDFunc(c.Clock)
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&c.MinBackoff, 5*time.Minute)
	setDur(&c.MaxBackoff, 4000*time.Second)
	setDur(&c.WarnAfter, 4*time.Hour)
	setDur(&c.ReturnAfter, 5*24*time.Hour)
	setDur(&c.AttemptTimeout, 10*time.Minute)
	setDur(&c.CheckpointInterval, 10*time.Second)
	setDur(&c.LogResidence, time.Minute)
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff || c.ReturnAfter < 0 || c.AttemptTimeout < 0 || c.CheckpointInterval < 0 {
		return fmt.Errorf("%w: negative or inverted durations", ErrConfig)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.DestinationConcurrency == 0 {
		c.DestinationConcurrency = DefaultDestinationConcurrency
	}
	if c.Concurrency < 0 || c.DestinationConcurrency < 0 {
		return fmt.Errorf("%w: negative concurrency", ErrConfig)
	}
	if c.MaxReturned == 0 {
		c.MaxReturned = 1 << 20
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = 64 << 20
	}
	if c.InlineLimit == 0 {
		c.InlineLimit = 1 << 20
	}
	return nil
}

// newIDFunc returns the default ID maker: 10 base-32 digits of the time in
// microseconds (so IDs sort by arrival) and 6 random ones.
func newIDFunc(clock func() time.Time) func() string {
	const digits = "0123456789BCDFGHJKLMNPQRSTVWXYZ_"
	return func() string {
		var b [16]byte
		t := uint64(clock().UnixMicro())
		for i := 9; i >= 0; i-- {
			b[i] = digits[t&31]
			t >>= 5
		}
		r := rand.Uint64()
		for i := 10; i < 16; i++ {
			b[i] = digits[r&31]
			r >>= 5
		}
		return string(b[:])
	}
}

// Queue is a durable mail queue: Enqueue stores messages, Run delivers
// them through the Deliverer, and the admin methods inspect and change
// what is queued. Safe for concurrent use.
type Queue struct {
	cfg   Config
	log   *slog.Logger
	store store
	wal   *wal
	lock  *os.File
	dsn   *dsn.Composer
	ev    *events

	mu     sync.Mutex
	items  map[string]*item
	sched  schedHeap
	wakeCh chan struct{}
	// idleCh is closed (and replaced) whenever a message stops being
	// busy: claim waits on it.
	idleCh   chan struct{}
	closed   bool
	dests    map[string]int // running attempts per destination
	destCond *sync.Cond

	ckptCh   chan struct{}
	ckptDone chan struct{}
	ckptMu   sync.Mutex
	// gate keeps a checkpoint from dropping a log segment between an
	// Enqueue writing its message there and registering the item.
	gate    sync.RWMutex
	dirty   atomic.Bool
	running atomic.Bool
}

// item is one queued message in memory.
type item struct {
	id  string
	env *Envelope
	// The message bytes are at off in the log segment seg, or, when seg
	// is 0, at off in the message's own data file.
	seg     uint64
	off     int64
	size    int64
	st      State
	stDirty bool   // st changed since the state file was last written
	busy    bool   // an attempt is running
	del     bool   // deleted while busy
	holdReq string // held while busy
	idx     int    // index in the schedule heap, -1 if not in it
}

// Open opens (or creates) the queue in cfg.Dir, replays what a crash left
// in the log, and loads every queued message. Close it when done.
func Open(cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	lock, err := lockDir(filepath.Join(cfg.Dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("queue: %s: %w", cfg.Dir, err)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger, store: store{dir: cfg.Dir, faults: cfg.Faults}, lock: lock,
		items: make(map[string]*item), wakeCh: make(chan struct{}, 1), idleCh: make(chan struct{}), dests: make(map[string]int),
		ckptCh: make(chan struct{}, 1), ckptDone: make(chan struct{}), ev: newEvents(cfg.Observer, cfg.Logger)}
	q.destCond = sync.NewCond(&q.mu)
	q.dsn, err = dsn.New(dsn.Config{ReportingMTA: cfg.Hostname, MaxReturn: cfg.MaxReturned, Now: cfg.Clock})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	q.wal, err = openWAL(filepath.Join(cfg.Dir, "wal"), cfg.Faults, cfg.SegmentSize, q.kickCheckpoint)
	if err == nil {
		err = q.store.replay(q.wal)
	}
	if err == nil {
		err = q.load()
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	go q.checkpointLoop()
	return q, nil
}

func (q *Queue) load() error {
	now := q.cfg.Clock()
	return q.store.scan(func(id string) error {
		f, err := os.Open(q.store.dataPath(id))
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		env, off, size, err := readEnvelope(f)
		f.Close()
		if err != nil {
			q.log.Error("queue: unreadable message left in place", "queue_id", id, "err", err)
			return nil
		}
		st, err := readState(q.store.statePath(id), len(env.Recipients))
		if err != nil {
			q.log.Error("queue: unreadable state, every recipient retried", "queue_id", id, "err", err)
			st = newState(len(env.Recipients))
		}
		if !st.pending() {
			// Everything was done; only the removal did not survive.
			q.store.remove(id)
			return nil
		}
		if st.NextAttempt.IsZero() {
			st.NextAttempt = now
		}
		it := &item{id: id, env: env, off: off, size: size, st: st, idx: -1}
		q.items[id] = it
		q.schedule(it)
		return nil
	})
}

// Close stops the queue: a last checkpoint, then the log is closed and the
// directory unlocked. Run must have returned.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	// Wake whoever waits to claim a message: they find the queue closed.
	close(q.idleCh)
	q.idleCh = make(chan struct{})
	q.mu.Unlock()
	close(q.ckptCh)
	<-q.ckptDone
	err := q.checkpoint()
	q.wal.close()
	q.lock.Close()
	return err
}

// Enqueue stores a message for delivery and returns its queue ID once the
// message and its envelope are durable. Concurrent calls share one log
// sync. An error wrapping syscall.ENOSPC means the disk is full.
func (q *Queue) Enqueue(ctx context.Context, env Envelope, r io.Reader) (string, error) {
	it, line, err := q.newItem(env)
	if err != nil {
		return "", err
	}
	// Small messages live in the group-committed log until a checkpoint
	// writes them to their own file, so most never cost a file at all:
	// they are delivered before the next checkpoint.
	var head bytes.Buffer
	n, err := io.CopyN(&head, r, int64(q.cfg.InlineLimit)+1)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("queue: reading message: %w", err)
	}
	it.size = n
	var ticket uint64
	if n <= int64(q.cfg.InlineLimit) {
		ticket, err = q.enqueueInLog(it, line, head.Bytes())
	} else {
		ticket, err = q.enqueueInFile(it, line, &head, r)
	}
	if err != nil {
		return "", err
	}
	q.wake()
	e := it.env
	q.log.Info("queued", "queue_id", it.id, "from", e.From, "nrcpt", len(e.Recipients), "size", it.size,
		"conn_id", e.ConnID, "hold", e.Hold)
	evs := []Event{{Kind: EventEnqueued, ID: it.id, From: e.From, Size: it.size, Reason: e.Hold}}
	if e.Hold != "" {
		evs = append(evs, Event{Kind: EventHeld, ID: it.id, From: e.From, Reason: e.Hold})
	}
	q.ev.publish(ticket, evs...)
	return it.id, nil
}

// newItem checks an envelope and makes the queue's item for it, with its
// ID and first state, and the envelope's line as stored.
func (q *Queue) newItem(env Envelope) (*item, []byte, error) {
	if len(env.Recipients) == 0 {
		return nil, nil, fmt.Errorf("%w: no recipients", ErrConfig)
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	if env.Received.IsZero() {
		env.Received = q.cfg.Clock()
	}
	e := env
	e.Recipients = append([]Recipient(nil), env.Recipients...)
	e.validUTF8()
	line, err := json.Marshal(&e)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: %w", err)
	}
	line = append(line, '\n')
	id := env.ID
	if id == "" {
		id = q.cfg.NewID()
	}
	if !validID(id) {
		return nil, nil, fmt.Errorf("%w: bad queue ID %q", ErrConfig, id)
	}
	q.mu.Lock()
	_, dup := q.items[id]
	q.mu.Unlock()
	if dup {
		return nil, nil, fmt.Errorf("%w: queue ID %s is in use", ErrConfig, id)
	}
	it := &item{id: id, env: &e, st: newState(len(e.Recipients)), idx: -1}
	it.st.NextAttempt = e.Received
	if e.Hold != "" {
		it.st.Hold, it.st.HeldAt = e.Hold, e.Received
	}
	return it, line, nil
}

// enqueueInLog appends a small message (and its hold) to the log, waits
// for the group sync and registers it.
func (q *Queue) enqueueInLog(it *item, line, body []byte) (uint64, error) {
	q.gate.RLock()
	var loc walLoc
	seq := q.wal.appendRecord(recMessage, it.id, &loc, line, body)
	if it.env.Hold != "" {
		st, _ := json.Marshal(&it.st)
		seq = q.wal.appendRecord(recState, it.id, nil, st)
		it.stDirty = true
	}
	err := q.wal.wait(seq)
	var ticket uint64
	if err == nil {
		it.seg, it.off = loc.seg, loc.off+int64(len(line))
		ticket = q.register(it)
	}
	q.gate.RUnlock()
	if err != nil {
		return 0, err
	}
	q.dirty.Store(true)
	return ticket, nil
}

// enqueueInFile writes a large message to its own synced file (its hold
// first) and registers it.
func (q *Queue) enqueueInFile(it *item, line []byte, head *bytes.Buffer, rest io.Reader) (uint64, error) {
	path := q.store.dataPath(it.id)
	if it.env.Hold != "" {
		// The hold is on disk before the message is: a held message
		// (a quarantine verdict) is never found without its hold.
		st, _ := json.Marshal(&it.st)
		err := q.makeDir(filepath.Dir(path))
		if err == nil {
			err = q.writeSynced(q.store.statePath(it.id), st)
		}
		if err != nil {
			os.Remove(q.store.statePath(it.id))
			return 0, err
		}
	}
	var err error
	it.size, err = q.writeLarge(path, line, head, rest)
	if err != nil {
		os.Remove(q.store.statePath(it.id))
		return 0, err
	}
	it.off = int64(len(line))
	return q.register(it), nil
}

// register makes a durable new message visible and schedules it, and
// returns the ticket of its events: before anything else can happen to
// it.
func (q *Queue) register(it *item) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items[it.id] = it
	q.schedule(it)
	return q.ev.reserve()
}

// writeLarge writes a message too big for the log straight to its file
// and syncs file and directory.
func (q *Queue) writeLarge(path string, line []byte, head *bytes.Buffer, rest io.Reader) (int64, error) {
	dir := filepath.Dir(path)
	if err := q.makeDir(dir); err != nil {
		return 0, err
	}
	tmp := path + ".tmp"
	fail := func(err error) (int64, error) {
		os.Remove(tmp)
		return 0, fmt.Errorf("queue: write %s: %w", path, err)
	}
	if err := q.cfg.Faults.check(OpCreate, tmp); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if err := q.cfg.Faults.check(OpWrite, tmp); err != nil {
		return fail(err)
	}
	if _, err := f.Write(line); err != nil {
		return fail(err)
	}
	n, err := io.Copy(f, io.MultiReader(head, rest))
	if err != nil {
		return fail(err)
	}
	if err := q.cfg.Faults.check(OpSync, tmp); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := q.cfg.Faults.check(OpRename, path); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(dir, q.cfg.Faults); err != nil {
		os.Remove(path)
		return 0, err
	}
	return n, nil
}

// makeDir makes a directory of the spool, if missing, so that its name
// lasts: each directory it creates is synced into its parent.
func (q *Queue) makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir && parent != q.cfg.Dir {
		if err := q.makeDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("queue: %w", err)
	}
	return syncDir(filepath.Dir(dir), q.cfg.Faults)
}

// persist records an item's state and waits until it is durable: a log
// record now, the state file at the next checkpoint.
func (q *Queue) persist(it *item) error {
	b, err := json.Marshal(&it.st)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	q.mu.Lock()
	if cur := q.items[it.id]; cur != nil {
		cur.stDirty = true // before the record, so a checkpoint sees one or the other
	}
	q.mu.Unlock()
	seq := q.wal.appendRecord(recState, it.id, nil, b)
	q.dirty.Store(true)
	return q.wal.wait(seq)
}

// change is a state change whose record is appended: the log sequence
// to wait for (or the error that kept it from being written), the
// ticket of its events and the events.
type change struct {
	seq, ticket uint64
	err         error
	evs         []Event
}

// setStateLocked makes st the state of it and appends its record, with
// mu held: the order of the records is then the order of the states,
// and of the tickets. The message takes the state before the record is
// written, so that a checkpoint in between carries the new state
// forward, not the old one, as the record's segment goes with it.
func (q *Queue) setStateLocked(it *item, st State) change {
	c := change{ticket: q.ev.reserve()}
	b, err := json.Marshal(&st)
	if err != nil {
		c.err = fmt.Errorf("queue: %w", err) // a clock past year 9999
		return c
	}
	it.st = st
	it.stDirty = true // before the record, so a checkpoint sees one or the other
	c.seq = q.wal.appendRecord(recState, it.id, nil, b)
	q.dirty.Store(true)
	return c
}

// commit waits until a change's record is durable, then emits its
// events; if the record failed, none. It returns the record's error.
func (q *Queue) commit(c change) error {
	err := c.err
	if err == nil {
		err = q.wal.wait(c.seq)
	}
	if err != nil {
		q.ev.publish(c.ticket)
		return err
	}
	q.ev.publish(c.ticket, c.evs...)
	return nil
}

// remove deletes a message and returns the log sequence of the removal.
// A finished message need not wait for it: the state saying every
// recipient is done is already durable. An administrator's deletion waits.
func (q *Queue) remove(id string) uint64 {
	seq := q.wal.appendRecord(recRemove, id, nil)
	q.store.remove(id)
	q.dirty.Store(true)
	return seq
}

func (q *Queue) kickCheckpoint() {
	defer func() { recover() }() // ckptCh closed by Close
	select {
	case q.ckptCh <- struct{}{}:
	default:
	}
}

func (q *Queue) checkpointLoop() {
	defer close(q.ckptDone)
	t := time.NewTicker(q.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case _, ok := <-q.ckptCh:
			if !ok {
				return
			}
		case <-t.C:
		}
		if err := q.checkpoint(); err != nil {
			q.log.Error("queue: checkpoint failed; the log keeps everything", "err", err)
		}
	}
}

// checkpoint lets the log segments written so far go. What they hold
// that is still needed is carried forward: young messages (LogResidence)
// are appended again to the current segment with their state, which is
// cheap and sequential and keeps the common case (delivered within a
// minute) free of files; older ones and messages under delivery are
// written to their own files, made durable with one syncfs.
func (q *Queue) checkpoint() error {
	q.ckptMu.Lock()
	defer q.ckptMu.Unlock()
	if !q.dirty.Swap(false) {
		return nil
	}
	p, err := q.planCheckpoint()
	if err != nil {
		q.dirty.Store(true)
		return err
	}
	return q.carryOut(p)
}

// carryOut carries forward what a checkpoint planned and, once that is
// durable, lets the old segments go. On error everything stays in the log.
func (q *Queue) carryOut(p *checkpointPlan) error {
	r := segReader{wal: q.wal, files: map[uint64]*os.File{}}
	defer r.close()
	err := q.carryYoung(p, &r)
	if err == nil {
		err = q.writeMessageFiles(p, &r)
	}
	if err == nil {
		err = q.writeStateFiles(p.states)
	}
	if err == nil {
		err = q.cfg.Faults.check(OpSync, q.cfg.Dir)
	}
	if err == nil {
		err = syncFilesystem(q.cfg.Dir, q.store.allPaths)
	}
	if err != nil {
		q.checkpointFailed(p.states)
		return err
	}
	q.checkpointDone(p)
	return nil
}

// checkpointPlan is what one checkpoint carries out of the segments it
// lets go.
type checkpointPlan struct {
	segs   []uint64 // the segments let go
	moves  []*ckptMove
	states []*item // copies of the states to write to state files
}

// ckptMove is a message whose bytes are in a segment being let go.
type ckptMove struct {
	it        *item // nil: finished before it was carried
	env       []byte
	seg       uint64
	off, size int64
	// relocate: appended again to the log (loc says where), not written
	// to a file of its own.
	relocate bool
	body     []byte
	loc      *walLoc
}

// planCheckpoint starts a new log segment and lists what the older ones
// hold that is still needed. The gate keeps an Enqueue from writing a
// message to an old segment after the list is made.
func (q *Queue) planCheckpoint() (*checkpointPlan, error) {
	q.gate.Lock()
	defer q.gate.Unlock()
	segs, err := q.wal.rotate()
	if err != nil {
		return nil, err
	}
	p := &checkpointPlan{segs: segs}
	now := q.cfg.Clock()
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if it.seg != 0 {
			line, _ := json.Marshal(it.env)
			m := &ckptMove{it: it, env: append(line, '\n'), seg: it.seg, off: it.off, size: it.size}
			m.relocate = !it.busy && now.Sub(it.env.Received) < q.cfg.LogResidence
			p.moves = append(p.moves, m)
			if m.relocate {
				continue // its state goes along with it
			}
		}
		p.addState(it)
	}
	return p, nil
}

// addState takes a copy of its state if it changed since its state file
// was written; with mu held.
func (p *checkpointPlan) addState(it *item) {
	if it.stDirty {
		it.stDirty = false
		p.states = append(p.states, &item{id: it.id, st: it.st.clone()})
	}
}

// carryYoung appends the young messages again to the current segment,
// each with its state, and waits until they are durable. One that
// finished meanwhile is dropped; one whose attempt started gets a file
// instead, so that no state record races the attempt's result.
func (q *Queue) carryYoung(p *checkpointPlan, r *segReader) error {
	for _, m := range p.moves {
		if m.relocate {
			var err error
			if m.body, err = r.read(m); err != nil {
				return err
			}
		}
	}
	var last uint64
	q.mu.Lock()
	for _, m := range p.moves {
		if !m.relocate {
			continue
		}
		if q.items[m.it.id] != m.it {
			m.relocate, m.it = false, nil
			continue
		}
		if m.it.busy {
			m.relocate = false
			p.addState(m.it)
			continue
		}
		st, _ := json.Marshal(&m.it.st)
		m.loc = &walLoc{}
		q.wal.appendRecord(recMessage, m.it.id, m.loc, m.env, m.body)
		last = q.wal.appendRecord(recState, m.it.id, nil, st)
		m.body = nil
	}
	q.mu.Unlock()
	if last == 0 {
		return nil
	}
	q.dirty.Store(true)
	return q.wal.wait(last)
}

// writeMessageFiles writes the messages not carried in the log to their
// own files (unsynced: the checkpoint's syncfs makes them durable).
func (q *Queue) writeMessageFiles(p *checkpointPlan, r *segReader) error {
	for _, m := range p.moves {
		if m.relocate || m.it == nil {
			continue
		}
		body, err := r.read(m)
		if err != nil {
			return err
		}
		if err := q.store.writeDirect(q.store.dataPath(m.it.id), append(m.env, body...)); err != nil {
			return err
		}
	}
	return nil
}

// writeStateFiles writes the changed states to their files (unsynced).
func (q *Queue) writeStateFiles(states []*item) error {
	for _, it := range states {
		b, _ := json.Marshal(&it.st)
		if err := q.store.writeDirect(q.store.statePath(it.id), b); err != nil {
			return err
		}
	}
	return nil
}

// checkpointFailed leaves everything in the log, to be tried again next
// time: the states it took are marked changed again.
func (q *Queue) checkpointFailed(states []*item) {
	q.mu.Lock()
	for _, it := range states {
		if cur := q.items[it.id]; cur != nil {
			cur.stDirty = true
		}
	}
	q.mu.Unlock()
	q.dirty.Store(true)
}

// checkpointDone points each carried message at its new place and lets
// the old segments go.
func (q *Queue) checkpointDone(p *checkpointPlan) {
	q.mu.Lock()
	for _, m := range p.moves {
		switch {
		case m.it == nil:
		case q.items[m.it.id] != m.it:
			q.store.remove(m.it.id) // finished while we wrote it
		case m.relocate:
			m.it.seg, m.it.off = m.loc.seg, m.loc.off+int64(len(m.env))
		default:
			m.it.seg, m.it.off = 0, int64(len(m.env))
		}
	}
	q.mu.Unlock()
	for _, n := range p.segs {
		os.Remove(q.wal.segPath(n))
	}
}

// segReader reads messages out of log segments, opening each segment
// once.
type segReader struct {
	wal   *wal
	files map[uint64]*os.File
}

func (r *segReader) read(m *ckptMove) ([]byte, error) {
	f := r.files[m.seg]
	if f == nil {
		var err error
		if f, err = os.Open(r.wal.segPath(m.seg)); err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		r.files[m.seg] = f
	}
	buf := make([]byte, m.size)
	if _, err := f.ReadAt(buf, m.off); err != nil {
		return nil, fmt.Errorf("queue: reading log: %w", err)
	}
	return buf, nil
}

func (r *segReader) close() {
	for _, f := range r.files {
		f.Close()
	}
}

// schedule puts an item in the delivery schedule if it is due some time;
// called with mu held.
func (q *Queue) schedule(it *item) {
	if it.busy || it.del || it.st.Hold != "" || !it.st.pending() {
		return
	}
	if it.idx >= 0 {
		heap.Fix(&q.sched, it.idx)
		return
	}
	heap.Push(&q.sched, it)
}

func (q *Queue) unschedule(it *item) {
	if it.idx >= 0 {
		heap.Remove(&q.sched, it.idx)
	}
}

func (q *Queue) wake() {
	select {
	case q.wakeCh <- struct{}{}:
	default:
	}
}

// schedHeap orders items by next attempt.
type schedHeap []*item

func (h schedHeap) Len() int { return len(h) }
func (h schedHeap) Less(i, j int) bool {
	return h[i].st.NextAttempt.Before(h[j].st.NextAttempt)
}
func (h schedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *schedHeap) Push(x any) {
	it := x.(*item)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *schedHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}

// backoff is the delay before attempt n+1 after n failed ones.
func (q *Queue) backoff(n int) time.Duration {
	d := q.cfg.MinBackoff
	for i := 1; i < n && d < q.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, q.cfg.MaxBackoff)
	return time.Duration(float64(d) * (0.9 + 0.2*q.cfg.Rand()))
}

// Defaults of Config.Concurrency and Config.DestinationConcurrency.
const (
	DefaultConcurrency            = 100
	DefaultDestinationConcurrency = 20 // Postfix default_destination_concurrency_limit
)
