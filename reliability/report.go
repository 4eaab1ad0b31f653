package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Results is everything one run measured; it is written as JSON and
// printed as Markdown.
type Results struct {
	Date        string         `json:"date"`
	Command     string         `json:"command"`
	Seconds     float64        `json:"seconds"`
	Machine     Machine        `json:"machine"`
	Passed      bool           `json:"passed"`
	Interrupted bool           `json:"interrupted,omitempty"`
	Crash       *CrashResult   `json:"crash,omitempty"`
	Slow        *SlowResult    `json:"slow,omitempty"`
	Faults      *FaultsResult  `json:"faults,omitempty"`
	Hostile     *HostileResult `json:"hostile,omitempty"`
	Seams       *SeamsResult   `json:"seams,omitempty"`
	Fuzz        *FuzzResult    `json:"fuzz,omitempty"`
}

// mdWriter keeps the first write error, so the report reads as prose.
type mdWriter struct {
	w   io.Writer
	err error
}

func (m *mdWriter) f(format string, args ...any) {
	if m.err == nil {
		_, m.err = fmt.Fprintf(m.w, format, args...)
	}
}

func (m *mdWriter) outcome(o *Outcome) {
	if len(o.Failures)+len(o.Notes) == 0 && o.Skipped == "" {
		return
	}
	for _, f := range o.Failures {
		m.f("- **FAIL**: %s\n", oneLine(f))
	}
	if o.Skipped != "" {
		m.f("- skipped: %s\n", oneLine(o.Skipped))
	}
	for _, n := range o.Notes {
		m.f("- note: %s\n", oneLine(n))
	}
	m.f("\n")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\r\n", "\n")
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r", " ⏎ "), "\n", " ⏎ ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

// cell escapes a table cell.
func cell(s string) string { return strings.ReplaceAll(oneLine(s), "|", `\|`) }

func verdict(status string) string {
	switch status {
	case StatusPass:
		return "pass"
	case StatusSkip:
		return "skipped"
	case StatusKnown:
		return "known issue"
	}
	return "**FAIL**"
}

// writeMarkdown prints the report.
func (r *Results) writeMarkdown(w io.Writer) error {
	m := &mdWriter{w: w}
	overall := "all scenarios passed"
	if !r.Passed {
		overall = "**FAILED**"
	}
	m.f("# Postern reliability report\n\n")
	m.f("%s: %s (%.0f s). Machine: %d CPUs (%s), %s, Linux %s, %s %s.\n\n", r.Date, overall, r.Seconds,
		r.Machine.CPUs, r.Machine.CPU, r.Machine.Memory, r.Machine.Kernel, r.Machine.Go, r.Machine.OSArch)
	if r.Command != "" {
		m.f("Command: `%s`\n\n", strings.TrimSpace(r.Command))
	}
	if r.Interrupted {
		m.f("The run was interrupted.\n\n")
	}
	if c := r.Crash; c != nil {
		m.f("## 1. Crash: kill -9 under load, restart on the same spool — %s\n\n", verdict(c.Status))
		m.f("%d cycles; load: %d smtp-source sessions; %d tracked clients.\n\n", c.Cycles, c.Sessions, c.Clients)
		m.f("| tracked sent | acknowledged (250) | delivered | **lost** | duplicates (ids) | delivered without 250 | load delivered | left in queue | drain |\n")
		m.f("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		m.f("| %d | %d | %d | **%d** | %d (%d) | %d | %d | %d | %.1f s |\n\n", c.Attempted, c.Acknowledged, c.Delivered, c.Lost,
			c.Duplicates, c.DuplicatedIDs, c.UnackedDelivered, c.LoadDelivered, c.LeftInQueue, c.DrainSeconds)
		if len(c.PerCycle) > 0 {
			var parts []string
			for i, pc := range c.PerCycle {
				parts = append(parts, fmt.Sprintf("%d: %d ms %d/%d", i+1, pc.UpMillis, pc.Acknowledged, pc.Attempted))
			}
			m.f("Per cycle (uptime, acknowledged/sent): %s.\n\n", strings.Join(parts, "; "))
		}
		m.outcome(&c.Outcome)
	}
	if s := r.Slow; s != nil {
		m.f("## 2. Slow clients — %s\n\n", verdict(s.Status))
		m.f("%d connections trickling one byte a second from %d untrusted loopback addresses (%d each, the default -client-conn); RLIMIT_NOFILE %d.\n\n",
			s.Conns, s.Sources, s.PerSource, s.NoFile)
		m.f("Half trickle their commands, half send the envelope at once and trickle the message body after DATA. The normal client's transactions are spread over the load.\n\n")
		m.f("| admitted | in DATA | refused | still open | bytes trickled | over the limit | relay RSS | unloaded median (p90) | loaded median (p90) | ratio (max) |\n")
		m.f("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
		m.f("| %d | %d | %d | %d | %d | %s | %d KiB | %.2f ms (%.2f) | %.2f ms (%.2f) | %.2fx (%.1fx) |\n\n", s.Admitted, s.InData, s.Refused, s.StillOpen,
			s.Trickled, cell(s.OverLimit), s.RSSKiB, s.UnloadedMedianMs, s.UnloadedP90Ms, s.LoadedMedianMs, s.LoadedP90Ms, s.Ratio, s.MaxRatio)
		m.outcome(&s.Outcome)
	}
	if f := r.Faults; f != nil {
		m.f("## 3. Faults — %s\n\n", verdict(f.Status))
		m.f("| case | fault | expected | replies | acknowledged | delivered | lost | result |\n")
		m.f("|---|---|---|---|---:|---:|---:|---|\n")
		for _, c := range f.Cases {
			m.f("| %s | %s | %s | %s | %d | %d | %d | %s |\n", c.Name, cell(c.Fault), cell(c.Expect), replyCounts(c.Replies),
				c.Acknowledged, c.Delivered, c.Lost, verdict(c.Status))
		}
		m.f("\n")
		noted := false
		for _, c := range f.Cases {
			for _, n := range c.Notes {
				m.f("- %s: %s\n", c.Name, oneLine(n))
				noted = true
			}
			if c.Skipped != "" {
				m.f("- %s skipped: %s\n", c.Name, oneLine(c.Skipped))
				noted = true
			}
		}
		if noted {
			m.f("\n")
		}
		m.outcome(&f.Outcome)
	}
	if h := r.Hostile; h != nil {
		m.f("## 4. Hostile input — %s\n\n", verdict(h.Status))
		m.f("| dialogs | messages | answered properly | message replies | max time per case | max RSS after a case | peak RSS (start) | relay alive | delivered | left in queue |\n")
		m.f("|---:|---:|---:|---|---:|---:|---:|---|---:|---:|\n")
		m.f("| %d | %d | %d | %s | %.0f ms (%s) | %d KiB | %d KiB (%d) | %v | %d | %d |\n\n", h.Dialogs, h.Messages, h.Answered,
			replyCounts(h.Replies), h.MaxMillis, cell(h.MaxCase), h.MaxRSSKiB, h.PeakRSSKiB, h.StartRSSKiB, h.Alive, h.Delivered, h.LeftInQueue)
		m.f("Bounds: %.0f ms per case, %d KiB peak RSS.\n\n", h.BoundMillis, h.BoundRSSKiB)
		m.f("<details><summary>Dialogs (final reply codes)</summary>\n\n| dialog | replies | ms | result |\n|---|---|---:|---|\n")
		for _, c := range h.Cases {
			if c.Kind == "dialog" {
				m.f("| %s | %s | %.1f | %s |\n", cell(c.Name), cell(c.Codes), c.Millis, verdict(c.Status))
			}
		}
		m.f("\n</details>\n\n")
		if len(h.KnownIssues) > 0 {
			m.f("Known issues (answered, but not as they should be; reported, not counted as failures):\n\n")
			for _, k := range h.KnownIssues {
				m.f("- %s\n", oneLine(k))
			}
			m.f("\n")
		}
		m.outcome(&h.Outcome)
	}
	if sm := r.Seams; sm != nil {
		m.seams(sm)
	}
	if z := r.Fuzz; z != nil {
		m.f("## 6. Fuzz campaign — %s\n\n", verdict(z.Status))
		m.f("%d targets, -fuzztime %s each: %d executions, %d crashers.\n\n", len(z.Targets), z.Time, z.TotalExecs, z.Crashers)
		m.f("| package | target | execs | seconds | result |\n|---|---|---:|---:|---|\n")
		for _, t := range z.Targets {
			m.f("| %s | %s | %d | %.0f | %s |\n", shortPkg(t.Package), t.Name, t.Execs, t.Seconds, t.Result)
		}
		m.f("\n")
		for _, t := range z.Targets {
			if t.Result == fuzzCrasher {
				m.f("- crasher %s %s: %s, input %s\n", t.Package, t.Name, t.Crasher, cell(t.Input))
			}
		}
		m.outcome(&z.Outcome)
	}
	return m.err
}

// replyCounts prints {"250": 3, "451": 1} as "250×3 451×1".
func replyCounts(r map[string]int) string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, r[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// shortPkg names a package of the module relative to its root.
func shortPkg(p string) string {
	const module = "github.com/postern/postern"
	if p == module {
		return "."
	}
	return strings.TrimPrefix(p, module+"/")
}

// seams prints the adversarial cases of "Security at the seams".
func (m *mdWriter) seams(sm *SeamsResult) {
	m.f("## 5. Security at the seams — %s\n\n", verdict(sm.Status))
	m.f("%d cases: %d passed, %d known issues, %d failed, %d skipped (%.0f s). ", len(sm.Cases), sm.Passed, sm.Known, sm.Failed,
		sm.Skipped, sm.Seconds)
	m.f("Each runs the relay binary with real peers; \"reply\" is what the relay answered, \"delivered\" what reached a next hop ")
	m.f("as its sink read it off the wire (envelope, notices and to whom).\n\n")
	m.f("| case | what the attacker does | reply | delivered | expected | result |\n|---|---|---|---|---|---|\n")
	group := ""
	for _, c := range sm.Cases {
		if c.Group != group {
			group = c.Group
			m.f("| **%s** | | | | | |\n", cell(group))
		}
		res := verdict(c.Status)
		if c.Status == StatusSkip {
			res += ": " + c.Skipped
		}
		m.f("| %s | %s | %s | %s | %s | %s |\n", c.ID, cell(c.Attack), cell(c.Reply), cell(c.Delivered), cell(c.Expect), cell(res))
	}
	m.f("\n")
	listed := false
	for _, c := range sm.Cases {
		if c.Status == StatusKnown {
			m.f("- %s known issue (reported, not counted as a failure): %s. Observed: %s\n", c.ID, oneLine(c.Known),
				oneLine(strings.Join(c.Failures, "; ")))
			listed = true
			continue
		}
		for _, f := range c.Failures {
			m.f("- %s **FAIL**: %s\n", c.ID, oneLine(f))
			listed = true
		}
		for _, n := range c.Notes {
			m.f("- %s: %s\n", c.ID, oneLine(n))
			listed = true
		}
	}
	if listed {
		m.f("\n")
	}
}
