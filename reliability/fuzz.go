package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FuzzConfig sets the fuzz campaign. The zero value is the full run.
type FuzzConfig struct {
	// Time per target, a duration ("10s") or a count of inputs ("20000x"),
	// as go test -fuzztime takes it; default 10s.
	Time string
	// Packages to list targets in; default "./..." (the whole module).
	Packages []string
	// Targets, when set, runs only targets whose names are in it.
	Targets []string
	// CrasherDir receives crasher inputs, moved out of the packages'
	// testdata; default <module>/reliability/crashers.
	CrasherDir string
}

func (c FuzzConfig) withDefaults(root string) FuzzConfig {
	if c.Time == "" {
		c.Time = "10s"
	}
	if len(c.Packages) == 0 {
		c.Packages = []string{"./..."}
	}
	if c.CrasherDir == "" {
		c.CrasherDir = filepath.Join(root, "reliability", "crashers")
	}
	return c
}

// FuzzResult is the campaign: one row per target.
type FuzzResult struct {
	Outcome
	Time       string        `json:"fuzztime"`
	Targets    []*FuzzTarget `json:"targets"`
	TotalExecs int64         `json:"total_execs"`
	Crashers   int           `json:"crashers"`
}

// FuzzTarget is one target's run.
type FuzzTarget struct {
	Package string  `json:"package"`
	Name    string  `json:"name"`
	Execs   int64   `json:"execs"`
	Seconds float64 `json:"seconds"`
	// Result: ok; ok-deadline (go.dev/issue/75804: the run ended with a
	// spurious "context deadline exceeded" after fuzzing normally);
	// crasher; fail (build error, failing seed, anything else).
	Result  string `json:"result"`
	Crasher string `json:"crasher,omitempty"` // where the input was moved
	Input   string `json:"input,omitempty"`   // the crasher file, quoted, cut at 2 KiB
	Output  string `json:"output,omitempty"`  // the end of go test's output when not ok
}

// Fuzz run results.
const (
	fuzzOK       = "ok"
	fuzzDeadline = "ok-deadline"
	fuzzCrasher  = "crasher"
	fuzzFail     = "fail"
)

func runFuzz(ctx context.Context, s *suite, cfg FuzzConfig) *FuzzResult {
	cfg = cfg.withDefaults(s.root)
	res := &FuzzResult{Time: cfg.Time}
	defer res.settle()
	s.progress("fuzz: listing targets (go test -list '^Fuzz' %s)", strings.Join(cfg.Packages, " "))
	list := exec.CommandContext(ctx, "go", append([]string{"test", "-list", "^Fuzz"}, cfg.Packages...)...)
	list.Dir = s.root
	out, err := list.CombinedOutput()
	targets := parseFuzzList(out)
	if err != nil {
		// A package that does not build has no targets to list; the
		// others still run.
		var broken []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "FAIL") {
				broken = append(broken, strings.Join(strings.Fields(l), " "))
			}
		}
		if len(broken) == 0 {
			broken = []string{lastLines(string(out), 10)}
		}
		res.fail("go test -list: %v: %s", err, strings.Join(broken, "; "))
	}
	want := map[string]bool{}
	for _, t := range cfg.Targets {
		want[t] = true
	}
	for _, t := range targets {
		if len(want) > 0 && !want[t.Name] {
			continue
		}
		if ctx.Err() != nil {
			res.fail("interrupted")
			break
		}
		fuzzOne(ctx, s, cfg, t)
		res.Targets = append(res.Targets, t)
		res.TotalExecs += t.Execs
		s.progress("fuzz: %s %s: %s, %d execs in %.0fs", t.Package, t.Name, t.Result, t.Execs, t.Seconds)
		switch t.Result {
		case fuzzCrasher:
			res.Crashers++
			res.fail("%s %s: crasher %s", t.Package, t.Name, t.Crasher)
		case fuzzFail:
			res.fail("%s %s failed: %s", t.Package, t.Name, failureLines(t.Output))
		case fuzzDeadline:
			res.note("%s %s ended with the spurious \"context deadline exceeded\" of go.dev/issue/75804 after fuzzing normally", t.Package, t.Name)
		}
	}
	res.require(len(res.Targets) > 0, "no fuzz target found")
	return res
}

// parseFuzzList reads go test -list output: target names, each package
// closed by its "ok <package> <time>" line.
func parseFuzzList(out []byte) []*FuzzTarget {
	var all, pending []*FuzzTarget
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "Fuzz"):
			pending = append(pending, &FuzzTarget{Name: f[0]})
		case len(f) >= 2 && (f[0] == "ok" || f[0] == "?"):
			for _, t := range pending {
				t.Package = f[1]
			}
			all = append(all, pending...)
			pending = nil
		}
	}
	return all
}

var (
	execsRE   = regexp.MustCompile(`fuzz: elapsed: \S+, execs: (\d+) `)
	failingRE = regexp.MustCompile(`Failing input written to (testdata/fuzz/\S+)`)
	// The target's FAIL line followed at once by the deadline message.
	spuriousDeadlineRE = regexp.MustCompile(`(?m)^--- FAIL: Fuzz\w* \([0-9.]+s\)\n\s+context deadline exceeded\s*$`)
	nestedFailRE       = regexp.MustCompile(`(?m)^\s+--- FAIL: `)
)

// fuzzOutcome classifies go test -fuzz output: the executions of the last
// progress line and the result.
func fuzzOutcome(out string, exitErr error) (execs int64, result, crasher string) {
	for _, m := range execsRE.FindAllStringSubmatch(out, -1) {
		execs, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := failingRE.FindStringSubmatch(out); m != nil {
		return execs, fuzzCrasher, m[1]
	}
	if exitErr == nil {
		return execs, fuzzOK, ""
	}
	// go.dev/issue/75804: when a -fuzztime duration ends, the coordinator
	// may fail the target with "context deadline exceeded" as its only
	// message:
	//
	//	--- FAIL: FuzzX (10.37s)
	//	    context deadline exceeded
	//
	// That counts as a normal end when fuzzing ran and no input failed:
	// a failing input has a nested "--- FAIL" of its own.
	if execs > 0 && spuriousDeadlineRE.MatchString(out) && !nestedFailRE.MatchString(out) {
		return execs, fuzzDeadline, ""
	}
	return execs, fuzzFail, ""
}

func fuzzOne(ctx context.Context, s *suite, cfg FuzzConfig, t *FuzzTarget) {
	start := time.Now()
	limit := 10 * time.Minute // compiling with coverage instrumentation is slow on 2 cores
	if d, err := time.ParseDuration(cfg.Time); err == nil {
		limit += 2 * d
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, "go", "test", "-run", "^$", "-fuzz", "^"+t.Name+"$", "-fuzztime", cfg.Time, t.Package)
	cmd.Dir = s.root
	// The package directory: go test runs there and writes crashers
	// under its testdata/fuzz.
	if d, err := pkgDir(ctx, s.root, t.Package); err == nil {
		cmd.Dir = d
		cmd.Args[len(cmd.Args)-1] = "."
	}
	out, err := cmd.CombinedOutput()
	t.Seconds = time.Since(start).Seconds()
	var result, rel string
	t.Execs, result, rel = fuzzOutcome(string(out), err)
	t.Result = result
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		t.Result = fuzzFail
		t.Output = fmt.Sprintf("go test did not end within %v", limit)
	}
	if t.Result != fuzzOK {
		t.Output += lastLines(string(out), 30)
	}
	if rel == "" {
		return
	}
	// Move the crasher out of the package: the input is reported, the
	// other package stays as its owners left it.
	src := filepath.Join(cmd.Dir, rel)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Crasher = src + " (unreadable: " + err.Error() + ")"
		return
	}
	t.Input = strconv.Quote(string(b[:min(len(b), 2048)]))
	dst := filepath.Join(cfg.CrasherDir, strings.ReplaceAll(shortPkg(t.Package), "/", "_"), t.Name, filepath.Base(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		if err := os.WriteFile(dst, b, 0o644); err == nil {
			_ = os.Remove(src)
			// Directories the crasher created, if now empty.
			for d := filepath.Dir(src); d != cmd.Dir; d = filepath.Dir(d) {
				if os.Remove(d) != nil {
					break
				}
			}
			t.Crasher = dst
			return
		}
	}
	t.Crasher = src
}

// pkgDir returns the directory of a package.
func pkgDir(ctx context.Context, root, pkg string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// failureLines picks what go test said about a failure: the lines after
// the first "--- FAIL", else the last lines.
func failureLines(out string) string {
	if i := strings.Index(out, "--- FAIL"); i >= 0 {
		lines := strings.Split(out[i:], "\n")
		return strings.Join(lines[:min(len(lines), 4)], "\n")
	}
	return lastLines(out, 3)
}
