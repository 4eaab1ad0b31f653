package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/greetpause"
)

const greetSetup = `A server process holds a crowd of silent connections (from 127.0.x.y, a
child process of its own) and reports what they cost it: Go heap and stacks in use and the
resident set (after a GC), and goroutines, each divided by the number of connections.
Kernel socket buffers are in neither. Each mode runs in a fresh process, so both start from
the same runtime state:

- **greet pause**: smtpserver/greetpause (10-minute pause for the crowd; 127.0.0.1 is exempt)
  in front of smtpserver, as in the relay (which adds its connection limits in front);
- **bare Read** (the reference): a plain accept loop with one goroutine per connection
  blocked in a 1-byte Read, the least any Go server pays to hold a connection open.

Meanwhile an exempt client (127.0.0.1, no pause) runs whole SMTP transactions against the
greet pause server (smtpserver with a hand-off that discards, no filters), before and while
the crowd is held. So does a legitimate sender that is not exempt: from 127.0.0.3, whose
pause is the relay's default (5 s), but which waited it out once before and is in the pass
cache (ratelimit.PassCache, memory store, as greetpause.Config.Known): with the cache it is
greeted at once; without it (127.0.0.4, the same pause, not in the cache) it waits the
pause on every connection, which two transactions per repetition measure.`

func greetSection(ctx context.Context, h *harness) *Section {
	s := newSection("greetpause", fmt.Sprintf("Greet pause: %d concurrent paused connections", h.o.crowd), greetSetup)
	if err := runGreet(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

// holdCost is what the hold helper reports: totals in the server process.
type holdCost struct {
	HeapStack  int64 `json:"heap_stack"`
	RSS        int64 `json:"rss"`
	Goroutines int64 `json:"goroutines"`
	Held       int   `json:"held"`
}

func runGreet(ctx context.Context, h *harness, s *Section) error {
	n := h.o.crowd
	probes := max(int(200*h.o.scale), 50)
	s.figure("gp/mem", "greet pause: heap + stacks per connection", "bytes")
	s.figure("gp/rss", "greet pause: resident set per connection", "bytes")
	s.figure("gp/goroutines", "greet pause: goroutines per connection", "")
	s.figure("bare/mem", "bare Read: heap + stacks per connection", "bytes")
	s.figure("bare/rss", "bare Read: resident set per connection", "bytes")
	s.figure("bare/goroutines", "bare Read: goroutines per connection", "")
	s.figure("alone/p50", "exempt client alone, p50", "ms")
	s.figure("alone/p99", "exempt client alone, p99", "ms")
	s.figure("crowd/p50", fmt.Sprintf("exempt client beside %d paused connections, p50", n), "ms")
	s.figure("crowd/p99", fmt.Sprintf("exempt client beside %d paused connections, p99", n), "ms")
	s.ratio("mem", "Greet pause memory per connection/bare Read", "gp/mem", "bare/mem").lowerIsBetter().inChart()
	s.ratio("rss", "Greet pause resident set per connection/bare Read", "gp/rss", "bare/rss").lowerIsBetter()
	s.ratio("p50", "Exempt client latency with/without the crowd, p50", "crowd/p50", "alone/p50").lowerIsBetter()
	s.ratio("p99", "Exempt client latency with/without the crowd, p99", "crowd/p99", "alone/p99").lowerIsBetter().inChart()
	s.figure("known/p50", fmt.Sprintf("known sender (pass cache) beside %d paused connections, p50", n), "ms")
	s.figure("known/p99", fmt.Sprintf("known sender (pass cache) beside %d paused connections, p99", n), "ms")
	s.figure("unknown/p50", fmt.Sprintf("the same sender without the cache beside %d paused connections, p50", n), "ms")
	s.ratio("known", "Legitimate sender latency without/with the pass cache, beside the crowd, p50 (how many times sooner it is served)", "unknown/p50", "known/p50")
	for rep := range h.o.reps {
		for _, mode := range []string{"greetpause", "bare"} {
			before, after, lat, err := h.holdOnce(ctx, mode, n, probes)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			if after.Held != n {
				return fmt.Errorf("%s: %d of %d connections held", mode, after.Held, n)
			}
			k := float64(n)
			key := "gp"
			if mode == "bare" {
				key = "bare"
			}
			s.add(key+"/mem", float64(after.HeapStack-before.HeapStack)/k)
			s.add(key+"/rss", float64(after.RSS-before.RSS)/k)
			s.add(key+"/goroutines", float64(after.Goroutines-before.Goroutines)/k)
			if mode == "greetpause" {
				s.add("alone/p50", Quantile(lat[0], 0.5))
				s.add("alone/p99", Quantile(lat[0], 0.99))
				s.add("crowd/p50", Quantile(lat[1], 0.5))
				s.add("crowd/p99", Quantile(lat[1], 0.99))
				s.add("known/p50", Quantile(lat[2], 0.5))
				s.add("known/p99", Quantile(lat[2], 0.99))
				s.add("unknown/p50", Quantile(lat[3], 0.5))
			}
			h.logf("greetpause rep %d/%d %-10s %5.0f B heap+stack/conn, %5.0f B RSS/conn, %.2f goroutines/conn", rep+1, h.o.reps, mode,
				float64(after.HeapStack-before.HeapStack)/k, float64(after.RSS-before.RSS)/k, float64(after.Goroutines-before.Goroutines)/k)
		}
	}
	s.Checks = append(s.Checks, fmt.Sprintf("In every repetition all %d connections were held at once (none refused as busy); %d exempt transactions each before and during, %d from the known sender and 2 from the unknown one during, all answered 250.", n, probes, probes))
	return nil
}

// holdOnce starts a hold server in mode, measures it before and with the
// crowd and, for greetpause, times exempt transactions alone and beside
// the crowd.
//
// lat: the exempt client alone and beside the crowd, the known sender
// and the one not in the pass cache beside the crowd.
func (h *harness) holdOnce(ctx context.Context, mode string, n, probes int) (before, after holdCost, lat [4][]float64, err error) {
	srv := exec.Command(h.self, "helper-hold", "-mode", mode, "-crowd", strconv.Itoa(n))
	srvIn, err := srv.StdinPipe()
	if err != nil {
		return
	}
	srvOut, err := srv.StdoutPipe()
	if err != nil {
		return
	}
	var srvErr strings.Builder
	srv.Stderr = &srvErr
	sp, err := startProcess("hold server", srv)
	if err != nil {
		return
	}
	defer func() { srvIn.Close(); sp.stop(10 * time.Second) }()
	out := bufio.NewScanner(srvOut)
	ask := func(cmd string, v any) error {
		if _, err := fmt.Fprintln(srvIn, cmd); err != nil {
			return fmt.Errorf("%w: hold server: %v %s", ErrPeer, err, srvErr.String())
		}
		if !out.Scan() {
			return fmt.Errorf("%w: hold server ended: %s", ErrPeer, srvErr.String())
		}
		line := out.Text()
		if e, ok := strings.CutPrefix(line, "error "); ok {
			return fmt.Errorf("%w: hold server: %s", ErrPeer, e)
		}
		if v == nil {
			return nil
		}
		return json.Unmarshal([]byte(line), v)
	}
	var addr string
	if err = ask("addr", &addr); err != nil {
		return
	}
	timeProbes := func(src string, probes int) ([]float64, error) {
		var out []float64
		for range probes {
			d, err := probe(ctx, addr, src, h.msg)
			if err != nil {
				return nil, err
			}
			out = append(out, ms(d))
		}
		return out, nil
	}
	if mode == "greetpause" {
		// The first transactions of a new process are slower (page
		// faults, first allocations): warm up before timing.
		if _, err = timeProbes(exemptSrc, probes); err != nil {
			return
		}
		if lat[0], err = timeProbes(exemptSrc, probes); err != nil {
			return
		}
	}
	if err = ask("measure 0", &before); err != nil {
		return
	}
	// Each crowd comes from an address of its own (127.0.0.2, .3, ...), so
	// ports one crowd left behind never get in the way of the next.
	h.crowds++
	src := fmt.Sprintf("127.0.%d.%d", 1+h.crowds/250, 2+h.crowds%250)
	crowd := exec.Command(h.self, "helper-crowd", "-addr", addr, "-n", strconv.Itoa(n), "-src", src)
	crowdIn, err := crowd.StdinPipe()
	if err != nil {
		return
	}
	crowdOut, err := crowd.StdoutPipe()
	if err != nil {
		return
	}
	var crowdErr strings.Builder
	crowd.Stderr = &crowdErr
	cp, err := startProcess("crowd", crowd)
	if err != nil {
		return
	}
	defer func() { crowdIn.Close(); cp.stop(10 * time.Second) }()
	cs := bufio.NewScanner(crowdOut)
	if !cs.Scan() || !strings.HasPrefix(cs.Text(), "ready") {
		err = fmt.Errorf("%w: crowd: %s", ErrPeer, strings.TrimSpace(crowdErr.String()))
		return
	}
	if err = ask("measure "+strconv.Itoa(n), &after); err != nil {
		return
	}
	if mode == "greetpause" {
		if lat[1], err = timeProbes(exemptSrc, probes); err != nil {
			return
		}
		if lat[2], err = timeProbes(knownSrc, probes); err != nil {
			return
		}
		if lat[3], err = timeProbes(unknownSrc, 2); err != nil {
			return
		}
	}
	return
}

// helperHold is the server of the greet pause benchmark. It answers
// commands on stdin, one JSON line each:
//
//	addr        its listen address
//	measure N   wait until N connections are held, then its totals
func helperHold(args []string) int {
	fs := flag.NewFlagSet("helper-hold", flag.ContinueOnError)
	mode := fs.String("mode", "greetpause", "greetpause or bare")
	crowd := fs.Int("crowd", 10000, "connections to make room for")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Println("error", err)
		return 1
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	var held func() int
	var stop func()
	switch *mode {
	case "greetpause":
		held, stop, err = holdGreetpause(inner, *crowd)
	case "bare":
		held, stop = holdBare(inner)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		return fail(err)
	}
	defer stop()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "addr":
			b, _ := json.Marshal(inner.Addr().String())
			fmt.Println(string(b))
		case "measure":
			want, _ := strconv.Atoi(arg)
			deadline := time.Now().Add(2 * time.Minute)
			for held() < want {
				if time.Now().After(deadline) {
					return fail(fmt.Errorf("only %d of %d connections held", held(), want))
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // let the last goroutines park
			c := memNow()
			c.Held = held()
			b, _ := json.Marshal(c)
			fmt.Println(string(b))
		default:
			return fail(fmt.Errorf("unknown command %q", cmd))
		}
	}
	return 0
}

// The probes' source addresses: exempt (a trusted network), known to
// the pass cache, and the same kind of sender not known to it.
const (
	exemptSrc  = "127.0.0.1"
	knownSrc   = "127.0.0.3"
	unknownSrc = "127.0.0.4"
)

// senderPause is the pause of the senders that are neither exempt nor
// the crowd: the relay's default smtp.greet_pause.
const senderPause = 5 * time.Second

// holdGreetpause is the relay's listener stack: greetpause in front of
// smtpserver. The crowd waits ten minutes; 127.0.0.1 is exempt, as
// trusted networks are; the two senders wait the relay's default pause,
// unless the pass cache knows them (127.0.0.3 passed once before).
func holdGreetpause(inner net.Listener, crowd int) (held func() int, stop func(), err error) {
	exempt, known, unknown := netip.MustParseAddr(exemptSrc), netip.MustParseAddr(knownSrc), netip.MustParseAddr(unknownSrc)
	pc, err := ratelimit.NewPassCache(ratelimit.PassCacheConfig{Require: ratelimit.PassGreet})
	if err != nil {
		return nil, nil, err
	}
	if err := pc.Pass(context.Background(), known, ratelimit.PassGreet); err != nil {
		return nil, nil, err
	}
	gl, err := greetpause.New(inner, greetpause.Config{MaxPaused: crowd + 1000,
		Pause: func(ip netip.Addr) time.Duration {
			switch ip {
			case exempt:
				return 0
			case known, unknown:
				return senderPause
			}
			return 10 * time.Minute
		},
		Known: func(ctx context.Context, ip netip.Addr) bool {
			ok, err := pc.Known(ctx, ip)
			return ok && err == nil
		}})
	if err != nil {
		return nil, nil, err
	}
	srv, err := smtpserver.New(smtpserver.Config{Hostname: relayName, Handoff: discardHandoff{}})
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { srv.Serve(gl); close(done) }()
	return func() int { return gl.Stats().Paused }, func() { srv.Close(); gl.Close(); <-done }, nil
}

// discardHandoff renders the message (as the queue's hand-off does) and
// drops it.
type discardHandoff struct{}

func (d discardHandoff) Handoff(ctx context.Context, _ *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	if err := m.Render(io.Discard); err != nil {
		return "", err
	}
	return t.ID, nil
}

// holdBare is the reference: one goroutine per accepted connection,
// parked in a 1-byte Read.
func holdBare(inner net.Listener) (held func() int, stop func()) {
	var (
		wg    sync.WaitGroup
		count atomic.Int64
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := inner.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				count.Add(1)
				var b [1]byte
				_, _ = c.Read(b[:])
				count.Add(-1)
				c.Close()
			}()
		}
	}()
	return func() int { return int(count.Load()) }, func() {
		inner.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// memNow is the process's memory after a full GC.
func memNow() holdCost {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	c := holdCost{HeapStack: int64(m.HeapInuse + m.StackInuse), Goroutines: int64(runtime.NumGoroutine())}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			c.RSS = pages * int64(os.Getpagesize())
		}
	}
	return c
}
