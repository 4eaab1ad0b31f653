//go:build linux

package greetpause

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkHeldConnections measures what a connection held in the pause
// costs the server, against the reference the brief sets: a bare goroutine
// blocked in a 1-byte Read on a plain accepted connection.
//
//	GREETPAUSE_BENCH_CONNS=10000 go test -run '^$' -bench HeldConnections -benchtime 1x ./smtpserver/greetpause/
//
// Each mode runs in a fresh server process (this test binary again, as
// TestBenchHelper), with the clients in a third process, so both modes
// start from the same runtime state and only the server side is measured.
// Each b.N iteration measures both modes; the metrics are per connection
// and averaged over iterations: heap+stack in use, Sys and RSS deltas (RSS
// from /proc, the figure BASELINES.md quotes; kernel socket memory is in
// neither), goroutines, and the greetpause/bare ratios.
//
// Most of the cost is the goroutine's 2 KiB stack. Its size is the
// runtime's choice (GODEBUG adaptivestackstart: new goroutines start with
// the average stack in use at the last GC, and one parked in Read that
// started at 4 KiB never shrinks back), which is why each mode gets a
// fresh process: measured in one process, whichever mode ran after a GC
// over deep stacks paid 4 KiB a connection.
func BenchmarkHeldConnections(b *testing.B) {
	n := 2000
	if v := os.Getenv(envBenchConns); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number", envBenchConns, v)
		}
	}
	if err := raiseFDLimit(uint64(n) + 256); err != nil {
		b.Skip(err)
	}

	var bare, gp heldCost
	for i := 0; i < b.N; i++ {
		bare.add(measureHeld(b, n, "bare"))
		gp.add(measureHeld(b, n, "greetpause"))
	}
	bare.div(float64(b.N))
	gp.div(float64(b.N))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(n), "conns")
	b.ReportMetric(gp.HeapStack, "gp-heapstack-B/conn")
	b.ReportMetric(bare.HeapStack, "bare-heapstack-B/conn")
	b.ReportMetric(gp.HeapStack/bare.HeapStack, "heapstack-ratio")
	b.ReportMetric(gp.RSS, "gp-rss-B/conn")
	b.ReportMetric(bare.RSS, "bare-rss-B/conn")
	b.ReportMetric(gp.RSS/bare.RSS, "rss-ratio")
	b.ReportMetric(gp.Sys, "gp-sys-B/conn")
	b.ReportMetric(bare.Sys, "bare-sys-B/conn")
	b.ReportMetric(gp.Goroutines, "gp-goroutines/conn")
	b.ReportMetric(bare.Goroutines, "bare-goroutines/conn")
}

const (
	envBenchConns = "GREETPAUSE_BENCH_CONNS"
	envBenchRole  = "GREETPAUSE_BENCH_ROLE" // set only in helper processes
	envBenchAddr  = "GREETPAUSE_BENCH_ADDR"
)

// measureHeld runs one server process in mode and one client process, and
// returns the server's cost per held connection.
func measureHeld(b *testing.B, n int, mode string) heldCost {
	b.Helper()
	env := []string{envBenchConns + "=" + strconv.Itoa(n)}
	srvOut, stopSrv := startHelper(b, append(env, envBenchRole+"=serve-"+mode))
	defer stopSrv()
	addr := expectLine(b, srvOut, "addr ")
	cliOut, stopCli := startHelper(b, append(env, envBenchRole+"=dial", envBenchAddr+"="+addr))
	defer stopCli()
	expectLine(b, cliOut, "ready")
	var c heldCost
	if err := json.Unmarshal([]byte(expectLine(b, srvOut, "result ")), &c); err != nil {
		b.Fatal(err)
	}
	b.Logf("%-10s %+v", mode, c)
	return c
}

// startHelper runs this test binary as TestBenchHelper with env added. The
// helper lives until stop closes its stdin.
func startHelper(b *testing.B, env []string) (out *bufio.Scanner, stop func()) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out = bufio.NewScanner(stdout)
	return out, func() {
		_ = stdin.Close()
		go func() { // drain, or a helper blocked writing would never exit
			for out.Scan() {
			}
		}()
		_ = cmd.Wait()
	}
}

func expectLine(b *testing.B, sc *bufio.Scanner, prefix string) string {
	b.Helper()
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return rest
		}
		if strings.HasPrefix(line, "error ") {
			b.Fatalf("helper: %s", line)
		}
	}
	b.Fatalf("helper ended before %q: %v", prefix, sc.Err())
	return ""
}

// TestBenchHelper is a helper process of BenchmarkHeldConnections; it
// skips in a normal test run. As "dial" it opens the connections and says
// "ready"; as "serve-bare" or "serve-greetpause" it holds them and prints
// its cost per connection once all are held. Both then wait for stdin to
// close.
func TestBenchHelper(t *testing.T) {
	role := os.Getenv(envBenchRole)
	if role == "" {
		t.Skip("helper process of BenchmarkHeldConnections")
	}
	fail := func(err error) {
		fmt.Println("error", err)
		t.Fatal(err)
	}
	n, err := strconv.Atoi(os.Getenv(envBenchConns))
	if err != nil {
		fail(err)
	}
	if err := raiseFDLimit(uint64(n) + 256); err != nil {
		fail(err)
	}
	switch role {
	case "dial":
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", os.Getenv(envBenchAddr))
			if err != nil {
				fail(err)
			}
			conns = append(conns, c)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		for _, c := range conns {
			_ = c.Close()
		}
	case "serve-bare", "serve-greetpause":
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(err)
		}
		var held func() int
		var stop func()
		if role == "serve-greetpause" {
			if held, stop, err = holdGreetpause(inner); err != nil {
				fail(err)
			}
		} else {
			held, stop = holdBare(inner)
		}
		before := memNow()
		fmt.Println("addr", inner.Addr())
		for deadline := time.Now().Add(time.Minute); held() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				fail(fmt.Errorf("only %d of %d connections held", held(), n))
			}
		}
		time.Sleep(100 * time.Millisecond) // let the last goroutines park
		after := memNow()
		k := float64(n)
		res, _ := json.Marshal(heldCost{
			HeapStack:   float64(after.heapStack-before.heapStack) / k,
			Sys:         float64(after.sys-before.sys) / k,
			RSS:         float64(after.rss-before.rss) / k,
			Goroutines:  float64(after.goroutines-before.goroutines) / k,
			StartStackB: startingStackSize(),
		})
		fmt.Println("result", string(res))
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	default:
		fail(fmt.Errorf("unknown role %q", role))
	}
}

type heldCost struct {
	HeapStack, Sys, RSS, Goroutines float64
	// StartStackB is the runtime's starting stack size when measured.
	StartStackB uint64
}

func (c *heldCost) add(d heldCost) {
	c.HeapStack += d.HeapStack
	c.Sys += d.Sys
	c.RSS += d.RSS
	c.Goroutines += d.Goroutines
}

func (c *heldCost) div(k float64) {
	c.HeapStack /= k
	c.Sys /= k
	c.RSS /= k
	c.Goroutines /= k
}

// holdBare is the reference: one goroutine per accepted connection,
// blocked in a 1-byte Read.
func holdBare(inner net.Listener) (held func() int, stop func()) {
	var wg sync.WaitGroup
	var count atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := inner.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf [1]byte
				count.Add(1)
				_, _ = c.Read(buf[:])
				_ = c.Close()
			}()
		}
	}()
	stop = func() {
		_ = inner.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	return func() int { return int(count.Load()) }, stop
}

func holdGreetpause(inner net.Listener) (held func() int, stop func(), err error) {
	l, err := New(inner, Config{Delay: time.Minute, MaxPaused: 1 << 20})
	if err != nil {
		return nil, nil, err
	}
	return func() int { return l.Stats().Paused }, func() { _ = l.Close() }, nil
}

type memSample struct{ heapStack, sys, rss, goroutines int64 }

func memNow() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	s := memSample{
		heapStack:  int64(m.HeapInuse + m.StackInuse),
		sys:        int64(m.Sys - m.HeapReleased),
		goroutines: int64(runtime.NumGoroutine()),
	}
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(statm)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			s.rss = pages * int64(os.Getpagesize())
		}
	}
	return s
}

func startingStackSize() uint64 {
	s := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// raiseFDLimit makes room for need descriptors (Go raises the soft limit to
// the hard one at start-up; this only reports a hard limit too low).
func raiseFDLimit(need uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= need {
		return nil
	}
	rl.Cur = min(need, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < need {
		return fmt.Errorf("need %d file descriptors, limit is %d (hard %d): lower %s", need, rl.Cur, rl.Max, envBenchConns)
	}
	return nil
}
