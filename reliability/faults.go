package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FaultsConfig sizes the fault scenario. The zero value is the full run.
type FaultsConfig struct {
	// Messages sent per case; default 20.
	Messages int
	// Only runs the cases whose names contain one of these words (all
	// when empty).
	Only []string
}

func (c FaultsConfig) withDefaults() FaultsConfig {
	setDefault(&c.Messages, 20)
	return c
}

// FaultsResult has one row per fault and configuration.
type FaultsResult struct {
	Outcome
	Cases []*FaultCase `json:"cases"`
}

// FaultCase is one fault under one configuration: what was sent, how the
// relay answered (reply code -> count), and whether what it acknowledged
// was delivered.
type FaultCase struct {
	Outcome
	Name         string         `json:"name"`
	Fault        string         `json:"fault"`
	Flags        string         `json:"flags"`
	Expect       string         `json:"expect"`
	Sent         int            `json:"sent"`
	Replies      map[string]int `json:"replies"`
	Acknowledged int            `json:"acknowledged"`
	Delivered    int            `json:"delivered"`
	Lost         int            `json:"lost"`
	Seconds      float64        `json:"seconds"`
}

// faultRun is one relay configured for a case, with a sink behind it.
type faultRun struct {
	s     *suite
	fc    *FaultCase
	dir   string
	sink  *sink // nil while the downstream is down
	next  string
	relay *relayProc
	acked []string
	seq   int
}

// newFaultRun starts a relay for fc. The next hop is a sink, started now
// when sinkUp, else later with startSink. Loopback clients are not
// trusted (-trusted 192.0.2.0/24), so every filter applies to them.
func (s *suite) newFaultRun(ctx context.Context, fc *FaultCase, sinkUp bool, spool string, flags ...string) (*faultRun, error) {
	dir, err := s.dir("fault-" + fc.Name)
	if err != nil {
		return nil, err
	}
	f := &faultRun{s: s, fc: fc, dir: dir}
	if f.next, err = freeAddr(); err != nil {
		return nil, err
	}
	if sinkUp {
		if err := f.startSink(); err != nil {
			return nil, err
		}
	}
	mt, err := writeMailertable(dir, f.next)
	if err != nil {
		return nil, err
	}
	if spool == "" {
		spool = filepath.Join(dir, "spool")
	}
	fc.Flags = strings.Join(flags, " ")
	args := append([]string{"-listen", "127.0.0.1:0", "-spool", spool, "-greet-pause", "0", "-trusted", "192.0.2.0/24",
		"-mailertable", mt, "-min-backoff", "1s", "-max-backoff", "2s", "-hostname", "relay.reliability.test"}, flags...)
	if f.relay, err = s.startRelay(ctx, dir, filepath.Join(dir, "relay.log"), args...); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *faultRun) startSink() error {
	k, err := f.s.startSink(f.next)
	if err != nil {
		return err
	}
	f.sink = k
	return nil
}

func (f *faultRun) close() {
	f.relay.kill()
	if f.sink != nil {
		f.sink.stop()
	}
}

// send sends one message from src with the given body text and counts
// the reply.
func (f *faultRun) send(ctx context.Context, src, text string) outcome {
	f.seq++
	id := fmt.Sprintf("<fault-%s-%d@reliability.test>", f.fc.Name, f.seq)
	msg := fmt.Appendf(plainMessage(id, 0), "%s\r\n", text)
	o := send(ctx, txn{addr: f.relay.addr, src: src, from: "sender@example.net", to: []string{"rcpt@example.test"}, body: msg})
	f.fc.Sent++
	f.fc.Replies[o.class()]++
	if o.acked() {
		f.acked = append(f.acked, id)
	}
	return o
}

// settle waits until everything acknowledged was delivered (or within)
// and counts it.
func (f *faultRun) settle(ctx context.Context, within time.Duration) {
	f.fc.Acknowledged = len(f.acked)
	if f.sink != nil {
		waitFor(ctx, within, func() bool {
			c := f.sink.copies()
			for _, id := range f.acked {
				if c[id] == 0 {
					return false
				}
			}
			return true
		})
		c := f.sink.copies()
		f.fc.Delivered = 0
		for _, id := range f.acked {
			if c[id] > 0 {
				f.fc.Delivered++
			}
		}
	}
	f.fc.Lost = f.fc.Acknowledged - f.fc.Delivered
	if n := f.relay.panicLines(); n > 0 {
		f.fc.fail("%d panic lines in the relay's log", n)
	}
	if !f.relay.alive() {
		f.fc.fail("the relay died: %s", f.relay.tail())
	}
}

// only4xx, only250: expectations on the reply counts.
func (fc *FaultCase) only(prefix string) {
	for code, n := range fc.Replies {
		fc.require(strings.HasPrefix(code, prefix), "%d answered %s, want %sxx", n, code, prefix)
	}
	fc.require(fc.Lost == 0, "%d acknowledged messages lost", fc.Lost)
}

type faultCaseFunc func(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error

func runFaults(ctx context.Context, s *suite, cfg FaultsConfig) *FaultsResult {
	cfg = cfg.withDefaults()
	res := &FaultsResult{}
	defer res.settle()
	cases := []struct {
		name, fault, expect string
		run                 faultCaseFunc
	}{
		{"dns-down", "DNS server down", "4xx (default: tempfail), nothing acknowledged", dnsDown(false)},
		{"dns-down-fail-open", "DNS server down", "250 and delivered (-dnsbl-on-error accept)", dnsDown(true)},
		{"dns-up", "none (control)", "unlisted 127.0.0.2: 250 and delivered; listed 127.0.0.3: 5xx", dnsUp},
		{"clamd-down", "clamd down", "451 (default: fail closed), nothing acknowledged", clamdDown(false)},
		{"clamd-down-fail-open", "clamd down", "250 and delivered (-virus-on-error accept)", clamdDown(true)},
		{"clamd-up", "none (control)", "clean: 250 and delivered; EICAR: 5xx", clamdUp},
		{"downstream-down", "next hop down", "250 (queued), retried, all delivered when the next hop is back", downstreamDown},
		{"redis-down", "Redis down", "250 and delivered (default: fail open)", redisDown(false)},
		{"redis-down-fail-closed", "Redis down", "451 (-redis-on-error tempfail), nothing acknowledged", redisDown(true)},
		{"redis-up", "none (control)", "-message-rate 3/1m through Redis: 3 x 250, then 4xx", redisUp},
		{"disk-full", "spool disk full (256 KiB tmpfs)", "452 when full; all acknowledged delivered once the queue drains; 250 again after", diskFull},
	}
	for _, c := range cases {
		if !selected(c.name, cfg.Only) {
			continue
		}
		fc := &FaultCase{Name: c.name, Fault: c.fault, Expect: c.expect, Replies: map[string]int{}}
		start := time.Now()
		if err := c.run(ctx, s, cfg, fc); err != nil {
			if isMissing(err) {
				fc.skip(s.ci, err)
			} else {
				fc.fail("%v", err)
			}
		}
		fc.Seconds = time.Since(start).Seconds()
		fc.settle()
		res.Cases = append(res.Cases, fc)
		s.progress("faults: %s: %s %v acknowledged %d delivered %d lost %d", fc.Name, fc.Status, fc.Replies, fc.Acknowledged, fc.Delivered, fc.Lost)
		if fc.Status == StatusFail {
			res.fail("%s: %s", fc.Name, strings.Join(fc.Failures, "; "))
		}
	}
	return res
}

func selected(name string, only []string) bool {
	if len(only) == 0 {
		return true
	}
	for _, o := range only {
		if o != "" && strings.Contains(name, o) {
			return true
		}
	}
	return false
}

// outside is the client address: loopback, but not trusted.
const outside = "127.0.0.2"

func dnsDown(failOpen bool) faultCaseFunc {
	return func(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
		dead, err := deadUDP()
		if err != nil {
			return err
		}
		flags := []string{"-dnsbl", "bl.reliability.test", "-dns-resolver", dead}
		if failOpen {
			flags = append(flags, "-dnsbl-on-error", "accept")
		}
		f, err := s.newFaultRun(ctx, fc, true, "", flags...)
		if err != nil {
			return err
		}
		defer f.close()
		for range cfg.Messages {
			f.send(ctx, outside, "dns down")
		}
		f.settle(ctx, 20*time.Second)
		if failOpen {
			fc.only("250")
			fc.require(fc.Delivered == fc.Sent, "%d of %d delivered", fc.Delivered, fc.Sent)
		} else {
			fc.only("4")
		}
		return nil
	}
}

func dnsUp(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
	z, err := s.startDNS("3.0.0.127.bl.reliability.test")
	if err != nil {
		return err
	}
	f, err := s.newFaultRun(ctx, fc, true, "", "-dnsbl", "bl.reliability.test", "-dns-resolver", z.addr)
	if err != nil {
		return err
	}
	defer f.close()
	listed := map[string]int{}
	for i := range cfg.Messages {
		if i%2 == 0 {
			f.send(ctx, outside, "not listed")
		} else {
			listed[f.send(ctx, "127.0.0.3", "listed").class()]++
		}
	}
	f.settle(ctx, 20*time.Second)
	for code, n := range listed {
		fc.require(strings.HasPrefix(code, "5"), "listed client: %d answered %s, want 5xx", n, code)
	}
	fc.require(fc.Acknowledged == (cfg.Messages+1)/2, "%d acknowledged, want %d", fc.Acknowledged, (cfg.Messages+1)/2)
	fc.require(fc.Lost == 0, "%d acknowledged messages lost", fc.Lost)
	fc.require(z.queryCount() > 0, "the DNS server was never asked")
	return nil
}

func clamdDown(failOpen bool) faultCaseFunc {
	return func(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
		dead, err := freeAddr()
		if err != nil {
			return err
		}
		flags := []string{"-clamd", dead}
		if failOpen {
			flags = append(flags, "-virus-on-error", "accept")
		}
		f, err := s.newFaultRun(ctx, fc, true, "", flags...)
		if err != nil {
			return err
		}
		defer f.close()
		for range cfg.Messages {
			f.send(ctx, outside, "clamd down")
		}
		f.settle(ctx, 20*time.Second)
		if failOpen {
			fc.only("250")
			fc.require(fc.Delivered == fc.Sent, "%d of %d delivered", fc.Delivered, fc.Sent)
		} else {
			fc.only("451")
		}
		return nil
	}
}

func clamdUp(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
	d, err := s.startClamd(ctx)
	if err != nil {
		return err
	}
	defer d.kill()
	f, err := s.newFaultRun(ctx, fc, true, "", "-clamd", d.addr)
	if err != nil {
		return err
	}
	defer f.close()
	virus := map[string]int{}
	for i := range cfg.Messages {
		if i%2 == 0 {
			f.send(ctx, outside, "clean")
		} else {
			virus[f.send(ctx, outside, eicar()).class()]++
		}
	}
	f.settle(ctx, 20*time.Second)
	for code, n := range virus {
		fc.require(strings.HasPrefix(code, "5"), "EICAR: %d answered %s, want 5xx", n, code)
	}
	fc.require(fc.Acknowledged == (cfg.Messages+1)/2, "%d acknowledged, want %d", fc.Acknowledged, (cfg.Messages+1)/2)
	fc.require(fc.Lost == 0, "%d acknowledged messages lost", fc.Lost)
	return nil
}

func downstreamDown(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
	f, err := s.newFaultRun(ctx, fc, false, "")
	if err != nil {
		return err
	}
	defer f.close()
	for range cfg.Messages {
		f.send(ctx, outside, "downstream down")
	}
	// Let the queue fail at least twice (backoff 1s, then 2s).
	time.Sleep(4 * time.Second)
	if err := f.startSink(); err != nil {
		return err
	}
	up := time.Now()
	f.settle(ctx, 30*time.Second)
	fc.note("all delivered %.1fs after the next hop came back", time.Since(up).Seconds())
	fc.only("250")
	fc.require(fc.Delivered == fc.Sent, "%d of %d delivered", fc.Delivered, fc.Sent)
	return nil
}

func redisDown(failClosed bool) faultCaseFunc {
	return func(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
		dead, err := freeAddr()
		if err != nil {
			return err
		}
		flags := []string{"-redis", dead, "-message-rate", "1000/1m"}
		if failClosed {
			flags = append(flags, "-redis-on-error", "tempfail")
		}
		f, err := s.newFaultRun(ctx, fc, true, "", flags...)
		if err != nil {
			return err
		}
		defer f.close()
		for range cfg.Messages {
			f.send(ctx, outside, "redis down")
		}
		f.settle(ctx, 20*time.Second)
		if failClosed {
			fc.only("451")
		} else {
			fc.only("250")
			fc.require(fc.Delivered == fc.Sent, "%d of %d delivered", fc.Delivered, fc.Sent)
		}
		return nil
	}
}

func redisUp(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
	d, err := s.startRedis(ctx)
	if err != nil {
		return err
	}
	defer d.kill()
	f, err := s.newFaultRun(ctx, fc, true, "", "-redis", d.addr, "-message-rate", "3/1m")
	if err != nil {
		return err
	}
	defer f.close()
	n := max(cfg.Messages, 5)
	for i := range n {
		o := f.send(ctx, outside, "redis up")
		if i < 3 {
			fc.require(o.acked(), "message %d: %s %s, want 250", i+1, o.class(), o.Text)
		} else {
			fc.require(o.Code >= 400 && o.Code < 500, "message %d over the rate: %s %s, want 4xx", i+1, o.class(), o.Text)
		}
	}
	f.settle(ctx, 20*time.Second)
	fc.require(fc.Lost == 0, "%d acknowledged messages lost", fc.Lost)
	return nil
}

func diskFull(ctx context.Context, s *suite, cfg FaultsConfig, fc *FaultCase) error {
	dir, err := s.dir("tmpfs")
	if err != nil {
		return err
	}
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o755); err != nil {
		return err
	}
	unmount, err := mountTmpfs(spool, "256k")
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: %v", ErrNoPrivilege, err)
	} else if err != nil {
		return err
	}
	defer unmount()
	// The next hop is down at first, so what is acknowledged stays in
	// the queue and the disk fills.
	f, err := s.newFaultRun(ctx, fc, false, spool)
	if err != nil {
		return err
	}
	defer f.close()
	full := 0
	for i := 0; i < 400 && full < 3; i++ {
		if o := f.send(ctx, outside, strings.Repeat("fill the disk, fill the disk, fill the disk, fill the disk\r\n", 35)); o.Code == 452 {
			full++
		}
	}
	fc.require(full > 0, "the disk never filled: %v", fc.Replies)
	// One message larger than the whole disk.
	if o := f.send(ctx, outside, strings.Repeat(strings.Repeat("x", 76)+"\r\n", 5000)); o.Code != 452 {
		fc.fail("a message larger than the disk: %s %s, want 452", o.class(), o.Text)
	}
	if err := f.startSink(); err != nil {
		return err
	}
	f.settle(ctx, 60*time.Second)
	fc.require(fc.Acknowledged > 0, "nothing was acknowledged before the disk filled")
	fc.require(fc.Delivered == fc.Acknowledged, "%d of %d acknowledged delivered", fc.Delivered, fc.Acknowledged)
	// With the queue drained there is room again; give the spool a
	// checkpoint's time to drop delivered messages from its log.
	var o outcome
	drained, refusals := time.Now(), 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if o = f.send(ctx, outside, "room again"); o.acked() {
			break
		}
		refusals++
		time.Sleep(500 * time.Millisecond)
	}
	fc.require(o.acked(), "after the drain: %s %s, want 250", o.class(), o.Text)
	fc.note("after the drain, 250 again %.1fs later (%d more 452 meanwhile: the spool frees its log at a checkpoint)",
		time.Since(drained).Seconds(), refusals)
	f.settle(ctx, 20*time.Second)
	for code, n := range fc.Replies {
		fc.require(code == "250" || code == "452", "%d answered %s, want 250 or 452", n, code)
	}
	fc.require(fc.Lost == 0, "%d acknowledged messages lost", fc.Lost)
	return nil
}

// isMissing tells what this machine lacks (a peer, root) from a failure.
func isMissing(err error) bool {
	return errors.Is(err, ErrMissing) || errors.Is(err, ErrNoPrivilege)
}
