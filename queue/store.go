package queue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern/postern"
)

// Op names a file operation for fault injection.
type Op string

// The operations a Faults hook sees.
const (
	OpCreate Op = "create" // creating a file
	OpWrite  Op = "write"  // writing to a file
	OpSync   Op = "sync"   // fsync/fdatasync/syncfs
	OpRename Op = "rename" // renaming a file into place
)

// Faults, when set in Config, is called before each file operation of the
// store with the operation and path; a non-nil error is returned as if the
// operating system had failed. It is how tests inject disk-full and I/O
// errors; production code leaves it nil.
type Faults func(op Op, path string) error

func (f Faults) check(op Op, path string) error {
	if f == nil {
		return nil
	}
	if err := f(op, path); err != nil {
		return fmt.Errorf("queue: %s %s: %w", op, path, err)
	}
	return nil
}

// RcptStatus is where one recipient stands.
type RcptStatus string

// Recipient states.
const (
	Pending   RcptStatus = "pending"   // not yet delivered; retried
	Delivered RcptStatus = "delivered" // the next hop took it (2xx)
	Failed    RcptStatus = "failed"    // permanent failure or given up; DSN sent if wanted
)

// RcptState is the delivery state of one recipient.
type RcptState struct {
	Status    RcptStatus    `json:"status"`
	Reply     postern.Reply `json:"reply,omitzero"`
	RemoteMTA string        `json:"remote_mta,omitempty"`
	Relayed   bool          `json:"relayed,omitempty"`
	// Expired is set when delivery was given up after ReturnAfter.
	Expired     bool      `json:"expired,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
}

// State is the mutable part of a queued message.
type State struct {
	// Rcpts is parallel to Envelope.Recipients.
	Rcpts []RcptState `json:"rcpts"`
	// Attempts counts delivery attempts of the message.
	Attempts int `json:"attempts,omitempty"`
	// NextAttempt is when the scheduler tries again.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Hold is the reason the message is held ("" when it is not); held
	// messages are not delivered until released.
	Hold   string    `json:"hold,omitempty"`
	HeldAt time.Time `json:"held_at,omitzero"`
	// Warned is set once a delay DSN was sent.
	Warned bool `json:"warned,omitempty"`
}

func (s *State) clone() State {
	c := *s
	c.Rcpts = append([]RcptState(nil), s.Rcpts...)
	return c
}

// pending reports whether any recipient still waits for delivery.
func (s *State) pending() bool {
	for _, r := range s.Rcpts {
		if r.Status == Pending {
			return true
		}
	}
	return false
}

// store is the on-disk layout:
//
//	dir/lock            flock'd by the process that owns the queue
//	dir/wal/*.log       write-ahead log segments (group commit)
//	dir/q/HH/ID         envelope (one JSON line) then the message bytes
//	dir/q/HH/ID.st      state JSON (absent: every recipient pending)
//
// HH is one of 256 buckets from a hash of the ID, so no directory grows
// huge (a directory that once held a big backlog stays slow).
type store struct {
	dir    string
	faults Faults
}

func (s *store) bucket(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return filepath.Join(s.dir, "q", fmt.Sprintf("%02x", h.Sum32()&0xff))
}

func (s *store) dataPath(id string) string  { return filepath.Join(s.bucket(id), id) }
func (s *store) statePath(id string) string { return filepath.Join(s.bucket(id), id+".st") }

// writeDirect writes a file in place, without syncing: for checkpoints
// and replay, where the log still holds the data until the sync that
// follows (a torn file is written again by the next replay).
func (s *store) writeDirect(path string, data []byte) error {
	if err := s.faults.check(OpWrite, path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o750); err == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		}
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("queue: write %s: %w", path, err)
	}
	return nil
}

// readEnvelope reads the envelope line of a data file and returns it with
// the offset and size of the message bytes.
func readEnvelope(f *os.File) (*Envelope, int64, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, st.Size()), 4096)
	line, err := br.ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, 0, 0, fmt.Errorf("%w: no envelope line", ErrCorrupt)
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		// Long envelopes (many recipients) need the slow path.
		var buf bytes.Buffer
		buf.Write(line)
		rest, err := br.ReadBytes('\n')
		if err != nil {
			return nil, 0, 0, fmt.Errorf("%w: no envelope line", ErrCorrupt)
		}
		buf.Write(rest)
		line = buf.Bytes()
	}
	env := new(Envelope)
	if err := json.Unmarshal(line, env); err != nil {
		return nil, 0, 0, fmt.Errorf("%w: envelope: %v", ErrCorrupt, err)
	}
	off := int64(len(line))
	return env, off, st.Size() - off, nil
}

func readState(path string, nrcpt int) (State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return newState(nrcpt), nil
	}
	if err != nil {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil || len(st.Rcpts) != nrcpt {
		return State{}, fmt.Errorf("%w: state %s", ErrCorrupt, path)
	}
	return st, nil
}

func newState(n int) State {
	st := State{Rcpts: make([]RcptState, n)}
	for i := range st.Rcpts {
		st.Rcpts[i].Status = Pending
	}
	return st
}

// replay applies the records of the remaining WAL segments to the files,
// then makes the files durable so the segments can go. Records are
// idempotent (whole files, last one wins), so replaying a segment twice, or
// one whose removal did not survive a crash, is harmless.
func (s *store) replay(w *wal) error {
	segs, err := w.segments()
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return nil
	}
	for _, n := range segs {
		err := readSegment(w.segPath(n), func(r walRecord) error {
			if !validID(r.id) {
				return nil
			}
			switch r.kind {
			case recMessage:
				return s.writeDirect(s.dataPath(r.id), r.data)
			case recState:
				if _, err := os.Stat(s.dataPath(r.id)); err != nil {
					return nil // removed later in the log
				}
				return s.writeDirect(s.statePath(r.id), r.data)
			case recRemove:
				s.remove(r.id)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := s.faults.check(OpSync, s.dir); err != nil {
		return err
	}
	if err := syncFilesystem(s.dir, s.allPaths); err != nil {
		return fmt.Errorf("queue: sync: %w", err)
	}
	for _, n := range segs {
		os.Remove(w.segPath(n))
	}
	return nil
}

func (s *store) remove(id string) {
	os.Remove(s.dataPath(id))
	os.Remove(s.statePath(id))
}

// allPaths lists every file and directory of the store, for systems that
// cannot sync a whole file system at once.
func (s *store) allPaths() []string {
	var paths []string
	filepath.WalkDir(filepath.Join(s.dir, "q"), func(p string, _ os.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	return paths
}

// scan calls fn for every message on disk.
func (s *store) scan(fn func(id string) error) error {
	root := filepath.Join(s.dir, "q")
	buckets, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	for _, b := range buckets {
		if !b.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, b.Name()))
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasSuffix(name, ".tmp") {
				os.Remove(filepath.Join(root, b.Name(), name)) // never acknowledged
				continue
			}
			if strings.Contains(name, ".") || !validID(name) {
				continue
			}
			if err := fn(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// validID keeps IDs usable as file names.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func syncDir(dir string, faults Faults) error {
	if err := faults.check(OpSync, dir); err != nil {
		return err
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("queue: sync %s: %w", dir, err)
	}
	return nil
}
