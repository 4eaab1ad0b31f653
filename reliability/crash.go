package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/proc"
	"github.com/postern/postern/queue"
)

// CrashConfig sizes the crash scenario. The zero value is the full run.
type CrashConfig struct {
	// Cycles of kill -9 and restart; default 10.
	Cycles int
	// Sessions of smtp-source load; default 8.
	Sessions int
	// Clients send tracked messages; default 4.
	Clients int
	// MinUp and MaxUp bound how long the relay runs under load before it
	// is killed (uniformly drawn); defaults 1s and 3s.
	MinUp, MaxUp time.Duration
	// Drain bounds the wait for the queue to empty after the last
	// restart; default 2 minutes.
	Drain time.Duration
	// Seed draws the uptimes; default 1.
	Seed uint64
	// Quiet is how long the sink must get nothing before the queue counts
	// as drained; default 6s (three of the longest retry delays).
	Quiet time.Duration
}

func (c CrashConfig) withDefaults() CrashConfig {
	setDefault(&c.Cycles, 10)
	setDefault(&c.Sessions, 8)
	setDefault(&c.Clients, 4)
	setDefault(&c.MinUp, time.Second)
	setDefault(&c.MaxUp, 3*time.Second)
	setDefault(&c.Drain, 2*time.Minute)
	setDefault(&c.Seed, 1)
	setDefault(&c.Quiet, 6*time.Second)
	c.MaxUp = max(c.MaxUp, c.MinUp)
	return c
}

// CrashResult counts what the crash scenario saw.
type CrashResult struct {
	Outcome
	Cycles   int `json:"cycles"`
	Sessions int `json:"smtp_source_sessions"`
	Clients  int `json:"tracked_clients"`
	// Tracked messages: sent, answered 250 after DATA, and of those
	// delivered downstream (by Message-ID) and never delivered.
	Attempted    int `json:"attempted"`
	Acknowledged int `json:"acknowledged"`
	Delivered    int `json:"delivered"`
	Lost         int `json:"lost"`
	// Duplicates counts extra copies of tracked messages; DuplicatedIDs how
	// many tracked messages arrived more than once.
	Duplicates    int `json:"duplicates"`
	DuplicatedIDs int `json:"duplicated_ids"`
	// UnackedDelivered: tracked messages whose client saw no 250 (the
	// relay died first) that were delivered all the same.
	UnackedDelivered int `json:"unacked_delivered"`
	// The smtp-source load, counted at the sink: smtp-source does not say
	// which messages got 250, and its Message-Ids (pid.fd.counter) are
	// not unique enough to count duplicates by.
	LoadDelivered int `json:"load_delivered"`
	// LeftInQueue is what the spool still held after the drain and a
	// clean stop.
	LeftInQueue  int          `json:"left_in_queue"`
	DrainSeconds float64      `json:"drain_seconds"`
	Panics       int          `json:"panic_log_lines"`
	LostIDs      []string     `json:"lost_ids,omitempty"`
	PerCycle     []CrashCycle `json:"per_cycle"`
}

// CrashCycle is one run of the relay before its kill.
type CrashCycle struct {
	UpMillis     int64 `json:"up_ms"`
	Attempted    int   `json:"attempted"`
	Acknowledged int   `json:"acknowledged"`
}

// tracker records the tracked messages: which IDs were sent and which
// were acknowledged.
type tracker struct {
	mu    sync.Mutex
	sent  map[string]bool // id -> acknowledged
	next  atomic.Int64
	cycle struct{ attempted, acked int }
}

func (t *tracker) record(id string, acked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent[id] = acked
	t.cycle.attempted++
	if acked {
		t.cycle.acked++
	}
}

func (t *tracker) takeCycle() (attempted, acked int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, k := t.cycle.attempted, t.cycle.acked
	t.cycle.attempted, t.cycle.acked = 0, 0
	return a, k
}

func runCrash(ctx context.Context, s *suite, cfg CrashConfig) *CrashResult {
	cfg = cfg.withDefaults()
	res := &CrashResult{Cycles: cfg.Cycles, Sessions: cfg.Sessions, Clients: cfg.Clients}
	defer res.settle()
	source, err := lookTool("smtp-source")
	if err != nil {
		res.skip(s.ci, err)
		return res
	}
	if err := crash(ctx, s, cfg, source, res); err != nil {
		res.fail("%v", err)
	}
	res.require(res.Acknowledged > 0, "no tracked message was acknowledged")
	res.require(res.Lost == 0, "%d acknowledged messages were lost", res.Lost)
	res.require(res.LeftInQueue == 0, "%d messages left in the queue after the drain", res.LeftInQueue)
	res.require(res.Panics == 0, "%d panic lines in the relay's log", res.Panics)
	return res
}

func crash(ctx context.Context, s *suite, cfg CrashConfig, source string, res *CrashResult) error {
	dir, err := s.dir("crash")
	if err != nil {
		return err
	}
	down, err := s.startSink("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer down.stop()
	mt, err := writeMailertable(dir, down.addr)
	if err != nil {
		return err
	}
	// One address for every run, so smtp-source and the clients need not
	// learn a new one. Go listeners set SO_REUSEADDR.
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	spool := filepath.Join(dir, "spool")
	logPath := filepath.Join(dir, "relay.log")
	args := []string{"-listen", addr, "-spool", spool, "-greet-pause", "0", "-mailertable", mt,
		"-min-backoff", "1s", "-max-backoff", "2s", "-hostname", "relay.reliability.test"}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	tr := &tracker{sent: map[string]bool{}}
	for cycle := 1; cycle <= cfg.Cycles; cycle++ {
		up := cfg.MinUp + time.Duration(rng.Int64N(int64(cfg.MaxUp-cfg.MinUp)+1))
		r, err := s.startRelay(ctx, dir, logPath, args...)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", cycle, err)
		}
		start := time.Now()
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		load := exec.CommandContext(cctx, source, "-s", fmt.Sprint(cfg.Sessions), "-m", "1000000", "-l", "1024", "-d",
			"-M", "load.reliability.test", "-f", "load@example.net", "-t", "load@example.test", addr)
		proc.DieWithParent(load)
		if err := load.Start(); err != nil {
			cancel()
			r.kill()
			return fmt.Errorf("smtp-source: %w", err)
		}
		for w := range cfg.Clients {
			wg.Go(func() {
				for cctx.Err() == nil {
					id := fmt.Sprintf("<crash-%d-%d@reliability.test>", cycle, tr.next.Add(1))
					o := send(cctx, txn{addr: addr, from: fmt.Sprintf("tracked%d@example.net", w), to: []string{"rcpt@example.test"},
						body: plainMessage(id, 1024), timeout: 10 * time.Second})
					tr.record(id, o.acked())
					if !o.acked() {
						time.Sleep(10 * time.Millisecond) // refused or dead: do not spin
					}
				}
			})
		}
		select {
		case <-time.After(up):
		case <-ctx.Done():
		}
		r.kill() // SIGKILL, mid-transaction for most clients
		res.Panics += r.panicLines()
		cancel()
		wg.Wait()
		_ = load.Wait()
		a, k := tr.takeCycle()
		res.PerCycle = append(res.PerCycle, CrashCycle{UpMillis: time.Since(start).Milliseconds(), Attempted: a, Acknowledged: k})
		s.progress("crash: cycle %d/%d: up %v, %d tracked sent, %d acknowledged", cycle, cfg.Cycles, up.Round(time.Millisecond), a, k)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	// The last restart: let the queue drain into the sink.
	r, err := s.startRelay(ctx, dir, logPath, args...)
	if err != nil {
		return fmt.Errorf("final restart: %w", err)
	}
	drainStart := time.Now()
	tr.mu.Lock()
	var acked []string
	for id, ok := range tr.sent {
		if ok {
			acked = append(acked, id)
		}
	}
	tr.mu.Unlock()
	allIn := func() bool {
		c := down.copies()
		for _, id := range acked {
			if c[id] == 0 {
				return false
			}
		}
		return true
	}
	// Everything acknowledged arrived and nothing more for a while: the
	// queue is empty or stuck, which the spool then tells.
	waitFor(ctx, cfg.Drain, func() bool { return allIn() && down.quietFor(cfg.Quiet) })
	res.DrainSeconds = time.Since(drainStart).Seconds()
	res.Panics += r.panicLines()
	if err := r.stop(); err != nil {
		res.fail("the relay did not stop cleanly after the drain: %v", err)
	}
	// What the spool still holds, read with the queue package itself.
	q, err := queue.Open(queue.Config{Dir: spool})
	if err != nil {
		return fmt.Errorf("reopening the spool: %w", err)
	}
	res.LeftInQueue, _ = q.Len()
	_ = q.Close()
	tally(res, tr, down.copies())
	s.progress("crash: %d acknowledged, %d delivered, %d lost, %d duplicates, %d left in queue",
		res.Acknowledged, res.Delivered, res.Lost, res.Duplicates, res.LeftInQueue)
	return nil
}

// tally compares what the clients were told with what the sink got.
func tally(res *CrashResult, tr *tracker, copies map[string]int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	res.Attempted = len(tr.sent)
	for id, acked := range tr.sent {
		n := copies[id]
		if n > 1 {
			res.Duplicates += n - 1
			res.DuplicatedIDs++
		}
		switch {
		case acked && n > 0:
			res.Acknowledged++
			res.Delivered++
		case acked:
			res.Acknowledged++
			res.Lost++
			res.LostIDs = append(res.LostIDs, id)
		case n > 0:
			res.UnackedDelivered++
		}
	}
	sort.Strings(res.LostIDs)
	if len(res.LostIDs) > 20 {
		res.LostIDs = res.LostIDs[:20]
	}
	for id, n := range copies {
		if _, tracked := tr.sent[id]; tracked || !strings.HasSuffix(id, "@load.reliability.test>") {
			continue
		}
		res.LoadDelivered += n
	}
}
