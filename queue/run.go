package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/postern/postern"
)

// Run delivers queued messages until ctx is done, then waits for the
// attempts under way (which see ctx cancelled) and records their results.
// Only one Run may be active at a time.
func (q *Queue) Run(ctx context.Context) error {
	if q.cfg.Deliverer == nil {
		return fmt.Errorf("%w: Run needs a Deliverer", ErrConfig)
	}
	if !q.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Run is already active", ErrConfig)
	}
	defer q.running.Store(false)
	slots := make(chan struct{}, q.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		now := q.cfg.Clock()
		wait := time.Hour
		for q.sched.Len() > 0 {
			it := q.sched[0]
			if d := it.st.NextAttempt.Sub(now); d > 0 {
				wait = d
				break
			}
			if len(slots) == cap(slots) {
				break // woken when an attempt ends
			}
			slots <- struct{}{}
			heap.Pop(&q.sched)
			it.busy = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots; q.wake() }()
				q.attempt(ctx, it)
			}()
		}
		q.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-q.wakeCh:
		case <-timer.C:
		}
	}
}

// attempt makes one delivery attempt of a message: its pending recipients
// are grouped by destination and the groups delivered concurrently, each
// within the destination's concurrency limit.
func (q *Queue) attempt(ctx context.Context, it *item) {
	q.mu.Lock()
	st := it.st.clone()
	q.mu.Unlock()
	env := it.env
	type group struct {
		dest string
		idx  []int
	}
	var groups []*group
	byDest := map[string]*group{}
	for i, r := range env.Recipients {
		if st.Rcpts[i].Status != Pending {
			continue
		}
		d := q.cfg.Deliverer.Destination(r.Addr)
		g := byDest[d]
		if g == nil {
			g = &group{dest: d}
			byDest[d] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	results := make([]Result, len(env.Recipients))
	durations := make([]time.Duration, len(env.Recipients))
	dests := make([]string, len(env.Recipients))
	attemptNo := st.Attempts + 1

	f, err := q.openData(it)
	if err != nil {
		reply := postern.NewReply(451, postern.ESC(4, 3, 0), "cannot read queued message: "+err.Error())
		for _, g := range groups {
			for _, i := range g.idx {
				results[i] = Result{Reply: reply}
				dests[i] = g.dest
			}
		}
	} else {
		actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
		var wg sync.WaitGroup
		for _, g := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.acquireDest(g.dest)
				defer q.releaseDest(g.dest)
				d := &Delivery{ID: it.id, Envelope: env, Message: f, Size: it.size, Attempt: attemptNo}
				for _, i := range g.idx {
					d.Recipients = append(d.Recipients, env.Recipients[i])
				}
				start := time.Now()
				rs := q.cfg.Deliverer.Deliver(actx, d)
				took := time.Since(start)
				for k, i := range g.idx {
					if k < len(rs) && rs[k].Reply.Code >= 200 && rs[k].Reply.Code < 600 {
						results[i] = rs[k]
					} else {
						results[i] = Result{Reply: postern.NewReply(451, postern.ESC(4, 3, 0),
							"delivery agent gave no valid result for this recipient")}
					}
					durations[i], dests[i] = took, g.dest
				}
			}()
		}
		wg.Wait()
		cancel()
		f.Close()
	}
	q.finish(it, st, results, durations, dests, attemptNo)
}

func (q *Queue) acquireDest(d string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.dests[d] >= q.cfg.DestinationConcurrency {
		q.destCond.Wait()
	}
	q.dests[d]++
}

func (q *Queue) releaseDest(d string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dests[d]--; q.dests[d] <= 0 {
		delete(q.dests, d)
	}
	q.destCond.Broadcast()
}

// finish records the results of an attempt, sends the notifications they
// call for, and reschedules or removes the message. Its events are
// emitted once the new state is durable, in the order of the results.
func (q *Queue) finish(it *item, st State, results []Result, durations []time.Duration, dests []string, attemptNo int) {
	now := q.cfg.Clock()
	env := it.env
	var evs []Event
	var failed, delivered, delayed []int
	for i := range results {
		r := results[i]
		if r.Reply.Code == 0 {
			continue // not attempted
		}
		rs := &st.Rcpts[i]
		rs.Attempts++
		rs.LastAttempt = now
		rs.Reply, rs.RemoteMTA, rs.Relayed = r.Reply, r.RemoteMTA, r.Relayed
		kind, action := EventDeferred, "deferred"
		switch {
		case r.Reply.Code < 300:
			rs.Status = Delivered
			delivered = append(delivered, i)
			kind, action = EventDelivered, "sent"
		case r.Reply.Permanent():
			rs.Status = Failed
			failed = append(failed, i)
			kind, action = EventBounced, "bounced"
		}
		q.log.Info("delivery", "queue_id", it.id, "rcpt", env.Recipients[i].Addr, "stage", "delivery",
			"action", action, "destination", dests[i], "relay", r.RemoteMTA, "attempt", attemptNo,
			"delay", now.Sub(env.Received).Round(time.Millisecond).String(),
			"took", durations[i].Round(time.Millisecond).String(), "code", r.Reply.Code, "tls", r.TLS, "reply", r.Reply.Error())
		evs = append(evs, Event{Kind: kind, ID: it.id, From: env.From, Rcpt: env.Recipients[i].Addr, Destination: dests[i],
			Reply: r.Reply, RemoteMTA: r.RemoteMTA, Attempt: attemptNo, Size: it.size, Duration: durations[i]})
	}
	st.Attempts = attemptNo
	expired, expEvs := q.expire(it, &st, now, attemptNo)
	evs = append(evs, expEvs...)
	if st.pending() {
		st.NextAttempt = now.Add(q.backoff(st.Attempts))
		if age := now.Sub(env.Received); !st.Warned && q.cfg.WarnAfter > 0 && age >= q.cfg.WarnAfter {
			st.Warned = true
			for i := range st.Rcpts {
				if st.Rcpts[i].Status == Pending {
					delayed = append(delayed, i)
				}
			}
		}
	}
	// Notifications go into the queue before the state that makes them
	// due is recorded: a crash in between repeats a notice, never loses it.
	evs = append(evs, q.notify(it, &st, dsnFailed, append(failed, expired...))...)
	evs = append(evs, q.notify(it, &st, dsnDelayed, delayed)...)
	evs = append(evs, q.notify(it, &st, dsnDelivered, delivered)...)
	q.record(it, st, evs)
}

// expire gives up on the pending recipients of a message older than
// ReturnAfter, and returns their indexes and events.
func (q *Queue) expire(it *item, st *State, now time.Time, attemptNo int) ([]int, []Event) {
	env := it.env
	age := now.Sub(env.Received)
	if !st.pending() || age < q.cfg.ReturnAfter {
		return nil, nil
	}
	var expired []int
	var evs []Event
	for i := range st.Rcpts {
		if st.Rcpts[i].Status != Pending {
			continue
		}
		st.Rcpts[i].Status = Failed
		st.Rcpts[i].Expired = true
		expired = append(expired, i)
		q.log.Info("delivery", "queue_id", it.id, "rcpt", env.Recipients[i].Addr, "stage", "delivery",
			"action", "expired", "delay", age.Round(time.Second).String(), "reply", st.Rcpts[i].Reply.Error())
		evs = append(evs, Event{Kind: EventExpired, ID: it.id, From: env.From, Rcpt: env.Recipients[i].Addr,
			Reply: st.Rcpts[i].Reply, Attempt: attemptNo})
	}
	return expired, evs
}

// record makes the outcome of an attempt the message's durable state and
// ends the attempt: a finished message's final state is synced before
// its removal, so a crash in between finds it done rather than
// delivering again. Then the attempt's events are emitted (also when
// the record failed: the attempt happened, and the state holds in
// memory), and a deletion or hold asked for meanwhile is applied.
func (q *Queue) record(it *item, st State, evs []Event) {
	q.mu.Lock()
	c := q.setStateLocked(it, st)
	q.mu.Unlock()
	err := c.err
	if err == nil {
		err = q.wal.wait(c.seq)
	}
	if err == nil && !st.pending() {
		q.remove(it.id)
	}
	if err != nil {
		q.log.Error("queue: could not record delivery state; the message will be retried", "queue_id", it.id, "err", err)
	}
	q.mu.Lock()
	q.setIdle(it)
	hold := it.holdReq
	it.holdReq = ""
	var del *change
	switch {
	case !st.pending():
		delete(q.items, it.id)
	case it.del:
		d := q.deleteLocked(it, "deleted during delivery")
		del = &d
	case hold == "":
		q.schedule(it)
	}
	q.mu.Unlock()
	q.ev.publish(c.ticket, evs...)
	if del != nil {
		if err := q.commit(*del); err != nil {
			q.log.Error("queue: could not record deletion", "queue_id", it.id, "err", err)
		}
	}
	if hold != "" && st.pending() && del == nil {
		if err := q.holdIdle(it, hold); err != nil {
			q.log.Error("queue: could not record hold", "queue_id", it.id, "err", err)
		}
	}
}

// offsetReader reads a file from an offset on: the message bytes after
// the envelope line.
type offsetReader struct {
	f   *os.File
	off int64
}

func (r *offsetReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("queue: negative offset")
	}
	return r.f.ReadAt(p, off+r.off)
}

// openData opens the message bytes of an item, wherever they are now: in
// a log segment or in the data file a checkpoint moved them to. An open
// file stays readable when a checkpoint removes it afterwards.
func (q *Queue) openData(it *item) (*offsetReader, error) {
	var err error
	for range 3 {
		q.mu.Lock()
		path, off := q.store.dataPath(it.id), it.off
		if it.seg != 0 {
			path = q.wal.segPath(it.seg)
		}
		q.mu.Unlock()
		var f *os.File
		if f, err = os.Open(path); err == nil {
			return &offsetReader{f, off}, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
		// Moved by a checkpoint between reading the place and opening it.
	}
	return nil, fmt.Errorf("queue: %w", err)
}

func (r *offsetReader) Close() error { return r.f.Close() }
