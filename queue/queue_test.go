package queue

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// fakeDeliverer answers from a function; it records what it was given.
type fakeDeliverer struct {
	mu     sync.Mutex
	answer func(d *Delivery, r Recipient) Result
	got    []delivered
}

type delivered struct {
	id, rcpt, body string
	attempt        int
}

func (f *fakeDeliverer) Destination(rcpt string) string { return postern.AddrDomain(rcpt) }

func (f *fakeDeliverer) Deliver(_ context.Context, d *Delivery) []Result {
	body, _ := io.ReadAll(io.NewSectionReader(d.Message, 0, d.Size))
	f.mu.Lock()
	answer := f.answer
	f.mu.Unlock()
	var out []Result
	for _, r := range d.Recipients {
		res := answer(d, r)
		if res.Reply.Code < 300 {
			f.mu.Lock()
			f.got = append(f.got, delivered{d.ID, r.Addr, string(body), d.Attempt})
			f.mu.Unlock()
		}
		out = append(out, res)
	}
	return out
}

func (f *fakeDeliverer) deliveries() []delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]delivered(nil), f.got...)
}

func ok() Result {
	return Result{Reply: postern.NewReply(250, postern.ESC(2, 0, 0), "ok"), RemoteMTA: "mx.example.net"}
}

type harness struct {
	t     *testing.T
	dir   string
	clock *testutil.Clock
	del   *fakeDeliverer
	q     *Queue
	cfg   Config
	evMu  sync.Mutex
	evs   []Event
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	h := &harness{t: t, dir: t.TempDir(), clock: testutil.NewClock(),
		del: &fakeDeliverer{answer: func(*Delivery, Recipient) Result { return ok() }}}
	h.cfg = Config{Dir: h.dir, Hostname: "relay.example.org", Deliverer: h.del, Clock: h.clock.Now,
		Rand: func() float64 { return 0.5 }, Observer: func(e Event) {
			h.evMu.Lock()
			h.evs = append(h.evs, e)
			h.evMu.Unlock()
		}}
	if mod != nil {
		mod(&h.cfg)
	}
	h.open()
	t.Cleanup(func() {
		if h.q != nil {
			h.q.Close()
		}
	})
	return h
}

func (h *harness) open() {
	q, err := Open(h.cfg)
	require.NoError(h.t, err)
	h.q = q
}

// crash drops the queue as a kill -9 would: no checkpoint, no close.
func (h *harness) crash() {
	h.q.mu.Lock()
	h.q.closed = true
	h.q.mu.Unlock()
	close(h.q.ckptCh)
	<-h.q.ckptDone
	h.q.wal.mu.Lock()
	if h.q.wal.seg != nil {
		h.q.wal.seg.Close()
		h.q.wal.seg = nil
	}
	h.q.wal.closed = true
	h.q.wal.mu.Unlock()
	h.q.lock.Close()
	h.q = nil
}

func (h *harness) enqueue(from string, rcpts ...string) string {
	env := Envelope{From: from}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Recipient{Addr: r, Original: r})
	}
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: test\r\nMessage-ID: <m1@example.net>\r\n\r\nhello\r\n"))
	require.NoError(h.t, err)
	return id
}

// runUntil runs the queue, in the test's synctest bubble, until it is
// idle: every attempt that is due has been made and recorded. Then cond
// must hold.
func (h *harness) runUntil(cond func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.q.Run(ctx) }()
	synctest.Wait()
	assert.True(h.t, cond(), "once the queue is idle")
	cancel()
	require.NoError(h.t, <-done)
}

func (h *harness) events(kind EventKind) []Event {
	h.evMu.Lock()
	defer h.evMu.Unlock()
	var out []Event
	for _, e := range h.evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestDeliverAndRemove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		id := h.enqueue("alice@example.org", "bob@example.net", "carol@example.net")
		total, _ := h.q.Len()
		require.Equal(t, 1, total)
		h.runUntil(func() bool { total, _ := h.q.Len(); return total == 0 })
		got := h.del.deliveries()
		require.Len(t, got, 2)
		assert.Equal(t, id, got[0].id)
		assert.Contains(t, got[0].body, "hello\r\n")
		assert.NotContains(t, got[0].body, `"from"`, "the envelope line is not part of the message")
		_, err := os.Stat(h.q.store.dataPath(id))
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestPartialDeliveryResumesAfterCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.del.answer = func(_ *Delivery, r Recipient) Result {
			if r.Addr == "later@example.com" {
				return Result{Reply: postern.NewReply(451, postern.ESC(4, 3, 0), "try later")}
			}
			return ok()
		}
		id := h.enqueue("alice@example.org", "bob@example.net", "later@example.com")
		h.runUntil(func() bool { return len(h.del.deliveries()) == 1 })
		info, err := h.q.Show(id)
		require.NoError(t, err)
		require.False(t, info.Active)
		require.Equal(t, 1, info.State.Attempts)
		h.crash()
		h.open()
		info, err = h.q.Show(id)
		require.NoError(t, err, "the message is found again after the crash")
		assert.Equal(t, Delivered, info.State.Rcpts[0].Status)
		assert.Equal(t, Pending, info.State.Rcpts[1].Status)
		assert.Equal(t, 451, info.State.Rcpts[1].Reply.Code)
		assert.Equal(t, h.clock.Now().Add(5*time.Minute), info.State.NextAttempt, "first backoff: 5 min (jitter 0.5 is ×1.0)")

		h.del.answer = func(*Delivery, Recipient) Result { return ok() }
		h.clock.Advance(10 * time.Minute)
		h.runUntil(func() bool { total, _ := h.q.Len(); return total == 0 })
		got := h.del.deliveries()
		require.Len(t, got, 2, "bob is not delivered twice")
		assert.Equal(t, "later@example.com", got[1].rcpt)
		assert.Equal(t, 2, got[1].attempt)
	})
}

// Run's own timer brings a deferred message back when its backoff ends,
// not before: the queue on the bubble's clock, nothing advanced by hand.
func TestRetryWhenBackoffEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Clock = time.Now })
		var made atomic.Int32
		h.del.answer = func(*Delivery, Recipient) Result {
			if made.Add(1) <= 2 {
				return Result{Reply: postern.NewReply(451, postern.ESC(4, 3, 0), "try later")}
			}
			return ok()
		}
		start := time.Now()
		id := h.enqueue("alice@example.org", "bob@example.net")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- h.q.Run(ctx) }()
		defer func() {
			cancel()
			require.NoError(t, <-done)
		}()
		attempts := func() int {
			synctest.Wait()
			return int(made.Load())
		}
		require.Equal(t, 1, attempts(), "the first attempt at once")
		for n, backoff := range []time.Duration{5 * time.Minute, 10 * time.Minute} {
			info, err := h.q.Show(id)
			require.NoError(t, err)
			assert.Equal(t, time.Now().Add(backoff), info.State.NextAttempt)
			time.Sleep(backoff - time.Second)
			assert.Equal(t, n+1, attempts(), "not before the backoff ends")
			time.Sleep(time.Second)
			assert.Equal(t, n+2, attempts(), "when it ends")
		}
		total, _ := h.q.Len()
		assert.Zero(t, total, "delivered at the third attempt")
		assert.Equal(t, 15*time.Minute, time.Since(start))
	})
}

func TestBackoffDoublesToMax(t *testing.T) {
	h := newHarness(t, nil)
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, h.q.backoff(n))
	}
	assert.Equal(t, []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute,
		4000 * time.Second, 4000 * time.Second, 4000 * time.Second, 4000 * time.Second}, got)
	h.q.cfg.Rand = func() float64 { return 0 }
	assert.Equal(t, 270*time.Second, h.q.backoff(1), "jitter -10 %")
}

func TestReplayRestoresUnsyncedFiles(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = time.Hour })
	id1 := h.enqueue("alice@example.org", "bob@example.net")
	id2 := h.enqueue("alice@example.org", "carol@example.net")
	require.NoError(t, h.q.Hold(id2, "quarantine: spam"))
	h.crash()
	// The files were never synced: pretend the crash lost them all.
	require.NoError(t, os.RemoveAll(filepath.Join(h.dir, "q")))
	// And a torn record at the end of the log (a write cut short).
	segs, _ := filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	require.NotEmpty(t, segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	f.Write([]byte{0, 0, 0, 40, 1, 2, 3, 4, 'M', 0, 3, 'x'})
	f.Close()

	h.open()
	total, held := h.q.Len()
	assert.Equal(t, 2, total)
	assert.Equal(t, 1, held)
	info, err := h.q.Show(id2)
	require.NoError(t, err)
	assert.Equal(t, "quarantine: spam", info.State.Hold)
	rc, err := h.q.Open(id1)
	require.NoError(t, err)
	body, _ := io.ReadAll(rc)
	rc.Close()
	assert.True(t, strings.HasPrefix(string(body), "Subject: test\r\n"))
	segs, _ = filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	assert.Empty(t, segs, "replayed segments are dropped once the files are synced")
}

func TestCheckpointDropsSegments(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = time.Hour; c.LogResidence = -1 })
	h.enqueue("alice@example.org", "bob@example.net")
	segs, _ := filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	require.Len(t, segs, 1)
	require.NoError(t, h.q.checkpoint())
	segs, _ = filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	assert.Empty(t, segs)
	h.enqueue("alice@example.org", "bob@example.net")
	segs, _ = filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	assert.Len(t, segs, 1, "a new segment after the checkpoint")
}

// A young message is carried forward in the log at a checkpoint, with its
// state, and gets a file of its own only once it is older than
// LogResidence.
func TestCheckpointCarriesYoungMessages(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = time.Hour })
	id := h.enqueue("alice@example.org", "bob@example.net")
	require.NoError(t, h.q.Hold(id, "look at it"))
	first, _ := filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	require.Len(t, first, 1)
	require.NoError(t, h.q.checkpoint())
	_, err := os.Stat(first[0])
	assert.ErrorIs(t, err, os.ErrNotExist, "the old segment is gone")
	_, err = os.Stat(h.q.store.dataPath(id))
	assert.ErrorIs(t, err, os.ErrNotExist, "no file for a young message")
	assert.Contains(t, h.body(id), "hello")

	h.crash()
	h.open()
	info, err := h.q.Show(id)
	require.NoError(t, err, "found again from the carried-forward records")
	assert.Equal(t, "look at it", info.State.Hold)

	h.clock.Advance(2 * time.Minute)
	h.q.dirty.Store(true)
	require.NoError(t, h.q.checkpoint())
	h.q.dirty.Store(true)
	require.NoError(t, h.q.checkpoint())
	_, err = os.Stat(h.q.store.dataPath(id))
	assert.NoError(t, err, "an old message gets its own file")
	assert.Contains(t, h.body(id), "hello")
	h.crash()
	h.open()
	info, err = h.q.Show(id)
	require.NoError(t, err)
	assert.Equal(t, "look at it", info.State.Hold)
}

func TestEnqueueErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    Op
		where string
		size  int
	}{
		{"disk full in the log", OpWrite, "/wal/", 100},
		{"log sync fails", OpSync, "/wal/", 100},
		{"large message sync fails", OpSync, "/q/", 2 << 20},
		{"large message write fails", OpWrite, "/q/", 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fail bool
			var mu sync.Mutex
			h := newHarness(t, func(c *Config) {
				c.Faults = func(op Op, path string) error {
					mu.Lock()
					defer mu.Unlock()
					if fail && op == tc.op && strings.Contains(path, tc.where) {
						return syscall.ENOSPC
					}
					return nil
				}
			})
			good := h.enqueue("alice@example.org", "bob@example.net")
			mu.Lock()
			fail = true
			mu.Unlock()
			body := strings.Repeat("x", tc.size)
			_, err := h.q.Enqueue(context.Background(), Envelope{Recipients: []Recipient{{Addr: "a@example.net"}}},
				strings.NewReader(body))
			require.Error(t, err)
			assert.True(t, errors.Is(err, syscall.ENOSPC), "the cause is kept for the 452 answer: %v", err)
			mu.Lock()
			fail = false
			mu.Unlock()
			// The queue still works, and what was acknowledged is there
			// after a crash.
			later := h.enqueue("alice@example.org", "bob@example.net")
			h.crash()
			h.open()
			for _, id := range []string{good, later} {
				_, err := h.q.Show(id)
				assert.NoError(t, err, id)
			}
		})
	}
}

func TestLockedByOtherProcess(t *testing.T) {
	h := newHarness(t, nil)
	_, err := Open(h.cfg)
	assert.ErrorIs(t, err, ErrLocked)
}

func TestAdmin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		a := h.enqueue("alice@example.org", "bob@example.net")
		h.clock.Advance(time.Hour)
		b := h.enqueue("mallory@example.com", "carol@example.com")
		require.NoError(t, h.q.Hold(b, "suspicious"))

		ids := func(in []Info) []string {
			var out []string
			for _, i := range in {
				out = append(out, i.ID)
			}
			return out
		}
		assert.Equal(t, []string{a, b}, ids(h.q.List(ListFilter{})))
		assert.Equal(t, []string{b}, ids(h.q.List(ListFilter{Held: "only"})))
		assert.Equal(t, []string{a}, ids(h.q.List(ListFilter{Held: "none"})))
		assert.Equal(t, []string{b}, ids(h.q.List(ListFilter{Sender: "MALLORY"})))
		assert.Equal(t, []string{a}, ids(h.q.List(ListFilter{Recipient: "bob@"})))
		assert.Equal(t, []string{b}, ids(h.q.List(ListFilter{Destination: "example.com"})))
		assert.Equal(t, []string{a}, ids(h.q.List(ListFilter{OlderThan: 30 * time.Minute})))

		h.runUntil(func() bool { total, _ := h.q.Len(); return total == 1 })
		assert.Len(t, h.del.deliveries(), 1, "the held message is not delivered")
		require.NoError(t, h.q.Release(b))
		assert.Len(t, h.events(EventReleased), 1)
		h.runUntil(func() bool { total, _ := h.q.Len(); return total == 0 })
		assert.Len(t, h.del.deliveries(), 2)

		c := h.enqueue("alice@example.org", "dave@example.net")
		require.NoError(t, h.q.Delete(c))
		_, err := h.q.Show(c)
		assert.ErrorIs(t, err, ErrNotFound)
		assert.ErrorIs(t, h.q.Hold("nope", ""), ErrNotFound)
		h.crash()
		h.open()
		_, err = h.q.Show(c)
		assert.ErrorIs(t, err, ErrNotFound, "a deletion survives a crash")
	})
}

func (h *harness) body(id string) string {
	rc, err := h.q.Open(id)
	require.NoError(h.t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(h.t, err)
	return string(b)
}

func TestNotifications(t *testing.T) {
	reject := func(_ *Delivery, r Recipient) Result {
		if strings.HasPrefix(r.Addr, "gone") {
			return Result{Reply: postern.NewReply(550, postern.ESC(5, 1, 1), "User unknown"), RemoteMTA: "mx.example.net"}
		}
		if strings.HasPrefix(r.Addr, "slow") {
			return Result{Reply: postern.NewReply(451, postern.ESC(4, 2, 0), "mailbox busy"), RemoteMTA: "mx.example.net"}
		}
		return ok()
	}
	t.Run("5xx bounces at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			h.del.answer = reject
			id := h.enqueue("alice@example.org", "gone@example.net", "bob@example.net")
			h.runUntil(func() bool { return len(h.sentTo("alice@example.org")) == 1 })
			_, err := h.q.Show(id)
			assert.ErrorIs(t, err, ErrNotFound, "nothing left to do for the original")
			b := h.sentTo("alice@example.org")[0]
			assert.Contains(t, b, "Action: failed")
			assert.Contains(t, b, "Status: 5.1.1")
			assert.Contains(t, b, "Final-Recipient: rfc822; gone@example.net")
			assert.Contains(t, b, "Diagnostic-Code: smtp; 550 5.1.1 User unknown")
			assert.NotContains(t, b, "Final-Recipient: rfc822; bob@example.net", "bob was delivered")
			ev := h.events(EventDSN)
			require.Len(t, ev, 1)
			assert.Equal(t, id, ev[0].ID)
		})
	})
	t.Run("NOTIFY=NEVER and null sender get none", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			h.del.answer = reject
			env := Envelope{From: "alice@example.org", Recipients: []Recipient{{Addr: "gone@example.net", Notify: []string{"NEVER"}}}}
			_, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			require.NoError(t, err)
			h.enqueue("", "gone@example.net")
			h.runUntil(func() bool { return len(h.events(EventBounced)) == 2 })
			assert.Empty(t, h.events(EventDSN))
		})
	})
	t.Run("double bounce goes to postmaster once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Postmaster = "gone-postmaster@example.org" })
			h.del.answer = reject
			h.enqueue("", "gone@example.net")
			// The notice to the postmaster fails too (gone-…): it is dropped.
			h.runUntil(func() bool { return len(h.events(EventBounced)) == 2 })
			require.Len(t, h.events(EventDSN), 1)
			total, _ := h.q.Len()
			assert.Zero(t, total)
		})
	})
	t.Run("unverified sender: failures to the postmaster, nothing else to the sender", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Postmaster = "postmaster@relay.example.org"; c.WarnAfter = time.Hour })
			h.del.answer = reject
			send := func(rcpt string, notify ...string) {
				env := Envelope{From: "forged@victim.example", UnverifiedSender: true,
					Recipients: []Recipient{{Addr: rcpt, Notify: notify}}}
				_, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
				require.NoError(t, err)
			}
			send("gone@example.net")
			send("bob@example.net", "SUCCESS")
			send("slow@example.net", "DELAY", "FAILURE")
			h.runUntil(func() bool { return len(h.sentTo("postmaster@relay.example.org")) == 1 })
			b := h.sentTo("postmaster@relay.example.org")[0]
			assert.Contains(t, b, "Final-Recipient: rfc822; gone@example.net")
			assert.Contains(t, b, "Status: 5.1.1")
			h.clock.Advance(61 * time.Minute)
			for _, it := range h.q.List(ListFilter{}) {
				require.NoError(t, h.q.Retry(it.ID))
			}
			h.runUntil(func() bool { return len(h.events(EventDeferred)) >= 2 })
			assert.Empty(t, h.sentTo("forged@victim.example"), "no backscatter: no failure, delay or success notice")
			assert.Len(t, h.sentTo("postmaster@relay.example.org"), 1, "no delay notice to the postmaster")
		})
	})
	t.Run("unverified sender without a postmaster: the failure is logged only", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			h.del.answer = reject
			env := Envelope{From: "forged@victim.example", UnverifiedSender: true, Recipients: []Recipient{{Addr: "gone@example.net"}}}
			_, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			require.NoError(t, err)
			h.runUntil(func() bool { return len(h.events(EventBounced)) == 1 })
			assert.Empty(t, h.events(EventDSN))
		})
	})
	t.Run("delay warning then expiry", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.WarnAfter = time.Hour; c.ReturnAfter = 3 * time.Hour })
			h.del.answer = reject
			id := h.enqueue("alice@example.org", "slow@example.net")
			h.runUntil(func() bool { return len(h.events(EventDeferred)) == 1 })
			assert.Empty(t, h.events(EventDSN), "no warning before WarnAfter")
			h.clock.Advance(61 * time.Minute)
			require.NoError(t, h.q.Retry(id))
			h.runUntil(func() bool { return len(h.sentTo("alice@example.org")) == 1 })
			b := h.sentTo("alice@example.org")[0]
			assert.Contains(t, b, "Action: delayed")
			assert.Contains(t, b, "Will-Retry-Until:")

			h.clock.Advance(2 * time.Hour)
			require.NoError(t, h.q.Retry(id))
			h.runUntil(func() bool { return len(h.sentTo("alice@example.org")) == 2 })
			b = h.sentTo("alice@example.org")[1]
			assert.Contains(t, b, "Action: failed")
			assert.Contains(t, b, "Status: 4.4.7")
			assert.Contains(t, b, "451 4.2.0 mailbox busy")
			assert.Len(t, h.events(EventExpired), 1)
			_, err := h.q.Show(id)
			assert.ErrorIs(t, err, ErrNotFound)
		})
	})
	t.Run("success notice when asked", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			env := Envelope{From: "alice@example.org", Recipients: []Recipient{{Addr: "bob@example.net", Notify: []string{"SUCCESS"}}}}
			_, err := h.q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
			require.NoError(t, err)
			h.runUntil(func() bool { return len(h.sentTo("alice@example.org")) == 1 })
			assert.Contains(t, h.sentTo("alice@example.org")[0], "Action: delivered")
		})
	})
	t.Run("admin bounce", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, nil)
			id := h.enqueue("alice@example.org", "bob@example.net")
			require.NoError(t, h.q.Bounce(id, "sender asked us to give up"))
			var dsns []Info
			for _, i := range h.q.List(ListFilter{}) {
				if i.Envelope.DSN {
					dsns = append(dsns, i)
				}
			}
			require.Len(t, dsns, 1)
			assert.Equal(t, "", dsns[0].Envelope.From, "DSNs come from the null sender")
			assert.Contains(t, h.body(dsns[0].ID), "sender asked us to give up")
		})
	})
}

// sentTo returns the bodies delivered to rcpt.
func (h *harness) sentTo(rcpt string) []string {
	var out []string
	for _, d := range h.del.deliveries() {
		if d.rcpt == rcpt {
			out = append(out, d.body)
		}
	}
	return out
}

func TestDestinationConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		running, peak := 0, 0
		h := newHarness(t, func(c *Config) { c.DestinationConcurrency = 2 })
		h.del.answer = func(*Delivery, Recipient) Result {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			<-release
			mu.Lock()
			running--
			mu.Unlock()
			return ok()
		}
		for range 6 {
			h.enqueue("alice@example.org", "bob@example.net")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- h.q.Run(ctx) }()
		synctest.Wait()
		mu.Lock()
		assert.Equal(t, 2, running, "every other attempt waits for the destination")
		mu.Unlock()
		close(release)
		synctest.Wait()
		total, _ := h.q.Len()
		assert.Zero(t, total)
		assert.Equal(t, 2, peak)
		cancel()
		require.NoError(t, <-done)
	})
}

func TestCheckpointFailureKeepsLog(t *testing.T) {
	var fail bool
	var mu sync.Mutex
	h := newHarness(t, func(c *Config) {
		c.CheckpointInterval = time.Hour
		c.LogResidence = -1
		c.Faults = func(op Op, path string) error {
			mu.Lock()
			defer mu.Unlock()
			if fail && op == OpWrite && strings.Contains(path, "/q/") {
				return syscall.ENOSPC
			}
			return nil
		}
	})
	id := h.enqueue("alice@example.org", "bob@example.net")
	mu.Lock()
	fail = true
	mu.Unlock()
	require.ErrorIs(t, h.q.checkpoint(), syscall.ENOSPC)
	segs, _ := filepath.Glob(filepath.Join(h.dir, "wal", "*.log"))
	assert.NotEmpty(t, segs, "the log stays until the files are safe")
	assert.Contains(t, h.body(id), "hello", "still readable from the log")
	mu.Lock()
	fail = false
	mu.Unlock()
	h.crash()
	h.open()
	assert.Contains(t, h.body(id), "hello")
}

func TestCheckpointMovesMessagesOutOfTheLog(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = time.Hour; c.LogResidence = -1 })
	id := h.enqueue("alice@example.org", "bob@example.net")
	_, err := os.Stat(h.q.store.dataPath(id))
	assert.ErrorIs(t, err, os.ErrNotExist, "a new message is only in the log")
	// An attempt that opened the message before the checkpoint keeps
	// reading it after the segment is gone.
	h.q.mu.Lock()
	it := h.q.items[id]
	h.q.mu.Unlock()
	r, err := h.q.openData(it)
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, h.q.checkpoint())
	_, err = os.Stat(h.q.store.dataPath(id))
	assert.NoError(t, err)
	b, err := io.ReadAll(io.NewSectionReader(r, 0, it.size))
	require.NoError(t, err)
	assert.Contains(t, string(b), "hello")
	assert.Contains(t, h.body(id), "hello")
}

// Between a checkpoint's plan and its carrying the young messages
// forward, one message finished and another's attempt started: the first
// is not carried at all, the second gets files of its own (message and
// state) instead of log records that could race the attempt's result.
func TestCheckpointRacesDeliveries(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CheckpointInterval = time.Hour })
	started := h.enqueue("alice@example.org", "bob@example.net")
	finished := h.enqueue("alice@example.org", "carol@example.net")
	p, err := h.q.planCheckpoint()
	require.NoError(t, err)
	require.Len(t, p.moves, 2)
	for _, m := range p.moves {
		require.True(t, m.relocate, "both are young")
	}

	h.q.mu.Lock()
	it := h.q.items[started]
	it.busy = true
	it.st.Attempts = 1
	it.stDirty = true
	delete(h.q.items, finished)
	h.q.mu.Unlock()
	require.NoError(t, h.q.carryOut(p))

	h.q.mu.Lock()
	assert.Zero(t, it.seg, "the started one is read from its own file now")
	it.busy = false
	h.q.mu.Unlock()
	_, err = os.Stat(h.q.store.dataPath(started))
	require.NoError(t, err)
	_, err = os.Stat(h.q.store.statePath(started))
	require.NoError(t, err, "its state went to a file, not to the log")
	_, err = os.Stat(h.q.store.dataPath(finished))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing is written for a finished message")

	h.crash()
	h.open()
	info, err := h.q.Show(started)
	require.NoError(t, err)
	assert.Equal(t, 1, info.State.Attempts)
	_, err = h.q.Show(finished)
	assert.ErrorIs(t, err, ErrNotFound)
}
