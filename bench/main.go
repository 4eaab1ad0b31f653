package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "helper-") {
		os.Exit(helperMain(os.Args[1], os.Args[2:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the flags.
type options struct {
	reps      int
	quick     bool
	out       string
	only      string
	work      string
	relayBin  string
	noInstall bool
	keep      bool
	scale     float64
	crowd     int
	render    string
	breakdown bool
}

// sectionNames in the order they run, numbered as in issue 8; the
// optional ones run only when asked for.
var (
	sectionNames     = []string{"ingest", "durability", "greetpause", "content", "delivery", "latency", "milter", "breakdown"}
	optionalSections = map[string]bool{"breakdown": true}
)

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.reps, "reps", 0, "repetitions of every figure (default 5, or 3 with -quick)")
	fs.BoolVar(&o.quick, "quick", false, "short run: fewer messages and connections, 3 repetitions")
	fs.StringVar(&o.out, "out", "", "`directory` for REPORT.md, results.json and chart.svg (default: the bench directory of the module)")
	fs.StringVar(&o.only, "only", "", "comma-separated `sections` to run: "+strings.Join(sectionNames, ", ")+" (default all but breakdown)")
	fs.BoolVar(&o.breakdown, "breakdown", false, "also run the breakdown section (the ingest chain piece by piece)")
	fs.StringVar(&o.work, "work", "", "parent `directory` of the work directory holding the spools (default $TMPDIR); its disk is the one measured")
	fs.StringVar(&o.relayBin, "relay", "", "relay `binary` to measure (default: go build ./examples/relay)")
	fs.BoolVar(&o.noInstall, "no-install", false, "never apt-get install missing peers")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, spools, Postfix's maillog)")
	fs.Float64Var(&o.scale, "scale", 0, "multiply message counts by `f` (default 1, or 0.25 with -quick)")
	fs.IntVar(&o.crowd, "crowd", 0, "paused connections in the greet pause benchmark (default 10000, or 2000 with -quick)")
	fs.StringVar(&o.render, "render", "", "only render REPORT.md and chart.svg again from this results.json `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.reps == 0 {
		o.reps = 5
		if o.quick {
			o.reps = 3
		}
	}
	if o.scale == 0 {
		o.scale = 1
		if o.quick {
			o.scale = 0.25
		}
	}
	if o.crowd == 0 {
		o.crowd = 10000
		if o.quick {
			o.crowd = 2000
		}
	}
	if o.reps < 1 || o.scale <= 0 || o.crowd < 1 {
		fmt.Fprintln(stderr, "bench: -reps, -scale and -crowd must be positive")
		return 2
	}
	selected, err := selectSections(o.only)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if o.breakdown {
		selected["breakdown"] = true
	}
	if o.out == "" {
		o.out = defaultOutDir()
	}
	if o.render != "" {
		if err := render(o.render, o.out, stdout); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := measure(ctx, o, selected, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	res.Command = commandLine(args)
	if err := writeOutputs(res, o.out, stdout); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench: wrote %s\n", strings.Join([]string{filepath.Join(o.out, "REPORT.md"),
		filepath.Join(o.out, "results.json"), filepath.Join(o.out, "chart.svg")}, ", "))
	for _, s := range res.Sections {
		if s.Error != "" {
			return 1
		}
	}
	return 0
}

func selectSections(only string) (map[string]bool, error) {
	sel := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, n := range sectionNames {
			sel[n] = !optionalSections[n]
		}
		return sel, nil
	}
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		known := false
		for _, k := range sectionNames {
			known = known || k == n
		}
		if !known {
			return nil, fmt.Errorf("bench: -only: unknown section %q (%s)", n, strings.Join(sectionNames, ", "))
		}
		sel[n] = true
	}
	return sel, nil
}

func commandLine(args []string) string {
	return strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
}

// defaultOutDir is the bench directory of the module when the harness
// runs inside it, else the current directory.
func defaultOutDir() string {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			return filepath.Join(filepath.Dir(mod), "bench")
		}
	}
	return "."
}

func writeOutputs(res *Results, dir string, stdout io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return renderFiles(res, dir, stdout)
}

func renderFiles(res *Results, dir string, stdout io.Writer) error {
	cf, err := os.Create(filepath.Join(dir, "chart.svg"))
	if err != nil {
		return err
	}
	if err := WriteChart(cf, res); err != nil {
		cf.Close()
		return err
	}
	if err := cf.Close(); err != nil {
		return err
	}
	rf, err := os.Create(filepath.Join(dir, "REPORT.md"))
	if err != nil {
		return err
	}
	if err := WriteMarkdown(io.MultiWriter(rf, stdout), res, "chart.svg"); err != nil {
		rf.Close()
		return err
	}
	return rf.Close()
}

func render(path, dir string, stdout io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range res.Sections {
		if err := s.finish(); err != nil && s.Error == "" {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return renderFiles(&res, dir, stdout)
}

// ErrSetup is wrapped by failures to prepare the run.
var ErrSetup = errors.New("bench: setup failed")

// measure prepares the peers and runs the selected sections.
func measure(ctx context.Context, o options, selected map[string]bool, logw io.Writer) (*Results, error) {
	start := time.Now()
	h, err := newHarness(ctx, o, selected, logw)
	if h != nil {
		defer h.close()
	}
	if err != nil {
		return nil, err
	}
	res := &Results{Date: start, Reps: o.reps, Quick: o.quick, Machine: h.machine}
	type sectionFunc func(context.Context, *harness) *Section
	funcs := map[string]sectionFunc{"ingest": ingestSection, "durability": durabilitySection,
		"greetpause": greetSection, "content": contentSection, "delivery": deliverySection, "latency": latencySection,
		"milter": milterSection, "breakdown": breakdownSection}
	for i, name := range sectionNames {
		if !selected[name] {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		h.logf("== %s", name)
		t0 := time.Now()
		s := funcs[name](ctx, h)
		s.Seconds = time.Since(t0).Seconds()
		s.Number = i + 1
		if err := s.finish(); err != nil && s.Error == "" {
			s.Error = err.Error()
		}
		if s.Error != "" {
			h.logf("!! %s: %s", name, s.Error)
		}
		res.Sections = append(res.Sections, s)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
