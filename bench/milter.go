package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const milterSetup = `Postern's filters inside Postfix: a second private Postfix instance, the
same as the ingest section's but with smtpd_milters pointing at ` + "`relay milter`" + ` (the
relay serving its port-25 chain over the milter protocol, with the ingest section's
realistic chain: access file, message rate, DNSBL, SPF, DKIM, DMARC, the MIME walk) and the
milter settings of docs/milter.md. smtp-source sends the ingest message to Postfix alone
and to Postfix with the milter in turn; both relay it to smtp-sink.

CPU per message of the milter process is set beside the relay's own over SMTP (the
ingest section's relay, same chain): the relay's figure also holds its queue and its
delivery to the sink, which Postfix does in the milter setup.`

// milterMainCF is docs/milter.md's main.cf block, on the bench's port.
func milterMainCF(addr string) string {
	return fmt.Sprintf(`smtpd_milters = inet:%s
milter_protocol = 6
milter_default_action = tempfail
milter_connect_macros = j {daemon_name} {daemon_addr} {daemon_port} v _ {client_ptr}
milter_helo_macros = {tls_version} {cipher} {cipher_bits} {cert_subject}
milter_mail_macros = i {auth_type} {auth_authen}
milter_end_of_data_macros = i
`, addr)
}

func milterSection(ctx context.Context, h *harness) *Section {
	s := newSection("milter", "Postern as a milter: Postfix with and without Postern's filters", milterSetup)
	if err := runMilter(ctx, h, s); err != nil {
		s.Error = err.Error()
	}
	return s
}

// startMilterRelay runs `relay milter` with the ingest chain on addr.
func (h *harness) startMilterRelay(ctx context.Context, addr string) (*relayProc, error) {
	dir := filepath.Join(h.work, "relay-milter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args, err := relayArgs(dir, "unused", h.dns.addr, h.sink.addr, h.capture.addr, chainFull)
	if err != nil {
		return nil, err
	}
	// relayArgs begins "serve -listen ADDR": here -listen is the milter's.
	args = append([]string{"milter", "-listen", "inet:" + addr}, args[3:]...)
	return startRelay(ctx, h.relayBin, dir, args, addr)
}

func runMilter(ctx context.Context, h *harness, s *Section) error {
	milterAddr, err := freeAddr()
	if err != nil {
		return err
	}
	mr, err := h.startMilterRelay(ctx, milterAddr)
	if err != nil {
		return err
	}
	defer mr.stop(10 * time.Second)
	h.logf("starting a private Postfix instance with the Postern milter")
	pf, err := startPostfix(ctx, filepath.Join(h.work, "milter"), h.sink.addr, milterMainCF(milterAddr))
	if err != nil {
		return err
	}
	defer pf.stop()
	alone := ingestTarget{"postfix", "Postfix", h.postfix.addr, true, h.postfix.masterPID}
	with := ingestTarget{"postfix-milter", "Postfix with the Postern milter", pf.addr, true, pf.masterPID}
	var loads []ingestLoad
	for _, l := range h.ingestLoads() {
		if l.reuse {
			loads = append(loads, l)
		}
	}
	for _, l := range loads {
		s.figure("accept/postfix/"+l.key, fmt.Sprintf("Postfix alone, %s (%d msgs)", l.name, l.msgs), "msgs/s")
		s.figure("accept/postfix-milter/"+l.key, fmt.Sprintf("Postfix with the Postern milter, %s", l.name), "msgs/s")
		s.figure("cpu/milter/"+l.key, "relay milter CPU per message, "+l.name, "µs")
		s.figure("cpu/relay/"+l.key, "the relay over SMTP (queue and delivery included) CPU per message, "+l.name, "µs")
		s.ratio("with-alone/"+l.key, "Postfix with the Postern milter/Postfix alone, "+l.name, "accept/postfix-milter/"+l.key, "accept/postfix/"+l.key)
		s.ratio("cpu-milter-relay/"+l.key, "CPU/message relay milter/relay over SMTP, "+l.name, "cpu/milter/"+l.key, "cpu/relay/"+l.key).lowerIsBetter()
	}
	relay := ingestTarget{"postern", "Postern", h.relay.addr, true, func() int { return h.relay.cmd.Process.Pid }}
	h.logf("warming up")
	for _, t := range []ingestTarget{alone, with, relay} {
		if _, err := h.ingestOnce(ctx, t, ingestLoad{sessions: 8, reuse: true, msgs: 100}); err != nil {
			return err
		}
	}
	sent := 0
	for rep := range h.o.reps {
		for _, l := range loads {
			order := []ingestTarget{alone, with, relay}
			if rep%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				cpu0, _ := processCPU(mr.cmd.Process.Pid)
				r, err := h.ingestOnce(ctx, t, l)
				if err != nil {
					return err
				}
				cpu1, _ := processCPU(mr.cmd.Process.Pid)
				sent += l.msgs
				switch t.key {
				case "postern":
					s.add("cpu/relay/"+l.key, r.cpuPerMsg)
				case "postfix-milter":
					s.add("accept/"+t.key+"/"+l.key, r.accept)
					milterCPU := float64(cpu1-cpu0) / float64(time.Microsecond) / float64(l.msgs)
					if cpu0 <= 0 || cpu1 <= 0 {
						milterCPU = math.NaN()
					}
					s.add("cpu/milter/"+l.key, milterCPU)
				default:
					s.add("accept/"+t.key+"/"+l.key, r.accept)
				}
				h.logf("milter rep %d/%d %-14s %-32s %6.0f msgs/s", rep+1, h.o.reps, t.key, l.name, r.accept)
			}
		}
	}
	s.Checks = append(s.Checks, fmt.Sprintf("Every one of the %d timed messages got its 250 and arrived at smtp-sink.", sent),
		"The milter relay ran as `relay "+strings.Join(mr.args, " ")+"` (paths shortened).")
	return nil
}
