package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/postern/postern"
)

// Picked is a recipient that DeleteRecipients or BounceRecipients acted
// on, with its state just before (its last reply, for the operator).
type Picked struct {
	Recipient Recipient
	State     RcptState
}

// DeleteRecipients removes the pending recipients of message id that
// pick chooses, without notifying anyone (postsuper -d, for single
// recipients): the message's other recipients stay queued as they were.
// When no pending recipient is left the message is removed. It returns
// the recipients removed (none when pick chose none).
//
// A message being delivered is waited for until the attempt ends (pick
// then sees the attempt's results) or ctx is done (ErrBusy).
//
// Durability: the message's new state, the removed recipients marked
// Deleted, is a synced log record before DeleteRecipients returns, and
// the removal of a message left without recipients likewise. After a
// crash the queue finds the recipients deleted or, if the record did
// not reach the disk, still pending; never half of a record. Observer
// events (EventDeleted with Rcpt set, and one without Rcpt when the
// message goes) are emitted once the change is durable.
func (q *Queue) DeleteRecipients(ctx context.Context, id string, pick RcptFunc, reason string) ([]Picked, error) {
	if reason == "" {
		reason = "deleted by administrator"
	}
	it, err := q.claim(ctx, id)
	if err != nil {
		return nil, err
	}
	st, picked, idx := q.pick(it, pick)
	if len(idx) == 0 {
		return nil, q.release(it)
	}
	for _, i := range idx {
		st.Rcpts[i].Status = Deleted
	}
	evs := pickedEvents(it, EventDeleted, picked, postern.Reply{}, reason)
	if !st.pending() {
		// Nothing left to deliver: the message goes, one durable
		// removal record.
		evs = append(evs, Event{Kind: EventDeleted, ID: it.id, From: it.env.From, Reason: reason})
		if err := q.removeClaimed(it, evs); err != nil {
			return nil, err
		}
		q.logPicked(it, "deleted", picked, reason)
		return picked, nil
	}
	if err := q.commitClaimed(it, st, evs); err != nil {
		q.release(it)
		return nil, err
	}
	q.logPicked(it, "deleted", picked, reason)
	return picked, q.release(it)
}

// BounceRecipients gives up on the pending recipients of message id that
// pick chooses and sends one failure DSN naming them (to the sender, as
// the recipients' NOTIFY asks, or the postmaster as for any failure);
// the message's other recipients stay queued. The diagnostic is reason
// with the recipient's last answer, and the status code keeps that
// answer's subject and detail (a 450 4.1.1 becomes 5.1.1; without one,
// 5.0.0). It returns the recipients bounced.
//
// A message being delivered is waited for as by DeleteRecipients. The
// DSN is queued before the new state is recorded (synced), so a crash
// in between repeats the notice, never loses it; the events
// (EventBounced per recipient) follow the record.
func (q *Queue) BounceRecipients(ctx context.Context, id string, pick RcptFunc, reason string) ([]Picked, error) {
	if reason == "" {
		reason = "delivery cancelled by the administrator"
	}
	it, err := q.claim(ctx, id)
	if err != nil {
		return nil, err
	}
	st, picked, idx := q.pick(it, pick)
	if len(idx) == 0 {
		return nil, q.release(it)
	}
	now := q.cfg.Clock()
	replies := make([]postern.Reply, len(idx))
	var evs []Event
	for k, i := range idx {
		rs := &st.Rcpts[i]
		replies[k] = bounceReply(rs.Reply, reason)
		rs.Status, rs.Reply, rs.RemoteMTA, rs.Relayed, rs.LastAttempt = Failed, replies[k], "", false, now
		evs = append(evs, Event{Kind: EventBounced, ID: it.id, From: it.env.From, Rcpt: picked[k].Recipient.Addr,
			Reply: replies[k], Size: it.size, Reason: reason})
	}
	evs = append(evs, q.notify(it, &st, dsnFailed, idx)...)
	if err := q.commitClaimed(it, st, evs); err != nil {
		q.release(it)
		return nil, err
	}
	for k := range picked {
		q.log.Info("delivery", "queue_id", it.id, "rcpt", picked[k].Recipient.Addr, "stage", "admin",
			"action", "bounced", "code", replies[k].Code, "reply", replies[k].Error())
	}
	if st.pending() {
		return picked, q.release(it)
	}
	// Every recipient is done: the final state is durable, now the
	// removal (as a finished attempt does).
	q.mu.Lock()
	delete(q.items, it.id)
	q.remove(it.id)
	q.setIdle(it)
	q.mu.Unlock()
	return picked, nil
}

// bounceReply is the permanent failure an administrator's bounce
// records: reason, with the last answer when there was one, under the
// last answer's subject and detail (RFC 3463) in class 5.
func bounceReply(last postern.Reply, reason string) postern.Reply {
	esc := postern.ESC(5, 0, 0)
	if e := last.Enhanced; !e.IsZero() && (e[1] != 0 || e[2] != 0) {
		esc = postern.ESC(5, e[1], e[2])
	}
	text := reason
	if last.Code != 0 {
		text += " (last answer: " + last.Error() + ")"
	}
	return postern.NewReply(550, esc, text)
}

// claim waits until nothing else is changing message id (no delivery
// attempt, split or other claim), then marks it busy and takes it out of
// the schedule. When ctx ends first it returns ErrBusy.
func (q *Queue) claim(ctx context.Context, id string) (*item, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		it := q.items[id]
		if it == nil {
			q.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if !it.busy {
			q.unschedule(it)
			it.busy = true
			q.mu.Unlock()
			return it, nil
		}
		idle := q.idleCh
		q.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s", ErrBusy, id)
		}
	}
}

// setIdle ends a busy period and wakes whoever waits in claim; called
// with mu held.
func (q *Queue) setIdle(it *item) {
	it.busy = false
	close(q.idleCh)
	q.idleCh = make(chan struct{})
}

// release ends a claim: a deletion or hold asked for meanwhile is
// applied now, else the message is scheduled again.
func (q *Queue) release(it *item) error {
	q.mu.Lock()
	q.setIdle(it)
	hold := it.holdReq
	it.holdReq = ""
	current := q.items[it.id] == it
	var del *change
	switch {
	case !current:
	case it.del:
		c := q.deleteLocked(it, "deleted by administrator")
		del = &c
	case hold == "":
		q.schedule(it)
	}
	q.mu.Unlock()
	q.wake()
	if del != nil {
		return q.commit(*del)
	}
	if hold != "" && current {
		return q.holdIdle(it, hold)
	}
	return nil
}

// pick returns a copy of a claimed message's state and the pending
// recipients pick chooses.
func (q *Queue) pick(it *item, pick RcptFunc) (State, []Picked, []int) {
	q.mu.Lock()
	st := it.st.clone()
	q.mu.Unlock()
	var picked []Picked
	var idx []int
	for i, r := range it.env.Recipients {
		if st.Rcpts[i].Status == Pending && pick(r, st.Rcpts[i]) {
			picked = append(picked, Picked{Recipient: r, State: st.Rcpts[i]})
			idx = append(idx, i)
		}
	}
	return st, picked, idx
}

// commitClaimed makes st a claimed message's state, durably, and then
// emits evs. A failed write restores the old state and emits nothing.
func (q *Queue) commitClaimed(it *item, st State, evs []Event) error {
	q.mu.Lock()
	old := it.st
	c := q.setStateLocked(it, st)
	q.mu.Unlock()
	c.evs = evs
	if err := q.commit(c); err != nil {
		q.mu.Lock()
		it.st = old
		q.mu.Unlock()
		return err
	}
	return nil
}

// removeClaimed removes a claimed message, waits until the removal is
// durable and then emits evs.
func (q *Queue) removeClaimed(it *item, evs []Event) error {
	q.mu.Lock()
	delete(q.items, it.id)
	c := change{seq: q.remove(it.id), ticket: q.ev.reserve(), evs: evs}
	q.setIdle(it)
	q.mu.Unlock()
	return q.commit(c)
}

func (q *Queue) logPicked(it *item, action string, picked []Picked, reason string) {
	for _, p := range picked {
		last := ""
		if p.State.Reply.Code != 0 {
			last = p.State.Reply.Error()
		}
		q.log.Info(action, "queue_id", it.id, "rcpt", p.Recipient.Addr, "stage", "admin", "action", action,
			"reason", reason, "last_reply", last)
	}
}

// pickedEvents returns one event per recipient picked.
func pickedEvents(it *item, kind EventKind, picked []Picked, reply postern.Reply, reason string) []Event {
	evs := make([]Event, 0, len(picked)+1)
	for _, p := range picked {
		evs = append(evs, Event{Kind: kind, ID: it.id, From: it.env.From, Rcpt: p.Recipient.Addr, Reply: reply, Reason: reason})
	}
	return evs
}

// allRecipients picks every pending recipient.
func allRecipients(Recipient, RcptState) bool { return true }

// doneCtx is a context that has ended: claim with it fails at once on a
// busy message.
func doneCtx() context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), time.Time{})
	cancel()
	return ctx
}
