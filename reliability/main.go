package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// allScenarios returns the scenario names in the order they run.
func allScenarios() []string { return []string{"crash", "slow", "faults", "hostile", "seams", "fuzz"} }

// options are the command line.
type options struct {
	scenarios []string
	crash     CrashConfig
	slow      SlowConfig
	faults    FaultsConfig
	hostile   HostileConfig
	seams     SeamsConfig
	fuzz      FuzzConfig
	jsonPath  string
	mdPath    string
	install   bool
	keep      bool
	ci        bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("reliability", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenarios", strings.Join(allScenarios(), ","), "comma-separated `scenarios` to run: "+strings.Join(allScenarios(), ", "))
	fs.IntVar(&o.crash.Cycles, "cycles", 10, "crash: kill -9 and restart `cycles`")
	fs.IntVar(&o.crash.Sessions, "sessions", 8, "crash: smtp-source `sessions` of load")
	fs.IntVar(&o.crash.Clients, "clients", 4, "crash: tracked clients")
	fs.Uint64Var(&o.crash.Seed, "seed", 1, "crash: seed of the uptimes before each kill")
	fs.IntVar(&o.slow.Conns, "slow-conns", 1000, "slow: connections trickling one byte a second")
	fs.IntVar(&o.slow.Probes, "probes", 40, "slow: timed transactions of the normal client, unloaded and loaded")
	fs.IntVar(&o.faults.Messages, "messages", 20, "faults: messages per case")
	only := fs.String("faults-only", "", "faults: comma-separated `words`; only cases whose names contain one run")
	fs.DurationVar(&o.hostile.MaxCaseTime, "max-case-time", 30*time.Second, "hostile: bound on one case")
	fs.Int64Var(&o.hostile.MaxRSSKiB, "max-rss", 512<<10, "hostile: bound on the relay's peak RSS in `KiB`")
	seamsOnly := fs.String("seams-only", "", "seams: comma-separated `words`; only cases whose ID or group contains one run")
	fs.StringVar(&o.fuzz.Time, "fuzztime", "10s", "fuzz: time per target, a `duration` or a count such as 20000x")
	targets := fs.String("fuzz-targets", "", "fuzz: comma-separated target `names` (default: all)")
	pkgs := fs.String("fuzz-packages", "./...", "fuzz: `packages` to list targets in")
	fs.StringVar(&o.jsonPath, "json", "", "write the results as JSON to `file` (default reliability/results.json in the module)")
	fs.StringVar(&o.mdPath, "report", "", "also write the Markdown report to `file`")
	fs.BoolVar(&o.install, "install", true, "apt-get install missing peers when root")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, spools) for inspection")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("reliability: unexpected arguments %q", fs.Args())
	}
	for _, sc := range splitComma(*scen) {
		if !contains(allScenarios(), sc) {
			return nil, fmt.Errorf("reliability: unknown scenario %q (%s)", sc, strings.Join(allScenarios(), ", "))
		}
		o.scenarios = append(o.scenarios, sc)
	}
	o.faults.Only = splitComma(*only)
	o.seams.Only = splitComma(*seamsOnly)
	o.fuzz.Targets = splitComma(*targets)
	o.fuzz.Packages = strings.Fields(*pkgs)
	if o.crash.Cycles < 1 || o.slow.Conns < 1 || o.faults.Messages < 1 {
		return nil, fmt.Errorf("reliability: -cycles, -slow-conns and -messages must be positive")
	}
	o.ci = os.Getenv("CI") == "true"
	return o, nil
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.install {
		var need []string
		for _, sc := range o.scenarios {
			switch sc {
			case "crash":
				need = append(need, "smtp-source")
			case "faults":
				need = append(need, "clamd", "redis-server")
			case "seams":
				need = append(need, "ip", "zip")
			}
		}
		if err := installPeers(ctx, stderr, need); err != nil {
			fmt.Fprintln(stderr, err)
		}
	}
	s, err := newSuite(ctx, stderr, o.ci, o.keep)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	res := runAll(ctx, s, o)
	s.close()
	if o.keep {
		fmt.Fprintln(stderr, "work directory kept:", s.work)
	}
	res.Command = "go run ./reliability " + strings.Join(args, " ")
	if err := res.writeMarkdown(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if o.mdPath != "" {
		if err := writeFileWith(o.mdPath, res.writeMarkdown); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	jsonPath := o.jsonPath
	if jsonPath == "" {
		jsonPath = filepath.Join(s.root, "reliability", "results.json")
	}
	if err := writeFileWith(jsonPath, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stderr, "results written to", jsonPath)
	if !res.Passed {
		return 1
	}
	return 0
}

// runAll runs the chosen scenarios in order.
func runAll(ctx context.Context, s *suite, o *options) *Results {
	res := &Results{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Passed: true}
	start := time.Now()
	for _, sc := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		s.progress("== %s", sc)
		var out *Outcome
		switch sc {
		case "crash":
			res.Crash = runCrash(ctx, s, o.crash)
			out = &res.Crash.Outcome
		case "slow":
			res.Slow = runSlow(ctx, s, o.slow)
			out = &res.Slow.Outcome
		case "faults":
			res.Faults = runFaults(ctx, s, o.faults)
			out = &res.Faults.Outcome
		case "hostile":
			res.Hostile = runHostile(ctx, s, o.hostile)
			out = &res.Hostile.Outcome
		case "seams":
			res.Seams = runSeams(ctx, s, o.seams)
			out = &res.Seams.Outcome
		case "fuzz":
			res.Fuzz = runFuzz(ctx, s, o.fuzz)
			out = &res.Fuzz.Outcome
		}
		s.progress("== %s: %s", sc, out.Status)
		if out.Status == StatusFail {
			res.Passed = false
		}
	}
	if ctx.Err() != nil {
		res.Passed = false
		res.Interrupted = true
	}
	res.Seconds = time.Since(start).Seconds()
	return res
}

func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Machine describes where the suite ran.
type Machine struct {
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	OSArch string `json:"os_arch"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(v), &kb)
				m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return m
}
