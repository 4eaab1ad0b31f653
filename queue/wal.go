package queue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The write-ahead log is what makes Enqueue durable without one fsync per
// message. Every change (a new message, a new state, a removal) is written
// to the message's own files without syncing and appended to the log; the
// log is synced once for everyone waiting (group commit). A checkpoint
// later makes the files themselves durable and drops the log segment. After
// a crash the segments left are replayed onto the files.
//
// Record framing: length (uint32, of payload), CRC-32C of payload, payload.
// Payload: kind byte, id length (uint16), id, data. A torn record at the end
// of a segment was never acknowledged, so replay stops there.

const (
	recMessage byte = 'M' // data: envelope line + message bytes
	recState   byte = 'S' // data: state JSON
	recRemove  byte = 'D' // no data

	walHeaderLen = 8
	// maxRecord bounds what replay will allocate for one record.
	maxRecord = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// wal is the group-committed log. Appenders add records to a buffer and
// wait; one goroutine at a time (the leader) writes what has gathered and
// syncs it, then wakes everyone whose record is covered.
type wal struct {
	dir    string
	faults Faults

	mu       sync.Mutex
	cond     *sync.Cond
	seg      *os.File
	segNum   uint64
	segSize  int64
	buf      []byte    // records not yet written
	locs     []*walLoc // where records in buf want their position reported
	bufSeq   uint64    // sequence number of the last record in buf
	synced   uint64    // every record with seq <= synced is durable
	failedAt uint64    // records with seq <= failedAt and > synced failed
	err      error     // error of the batch that failed
	flushing bool
	closed   bool
	onFull   func() // called (without mu) when a segment grows past rotateAt
	rotateAt int64
}

func openWAL(dir string, faults Faults, rotateAt int64, onFull func()) (*wal, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	w := &wal{dir: dir, faults: faults, rotateAt: rotateAt, onFull: onFull}
	w.cond = sync.NewCond(&w.mu)
	segs, err := w.segments()
	if err != nil {
		return nil, err
	}
	if len(segs) > 0 {
		w.segNum = segs[len(segs)-1]
	}
	return w, nil
}

// segments lists the segment numbers present, oldest first.
func (w *wal) segments() ([]uint64, error) {
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var nums []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	return nums, nil
}

func (w *wal) segPath(n uint64) string {
	return filepath.Join(w.dir, fmt.Sprintf("%016x.log", n))
}

// walLoc receives the segment and offset where a record's data landed,
// once the record is written.
type walLoc struct {
	rel int // offset of the data in the write buffer
	seg uint64
	off int64
}

// appendRecord queues one record and returns its sequence number; call
// wait(seq) to block until it is durable. When loc is not nil it is told
// where the record's data is in the log once written.
func (w *wal) appendRecord(kind byte, id string, loc *walLoc, data ...[]byte) uint64 {
	n := 1 + 2 + len(id)
	for _, d := range data {
		n += len(d)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var hdr [walHeaderLen]byte
	start := len(w.buf)
	w.buf = append(w.buf, hdr[:]...)
	w.buf = append(w.buf, kind, byte(len(id)>>8), byte(len(id)))
	w.buf = append(w.buf, id...)
	if loc != nil {
		loc.rel = len(w.buf)
		w.locs = append(w.locs, loc)
	}
	for _, d := range data {
		w.buf = append(w.buf, d...)
	}
	binary.BigEndian.PutUint32(w.buf[start:], uint32(n))
	binary.BigEndian.PutUint32(w.buf[start+4:], crc32.Checksum(w.buf[start+walHeaderLen:], castagnoli))
	w.bufSeq++
	return w.bufSeq
}

// wait blocks until record seq is durable or its batch failed. The first
// waiter that finds no flush running becomes the leader and flushes every
// record gathered so far, so concurrent callers share one write and one
// fdatasync.
func (w *wal) wait(seq uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if seq <= w.synced {
			return nil
		}
		if seq <= w.failedAt {
			return w.err
		}
		if w.closed {
			return ErrClosed
		}
		if !w.flushing {
			w.flush()
			continue
		}
		w.cond.Wait()
	}
}

// flush writes and syncs the buffer; called with mu held, releases it
// while doing I/O.
func (w *wal) flush() {
	w.flushing = true
	buf, last, locs := w.buf, w.bufSeq, w.locs
	w.buf, w.locs = nil, nil
	full := false
	w.mu.Unlock()
	err := w.writeSync(buf)
	w.mu.Lock()
	if err == nil {
		for _, l := range locs {
			l.seg, l.off = w.segNum, w.segSize+int64(l.rel)
		}
		w.synced = last
		w.segSize += int64(len(buf))
		full = w.rotateAt > 0 && w.segSize >= w.rotateAt
	} else {
		w.failedAt, w.err = last, err
		// After a failed write or fsync the segment's contents are unknown
		// (the kernel may have dropped the dirty pages): never sync it
		// again and believe it. Start a new segment; the old one is still
		// replayed, which at worst delivers a message whose client was
		// told 4xx (a duplicate, never a loss).
		if w.seg != nil {
			// Give back what the failed batch took (a full disk stays full
			// otherwise); the records before it were synced already.
			_ = w.seg.Truncate(w.segSize)
			w.seg.Close()
			w.seg = nil
		}
	}
	if cap(buf) <= 1<<20 && w.buf == nil {
		w.buf = buf[:0]
	}
	w.flushing = false
	w.cond.Broadcast()
	if full && w.onFull != nil {
		go w.onFull()
	}
}

func (w *wal) writeSync(buf []byte) error {
	if w.seg == nil {
		w.segNum++
		path := w.segPath(w.segNum)
		if err := w.faults.check(OpCreate, path); err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("queue: wal: %w", err)
		}
		// The new segment's name must survive a crash as well as its data.
		if err := syncDir(w.dir, w.faults); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		w.seg, w.segSize = f, 0
	}
	if err := w.faults.check(OpWrite, w.seg.Name()); err != nil {
		return err
	}
	if _, err := w.seg.Write(buf); err != nil {
		return fmt.Errorf("queue: wal: %w", err)
	}
	if err := w.faults.check(OpSync, w.seg.Name()); err != nil {
		return err
	}
	if err := fdatasync(w.seg); err != nil {
		return fmt.Errorf("queue: wal: %w", err)
	}
	return nil
}

// rotate closes the current segment so later records go to a new one, and
// returns the numbers of the segments that are complete (all but the one
// now being written). It waits for a running flush.
func (w *wal) rotate() ([]uint64, error) {
	w.mu.Lock()
	for w.flushing {
		w.cond.Wait()
	}
	// Records still buffered belong to the old segment's era: flush them
	// first so a checkpoint that drops the segment covers them too.
	if len(w.buf) > 0 {
		w.flush()
	}
	if w.seg != nil {
		w.seg.Close()
		w.seg = nil
	}
	cur := w.segNum
	w.mu.Unlock()
	segs, err := w.segments()
	if err != nil {
		return nil, err
	}
	var done []uint64
	for _, n := range segs {
		if n <= cur {
			done = append(done, n)
		}
	}
	return done, nil
}

func (w *wal) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.flushing {
		w.cond.Wait()
	}
	if len(w.buf) > 0 {
		w.flush()
	}
	w.closed = true
	if w.seg != nil {
		w.seg.Close()
		w.seg = nil
	}
	w.cond.Broadcast()
}

// walRecord is one replayed record.
type walRecord struct {
	kind byte
	id   string
	data []byte
}

// readSegment calls fn for each intact record of a segment, stopping at the
// first torn or corrupt one (the tail of a crash).
func readSegment(path string, fn func(walRecord) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("queue: wal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("queue: wal: %w", err)
	}
	left := st.Size()
	var hdr [walHeaderLen]byte
	for {
		if _, err := io.ReadFull(f, hdr[:]); err != nil {
			return nil // end, or a torn header
		}
		left -= walHeaderLen
		n := binary.BigEndian.Uint32(hdr[:])
		// A length past the end of the file is a torn record, not a reason
		// to allocate it.
		if n < 3 || n > maxRecord || int64(n) > left {
			return nil
		}
		left -= int64(n)
		p := make([]byte, n)
		if _, err := io.ReadFull(f, p); err != nil {
			return nil
		}
		if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return nil
		}
		idLen := int(p[1])<<8 | int(p[2])
		if 3+idLen > len(p) {
			return nil
		}
		rec := walRecord{kind: p[0], id: string(p[3 : 3+idLen]), data: p[3+idLen:]}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
