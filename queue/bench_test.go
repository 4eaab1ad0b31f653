package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern"
)

// The enqueue benchmarks run with 1 and 32 concurrent clients, each beside
// the reference it must beat: one durable file per message (write, fsync,
// rename, directory fsync), the cost a queue without group commit pays.
// Compare msgs/s of the two in the same run:
//
//	go test -run '^$' -bench 'Enqueue|FsyncPerMessage' ./queue

var benchBody = bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), 16) // 1 KiB

// BenchmarkEnqueue times enqueues and the checkpoint after them. With
// keep=log the messages are young and the checkpoint carries them forward
// in the log; with keep=files (LogResidence < 0, as for a backlog older
// than a minute) it writes each to a file of its own.
func BenchmarkEnqueue(b *testing.B) {
	for _, keep := range []string{"log", "files"} {
		for _, clients := range []int{1, 32} {
			b.Run(fmt.Sprintf("keep=%s/clients=%d", keep, clients), func(b *testing.B) {
				cfg := Config{Dir: b.TempDir(), Hostname: "bench.example"}
				if keep == "files" {
					cfg.LogResidence = -1
				}
				q, err := Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				env := Envelope{From: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}
				runClients(b, clients, func() error {
					_, err := q.Enqueue(context.Background(), env, bytes.NewReader(benchBody))
					return err
				}, func() {
					if err := q.checkpoint(); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkEnqueueObserved is BenchmarkEnqueue (keep=log) with an
// Observer: each enqueue's event waits for the changes before it, in
// order. Compare msgs/s with BenchmarkEnqueue's in the same run.
func BenchmarkEnqueueObserved(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var seen atomic.Int64
			q, err := Open(Config{Dir: b.TempDir(), Hostname: "bench.example", Observer: func(Event) { seen.Add(1) }})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			env := Envelope{From: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}
			runClients(b, clients, func() error {
				_, err := q.Enqueue(context.Background(), env, bytes.NewReader(benchBody))
				return err
			}, func() {
				if err := q.checkpoint(); err != nil {
					b.Fatal(err)
				}
			})
			if seen.Load() != int64(b.N) {
				b.Fatalf("%d events for %d messages", seen.Load(), b.N)
			}
		})
	}
}

// runClients runs b.N operations spread over exactly clients goroutines,
// then after, all timed.
func runClients(b *testing.B, clients int, op func() error, after func()) {
	b.SetBytes(int64(len(benchBody)))
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	after()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkFsyncPerMessage(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			dir := b.TempDir()
			var n atomic.Int64
			runClients(b, clients, func() error {
				name := strconv.FormatInt(n.Add(1), 10)
				tmp := filepath.Join(dir, name+".tmp")
				f, err := os.Create(tmp)
				if err != nil {
					return err
				}
				f.Write(benchBody)
				f.Sync()
				f.Close()
				if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
					return err
				}
				return syncDir(dir, nil)
			}, func() {})
		})
	}
}

// acceptAll delivers instantly.
type acceptAll struct{ n atomic.Int64 }

func (a *acceptAll) Destination(string) string { return "sink" }
func (a *acceptAll) Deliver(_ context.Context, d *Delivery) []Result {
	a.n.Add(int64(len(d.Recipients)))
	out := make([]Result, len(d.Recipients))
	for i := range out {
		out[i].Reply = postern.NewReply(250, postern.ESC(2, 0, 0), "ok")
	}
	return out
}

// BenchmarkEnqueueDeliver is the steady state of a relay: messages are
// enqueued durably and delivered (to a deliverer that accepts at once)
// within the checkpoint interval, so they never get a file of their own.
// Timed until every message is delivered and its removal recorded.
func BenchmarkEnqueueDeliver(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			del := &acceptAll{}
			q, err := Open(Config{Dir: b.TempDir(), Hostname: "bench.example", Deliverer: del})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { q.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			env := Envelope{From: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}
			runClients(b, clients, func() error {
				_, err := q.Enqueue(context.Background(), env, bytes.NewReader(benchBody))
				return err
			}, func() {
				for del.n.Load() < int64(b.N) {
					time.Sleep(time.Millisecond)
				}
			})
		})
	}
}
