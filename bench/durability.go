package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/queue"
)

const durabilitySetup = `In this process, on the spool's file system: N clients (goroutines) enqueue
the test message into a fresh queue (package queue: write-ahead log, fdatasync shared by
the waiting clients, i.e. group commit) for a fixed time; the reference is the disk's own
one-fsync-per-message rate with the same clients: write the message to a new file, fsync
it, rename it into place, fsync the directory — what a queue without group commit pays
per message. The two take turns in short slices. Both are messages per second.`

func durabilitySection(ctx context.Context, h *harness) *Section {
	s := newSection("durability", "Durability cost: enqueue against one fsync per message", durabilitySetup)
	if err := runDurability(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

func runDurability(ctx context.Context, h *harness, s *Section) error {
	window := time.Duration(float64(1500*time.Millisecond) * min(h.o.scale*2, 1))
	clients := []int{1, 32}
	for _, c := range clients {
		s.figure(fmt.Sprintf("enqueue/%d", c), fmt.Sprintf("queue.Enqueue, %d client(s)", c), "msgs/s")
		s.figure(fmt.Sprintf("fsync/%d", c), fmt.Sprintf("one file + fsync per message, %d client(s)", c), "msgs/s")
	}
	for _, c := range clients {
		s.ratio(fmt.Sprintf("enqueue-fsync/%d", c), fmt.Sprintf("Enqueue/fsync per message, %d client(s)", c),
			fmt.Sprintf("enqueue/%d", c), fmt.Sprintf("fsync/%d", c)).inChart()
	}
	for rep := range h.o.reps {
		for _, c := range clients {
			eq, fs, err := durabilityOnce(ctx, h.work, c, window, h.msg)
			if err != nil {
				return err
			}
			s.add(fmt.Sprintf("enqueue/%d", c), eq)
			s.add(fmt.Sprintf("fsync/%d", c), fs)
			h.logf("durability rep %d/%d clients %2d: enqueue %7.0f msgs/s, fsync per message %6.0f msgs/s", rep+1, h.o.reps, c, eq, fs)
		}
	}
	s.Checks = append(s.Checks, fmt.Sprintf("Each side ran for %v per repetition, in %d slices taking turns with the other side; the queue and the directory were new in each repetition.",
		window, durabilitySlices))
	return nil
}

// durabilitySlices is how many turns each side gets: taking turns puts
// the machine's noise of the moment on both.
const durabilitySlices = 5

// durabilityOnce measures enqueue and one-fsync-per-message rates with
// clients writers, in turns, window in all for each.
func durabilityOnce(ctx context.Context, work string, clients int, window time.Duration, msg []byte) (enqueue, fsync float64, err error) {
	qdir, fdir := filepath.Join(work, "durability-queue"), filepath.Join(work, "durability-files")
	defer os.RemoveAll(qdir)
	defer os.RemoveAll(fdir)
	if err := os.MkdirAll(fdir, 0o755); err != nil {
		return 0, 0, err
	}
	q, err := queue.Open(queue.Config{Dir: qdir, Hostname: relayName})
	if err != nil {
		return 0, 0, err
	}
	defer q.Close()
	env := queue.Envelope{From: senderAddr, Recipients: []queue.Recipient{{Addr: rcptAddr}}}
	enq := func(int64) error {
		_, err := q.Enqueue(context.Background(), env, bytes.NewReader(msg))
		return err
	}
	var seq atomic.Int64
	file := func(int64) error { return writeSynced(fdir, seq.Add(1), msg) }
	var nq, nf int64
	var tq, tf time.Duration
	slice := window / durabilitySlices
	for range durabilitySlices {
		n, d, err := runFor(ctx, clients, slice, enq)
		if err != nil {
			return 0, 0, err
		}
		nq, tq = nq+n, tq+d
		if n, d, err = runFor(ctx, clients, slice, file); err != nil {
			return 0, 0, err
		}
		nf, tf = nf+n, tf+d
	}
	return float64(nq) / tq.Seconds(), float64(nf) / tf.Seconds(), nil
}

// runFor runs op on clients goroutines until window has passed and
// returns how many operations ran and how long that took (the ones under
// way at the end are waited for and counted).
func runFor(ctx context.Context, clients int, window time.Duration, op func(n int64) error) (int64, time.Duration, error) {
	var (
		n        atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := op(n.Add(1)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), time.Since(start), firstErr
}

// writeSynced is the reference: one message, one file, made durable the
// classic way (write, fsync, rename into place, fsync the directory).
func writeSynced(dir string, n int64, msg []byte) error {
	name := strconv.FormatInt(n, 10)
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(msg); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
