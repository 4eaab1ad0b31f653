package queue

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Info describes a queued message for the admin API.
type Info struct {
	ID       string
	Envelope Envelope
	State    State
	// Size is the size of the message bytes.
	Size int64
	// Active is set while a delivery attempt is running.
	Active bool
}

// Held reports whether the message is in the hold area.
func (i *Info) Held() bool { return i.State.Hold != "" }

// ListFilter selects messages (List) and recipients within them
// (SelectRecipients, for DeleteRecipients and BounceRecipients), as
// mailq and postsuper users select by hand. Zero fields match
// everything; given fields must all hold.
//
// Held, Phase, Sender, OlderThan and YoungerThan are about the message.
// Recipient, RcptDomain, Destination and Reply are about its pending
// recipients: a message is selected when one of them meets all of
// those given.
type ListFilter struct {
	// Held: "only" lists held messages, "none" only the others.
	Held string
	// Phase lists only messages in that phase (new, active, deferred,
	// held).
	Phase Phase
	// Sender matches the reverse path by case-insensitive substring;
	// "<>" matches the null sender only.
	Sender string
	// Recipient matches a pending recipient's address by
	// case-insensitive substring.
	Recipient string
	// RcptDomain matches a pending recipient's domain exactly
	// ("example.org", case-insensitive); ".example.org" matches its
	// subdomains instead, as in a mailertable.
	RcptDomain string
	// Destination matches a pending recipient going there
	// (Deliverer.Destination).
	Destination string
	// Reply matches a pending recipient's last reply: a ReplyPattern
	// ("450", "4xx", "5.1.1", "4.2.x", or text such as "User unknown").
	Reply string
	// OlderThan and YoungerThan bound the age of a message (since it
	// was received): at least OlderThan, less than YoungerThan.
	OlderThan, YoungerThan time.Duration
}

// List returns the queued messages matching f, oldest first.
func (q *Queue) List(f ListFilter) []Info {
	sel := q.compile(f)
	now := q.cfg.Clock()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Info
	for _, it := range q.items {
		if !sel.match(it, now) {
			continue
		}
		out = append(out, q.info(it))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Envelope.Received, out[j].Envelope.Received
		if a.Equal(b) {
			return out[i].ID < out[j].ID
		}
		return a.Before(b)
	})
	return out
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func (q *Queue) info(it *item) Info {
	env := *it.env
	env.Recipients = append([]Recipient(nil), it.env.Recipients...)
	return Info{ID: it.id, Envelope: env, State: it.st.clone(), Size: it.size, Active: it.busy}
}

// Show returns one message's envelope and state.
func (q *Queue) Show(id string) (Info, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[id]
	if it == nil {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return q.info(it), nil
}

// Open returns the message bytes of a queued message.
func (q *Queue) Open(id string) (io.ReadCloser, error) {
	q.mu.Lock()
	it := q.items[id]
	q.mu.Unlock()
	if it == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	f, err := q.openData(it)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, 0, it.size), f}, nil
}

// Len returns the number of queued messages and how many are held.
func (q *Queue) Len() (total, held int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if it.st.Hold != "" {
			held++
		}
	}
	return len(q.items), held
}

// Oldest returns when the oldest queued message arrived (zero if none).
func (q *Queue) Oldest() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	var t time.Time
	for _, it := range q.items {
		if t.IsZero() || it.env.Received.Before(t) {
			t = it.env.Received
		}
	}
	return t
}

// Hold moves a message to the hold area with a reason (postsuper -h). A
// message being delivered is held when the attempt ends.
func (q *Queue) Hold(id, reason string) error {
	if reason == "" {
		reason = "held by administrator"
	}
	it, err := q.idleOrLater(id, func(it *item) { it.holdReq = reason })
	if it == nil {
		return err
	}
	return q.holdIdle(it, reason)
}

// idleOrLater returns a message no attempt is delivering; for one being
// delivered it calls later (under the lock, to leave a request the
// attempt applies when it ends) and returns nil.
func (q *Queue) idleOrLater(id string, later func(*item)) (*item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[id]
	if it == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if it.busy {
		later(it)
		return nil, nil
	}
	return it, nil
}

// holdIdle holds a message that is not being delivered; if an attempt
// took it meanwhile, it is held when the attempt ends.
func (q *Queue) holdIdle(it *item, reason string) error {
	return q.update(it, func(st *State) bool {
		if st.Hold == reason {
			return false
		}
		st.Hold, st.HeldAt = reason, q.cfg.Clock()
		return true
	}, func(it *item) error { it.holdReq = reason; return nil }, Event{Kind: EventHeld, ID: it.id, Reason: reason})
}

// Release takes a message out of the hold area (postsuper -H) and
// schedules it for delivery now.
func (q *Queue) Release(id string) error {
	it, err := q.idle(id)
	if err != nil {
		return err
	}
	return q.update(it, func(st *State) bool {
		if st.Hold == "" {
			return false
		}
		st.Hold, st.HeldAt = "", time.Time{}
		st.NextAttempt = q.cfg.Clock()
		return true
	}, func(it *item) error { return fmt.Errorf("%w: %s", ErrBusy, it.id) }, Event{Kind: EventReleased, ID: it.id})
}

// Retry schedules a message for delivery now (postqueue -i).
func (q *Queue) Retry(id string) error {
	it, err := q.idle(id)
	if err != nil {
		return err
	}
	q.mu.Lock()
	it.st.NextAttempt = q.cfg.Clock()
	q.schedule(it)
	q.mu.Unlock()
	q.wake()
	return nil
}

// RetryDestination schedules every message with a pending recipient for
// the destination now (postqueue -s), and returns how many.
func (q *Queue) RetryDestination(dest string) int {
	if q.cfg.Deliverer == nil {
		return 0
	}
	now := q.cfg.Clock()
	sel := q.compile(ListFilter{Destination: dest})
	q.mu.Lock()
	n := 0
	for _, it := range q.items {
		if it.busy || it.st.Hold != "" || !sel.match(it, now) {
			continue
		}
		it.st.NextAttempt = now
		q.schedule(it)
		n++
	}
	q.mu.Unlock()
	q.wake()
	return n
}

// Delete removes a message without notifying anyone (postsuper -d). A
// message being delivered is removed when the attempt ends.
func (q *Queue) Delete(id string) error {
	it, err := q.idleOrLater(id, func(it *item) { it.del = true })
	if it == nil {
		return err
	}
	q.mu.Lock()
	if q.items[id] != it {
		q.mu.Unlock()
		return nil // removed meanwhile
	}
	c := q.deleteLocked(it, "deleted by administrator")
	q.mu.Unlock()
	return q.commit(c)
}

// deleteLocked removes a message, with mu held, and returns the change
// to commit: its removal record and its event.
func (q *Queue) deleteLocked(it *item, reason string) change {
	q.unschedule(it)
	delete(q.items, it.id)
	seq := q.remove(it.id)
	q.log.Info("deleted", "queue_id", it.id, "reason", reason)
	return change{seq: seq, ticket: q.ev.reserve(),
		evs: []Event{{Kind: EventDeleted, ID: it.id, From: it.env.From, Reason: reason}}}
}

// Bounce gives up on every pending recipient of a message at once and
// sends the failure DSN its sender asked for, with the reason as the
// diagnostic (see BounceRecipients). A message being delivered is not
// waited for: ErrBusy.
func (q *Queue) Bounce(id, reason string) error {
	_, err := q.BounceRecipients(doneCtx(), id, allRecipients, reason)
	return err
}

// idle returns a message that no attempt is delivering.
func (q *Queue) idle(id string) (*item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[id]
	if it == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if it.busy {
		return nil, fmt.Errorf("%w: %s", ErrBusy, id)
	}
	return it, nil
}

// update changes a message's state durably and reschedules it, and
// emits ev once the change is durable. A message an attempt or a claim
// took since the caller looked is left to busy.
func (q *Queue) update(it *item, change func(*State) bool, busy func(*item) error, ev Event) error {
	q.mu.Lock()
	if q.items[it.id] != it {
		q.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, it.id)
	}
	if it.busy {
		err := busy(it)
		q.mu.Unlock()
		return err
	}
	st := it.st.clone()
	if !change(&st) {
		q.mu.Unlock()
		return nil
	}
	c := q.setStateLocked(it, st)
	q.unschedule(it)
	q.schedule(it)
	q.mu.Unlock()
	q.wake()
	ev.From = it.env.From
	c.evs = []Event{ev}
	if err := q.commit(c); err != nil {
		return err
	}
	q.log.Info(string(ev.Kind), "queue_id", it.id, "reason", ev.Reason)
	return nil
}
