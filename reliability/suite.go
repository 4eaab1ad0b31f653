package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrMissing is wrapped by the error of a peer program that is not
// installed: the scenario that needs it is skipped (failed under CI=true).
var ErrMissing = errors.New("reliability: peer not installed")

// ErrNoPrivilege is wrapped when a scenario needs root (mounting a tmpfs).
var ErrNoPrivilege = errors.New("reliability: needs root")

// debianPackage names the Debian package that ships a peer program.
func debianPackage(prog string) string {
	switch prog {
	case "smtp-source", "smtp-sink":
		return "postfix"
	case "clamd":
		return "clamav-daemon"
	case "ip":
		return "iproute2"
	}
	return prog // redis-server, swaks, zip
}

// suite holds what the scenarios share: where the module is, the relay
// binary, a work directory, and what to undo at the end.
type suite struct {
	root     string // module root (the directory of go.mod)
	work     string // scratch directory, removed by close unless keep
	relayBin string
	ci       bool
	keep     bool
	out      io.Writer // progress lines

	mu       sync.Mutex
	cleanups []func()

	outsideOnce sync.Once
	outside     string // untrusted source address (outsideAddr)
	outsideErr  error
}

// newSuite finds the module, makes a work directory and builds the relay.
func newSuite(ctx context.Context, out io.Writer, ci, keep bool) (*suite, error) {
	s := &suite{out: out, ci: ci, keep: keep}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("reliability: go env GOMOD: %w", err)
	}
	if p := strings.TrimSpace(string(gomod)); p != "" && p != os.DevNull {
		s.root = filepath.Dir(p)
	} else {
		return nil, errors.New("reliability: run inside the postern module (go.mod not found)")
	}
	// World-readable: clamd and smtp-sink may drop root privileges.
	if s.work, err = os.MkdirTemp("", "postern-reliability-"); err != nil {
		return nil, err
	}
	if err := os.Chmod(s.work, 0o755); err != nil {
		return nil, err
	}
	s.relayBin = filepath.Join(s.work, "relay")
	s.progress("building the relay into %s", s.relayBin)
	build := exec.CommandContext(ctx, "go", "build", "-o", s.relayBin, "github.com/postern/postern/examples/relay")
	build.Dir = s.root
	if b, err := build.CombinedOutput(); err != nil {
		s.close()
		return nil, fmt.Errorf("reliability: building the relay: %w\n%s", err, b)
	}
	return s, nil
}

func (s *suite) progress(format string, args ...any) {
	fmt.Fprintf(s.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// onClose registers f to run at close, last registered first.
func (s *suite) onClose(f func()) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}

func (s *suite) close() {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	if !s.keep && s.work != "" {
		_ = os.RemoveAll(s.work)
	}
}

// dir makes a fresh directory under the work directory.
func (s *suite) dir(name string) (string, error) {
	d, err := os.MkdirTemp(s.work, name+"-")
	if err != nil {
		return "", err
	}
	return d, os.Chmod(d, 0o755)
}

// lookTool finds a peer program in PATH or the sbin directories that a
// non-root PATH lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (apt-get install %s)", ErrMissing, name, debianPackage(name))
}

// installPeers installs the Debian packages of missing peers when running
// as root with apt-get; otherwise it says what is missing and returns.
func installPeers(ctx context.Context, out io.Writer, names []string) error {
	var pkgs []string
	seen := map[string]bool{}
	for _, n := range names {
		pkg := debianPackage(n)
		if _, err := lookTool(n); err == nil || seen[pkg] {
			continue
		}
		seen[pkg] = true
		pkgs = append(pkgs, pkg)
	}
	if len(pkgs) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		fmt.Fprintf(out, "missing peers (%s): not root with apt-get, their scenarios will be skipped\n", strings.Join(pkgs, " "))
		return nil
	}
	fmt.Fprintf(out, "installing %s\n", strings.Join(pkgs, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	// Postfix only for smtp-source: no mail system configuration.
	sel := exec.CommandContext(ctx, "debconf-set-selections")
	sel.Stdin = strings.NewReader("postfix postfix/main_mailer_type select No configuration\n")
	_ = sel.Run()
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("reliability: apt-get %s: %w\n%s", args[0], err, b)
		}
	}
	return nil
}

// freeAddr returns a loopback TCP address nobody listens on (yet).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	a := l.Addr().String()
	return a, l.Close()
}

// deadUDP returns a loopback UDP address nobody listens on: a DNS server
// that is down (queries get ICMP port unreachable).
func deadUDP() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	a := pc.LocalAddr().String()
	return a, pc.Close()
}

// writeMailertable routes every domain to next: the local domain and,
// through the catch-all ".", delivery status notifications too, so the
// relay never looks up an MX on the network.
func writeMailertable(dir, next string) (string, error) {
	p := filepath.Join(dir, "mailertable")
	hop := "esmtp:" + hostPort(next)
	return p, os.WriteFile(p, []byte("example.test "+hop+"\n. "+hop+"\n"), 0o644)
}

// hostPort turns "127.0.0.1:2526" into the mailertable form
// "[127.0.0.1]:2526".
func hostPort(addr string) string {
	h, p, _ := net.SplitHostPort(addr)
	return "[" + h + "]:" + p
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
