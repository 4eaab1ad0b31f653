// Package integration drives the reference relay as a separate process with
// real SMTP peers: swaks and Python's smtplib. With CI=true a missing peer
// fails the test; otherwise the test skips and says why.
package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var relayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postern-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relayBin = filepath.Join(dir, "relay")
	build := exec.Command("go", "build", "-o", relayBin, "github.com/postern/postern/examples/relay")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the relay:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need returns the path of a peer program, skipping (or failing under CI)
// when it is missing.
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; scripts/test-all.sh installs it", prog)
		}
		t.Skipf("%s is not installed (scripts/test-all.sh installs it)", prog)
	}
	return p
}

type relay struct {
	addr    string
	dir     string // working directory; the queue is dir/postern-spool
	mu      sync.Mutex
	log     strings.Builder
	cmd     *exec.Cmd
	spool   string
	maildir string
}

var listenRE = regexp.MustCompile(`msg="relay listening" addr=(\S+)`)

// startRelay runs the relay binary in a fresh directory. With no args it is
// exactly the newcomer's "go run ./examples/relay".
func startRelay(t *testing.T, args ...string) *relay {
	t.Helper()
	return startRelayVia(t, nil, args...)
}

// startRelayVia runs the relay under a wrapper command, such as
// {"prlimit", "--nofile=64:64", "--"}.
func startRelayVia(t *testing.T, wrapper []string, args ...string) *relay {
	t.Helper()
	r := &relay{dir: t.TempDir()}
	r.spool = filepath.Join(r.dir, "postern-spool")
	r.maildir = filepath.Join(r.dir, "postern-maildir")
	ctx, cancel := context.WithCancel(context.Background())
	argv := append(append(append([]string(nil), wrapper...), relayBin), args...)
	r.cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	r.cmd.Dir = r.dir
	stderr, err := r.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, r.cmd.Start())
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.log.WriteString(line + "\n")
			r.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				addrCh <- m[1]
			}
		}
		close(addrCh)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() {
			t.Logf("relay log:\n%s", r.logs())
		}
	})
	select {
	case a, ok := <-addrCh:
		require.True(t, ok, "relay exited: %s", r.logs())
		r.addr = a
	case <-time.After(60 * time.Second):
		t.Fatalf("relay did not start: %s", r.logs())
	}
	return r
}

func (r *relay) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// delivered waits for the Maildir file of a queue ID (local: delivery of
// the relay's local domains) and returns it.
func (r *relay) delivered(t *testing.T, id string) string {
	t.Helper()
	var found string
	require.Eventually(t, func() bool {
		for _, f := range maildirFiles(t, r.maildir) {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains(string(b), id) {
				found = string(b)
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "queue ID %s not delivered; relay log:\n%s", id, r.logs())
	return found
}

// countDelivered counts the Maildir files once the queue is empty.
func (r *relay) countDelivered(t *testing.T) int {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // let the queue runner finish
	return len(maildirFiles(t, r.maildir))
}

// dialFrom connects from a chosen loopback source address (127.0.0.2 is an
// "outside" client when only 127.0.0.1 is trusted).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func readAll(c net.Conn, d time.Duration) string {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, _ := io.ReadAll(c)
	return string(b)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// runRelayOnce runs a relay command to completion and returns its output.
func runRelayOnce(args ...string) (string, error) {
	out, err := exec.Command(relayBin, args...).CombinedOutput()
	return string(out), err
}
