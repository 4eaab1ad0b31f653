package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/proc"
)

// SlowConfig sizes the slow-client scenario. The zero value is the full
// run.
type SlowConfig struct {
	// Conns is how many slow connections trickle at once; default 1000.
	Conns int
	// PerSource is how many come from each source address; default 50,
	// the relay's default per-client limit (-client-conn), so the limit
	// admits them all and what is measured is the load itself.
	PerSource int
	// Probes is how many timed transactions the normal client makes
	// unloaded (half before, half after the load) and loaded; default 40.
	Probes int
	// MaxRatio is the loaded/unloaded median the scenario allows; default 2.
	MaxRatio float64
	// Hold is how long the loaded probes are spread over while the slow
	// clients trickle; default 30s.
	Hold time.Duration
}

// relayClientConn is the relay's default -client-conn.
const relayClientConn = 50

func (c SlowConfig) withDefaults() SlowConfig {
	setDefault(&c.Conns, 1000)
	setDefault(&c.PerSource, relayClientConn)
	setDefault(&c.Probes, 40)
	setDefault(&c.MaxRatio, 2)
	setDefault(&c.Hold, 30*time.Second)
	return c
}

// SlowResult is what the slow-client scenario measured.
type SlowResult struct {
	Outcome
	Conns     int `json:"conns"`
	Sources   int `json:"sources"`
	PerSource int `json:"per_source"`
	// NoFile is the RLIMIT_NOFILE soft limit the suite and the relay ran
	// with.
	NoFile uint64 `json:"rlimit_nofile"`
	// Admitted slow connections got the 220 banner; Refused got anything
	// else or were closed before it. StillOpen were still connected when
	// the loaded probes were done.
	Admitted  int   `json:"admitted"`
	InData    int   `json:"in_data"` // of them, trickling a message body after DATA
	Refused   int   `json:"refused"`
	StillOpen int   `json:"still_open"`
	Trickled  int64 `json:"bytes_trickled"`
	// OverLimit is the reply to one connection more than PerSource from
	// one source: the per-client limit in force.
	OverLimit string `json:"over_limit_reply"`
	// Transaction times of the normal client, in milliseconds.
	Probes           int     `json:"probes"`
	UnloadedMedianMs float64 `json:"unloaded_median_ms"`
	UnloadedP90Ms    float64 `json:"unloaded_p90_ms"`
	LoadedMedianMs   float64 `json:"loaded_median_ms"`
	LoadedP90Ms      float64 `json:"loaded_p90_ms"`
	Ratio            float64 `json:"ratio"`
	MaxRatio         float64 `json:"max_ratio"`
	ProbeFailures    int     `json:"probe_failures"`
	RSSKiB           int64   `json:"relay_rss_kib"`
}

// slowEnvelope is a transaction up to DATA. Half the slow clients
// trickle it one byte a second (slow commands), the other half send it
// at once and trickle the message body (slow DATA, a transaction open in
// the relay all along).
const slowEnvelope = "EHLO slow.reliability.test\r\nMAIL FROM:<slow@example.net>\r\nRCPT TO:<slow@example.test>\r\nDATA\r\n"

func runSlow(ctx context.Context, s *suite, cfg SlowConfig) *SlowResult {
	cfg = cfg.withDefaults()
	res := &SlowResult{Conns: cfg.Conns, PerSource: cfg.PerSource, Probes: cfg.Probes, MaxRatio: cfg.MaxRatio}
	defer res.settle()
	res.Sources = (cfg.Conns + cfg.PerSource - 1) / cfg.PerSource
	var err error
	if res.NoFile, err = proc.RaiseFileLimit(); err != nil {
		res.note("could not raise RLIMIT_NOFILE: %v", err)
	}
	if err := slow(ctx, s, cfg, res); err != nil {
		res.fail("%v", err)
		return res
	}
	res.require(res.Admitted == cfg.Conns, "%d of %d slow connections admitted", res.Admitted, cfg.Conns)
	res.require(res.StillOpen == res.Admitted, "%d of %d admitted slow connections were dropped during the test", res.Admitted-res.StillOpen, res.Admitted)
	res.require(res.ProbeFailures == 0, "%d probe transactions failed", res.ProbeFailures)
	res.require(res.Ratio > 0 && res.Ratio <= cfg.MaxRatio, "loaded median %.2f ms is %.2fx the unloaded %.2f ms (allowed %.1fx)",
		res.LoadedMedianMs, res.Ratio, res.UnloadedMedianMs, cfg.MaxRatio)
	if cfg.PerSource >= relayClientConn {
		res.require(strings.HasPrefix(res.OverLimit, "421"), "a connection over the per-client limit got %q, want 421", res.OverLimit)
	}
	return res
}

func slow(ctx context.Context, s *suite, cfg SlowConfig, res *SlowResult) error {
	dir, err := s.dir("slow")
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
	// Nobody on loopback is trusted, so the per-client connection limit
	// (default 50) applies to every client, the probe included.
	r, err := s.startRelay(ctx, dir, filepath.Join(dir, "relay.log"), "-listen", "127.0.0.1:0",
		"-spool", filepath.Join(dir, "spool"), "-greet-pause", "0", "-trusted", "192.0.2.0/24", "-mailertable", mt,
		"-hostname", "relay.reliability.test")
	if err != nil {
		return err
	}
	defer r.kill()
	p := &prober{ctx: ctx, addr: r.addr, res: res}
	for range 3 {
		p.probe() // warm up: first connections, page cache, the spool's log
	}
	half := max(1, cfg.Probes/2)
	unloaded := p.run(half, 20*time.Millisecond)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := &slowClients{ctx: cctx}
	res.Refused += sc.open(r.addr, cfg)
	// Wait for every admitted connection to have its banner.
	waitFor(ctx, 30*time.Second, func() bool { return int(sc.admitted.Load()+sc.refused.Load()) >= sc.count() })
	res.Admitted = int(sc.admitted.Load())
	res.Refused += sc.count() - res.Admitted
	// One more from the first source is over the limit (when it has as
	// many as the limit allows).
	res.OverLimit = firstLine(r.addr, "127.0.0.10")
	s.progress("slow: %d slow connections admitted, %d refused; over the limit: %q", res.Admitted, res.Refused, res.OverLimit)
	// Let every slow client get a few bytes in, then measure.
	time.Sleep(2 * time.Second)
	loaded := p.run(cfg.Probes, cfg.Hold/time.Duration(cfg.Probes))
	res.InData = int(sc.inData.Load())
	res.StillOpen = res.Admitted - int(sc.dropped.Load())
	if rss, _, err := memStatus(r.pid()); err == nil {
		res.RSSKiB = rss
	}
	res.Trickled = sc.trickled.Load()
	cancel()
	sc.close()
	time.Sleep(500 * time.Millisecond) // the relay notices the closes
	unloaded = append(unloaded, p.run(cfg.Probes-half, 20*time.Millisecond)...)
	res.UnloadedMedianMs, res.UnloadedP90Ms = quantileMs(unloaded, 0.5), quantileMs(unloaded, 0.9)
	res.LoadedMedianMs, res.LoadedP90Ms = quantileMs(loaded, 0.5), quantileMs(loaded, 0.9)
	if res.UnloadedMedianMs > 0 {
		res.Ratio = res.LoadedMedianMs / res.UnloadedMedianMs
	}
	if !r.alive() {
		return fmt.Errorf("the relay died: %s", r.tail())
	}
	s.progress("slow: unloaded median %.2f ms, loaded median %.2f ms (%.2fx)", res.UnloadedMedianMs, res.LoadedMedianMs, res.Ratio)
	return nil
}

// prober times the transactions of a normal client; failures are counted
// in res.
type prober struct {
	ctx  context.Context
	addr string
	res  *SlowResult
	seq  atomic.Int64
}

// probe times one transaction and says whether it was accepted.
func (p *prober) probe() (time.Duration, bool) {
	id := fmt.Sprintf("<slow-probe-%d@reliability.test>", p.seq.Add(1))
	start := time.Now()
	o := send(p.ctx, txn{addr: p.addr, src: "127.0.0.1", from: "probe@example.net", to: []string{"probe@example.test"},
		body: plainMessage(id, 1024), timeout: 30 * time.Second})
	return time.Since(start), o.acked()
}

// run times n transactions, gap apart.
func (p *prober) run(n int, gap time.Duration) []time.Duration {
	var ds []time.Duration
	for range n {
		d, ok := p.probe()
		if !ok {
			p.res.ProbeFailures++
		}
		ds = append(ds, d)
		time.Sleep(gap)
	}
	return ds
}

// slowClients are the connections that trickle a byte a second until ctx
// ends.
type slowClients struct {
	ctx      context.Context
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	admitted atomic.Int64
	refused  atomic.Int64 // closed or answered other than 220
	dropped  atomic.Int64 // admitted, then closed by the relay
	trickled atomic.Int64
	inData   atomic.Int64
}

// open connects cfg.Conns slow clients, PerSource each from 127.0.0.10,
// .11, ..., and returns how many could not connect.
func (sc *slowClients) open(addr string, cfg SlowConfig) (failed int) {
	for i := range cfg.Conns {
		src := fmt.Sprintf("127.0.0.%d", 10+i/cfg.PerSource)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
		c, err := d.DialContext(sc.ctx, "tcp", addr)
		if err != nil {
			failed++
			continue
		}
		sc.mu.Lock()
		sc.conns = append(sc.conns, c)
		sc.mu.Unlock()
		greeted := make(chan bool, 1)
		sc.wg.Go(func() { sc.read(c, greeted) })
		sc.wg.Go(func() { sc.trickle(c, i, greeted) })
	}
	return failed
}

func (sc *slowClients) count() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.conns)
}

// read waits for the banner, says on greeted whether it was a 220, and
// then reads the replies until the connection ends.
func (sc *slowClients) read(c net.Conn, greeted chan<- bool) {
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	ok := err == nil && strings.HasPrefix(line, "220")
	greeted <- ok
	if !ok {
		sc.refused.Add(1)
		return
	}
	sc.admitted.Add(1)
	_, _ = io.Copy(io.Discard, br) // replies to the trickled commands
	if sc.ctx.Err() == nil {
		sc.dropped.Add(1)
	}
}

// trickle writes a byte a second once greeted: the even clients their
// commands, the odd ones the message body after sending the envelope at
// once.
func (sc *slowClients) trickle(c net.Conn, i int, greeted <-chan bool) {
	if !<-greeted {
		return
	}
	// Spread the writes over the second.
	select {
	case <-time.After(time.Duration(i%1000) * time.Millisecond):
	case <-sc.ctx.Done():
		return
	}
	script := slowEnvelope + "Subject: slow\r\n\r\n"
	if i%2 == 1 {
		if _, err := c.Write([]byte(slowEnvelope)); err != nil {
			return
		}
		sc.inData.Add(1)
		script = script[len(slowEnvelope):]
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 0; ; n++ {
		b := byte('x')
		if n < len(script) {
			b = script[n]
		} else if n%72 == 71 {
			b = '\n' // lines of a sane length in the body
		}
		if _, err := c.Write([]byte{b}); err != nil {
			return
		}
		sc.trickled.Add(1)
		select {
		case <-t.C:
		case <-sc.ctx.Done():
			return
		}
	}
}

// close closes every connection and waits for their goroutines.
func (sc *slowClients) close() {
	sc.mu.Lock()
	for _, c := range sc.conns {
		c.Close()
	}
	sc.mu.Unlock()
	sc.wg.Wait()
}

// firstLine opens one connection from src and returns the first line the
// server sends (the banner, or a refusal), then says QUIT.
func firstLine(addr, src string) string {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "connect: " + err.Error()
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return "no reply: " + err.Error()
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return strings.TrimSpace(line)
}

// quantileMs returns the q-quantile (nearest rank) in milliseconds.
func quantileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}
