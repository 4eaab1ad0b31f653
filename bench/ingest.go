package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/mail"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// ingestLoad is one smtp-source workload.
type ingestLoad struct {
	key      string
	name     string
	sessions int
	reuse    bool
	msgs     int
}

func (h *harness) ingestLoads() []ingestLoad {
	return []ingestLoad{
		{"s1-m1", "1 session, 1 msg/session", 1, false, h.n(500)},
		{"s1-many", "1 session, many msgs/session", 1, true, h.n(800)},
		{"s32-m1", "32 sessions, 1 msg/session", 32, false, h.n(1500)},
		{"s32-many", "32 sessions, many msgs/session", 32, true, h.n(2000)},
	}
}

// ingestTarget is one server smtp-source sends to.
type ingestTarget struct {
	key, name string
	addr      string
	sink      bool       // delivers to the sink: wait for every message there
	pid       func() int // the server process (with its children), for CPU time; nil: none
}

const ingestSetup = `Postfix's smtp-source sends the same message (a 1 KiB body, ordinary
header, DKIM-signed with RSA 2048) to three servers in turn, from 127.0.0.1, with -N (a
new recipient address for each message). A run counts as done when smtp-source has
finished, i.e. every message got its 250; the rate is messages / smtp-source's wall time.
For the relays the harness then waits until the last message has arrived at smtp-sink
("through" rate: until the last arrival). The order of the three servers rotates from
repetition to repetition. CPU per message is the server's CPU time (user + system, from
/proc; for Postfix the master and all its daemons) over the run, delivery to the sink
included, divided by the messages: unlike the rates it hardly depends on what else
the machine is doing.

- **bare go-smtp**: github.com/emersion/go-smtp with a backend that discards (a helper process):
  the protocol ceiling on this machine.
- **Postern**: examples/relay as a process with the realistic chain: an access file (~300
  entries), -message-rate, a DNSBL (-dnsbl, answered by a local miekg/dns server),
  -auth-check tag (SPF at MAIL, DKIM and DMARC at DATA, Authentication-Results), the MIME walk,
  the durable queue (fdatasync, group commit), -mailertable delivery to smtp-sink; the client
  is untrusted (-trusted 192.0.2.0/24), -greet-pause 0.
- **Postfix**: Debian's Postfix as a private instance (own config and queue directories),
  relaying example.test to the same smtp-sink (relayhost), mynetworks 127.0.0.0/8, defaults
  otherwise (every queue file fsynced; no chroot, as the queue lives in a temporary directory).

Targets (issue 8): Postern/Postfix above 2, Postern/bare above 0.5.`

func ingestSection(ctx context.Context, h *harness) *Section {
	s := newSection("ingest", "Ingest: smtp-source against bare go-smtp, Postern and Postfix", ingestSetup)
	if err := runIngest(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

func runIngest(ctx context.Context, h *harness, s *Section) error {
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
	targets := []ingestTarget{
		{"bare", "bare go-smtp", bareAddr, false, func() int { return bare.cmd.Process.Pid }},
		{"postern", "Postern", h.relay.addr, true, func() int { return h.relay.cmd.Process.Pid }},
		{"postfix", "Postfix", h.postfix.addr, true, h.postfix.masterPID},
	}
	loads := h.ingestLoads()
	for _, l := range loads {
		for _, t := range targets {
			s.figure("accept/"+t.key+"/"+l.key, fmt.Sprintf("%s, %s (%d msgs)", t.name, l.name, l.msgs), "msgs/s")
		}
		for _, t := range targets {
			if t.sink {
				s.figure("through/"+t.key+"/"+l.key, fmt.Sprintf("%s to the sink, %s", t.name, l.name), "msgs/s")
			}
		}
		for _, t := range targets {
			s.figure("cpu/"+t.key+"/"+l.key, fmt.Sprintf("%s CPU per message, %s", t.name, l.name), "µs")
		}
	}
	for _, l := range loads {
		s.ratio("postern-postfix/"+l.key, "Ingest Postern/Postfix, "+l.name, "accept/postern/"+l.key, "accept/postfix/"+l.key).
			withTarget(">", 2).inChart()
	}
	for _, l := range loads {
		s.ratio("postern-bare/"+l.key, "Ingest Postern/bare go-smtp, "+l.name, "accept/postern/"+l.key, "accept/bare/"+l.key).
			withTarget(">", 0.5).inChart()
	}
	for _, l := range loads {
		s.ratio("through-postern-postfix/"+l.key, "To the sink Postern/Postfix, "+l.name, "through/postern/"+l.key, "through/postfix/"+l.key)
	}
	for _, l := range loads {
		r := s.ratio("cpu-postern-postfix/"+l.key, "CPU/message Postern/Postfix, "+l.name, "cpu/postern/"+l.key, "cpu/postfix/"+l.key).lowerIsBetter()
		if l.key == "s32-many" {
			r.inChart()
		}
	}
	for _, l := range loads {
		s.ratio("cpu-postern-bare/"+l.key, "CPU/message Postern/bare go-smtp, "+l.name, "cpu/postern/"+l.key, "cpu/bare/"+l.key).lowerIsBetter()
	}

	// What the chain did to a message: routed to the capture server.
	c, err := chainCheck(ctx, h)
	if err != nil {
		return err
	}
	s.Checks = append(s.Checks, "The relay ran as `relay "+strings.Join(h.relay.args, " ")+"` (paths shortened).", c)
	h.logf("warming up")
	for _, t := range targets {
		if _, err := h.ingestOnce(ctx, t, ingestLoad{sessions: 8, reuse: false, msgs: 100}); err != nil {
			return err
		}
	}
	dnsBefore := h.dns.Counts()
	arrived := map[string]int{}
	for rep := range h.o.reps {
		order := slices.Clone(targets)
		for range rep % len(order) {
			order = slices.Concat(order[1:], order[:1])
		}
		for _, l := range loads {
			for _, t := range order {
				r, err := h.ingestOnce(ctx, t, l)
				if err != nil {
					return err
				}
				s.add("accept/"+t.key+"/"+l.key, r.accept)
				s.add("cpu/"+t.key+"/"+l.key, r.cpuPerMsg)
				if t.sink {
					s.add("through/"+t.key+"/"+l.key, r.through)
					arrived[t.key] += l.msgs
				}
				h.logf("ingest rep %d/%d %-8s %-32s %6.0f msgs/s (to the sink %6.0f), %5.0f µs CPU/msg", rep+1, h.o.reps, t.key, l.name,
					r.accept, r.through, r.cpuPerMsg)
			}
		}
	}
	dns := h.dns.Counts()
	for _, t := range targets {
		if t.sink {
			s.Checks = append(s.Checks, fmt.Sprintf("%s: every one of the %d timed messages got its 250 and arrived at smtp-sink.", t.name, arrived[t.key]))
		}
	}
	s.Checks = append(s.Checks, fmt.Sprintf("DNS queries the relay made during the timed runs (%d messages): DNSBL %d (answers are cached), SPF %d, DKIM %d, DMARC %d, other %d.",
		arrived["postern"], dns["dnsbl"]-dnsBefore["dnsbl"], dns["spf"]-dnsBefore["spf"], dns["dkim"]-dnsBefore["dkim"],
		dns["dmarc"]-dnsBefore["dmarc"], dns["other"]-dnsBefore["other"]))
	return nil
}

type ingestResult struct {
	accept    float64 // msgs/s until smtp-source finished
	through   float64 // msgs/s until the last arrived at the sink
	cpuPerMsg float64 // µs of the server's CPU time per message, NaN if unknown
}

// ingestOnce runs one smtp-source load against t and, for a relay, waits
// for every message at the sink.
func (h *harness) ingestOnce(ctx context.Context, t ingestTarget, l ingestLoad) (ingestResult, error) {
	base := h.sink.msgs.Load()
	src := source{bin: h.sourceBin, msgFile: h.msgFile, addr: t.addr, sessions: l.sessions, msgs: l.msgs, reuse: l.reuse}
	cpu := func() time.Duration {
		if t.pid == nil {
			return -1
		}
		d, err := processCPU(t.pid())
		if err != nil {
			return -1
		}
		return d
	}
	cpu0 := cpu()
	start := time.Now()
	took, err := src.run(ctx)
	if err != nil {
		return ingestResult{}, fmt.Errorf("%s: %w", t.name, err)
	}
	r := ingestResult{accept: float64(l.msgs) / took.Seconds(), cpuPerMsg: math.NaN()}
	if t.sink {
		at, err := h.sink.waitFor(ctx, base+int64(l.msgs), 5*time.Minute)
		if err != nil {
			return r, fmt.Errorf("%s: %w", t.name, err)
		}
		r.through = float64(l.msgs) / at.Sub(start).Seconds()
	}
	// Delivery is part of a relay's work: its CPU time is counted until
	// the last message has arrived at the sink.
	if cpu1 := cpu(); cpu0 >= 0 && cpu1 >= 0 {
		r.cpuPerMsg = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(l.msgs)
	}
	return r, nil
}

// chainCheck sends one message through the relay to the capture server
// and reports what the chain recorded in its header.
func chainCheck(ctx context.Context, h *harness) (string, error) {
	src := source{bin: h.sourceBin, msgFile: h.msgFile, addr: h.relay.addr, sessions: 1, msgs: 1, rcpt: "check@" + checkDomain}
	if _, err := src.run(ctx); err != nil {
		return "", fmt.Errorf("chain check: %w", err)
	}
	got, err := h.capture.wait(ctx, 30*time.Second)
	if err != nil {
		return "", fmt.Errorf("chain check: %w", err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(got))
	if err != nil {
		return "", fmt.Errorf("chain check: the relayed message: %w", err)
	}
	ar := strings.Join(strings.Fields(m.Header.Get("Authentication-Results")), " ")
	spf := strings.Join(strings.Fields(m.Header.Get("Received-SPF")), " ")
	var missing []string
	for _, want := range []string{"spf=pass", "dkim=pass", "dmarc=pass"} {
		if !strings.Contains(ar, want) {
			missing = append(missing, want)
		}
	}
	note := "the chain authenticated the test message"
	if len(missing) > 0 {
		note = "**the chain did not find " + strings.Join(missing, ", ") + "**"
	}
	return fmt.Sprintf("Chain check (one message relayed to a capture server): %s: `Authentication-Results: %s`; `Received-SPF: %s`.",
		note, ar, spf), nil
}
