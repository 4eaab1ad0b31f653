package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// seen is one event as the Observer saw it, with what Show returned from
// inside the Observer.
type seen struct {
	ev    Event
	info  Info
	found bool
}

// TestObserverOrderUnderConcurrency: many clients enqueue while the
// queue delivers (some recipients delivered, some deferred, some
// bounced with a notice), and held messages are released. The Observer
// is called from one goroutine at a time; every event comes after the
// state it reports is in place (Show from inside the Observer reflects
// it); a message's "enqueued" comes before anything else about it; a
// notice's own "enqueued" before the "dsn" of the message it reports on,
// which follows that message's "bounced"; and a method returns only once
// the Observer has seen what it did.
func TestObserverOrderUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu       sync.Mutex
			log      []seen
			inside   atomic.Int32
			overlaps atomic.Int32
		)
		var q *Queue
		h := newHarness(t, func(c *Config) {
			c.Observer = func(e Event) {
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				defer inside.Add(-1)
				info, err := q.Show(e.ID)
				mu.Lock()
				log = append(log, seen{ev: e, info: info, found: err == nil})
				mu.Unlock()
			}
		})
		q = h.q
		h.del.answer = func(_ *Delivery, r Recipient) Result {
			switch {
			case strings.HasPrefix(r.Addr, "later"):
				return Result{Reply: postern.NewReply(451, postern.ESC(4, 3, 0), "try later")}
			case strings.HasPrefix(r.Addr, "gone"):
				return Result{Reply: postern.NewReply(550, postern.ESC(5, 1, 1), "User unknown")}
			}
			return ok()
		}
		sawEvent := func(kind EventKind, id string) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range log {
				if s.ev.Kind == kind && s.ev.ID == id {
					return true
				}
			}
			return false
		}

		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error)
		go func() { ran <- q.Run(ctx) }()
		const clients, each = 8, 12
		var wg sync.WaitGroup
		errs := make(chan error, clients*each)
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range each {
					env := Envelope{From: fmt.Sprintf("sender%d@example.org", c)}
					for _, r := range []string{"ok", "later", "gone"}[:1+n%3] {
						env.Recipients = append(env.Recipients, Recipient{Addr: fmt.Sprintf("%s%d-%d@example.net", r, c, n)})
					}
					if n%4 == 3 {
						env.Hold = "quarantine"
					}
					id, err := q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
					if err == nil && !sawEvent(EventEnqueued, id) {
						err = fmt.Errorf("Enqueue of %s returned before its event", id)
					}
					if err == nil && env.Hold != "" {
						if !sawEvent(EventHeld, id) {
							err = fmt.Errorf("held %s: no event yet", id)
						} else if err = q.Release(id); err == nil && !sawEvent(EventReleased, id) {
							err = fmt.Errorf("Release of %s returned before its event", id)
						}
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Done, once the queue is idle, when only the deferred messages are
		// left and every bounce's notice was delivered.
		synctest.Wait()
		for _, m := range q.List(ListFilter{}) {
			assert.False(t, m.Active, m.ID)
			assert.NotZero(t, m.State.Attempts, m.ID)
		}
		total, _ := q.Len()
		assert.Equal(t, clients*each*2/3, total)
		cancel()
		require.NoError(t, <-ran)

		mu.Lock()
		defer mu.Unlock()
		assert.Zero(t, overlaps.Load(), "the Observer is never called from two goroutines at once")
		checkEventOrder(t, log)
	})
}

// checkEventOrder checks the order of the events and what Show said
// inside the Observer.
func checkEventOrder(t *testing.T, log []seen) {
	t.Helper()
	enqueued := map[string]bool{}
	bounced := map[string]bool{}
	notices := 0 // enqueued from the null sender: DSNs
	dsns := 0
	kinds := map[EventKind]int{}
	for i, s := range log {
		e := s.ev
		kinds[e.Kind]++
		where := fmt.Sprintf("event %d (%s %s %s)", i, e.Kind, e.ID, e.Rcpt)
		if e.Kind != EventEnqueued && !enqueued[e.ID] {
			t.Errorf("%s: before the message's enqueued event", where)
		}
		rcpt := func() (RcptState, bool) {
			for k, r := range s.info.Envelope.Recipients {
				if r.Addr == e.Rcpt {
					return s.info.State.Rcpts[k], true
				}
			}
			return RcptState{}, false
		}
		switch e.Kind {
		case EventEnqueued:
			if enqueued[e.ID] {
				t.Errorf("%s: enqueued twice", where)
			}
			enqueued[e.ID] = true
			if e.From == "" {
				notices++
			}
		case EventHeld:
			if !s.found || !s.info.Held() {
				t.Errorf("%s: Show does not see the hold (found %v)", where, s.found)
			}
		case EventReleased:
			if s.found && s.info.Held() {
				t.Errorf("%s: Show still sees the hold", where)
			}
		case EventDelivered, EventDeferred, EventBounced:
			want := map[EventKind]RcptStatus{EventDelivered: Delivered, EventDeferred: Pending, EventBounced: Failed}[e.Kind]
			if e.Kind == EventDeferred && !s.found {
				t.Errorf("%s: a deferred message is gone", where)
			}
			if !s.found {
				continue // finished and removed: a later state
			}
			rs, ok := rcpt()
			if !ok || rs.Status != want || rs.Reply.Code != e.Reply.Code || rs.Attempts < 1 {
				t.Errorf("%s: Show says %+v, not yet what the event reports", where, rs)
			}
			if e.Kind == EventBounced {
				bounced[e.ID] = true
			}
		case EventDSN:
			dsns++
			if !bounced[e.ID] {
				t.Errorf("%s: the notice is reported before the bounce", where)
			}
			if notices < dsns {
				t.Errorf("%s: reported before the notice's own enqueued event", where)
			}
		}
	}
	// 8 clients × 12 messages: a third each with one, two and three
	// recipients (ok, later, gone); every gone one bounced with a notice.
	assert.Equal(t, 96+32, kinds[EventEnqueued], "96 messages and 32 notices")
	assert.Equal(t, 96+32, kinds[EventDelivered], "one ok recipient each, and the notices")
	assert.Equal(t, 64, kinds[EventDeferred])
	assert.Equal(t, 32, kinds[EventBounced])
	assert.Equal(t, 32, kinds[EventDSN])
	assert.Equal(t, 24, kinds[EventHeld])
	assert.Equal(t, 24, kinds[EventReleased])
}

// Each kind of change reports after its state is in place: a hold, a
// deletion, a per-recipient bounce with its notice, a split.
func TestObserverSeesAdminChanges(t *testing.T) {
	var q *Queue
	var mu sync.Mutex
	var got []string
	h := newHarness(t, func(c *Config) {
		c.Observer = func(e Event) {
			info, err := q.Show(e.ID)
			state := "gone"
			if err == nil {
				state = fmt.Sprintf("%v %s", info.State.Hold != "", info.State.Rcpts[0].Status)
			} else if !errors.Is(err, ErrNotFound) {
				state = err.Error()
			}
			mu.Lock()
			got = append(got, fmt.Sprintf("%s %s", e.Kind, state))
			mu.Unlock()
		}
	})
	q = h.q
	id := h.enqueue("alice@example.org", "bob@example.net", "carol@example.net")
	require.NoError(t, q.Hold(id, "look"))
	_, err := q.BounceRecipients(context.Background(), id, func(r Recipient, _ RcptState) bool {
		return r.Addr == "bob@example.net"
	}, "")
	require.NoError(t, err)
	id2, err := q.Enqueue(context.Background(), Envelope{From: "alice@example.org", Hold: "spam",
		Recipients: []Recipient{{Addr: "x@example.net"}, {Addr: "y@example.net"}}}, strings.NewReader("Subject: y\r\n\r\ny\r\n"))
	require.NoError(t, err)
	_, err = q.Split(id2, []string{"y@example.net"})
	require.NoError(t, err)
	require.NoError(t, q.Delete(id))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{
		"enqueued false pending",
		"held true pending",
		"enqueued false pending", // the notice to alice
		"bounced true failed",
		"dsn true failed",
		"enqueued true pending",
		"held true pending",
		"split true pending",
		"deleted gone",
	}, got)
}
