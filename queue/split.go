package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Moved is the status of a recipient that Split moved to another
// message: it is no longer this message's to deliver. The envelope keeps
// the address (an envelope never changes), the state says it is gone.
const Moved RcptStatus = "moved"

// EventSplit is emitted when Split moves recipients to a new message;
// Event.ID is the original message and Event.Reason the new queue ID.
const EventSplit EventKind = "split"

// ErrNoRecipient is returned by Split for an address that is not a
// pending recipient of the message.
var ErrNoRecipient = errors.New("queue: no such pending recipient")

// Split moves the named pending recipients of a message into a new
// message and returns its queue ID: the same bytes, the same envelope but
// for the recipients, the same hold and delivery state. The original keeps
// the other recipients. It is how one recipient of a held message gets it
// released (or deleted) without deciding for the others. Addresses are
// compared exactly, as Info.Envelope.Recipients gives them. When rcpts
// name every pending recipient, nothing is copied and id is returned.
//
// Durability: the copy is written to its own files, state first, and
// synced; only then is the original's state changed (a synced log
// record). A crash in between leaves the recipients in both messages,
// the copy held like the original; never in neither, and the copy is
// never found without its hold. A message being delivered cannot be
// split (ErrBusy).
func (q *Queue) Split(id string, rcpts []string) (string, error) {
	if len(rcpts) == 0 {
		return "", fmt.Errorf("%w: none given to split off %s", ErrNoRecipient, id)
	}
	c, err := q.claimSplit(id, rcpts)
	if err != nil || c == nil {
		if err == nil {
			return id, nil
		}
		return "", err
	}
	newIt, err := q.writeCopy(c)
	if err == nil {
		if err = q.commitSplit(c); err != nil {
			// The original is unchanged; withdraw the copy. Should the
			// removal not survive a crash, the copy is held: both have
			// the recipients, which is allowed.
			q.store.remove(newIt.id)
			newIt = nil
		}
	}
	dels, splitEv, hold := q.endSplit(c, newIt)
	if splitEv != nil {
		splitEv.evs = []Event{{Kind: EventSplit, ID: id, From: c.env.From, Reason: newIt.id}}
		q.log.Info("split", "queue_id", id, "new_id", newIt.id, "nrcpt", len(newIt.env.Recipients),
			"hold", newIt.st.Hold)
		q.commit(*splitEv) // the records are synced already: nothing to fail
	}
	for _, d := range dels {
		if werr := q.commit(d); werr != nil && err == nil {
			err = werr
		}
	}
	for _, it := range []*item{c.it, newIt} {
		if hold != "" && it != nil {
			if herr := q.holdIdle(it, hold); herr != nil {
				q.log.Error("queue: could not record hold", "queue_id", it.id, "err", herr)
			}
		}
	}
	if err != nil {
		return "", err
	}
	return newIt.id, nil
}

// splitting is a Split under way: the message (claimed as an attempt
// claims it, so nothing else changes it meanwhile), its envelope and
// state when claimed, and the indexes of the recipients that move.
type splitting struct {
	it   *item
	env  *Envelope
	st   State
	move []int
}

// claimSplit finds the recipients to move and marks the message busy. It
// returns nil, nil when every pending recipient is named (nothing to
// copy).
func (q *Queue) claimSplit(id string, rcpts []string) (*splitting, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	it := q.items[id]
	if it == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if it.busy {
		return nil, fmt.Errorf("%w: %s", ErrBusy, id)
	}
	want := make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		want[r] = false
	}
	var move []int
	pending := 0
	for i, r := range it.env.Recipients {
		if it.st.Rcpts[i].Status != Pending {
			continue
		}
		pending++
		if _, ok := want[r.Addr]; ok {
			want[r.Addr] = true
			move = append(move, i)
		}
	}
	for _, r := range rcpts {
		if !want[r] {
			return nil, fmt.Errorf("%w: %s of %s", ErrNoRecipient, r, id)
		}
	}
	if len(move) == pending {
		return nil, nil
	}
	q.unschedule(it)
	it.busy = true
	return &splitting{it: it, env: it.env, st: it.st.clone(), move: move}, nil
}

// writeCopy writes the new message to its own files and syncs them: the
// state file first, then the data file (written and synced under a
// temporary name, renamed, directory synced, which also makes the state
// file's name durable). A state file without its data file is ignored
// when the queue is opened, so at no point is the copy found without its
// state, that is without its hold.
func (q *Queue) writeCopy(c *splitting) (*item, error) {
	newID := ""
	for range 8 {
		cand := q.cfg.NewID()
		q.mu.Lock()
		_, dup := q.items[cand]
		q.mu.Unlock()
		if _, err := os.Lstat(q.store.dataPath(cand)); validID(cand) && !dup && errors.Is(err, os.ErrNotExist) {
			newID = cand
			break
		}
	}
	if newID == "" {
		return nil, fmt.Errorf("%w: NewID gives no unused valid queue ID", ErrConfig)
	}
	env := *c.env
	env.ID = ""
	env.Recipients = nil
	st := State{Attempts: c.st.Attempts, NextAttempt: c.st.NextAttempt, Hold: c.st.Hold, HeldAt: c.st.HeldAt,
		Warned: c.st.Warned}
	for _, i := range c.move {
		env.Recipients = append(env.Recipients, c.env.Recipients[i])
		st.Rcpts = append(st.Rcpts, c.st.Rcpts[i])
	}
	line, err := json.Marshal(&env)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	line = append(line, '\n')
	stJSON, err := json.Marshal(&st)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := q.writeSynced(q.store.statePath(newID), stJSON); err != nil {
		os.Remove(q.store.statePath(newID))
		return nil, err
	}
	src, err := q.openData(c.it)
	if err != nil {
		os.Remove(q.store.statePath(newID))
		return nil, err
	}
	defer src.Close()
	n, err := q.writeLarge(q.store.dataPath(newID), line, new(bytes.Buffer), io.NewSectionReader(src, 0, c.it.size))
	if err == nil && n != c.it.size {
		q.store.remove(newID)
		err = fmt.Errorf("%w: %s: read %d of %d bytes", ErrCorrupt, c.it.id, n, c.it.size)
	}
	if err == nil {
		// The bucket directory may be new: its name must last too.
		err = syncDir(filepath.Dir(q.store.bucket(newID)), q.cfg.Faults)
	}
	if err != nil {
		q.store.remove(newID)
		return nil, err
	}
	return &item{id: newID, env: &env, off: int64(len(line)), size: n, st: st, idx: -1}, nil
}

// writeSynced writes a file and syncs its contents (its name is made
// durable by the directory sync that follows).
func (q *Queue) writeSynced(path string, data []byte) error {
	if err := q.store.writeDirect(path, data); err != nil {
		return err
	}
	if err := q.cfg.Faults.check(OpSync, path); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("queue: sync %s: %w", path, err)
	}
	return nil
}

// commitSplit records the original's new state (moved recipients marked)
// and waits until it is durable.
func (q *Queue) commitSplit(c *splitting) error {
	st := c.st.clone()
	for _, i := range c.move {
		st.Rcpts[i].Status = Moved
	}
	if err := q.persist(&item{id: c.it.id, st: st}); err != nil {
		return err
	}
	c.st = st
	return nil
}

// endSplit releases the claim: with a copy, the original takes its new
// state and the copy joins the queue, and the split's ticket is taken. A
// deletion asked for meanwhile removes both (it was meant for the whole
// message); a hold asked for meanwhile is returned for the caller to
// apply to both. It returns the deletions to commit.
func (q *Queue) endSplit(c *splitting, newIt *item) (dels []change, split *change, hold string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := c.it
	q.setIdle(it)
	hold, it.holdReq = it.holdReq, ""
	if newIt != nil {
		it.st = c.st
		q.items[newIt.id] = newIt
		q.schedule(newIt)
	}
	if it.del {
		dels = append(dels, q.deleteLocked(it, "deleted during split"))
		if newIt != nil {
			dels = append(dels, q.deleteLocked(newIt, "deleted during split"))
		}
		return dels, nil, ""
	}
	q.schedule(it)
	if newIt != nil {
		split = &change{ticket: q.ev.reserve()}
	}
	return dels, split, hold
}
