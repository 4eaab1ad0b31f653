package main

import (
	"context"
	"fmt"
	"time"
)

const latencySetup = `One probe client runs whole transactions against the relay (connect, EHLO,
MAIL, RCPT, DATA with the test message, QUIT; no pipelining), one after another, and its
times are taken: first alone ("unloaded"), then while smtp-source sends with 32 sessions,
one message per session, to the same relay (the load of the ingest benchmark). The relay
runs the same chain as there and the probe, like the load, is an untrusted client.
p50 and p99 are taken per repetition over every probe of that repetition.`

func latencySection(ctx context.Context, h *harness) *Section {
	s := newSection("latency", "Latency under load: a probe client during the 32-session ingest", latencySetup)
	if err := runLatency(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

func runLatency(ctx context.Context, h *harness, s *Section) error {
	unloaded, loadN := max(int(300*h.o.scale), 50), h.n(3000)
	s.figure("unloaded/p50", "unloaded, p50", "ms")
	s.figure("unloaded/p99", "unloaded, p99", "ms")
	s.figure("loaded/p50", "under load, p50", "ms")
	s.figure("loaded/p99", "under load, p99", "ms")
	s.figure("loaded/n", "probes under load", "probes")
	s.figure("load/rate", fmt.Sprintf("the load: 32 sessions, 1 msg/session (%d msgs)", loadN), "msgs/s")
	s.ratio("p50", "Probe latency under load/unloaded, p50", "loaded/p50", "unloaded/p50").lowerIsBetter().inChart()
	s.ratio("p99", "Probe latency under load/unloaded, p99", "loaded/p99", "unloaded/p99").lowerIsBetter().inChart()
	probes := 0
	for rep := range h.o.reps {
		base := h.sink.msgs.Load()
		var alone []float64
		for range unloaded {
			d, err := probe(ctx, h.relay.addr, "", h.msg)
			if err != nil {
				return fmt.Errorf("unloaded probe: %w", err)
			}
			alone = append(alone, ms(d))
		}
		src := source{bin: h.sourceBin, msgFile: h.msgFile, addr: h.relay.addr, sessions: 32, msgs: loadN}
		start := time.Now()
		wait, err := src.start(ctx)
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- wait() }()
		var loaded []float64
		var loadErr error
	probing:
		for {
			select {
			case loadErr = <-done:
				break probing
			default:
			}
			d, err := probe(ctx, h.relay.addr, "", h.msg)
			if err != nil {
				<-done
				return fmt.Errorf("probe under load: %w", err)
			}
			loaded = append(loaded, ms(d))
		}
		took := time.Since(start)
		if loadErr != nil {
			return loadErr
		}
		if len(loaded) == 0 {
			return fmt.Errorf("no probe finished during the load")
		}
		// Let the relay drain its queue before the next repetition.
		if _, err := h.sink.waitFor(ctx, base+int64(len(alone)+loadN+len(loaded)), 5*time.Minute); err != nil {
			return err
		}
		probes += len(loaded) + len(alone)
		s.add("unloaded/p50", Quantile(alone, 0.5))
		s.add("unloaded/p99", Quantile(alone, 0.99))
		s.add("loaded/p50", Quantile(loaded, 0.5))
		s.add("loaded/p99", Quantile(loaded, 0.99))
		s.add("loaded/n", float64(len(loaded)))
		s.add("load/rate", float64(loadN)/took.Seconds())
		h.logf("latency rep %d/%d unloaded p50 %.2f p99 %.2f ms; loaded p50 %.2f p99 %.2f ms (%d probes)", rep+1, h.o.reps,
			Quantile(alone, 0.5), Quantile(alone, 0.99), Quantile(loaded, 0.5), Quantile(loaded, 0.99), len(loaded))
	}
	s.Checks = append(s.Checks, fmt.Sprintf("Every probe transaction (%d) was accepted with 250 and every message arrived at smtp-sink.", probes))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
