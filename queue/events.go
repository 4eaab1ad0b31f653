package queue

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/postern/postern"
)

// EventKind says what happened.
type EventKind string

// Event kinds.
const (
	EventEnqueued  EventKind = "enqueued"
	EventDelivered EventKind = "delivered" // one recipient, 2xx
	EventDeferred  EventKind = "deferred"  // one recipient, 4xx, will retry
	EventBounced   EventKind = "bounced"   // one recipient failed for good
	EventExpired   EventKind = "expired"   // one recipient given up after ReturnAfter
	EventDSN       EventKind = "dsn"       // a notification was queued
	EventHeld      EventKind = "held"
	EventReleased  EventKind = "released"
	EventDeleted   EventKind = "deleted"
)

// Event is what the Observer sees: one change of the queue, reported once
// it is durable (see Config.Observer for the order).
type Event struct {
	Kind        EventKind
	ID          string
	From        string
	Rcpt        string
	Destination string
	Reply       postern.Reply
	RemoteMTA   string
	Attempt     int
	Size        int64
	// Duration of the delivery attempt, for delivery events.
	Duration time.Duration
	// Reason: hold reason, DSN kind, or why a message was deleted.
	Reason string
}

// events hands Events to the Observer in the order of the changes that
// made them true, each once its change is durable.
//
// A change takes a ticket when it is made, under the queue's lock and
// with its log record appended in the same critical section, so tickets
// follow the order of the records and of the states Show returns. Once
// the record is synced, the change hands its events in (publish); they
// are emitted strictly by ticket, one batch at a time, by whichever
// publisher finds the next batch ready, so the Observer is never called
// from two goroutines at once and never out of order. publish returns
// when its own batch has been emitted: when a queue method returns, the
// Observer has seen what it did.
//
// Every ticket must be published exactly once (with no events when the
// change did not happen), and nothing may wait for another goroutine
// between taking a ticket and publishing it but for a log sync, or the
// tickets after it would wait for ever.
type events struct {
	obs func(Event)
	log *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond
	next     uint64             // the next ticket to hand out
	head     uint64             // the next ticket to emit
	ready    map[uint64][]Event // published, waiting for the tickets before
	emitting bool
}

func newEvents(obs func(Event), log *slog.Logger) *events {
	e := &events{obs: obs, log: log, ready: make(map[uint64][]Event)}
	e.cond = sync.NewCond(&e.mu)
	return e
}

// reserve hands out the next ticket. Called with the queue's lock held,
// at the point where the change becomes visible.
func (e *events) reserve() uint64 {
	if e.obs == nil {
		return 0
	}
	e.mu.Lock()
	t := e.next
	e.next++
	e.mu.Unlock()
	return t
}

// publish hands in the events of ticket t and returns once they, and the
// events of every ticket before t, have been emitted. Never called with
// the queue's lock held: the Observer may call Show.
func (e *events) publish(t uint64, evs ...Event) {
	if e.obs == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ready[t] = evs
	for e.head <= t {
		batch, ok := e.ready[e.head]
		if e.emitting || !ok {
			// Someone else is emitting, or an earlier change is not
			// durable yet: its publisher will emit ours too, or wake us.
			e.cond.Wait()
			continue
		}
		delete(e.ready, e.head)
		e.emitting = true
		e.mu.Unlock()
		for _, ev := range batch {
			e.call(ev)
		}
		e.mu.Lock()
		e.emitting = false
		e.head++
		e.cond.Broadcast()
	}
}

// call runs the Observer; a panic in it is logged, not spread into the
// queue (the emitter may be a delivery or an SMTP session).
func (e *events) call(ev Event) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("queue: observer panicked", "queue_id", ev.ID, "event", string(ev.Kind), "panic", fmt.Sprint(p))
		}
	}()
	e.obs(ev)
}
