package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/queue"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/resolver"
)

const deliverySetup = `In this process: a fresh queue (package queue) is loaded with N messages
while its runner is stopped, then the runner starts and delivers them through
route.Transport (mailertable: example.test to smtp-sink; the queue's default of 20
concurrent deliveries per destination, route's default of 4 idle connections kept per
host) until the sink has
counted all N. The reference sends as many messages with smtp-source straight to
smtp-sink over 20 sessions, many messages per session. Both are messages per second; the
queue's figure includes recording every delivery result in its log. Sessions are counted
by smtp-sink. The queue is run a second time with route.TransportConfig.MaxIdlePerHost
raised from route's default (4) to the 20 concurrent deliveries, as the relay
configures it, to show what connection reuse is worth. The three take turns (3 per repetition, a third of the messages each); a
repetition's figure is the median of its turns.`

func deliverySection(ctx context.Context, h *harness) *Section {
	s := newSection("delivery", "Delivery: queue to smtp-sink with connection reuse", deliverySetup)
	if err := runDelivery(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

func runDelivery(ctx context.Context, h *harness, s *Section) error {
	n := h.n(3000)
	s.figure("queue", "queue + route.Transport to smtp-sink", "msgs/s")
	s.figure("source", "smtp-source to smtp-sink, 20 sessions, many msgs/session", "msgs/s")
	s.figure("queue/per-session", "queue: messages per SMTP session", "msgs")
	s.figure("queue-idle20", "the same with MaxIdlePerHost 20 (as the relay runs it)", "msgs/s")
	s.figure("queue-idle20/per-session", "MaxIdlePerHost 20: messages per SMTP session", "msgs")
	s.ratio("queue-source", "Delivery queue/smtp-source", "queue", "source").inChart()
	s.ratio("idle20-source", "Delivery queue/smtp-source with MaxIdlePerHost 20", "queue-idle20", "source")
	table, err := route.ParseMailertable(strings.NewReader(fmt.Sprintf("%s smtp:[%s]:%s\n", rcptDomain,
		hostOf(h.sink.addr), portOf(h.sink.addr))), "bench mailertable")
	if err != nil {
		return err
	}
	chunk := max(n/deliveryChunks, 10)
	for rep := range h.o.reps {
		// The three take turns, deliveryChunks times, with a share of the
		// messages each, and each figure is the median of its turns: the
		// machine's noise of the moment falls on all, a stall decides
		// nothing.
		var rSrc, rQ, rQ20 []float64
		var sessQ, sessQ20 int64
		for range deliveryChunks {
			src := source{bin: h.sourceBin, msgFile: h.msgFile, addr: h.sink.addr, sessions: 20, msgs: chunk, reuse: true}
			base := h.sink.msgs.Load()
			took, err := src.run(ctx)
			if err != nil {
				return err
			}
			if _, err := h.sink.waitFor(ctx, base+int64(chunk), time.Minute); err != nil {
				return err
			}
			rSrc = append(rSrc, float64(chunk)/took.Seconds())
			took, sess, err := deliverBacklog(ctx, h, table, chunk, 0, filepath.Join(h.work, "delivery-queue"))
			if err != nil {
				return err
			}
			rQ, sessQ = append(rQ, float64(chunk)/took.Seconds()), sessQ+sess
			took, sess, err = deliverBacklog(ctx, h, table, chunk, 20, filepath.Join(h.work, "delivery-queue"))
			if err != nil {
				return err
			}
			rQ20, sessQ20 = append(rQ20, float64(chunk)/took.Seconds()), sessQ20+sess
		}
		total := float64(chunk * deliveryChunks)
		ref, rate, rate20 := Quantile(rSrc, 0.5), Quantile(rQ, 0.5), Quantile(rQ20, 0.5)
		perSession, perSession20 := total/float64(max(sessQ, 1)), total/float64(max(sessQ20, 1))
		s.add("source", ref)
		s.add("queue", rate)
		s.add("queue/per-session", perSession)
		s.add("queue-idle20", rate20)
		s.add("queue-idle20/per-session", perSession20)
		h.logf("delivery rep %d/%d queue %6.0f msgs/s (%.1f msgs/session; idle 20: %6.0f msgs/s, %.1f msgs/session), smtp-source %6.0f msgs/s",
			rep+1, h.o.reps, rate, perSession, rate20, perSession20, ref)
	}
	s.Checks = append(s.Checks, fmt.Sprintf("smtp-sink counted every message of all three in every repetition (%d each, in %d turns).",
		chunk*deliveryChunks, deliveryChunks))
	return nil
}

// deliveryChunks is how many turns each side of the delivery benchmark
// gets per repetition.
const deliveryChunks = 3

// deliverBacklog loads a new queue with n messages and times its runner
// delivering them to the sink; it also returns the SMTP sessions the sink
// counted. maxIdle is the transport's MaxIdlePerHost (0: its default, as
// the relay runs it).
func deliverBacklog(ctx context.Context, h *harness, table *route.Table, n, maxIdle int, dir string) (took time.Duration, sessions int64, err error) {
	defer os.RemoveAll(dir)
	res, err := resolver.New(resolver.Config{Servers: []string{h.dns.addr}})
	if err != nil {
		return 0, 0, err
	}
	router, err := route.NewRouter(route.RouterConfig{Mailertable: table, RelayDomains: []string{rcptDomain},
		Resolver: res})
	if err != nil {
		return 0, 0, err
	}
	tr, err := route.NewTransport(route.TransportConfig{Router: router, Hostname: relayName, MaxIdlePerHost: maxIdle})
	if err != nil {
		return 0, 0, err
	}
	defer tr.Close()
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: relayName, Deliverer: tr})
	if err != nil {
		return 0, 0, err
	}
	defer q.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				env := queue.Envelope{From: senderAddr, Recipients: []queue.Recipient{{Addr: fmt.Sprintf("user%d@%s", i, rcptDomain)}}}
				if _, err := q.Enqueue(ctx, env, bytes.NewReader(h.msg)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, fmt.Errorf("loading the queue: %w", err)
	}
	base, sessBase := h.sink.msgs.Load(), h.sink.sessions.Load()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- q.Run(rctx) }()
	at, werr := h.sink.waitFor(ctx, base+int64(n), 5*time.Minute)
	cancel()
	if rerr := <-done; rerr != nil && !errors.Is(rerr, context.Canceled) && werr == nil {
		werr = rerr
	}
	if werr != nil {
		return 0, 0, werr
	}
	// smtp-sink counts a session when it ends: close the cached ones.
	q.Close()
	tr.Close()
	time.Sleep(200 * time.Millisecond)
	return at.Sub(start), h.sink.sessions.Load() - sessBase, nil
}
