package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

const breakdownSetup = `Not part of the default run (-only breakdown, or -breakdown): where the
ingest time goes. smtp-source sends with the heaviest ingest load (32 sessions, many
messages per session) to relays that run more and more of the chain, each a new process
with its own spool, and to the bare go-smtp server as the reference:

- **queue only**: relay control, the MIME walk, the durable queue, delivery to smtp-sink;
- **+ policy**: the access file, -message-rate and the DNSBL;
- **+ authentication**: SPF, DKIM and DMARC (-auth-check tag): the ingest chain.`

func breakdownSection(ctx context.Context, h *harness) *Section {
	s := newSection("breakdown", "Breakdown: the ingest chain piece by piece", breakdownSetup)
	if err := runBreakdown(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

func runBreakdown(ctx context.Context, h *harness, s *Section) error {
	load := ingestLoad{key: "s32-many", name: "32 sessions, many msgs/session", sessions: 32, reuse: true, msgs: h.n(2000)}
	bareAddr, err := freeAddr()
	if err != nil {
		return err
	}
	bare, err := startProcess("bare go-smtp", exec.Command(h.self, "helper-bare", "-listen", bareAddr))
	if err != nil {
		return err
	}
	defer bare.stop(5 * time.Second)
	if err := waitListening(ctx, bareAddr, 10*time.Second, bare.done); err != nil {
		return err
	}
	levels := []struct {
		key, name string
		level     chainLevel
	}{{"queue", "queue only", chainQueue}, {"policy", "+ policy", chainPolicy}, {"full", "+ authentication", chainFull}}
	targets := []ingestTarget{{"bare", "bare go-smtp", bareAddr, false, func() int { return bare.cmd.Process.Pid }}}
	for _, l := range levels {
		r, err := h.runRelay(ctx, "breakdown-"+l.key, l.level)
		if err != nil {
			return err
		}
		defer r.stop(30 * time.Second)
		targets = append(targets, ingestTarget{l.key, "Postern, " + l.name, r.addr, true, func() int { return r.cmd.Process.Pid }})
	}
	for _, t := range targets {
		s.figure(t.key, fmt.Sprintf("%s (%d msgs)", t.name, load.msgs), "msgs/s")
	}
	for _, t := range targets {
		s.figure("cpu/"+t.key, t.name+", CPU per message", "µs")
	}
	for _, t := range targets[1:] {
		s.ratio(t.key+"-bare", t.name+"/bare go-smtp", t.key, "bare")
	}
	for _, t := range targets {
		if _, err := h.ingestOnce(ctx, t, ingestLoad{sessions: 8, msgs: 100}); err != nil {
			return err
		}
	}
	for rep := range h.o.reps {
		for _, t := range targets {
			r, err := h.ingestOnce(ctx, t, load)
			if err != nil {
				return err
			}
			s.add(t.key, r.accept)
			s.add("cpu/"+t.key, r.cpuPerMsg)
			h.logf("breakdown rep %d/%d %-28s %6.0f msgs/s, %5.0f µs CPU/msg", rep+1, h.o.reps, t.name, r.accept, r.cpuPerMsg)
		}
	}
	return nil
}
