package queue

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pendingOf returns the pending recipients of a message.
func pendingOf(t *testing.T, q *Queue, id string) []string {
	t.Helper()
	info, err := q.Show(id)
	require.NoError(t, err)
	var out []string
	for i, r := range info.Envelope.Recipients {
		if info.State.Rcpts[i].Status == Pending {
			out = append(out, r.Addr)
		}
	}
	return out
}

func (h *harness) enqueueHeld(reason string, rcpts ...string) string {
	env := Envelope{From: "spammer@example.com", Hold: reason, EnvID: "env-1", Ret: "HDRS"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Recipient{Addr: r, Original: r, Notify: []string{"FAILURE"}})
	}
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: offer\r\n\r\nbuy now\r\n"))
	require.NoError(h.t, err)
	return id
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness, id string)
	}{
		{"message in the log", func(*harness, string) {}},
		{"message in its own file", func(h *harness, _ string) {
			h.clock.Advance(2 * time.Minute) // past LogResidence: the checkpoint writes a file
			require.NoError(h.t, h.q.checkpoint())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, nil)
				id := h.enqueueHeld("spam score 12.0", "bob@example.net", "carol@example.net", "dave@example.net")
				tc.setup(h, id)
				orig, err := h.q.Show(id)
				require.NoError(t, err)

				newID, err := h.q.Split(id, []string{"carol@example.net", "bob@example.net"})
				require.NoError(t, err)
				require.NotEqual(t, id, newID)

				cp, err := h.q.Show(newID)
				require.NoError(t, err)
				assert.Equal(t, []string{"bob@example.net", "carol@example.net"}, pendingOf(t, h.q, newID),
					"the copy has the named recipients, in envelope order")
				assert.Equal(t, []string{"dave@example.net"}, pendingOf(t, h.q, id))
				assert.Equal(t, "spam score 12.0", cp.State.Hold, "the copy is held like the original")
				assert.Equal(t, orig.State.HeldAt, cp.State.HeldAt)
				assert.Equal(t, orig.Envelope.From, cp.Envelope.From)
				assert.Equal(t, orig.Envelope.EnvID, cp.Envelope.EnvID)
				assert.Equal(t, orig.Envelope.Ret, cp.Envelope.Ret)
				assert.True(t, orig.Envelope.Received.Equal(cp.Envelope.Received))
				assert.Equal(t, []string{"FAILURE"}, cp.Envelope.Recipients[0].Notify)
				assert.Equal(t, orig.Size, cp.Size)
				assert.Equal(t, h.body(id), h.body(newID), "the same bytes")

				after, err := h.q.Show(id)
				require.NoError(t, err)
				assert.Len(t, after.Envelope.Recipients, 3, "the envelope never changes")
				assert.Equal(t, []RcptStatus{Moved, Moved, Pending},
					[]RcptStatus{after.State.Rcpts[0].Status, after.State.Rcpts[1].Status, after.State.Rcpts[2].Status})
				_, held := h.q.Len()
				assert.Equal(t, 2, held)
				ev := h.events(EventSplit)
				require.Len(t, ev, 1)
				assert.Equal(t, newID, ev[0].Reason)
				assert.Empty(t, h.events(EventEnqueued)[1:], "a split is not a new message for the statistics")

				// A crash now finds both as they were left.
				h.crash()
				h.open()
				assert.Equal(t, []string{"bob@example.net", "carol@example.net"}, pendingOf(t, h.q, newID))
				assert.Equal(t, []string{"dave@example.net"}, pendingOf(t, h.q, id))
				cp, err = h.q.Show(newID)
				require.NoError(t, err)
				assert.Equal(t, "spam score 12.0", cp.State.Hold)

				// Releasing the copy delivers to its recipients only.
				require.NoError(t, h.q.Release(newID))
				h.runUntil(func() bool { total, _ := h.q.Len(); return total == 1 })
				var got []string
				for _, d := range h.del.deliveries() {
					got = append(got, d.rcpt)
					assert.Equal(t, "Subject: offer\r\n\r\nbuy now\r\n", d.body)
				}
				assert.ElementsMatch(t, []string{"bob@example.net", "carol@example.net"}, got)
				assert.Equal(t, []string{"dave@example.net"}, pendingOf(t, h.q, id), "the original stays held")
				assert.Empty(t, h.events(EventDSN), "moving recipients sends no notification")
			})
		})
	}
}

func TestSplitEdgeCases(t *testing.T) {
	h := newHarness(t, nil)
	id := h.enqueueHeld("virus Eicar-Signature", "bob@example.net", "carol@example.net")

	got, err := h.q.Split(id, []string{"bob@example.net", "carol@example.net"})
	require.NoError(t, err)
	assert.Equal(t, id, got, "all of them: nothing to copy")
	total, _ := h.q.Len()
	assert.Equal(t, 1, total)

	for _, tc := range []struct {
		name  string
		id    string
		rcpts []string
		want  error
	}{
		{"no recipients", id, nil, ErrNoRecipient},
		{"not a recipient", id, []string{"mallory@example.net"}, ErrNoRecipient},
		{"compared exactly", id, []string{"BOB@example.net"}, ErrNoRecipient},
		{"no such message", "NOPE", []string{"bob@example.net"}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.q.Split(tc.id, tc.rcpts)
			assert.ErrorIs(t, err, tc.want)
		})
	}

	newID, err := h.q.Split(id, []string{"bob@example.net"})
	require.NoError(t, err)
	_, err = h.q.Split(id, []string{"bob@example.net"})
	assert.ErrorIs(t, err, ErrNoRecipient, "a moved recipient is no longer the original's")
	got, err = h.q.Split(newID, []string{"bob@example.net"})
	require.NoError(t, err)
	assert.Equal(t, newID, got)

	h.q.mu.Lock()
	h.q.items[id].busy = true
	h.q.mu.Unlock()
	_, err = h.q.Split(id, []string{"carol@example.net"})
	assert.ErrorIs(t, err, ErrBusy)
	h.q.mu.Lock()
	h.q.items[id].busy = false
	h.q.mu.Unlock()
}

// A message that is not held can be split too; the copy is due when the
// original was.
func TestSplitUnheld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		id := h.enqueue("alice@example.org", "bob@example.net", "carol@example.net")
		newID, err := h.q.Split(id, []string{"carol@example.net"})
		require.NoError(t, err)
		h.runUntil(func() bool { total, _ := h.q.Len(); return total == 0 })
		var got []string
		for _, d := range h.del.deliveries() {
			got = append(got, d.id+" "+d.rcpt)
		}
		assert.ElementsMatch(t, []string{id + " bob@example.net", newID + " carol@example.net"}, got)
	})
}

// A crash between writing the copy and recording the original's new state
// leaves the recipients in both messages, the copy held: never in neither,
// and never a copy that escaped the hold.
func TestSplitCrashBetweenSteps(t *testing.T) {
	h := newHarness(t, nil)
	id := h.enqueueHeld("spam score 30.1", "bob@example.net", "carol@example.net")
	c, err := h.q.claimSplit(id, []string{"bob@example.net"})
	require.NoError(t, err)
	newIt, err := h.q.writeCopy(c)
	require.NoError(t, err)
	h.crash()
	h.open()
	assert.Equal(t, []string{"bob@example.net", "carol@example.net"}, pendingOf(t, h.q, id))
	assert.Equal(t, []string{"bob@example.net"}, pendingOf(t, h.q, newIt.id))
	info, err := h.q.Show(newIt.id)
	require.NoError(t, err)
	assert.Equal(t, "spam score 30.1", info.State.Hold)
}

// When the copy cannot be written or the original's state cannot be
// recorded, Split fails and the original is unchanged, after a crash too.
func TestSplitFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    Op
		match func(path string) bool
	}{
		{"copy's state file", OpSync, func(p string) bool { return strings.HasSuffix(p, ".st") }},
		{"copy's data file", OpWrite, func(p string) bool { return strings.HasSuffix(p, ".tmp") }},
		{"copy's directory", OpSync, func(p string) bool { return filepath.Base(filepath.Dir(p)) == "q" }},
		{"original's state in the log", OpSync, func(p string) bool { return strings.Contains(p, "/wal/") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			fail := false
			h := newHarness(t, func(c *Config) {
				c.Faults = func(op Op, path string) error {
					mu.Lock()
					defer mu.Unlock()
					if fail && op == tc.op && tc.match(path) {
						return syscall.EIO
					}
					return nil
				}
			})
			id := h.enqueueHeld("spam", "bob@example.net", "carol@example.net")
			mu.Lock()
			fail = true
			mu.Unlock()
			_, err := h.q.Split(id, []string{"bob@example.net"})
			require.ErrorIs(t, err, syscall.EIO)
			mu.Lock()
			fail = false
			mu.Unlock()
			assert.Equal(t, []string{"bob@example.net", "carol@example.net"}, pendingOf(t, h.q, id))
			total, held := h.q.Len()
			assert.Equal(t, 1, total)
			assert.Equal(t, 1, held)

			// It works once the disk does, and the result survives a crash.
			newID, err := h.q.Split(id, []string{"bob@example.net"})
			require.NoError(t, err)
			h.crash()
			h.open()
			assert.Equal(t, []string{"bob@example.net"}, pendingOf(t, h.q, newID))
			assert.Equal(t, []string{"carol@example.net"}, pendingOf(t, h.q, id))
			total, held = h.q.Len()
			assert.Equal(t, 2, total)
			assert.Equal(t, 2, held)
		})
	}
}

// A deletion asked for while a split runs removes the original and the
// copy: it was meant for the whole message.
func TestSplitDeletedMeanwhile(t *testing.T) {
	h := newHarness(t, nil)
	id := h.enqueueHeld("spam", "bob@example.net", "carol@example.net")
	c, err := h.q.claimSplit(id, []string{"bob@example.net"})
	require.NoError(t, err)
	require.NoError(t, h.q.Delete(id), "deferred to the end of the split")
	newIt, err := h.q.writeCopy(c)
	require.NoError(t, err)
	require.NoError(t, h.q.commitSplit(c))
	dels, split, hold := h.q.endSplit(c, newIt)
	assert.Empty(t, hold)
	assert.Nil(t, split, "no split to report: both are gone")
	for _, d := range dels {
		require.NoError(t, h.q.commit(d))
	}
	total, _ := h.q.Len()
	assert.Zero(t, total)
	h.crash()
	h.open()
	total, _ = h.q.Len()
	assert.Zero(t, total, "both deletions survive a crash")
}

// Concurrent splits of one message never put a recipient in two messages.
func TestSplitConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		rcpts := []string{"a@example.net", "b@example.net", "c@example.net", "d@example.net", "e@example.net"}
		id := h.enqueueHeld("spam", rcpts...)
		var wg sync.WaitGroup
		for _, r := range rcpts[:4] {
			wg.Go(func() {
				for {
					_, err := h.q.Split(id, []string{r})
					if err == nil {
						return
					}
					if !assert.ErrorIs(t, err, ErrBusy) {
						return
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		wg.Wait()
		seen := map[string]int{}
		for _, info := range h.q.List(ListFilter{}) {
			for _, r := range pendingOf(t, h.q, info.ID) {
				seen[r]++
			}
		}
		for _, r := range rcpts {
			assert.Equal(t, 1, seen[r], r)
		}
		assert.Equal(t, []string{"e@example.net"}, pendingOf(t, h.q, id))
	})
}
