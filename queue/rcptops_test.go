package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func addrs(ps []Picked) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Recipient.Addr)
	}
	return out
}

func statuses(t *testing.T, q *Queue, id string) []RcptStatus {
	t.Helper()
	info, err := q.Show(id)
	require.NoError(t, err)
	var out []RcptStatus
	for _, r := range info.State.Rcpts {
		out = append(out, r.Status)
	}
	return out
}

// "User unknown" mail stuck in the queue is deleted recipient by
// recipient; the other recipients of the same message stay queued and
// are delivered later; the last one removed takes the message along.
func TestDeleteRecipients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.del.answer = stuck
		id := h.enqueue("alice@example.org", "gone1@example.org", "bob@example.org", "full@example.org", "gone2@example.org")
		h.attempted(id)
		ctx := context.Background()

		got, err := h.q.DeleteRecipients(ctx, id, h.q.SelectRecipients(ListFilter{Reply: "User unknown"}), "")
		require.NoError(t, err)
		assert.Equal(t, []string{"gone1@example.org", "gone2@example.org"}, addrs(got))
		assert.Equal(t, 450, got[0].State.Reply.Code, "the last reply comes back for the operator")
		assert.Equal(t, []RcptStatus{Deleted, Delivered, Pending, Deleted}, statuses(t, h.q, id))
		ev := h.events(EventDeleted)
		require.Len(t, ev, 2)
		assert.Equal(t, "gone1@example.org", ev[0].Rcpt)
		assert.Equal(t, "deleted by administrator", ev[0].Reason)

		// Nothing more matches: nothing happens.
		got, err = h.q.DeleteRecipients(ctx, id, h.q.SelectRecipients(ListFilter{Reply: "User unknown"}), "")
		require.NoError(t, err)
		assert.Empty(t, got)
		assert.Len(t, h.events(EventDeleted), 2)

		// The one left is delivered when its mailbox has room again, and
		// nobody else is tried again.
		h.del.answer = func(*Delivery, Recipient) Result { return ok() }
		h.clock.Advance(time.Hour)
		h.runUntil(func() bool { total, _ := h.q.Len(); return total == 0 })
		var to []string
		for _, d := range h.del.deliveries() {
			to = append(to, d.rcpt)
		}
		assert.Equal(t, []string{"bob@example.org", "full@example.org"}, to)
		assert.Empty(t, h.events(EventDSN), "a deletion notifies nobody")

		// Deleting the last pending recipients removes the message.
		h.del.answer = stuck
		id2 := h.enqueue("alice@example.org", "gone3@example.org", "bob@example.org")
		h.attempted(id2)
		got, err = h.q.DeleteRecipients(ctx, id2, h.q.SelectRecipients(ListFilter{}), "cleanup")
		require.NoError(t, err)
		assert.Equal(t, []string{"gone3@example.org"}, addrs(got))
		_, err = h.q.Show(id2)
		assert.ErrorIs(t, err, ErrNotFound)
		last := h.events(EventDeleted)
		assert.Equal(t, Event{Kind: EventDeleted, ID: id2, From: "alice@example.org", Reason: "cleanup"}, last[len(last)-1],
			"the message's own event after its recipients'")

		_, err = h.q.DeleteRecipients(ctx, "nope", h.q.SelectRecipients(ListFilter{}), "")
		assert.ErrorIs(t, err, ErrNotFound)
	})
}

// A per-recipient deletion survives a crash from the log alone, from
// the log after the files were lost, and after a checkpoint; replay
// never brings a deleted recipient back, and a message whose last
// recipient was deleted stays gone.
func TestDeleteRecipientsCrashReplay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(h *harness)
	}{
		{"replayed from the log", func(*harness) {}},
		{"files lost, replayed from the log", func(h *harness) {
			require.NoError(t, os.RemoveAll(filepath.Join(h.dir, "q")))
		}},
		{"after a checkpoint into files", func(h *harness) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, func(c *Config) { c.CheckpointInterval = time.Hour })
				h.del.answer = stuck
				id := h.enqueue("alice@example.org", "gone1@example.org", "full@example.org", "gone2@example.org")
				gone := h.enqueue("alice@example.org", "gone3@example.org")
				h.attempted(id, gone)
				if tc.name == "after a checkpoint into files" {
					h.clock.Advance(2 * time.Minute) // past LogResidence
					require.NoError(t, h.q.checkpoint())
				}
				ctx := context.Background()
				_, err := h.q.DeleteRecipients(ctx, id, h.q.SelectRecipients(ListFilter{Reply: "4.1.1"}), "")
				require.NoError(t, err)
				_, err = h.q.DeleteRecipients(ctx, gone, h.q.SelectRecipients(ListFilter{}), "")
				require.NoError(t, err)
				h.crash()
				tc.after(h)
				h.open()

				assert.Equal(t, []RcptStatus{Deleted, Pending, Deleted}, statuses(t, h.q, id))
				_, err = h.q.Show(gone)
				assert.ErrorIs(t, err, ErrNotFound, "the message without recipients stays gone")
				h.del.answer = func(*Delivery, Recipient) Result { return ok() }
				h.clock.Advance(time.Hour)
				h.runUntil(func() bool { total, _ := h.q.Len(); return total == 0 })
				var to []string
				for _, d := range h.del.deliveries() {
					to = append(to, d.rcpt)
				}
				assert.Equal(t, []string{"full@example.org"}, to, "a deleted recipient is never delivered")
			})
		})
	}
}

// A deletion whose record cannot be written changes nothing and tells
// no observer.
func TestDeleteRecipientsFailedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		fail := false
		h := newHarness(t, func(c *Config) {
			c.Faults = func(op Op, path string) error {
				mu.Lock()
				defer mu.Unlock()
				if fail && op == OpSync && strings.Contains(path, "/wal/") {
					return syscall.EIO
				}
				return nil
			}
		})
		h.del.answer = stuck
		id := h.enqueue("alice@example.org", "gone1@example.org", "full@example.org")
		h.attempted(id)
		mu.Lock()
		fail = true
		mu.Unlock()
		_, err := h.q.DeleteRecipients(context.Background(), id, h.q.SelectRecipients(ListFilter{Reply: "4.1.1"}), "")
		require.ErrorIs(t, err, syscall.EIO)
		assert.Equal(t, []RcptStatus{Pending, Pending}, statuses(t, h.q, id))
		assert.Empty(t, h.events(EventDeleted))
		mu.Lock()
		fail = false
		mu.Unlock()
		_, err = h.q.DeleteRecipients(context.Background(), id, h.q.SelectRecipients(ListFilter{Reply: "4.1.1"}), "")
		require.NoError(t, err)
		assert.Equal(t, []RcptStatus{Deleted, Pending}, statuses(t, h.q, id))
	})
}

// An operation on a message being delivered waits for the attempt and
// sees its results; one that cannot wait long enough is refused with
// ErrBusy and changes nothing.
func TestRecipientOpsWaitForAttempt(t *testing.T) {
	h := newHarness(t, nil)
	gate := make(chan struct{})
	started := make(chan struct{}, 10)
	h.del.answer = func(d *Delivery, r Recipient) Result {
		started <- struct{}{}
		<-gate
		return stuck(d, r)
	}
	id := h.enqueue("alice@example.org", "gone1@example.org")
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error)
	go func() { runDone <- h.q.Run(ctx) }()
	<-started
	info, err := h.q.Show(id)
	require.NoError(t, err)
	assert.Equal(t, PhaseActive, info.Phase())
	assert.Equal(t, []string{id}, ids(h.q.List(ListFilter{Phase: PhaseActive})))

	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = h.q.DeleteRecipients(short, id, h.q.SelectRecipients(ListFilter{}), "")
	cancelShort()
	assert.ErrorIs(t, err, ErrBusy)
	assert.ErrorIs(t, h.q.Bounce(id, ""), ErrBusy, "Bounce does not wait")

	type res struct {
		got []Picked
		err error
	}
	done := make(chan res)
	go func() {
		got, err := h.q.DeleteRecipients(context.Background(), id, h.q.SelectRecipients(ListFilter{Reply: "user unknown"}), "")
		done <- res{got, err}
	}()
	close(gate) // the attempt ends with 450 User unknown
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, []string{"gone1@example.org"}, addrs(r.got), "the deletion saw the attempt's answer")
	_, err = h.q.Show(id)
	assert.ErrorIs(t, err, ErrNotFound)
	cancel()
	require.NoError(t, <-runDone)
}

// Bouncing some recipients sends one DSN that names only them, with
// their last answer; the others stay queued.
func TestBounceRecipients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.del.answer = stuck
		env := Envelope{From: "alice@example.org", EnvID: "env-7", Recipients: []Recipient{
			{Addr: "gone1@example.org", Original: "gone1@example.org"},
			{Addr: "full@example.org", Original: "full@example.org"},
			{Addr: "gone2@example.org", Original: "gone2@example.org", Notify: []string{"NEVER"}},
			{Addr: "down@partner.example", Original: "down@partner.example"},
		}}
		id, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: report\r\nMessage-ID: <r@example.org>\r\n\r\nhello\r\n"))
		require.NoError(t, err)
		h.attempted(id)

		got, err := h.q.BounceRecipients(context.Background(), id, h.q.SelectRecipients(ListFilter{Reply: "user unknown"}), "the user has left")
		require.NoError(t, err)
		assert.Equal(t, []string{"gone1@example.org", "gone2@example.org"}, addrs(got))
		assert.Equal(t, []RcptStatus{Failed, Pending, Failed, Pending}, statuses(t, h.q, id))

		dsns := h.q.List(ListFilter{Sender: "<>"})
		require.Len(t, dsns, 1, "one notice")
		assert.Equal(t, "alice@example.org", dsns[0].Envelope.Recipients[0].Addr)
		b := h.body(dsns[0].ID)
		assert.Contains(t, b, "Final-Recipient: rfc822; gone1@example.org")
		assert.NotContains(t, b, "gone2@example.org", "NOTIFY=NEVER: not in the notice")
		assert.NotContains(t, b, "full@example.org")
		assert.NotContains(t, b, "down@partner.example")
		assert.Contains(t, b, "Action: failed")
		assert.Contains(t, b, "Status: 5.1.1", "the answer's subject and detail, made permanent")
		assert.Contains(t, b, "the user has left (last answer: 450 4.1.1")
		bounced := h.events(EventBounced)
		require.Len(t, bounced, 2)
		assert.Equal(t, "gone1@example.org", bounced[0].Rcpt)
		assert.Equal(t, 550, bounced[0].Reply.Code)

		// The rest, bounced as a whole, takes the message along; a reply
		// without an enhanced code gives 5.0.0.
		h.crash()
		h.open()
		assert.Equal(t, []RcptStatus{Failed, Pending, Failed, Pending}, statuses(t, h.q, id), "recorded before the call returned")
		require.NoError(t, h.q.Bounce(id, ""))
		_, err = h.q.Show(id)
		assert.ErrorIs(t, err, ErrNotFound)
		var second string
		for _, d := range h.q.List(ListFilter{Sender: "<>"}) {
			if d.ID != dsns[0].ID {
				second = h.body(d.ID)
			}
		}
		assert.Contains(t, second, "Final-Recipient: rfc822; full@example.org")
		assert.Contains(t, second, "Status: 5.2.2")
		assert.Contains(t, second, "Final-Recipient: rfc822; down@partner.example")
		assert.Contains(t, second, "Status: 5.4.1")
		assert.Contains(t, second, "delivery cancelled by the administrator")
	})
}

func TestBounceReply(t *testing.T) {
	assert.Equal(t, postern.NewReply(550, postern.ESC(5, 0, 0), "gone"), bounceReply(postern.Reply{}, "gone"))
	assert.Equal(t, postern.NewReply(550, postern.ESC(5, 0, 0), "gone (last answer: 451 try later)"),
		bounceReply(postern.NewReply(451, postern.EnhancedCode{}, "try later"), "gone"))
	assert.Equal(t, postern.NewReply(550, postern.ESC(5, 0, 0), "gone (last answer: 421 4.0.0 bye)"),
		bounceReply(postern.NewReply(421, postern.ESC(4, 0, 0), "bye"), "gone"))
	assert.Equal(t, postern.NewReply(550, postern.ESC(5, 7, 1), "gone (last answer: 450 4.7.1 greylisted)"),
		bounceReply(postern.NewReply(450, postern.ESC(4, 7, 1), "greylisted"), "gone"))
}
