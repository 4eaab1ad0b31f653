package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern/postern/internal/proc"
)

var listenRE = regexp.MustCompile(`msg="relay listening" addr=(\S+)`)

// relayProc is one run of the relay binary. Its log goes to a file (runs
// on the same spool append to the same file) and is watched for the
// "relay listening" line and for panics.
type relayProc struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	exited  chan struct{}
	waitErr error

	mu     sync.Mutex
	panics int
	lines  []string // the last lines, for error messages
}

// startRelay runs the relay in dir with the given serve flags and waits
// until it listens.
func (s *suite) startRelay(ctx context.Context, dir, logPath string, args ...string) (*relayProc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	r := &relayProc{logPath: logPath, exited: make(chan struct{})}
	r.cmd = exec.Command(s.relayBin, append([]string{"serve"}, args...)...)
	r.cmd.Dir = dir
	proc.DieWithParent(r.cmd)
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	addrCh := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		defer lf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(lf, line)
			r.note(line)
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		<-logDone
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	s.onClose(func() { r.kill() })
	select {
	case r.addr = <-addrCh:
		return r, nil
	case <-r.exited:
		return nil, fmt.Errorf("reliability: the relay exited at start (%v): %s", r.waitErr, r.tail())
	case <-time.After(60 * time.Second):
		r.kill()
		return nil, fmt.Errorf("reliability: the relay did not listen within 60s: %s", r.tail())
	case <-ctx.Done():
		r.kill()
		return nil, ctx.Err()
	}
}

func (r *relayProc) note(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if isPanicLine(line) {
		r.panics++
	}
	r.lines = append(r.lines, line)
	if len(r.lines) > 40 {
		r.lines = r.lines[len(r.lines)-20:]
	}
}

// isPanicLine spots a panic in the relay's output: a filter panic the
// chain recovered ("postern: filter panicked"), one go-smtp recovered
// ("panic serving ...") or a fatal one ("panic:", "fatal error:").
func isPanicLine(line string) bool {
	return strings.Contains(line, "filter panicked") || strings.Contains(line, "panic serving") ||
		strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:")
}

// tail returns the last log lines.
func (r *relayProc) tail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := max(0, len(r.lines)-10)
	return strings.Join(r.lines[n:], "\n")
}

// panicLines counts log lines that mention a panic.
func (r *relayProc) panicLines() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.panics
}

func (r *relayProc) pid() int { return r.cmd.Process.Pid }

// alive tells whether the process still runs.
func (r *relayProc) alive() bool {
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL, as a crash or the OOM killer would, and waits.
func (r *relayProc) kill() {
	if r.alive() {
		_ = r.cmd.Process.Kill()
	}
	<-r.exited
}

// stop asks for a graceful shutdown (SIGTERM) and waits up to 30 s; the
// error is the process's exit error.
func (r *relayProc) stop() error {
	if !r.alive() {
		return fmt.Errorf("reliability: the relay had already exited: %v", r.waitErr)
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		return r.waitErr
	case <-time.After(30 * time.Second):
		r.kill()
		return errors.New("reliability: the relay did not stop within 30s of SIGTERM")
	}
}
