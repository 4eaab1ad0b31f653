package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/proc"
)

// harness holds the peers shared by the sections.
type harness struct {
	o         options
	logw      io.Writer
	work      string
	self      string // this binary, for the helpers
	sourceBin string
	sinkBin   string
	relayBin  string
	msg       []byte // the test message, CRLF
	msgFile   string // the same with LF line ends, for smtp-source -F
	dns       *dnsServer
	sink      *sinkProc
	relay     *relayProc
	postfix   *postfixInstance
	capture   *captureServer
	machine   Machine
	closers   []func()
	crowds    int // greet pause crowds so far, for their source addresses
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.logw, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// n scales a message count, keeping at least a few.
func (h *harness) n(full int) int { return max(int(float64(full)*h.o.scale), 20) }

func (h *harness) close() {
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
	if h.work != "" && !h.o.keep {
		os.RemoveAll(h.work)
	} else if h.work != "" {
		h.logf("work directory kept: %s", h.work)
	}
}

func newHarness(ctx context.Context, o options, selected map[string]bool, logw io.Writer) (*harness, error) {
	h := &harness{o: o, logw: logw}
	if err := h.ensurePeers(ctx); err != nil {
		return h, err
	}
	if n, err := proc.RaiseFileLimit(); err != nil {
		h.logf("could not raise the file descriptor limit: %v", err)
	} else if n < uint64(o.crowd)+1000 && selected["greetpause"] {
		return h, fmt.Errorf("%w: RLIMIT_NOFILE is %d, the greet pause benchmark needs more than %d (ulimit -Hn)", ErrSetup, n, o.crowd+1000)
	}
	var err error
	if h.self, err = os.Executable(); err != nil {
		return h, err
	}
	if h.work, err = os.MkdirTemp(o.work, "postern-bench-"); err != nil {
		return h, err
	}
	// Postfix's daemons (user postfix) must reach their queue below it.
	if err := os.Chmod(h.work, 0o755); err != nil {
		return h, err
	}
	h.machine = describeMachine(h.work)
	if out, err := exec.Command("postconf", "-d", "-h", "mail_version").Output(); err == nil {
		h.machine.Postfix = strings.TrimSpace(string(out))
	}
	msg, record, err := testMessage()
	if err != nil {
		return h, err
	}
	h.msg = msg
	h.msgFile = filepath.Join(h.work, "message.txt")
	if err := writeLF(h.msgFile, msg); err != nil {
		return h, err
	}
	if h.dns, err = startDNS(record); err != nil {
		return h, err
	}
	h.closers = append(h.closers, h.dns.Close)
	if h.sink, err = startSink(ctx, h.sinkBin); err != nil {
		return h, err
	}
	h.closers = append(h.closers, func() { h.sink.stop(5 * time.Second) })
	if selected["ingest"] || selected["latency"] || selected["breakdown"] || selected["milter"] {
		if err := h.startRelay(ctx); err != nil {
			return h, err
		}
	}
	if selected["ingest"] || selected["milter"] {
		h.logf("starting a private Postfix instance")
		if h.postfix, err = startPostfix(ctx, h.work, h.sink.addr, ""); err != nil {
			return h, err
		}
		h.closers = append(h.closers, h.postfix.stop)
		if h.postfix.version != "" {
			h.machine.Postfix = h.postfix.version
		}
	}
	return h, nil
}

// ensurePeers finds smtp-source, smtp-sink and postfix, installing the
// postfix package (Debian) when they are missing and we may.
func (h *harness) ensurePeers(ctx context.Context) error {
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin:/sbin")
	missing := func() []string {
		var out []string
		for _, p := range []string{"smtp-source", "smtp-sink", "postfix", "postconf"} {
			if _, err := exec.LookPath(p); err != nil {
				out = append(out, p)
			}
		}
		return out
	}
	if m := missing(); len(m) > 0 {
		_, aptErr := exec.LookPath("apt-get")
		if h.o.noInstall || os.Geteuid() != 0 || aptErr != nil {
			return fmt.Errorf("%w: %s missing: install the Debian package postfix (apt-get install postfix, \"No configuration\"), or run as root to let the harness install it",
				ErrSetup, strings.Join(m, ", "))
		}
		h.logf("installing postfix (for %s)", strings.Join(m, ", "))
		sh := `echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && ` +
			`apt-get update -qq && apt-get install -y -qq --no-install-recommends postfix`
		cmd := exec.CommandContext(ctx, "sh", "-c", sh)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: installing postfix: %v\n%s", ErrSetup, err, out)
		}
		if m := missing(); len(m) > 0 {
			return fmt.Errorf("%w: still missing after installing postfix: %s", ErrSetup, strings.Join(m, ", "))
		}
	}
	h.sourceBin, _ = exec.LookPath("smtp-source")
	h.sinkBin, _ = exec.LookPath("smtp-sink")
	return nil
}

// startRelay builds (unless -relay names a binary) and starts the relay
// with the ingest chain.
func (h *harness) startRelay(ctx context.Context) error {
	h.relayBin = h.o.relayBin
	if h.relayBin == "" {
		h.relayBin = filepath.Join(h.work, "relay")
		h.logf("building examples/relay")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", h.relayBin, "github.com/postern/postern/examples/relay")
		cmd.Dir = filepath.Dir(defaultOutDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: go build examples/relay: %v\n%s", ErrSetup, err, out)
		}
	}
	var err error
	if h.capture, err = startCapture(); err != nil {
		return err
	}
	h.closers = append(h.closers, h.capture.close)
	if h.relay, err = h.runRelay(ctx, "relay-run", chainFull); err != nil {
		return err
	}
	h.closers = append(h.closers, func() { h.relay.stop(30 * time.Second) })
	return nil
}

// runRelay starts a relay at level in its own directory under the work
// directory.
func (h *harness) runRelay(ctx context.Context, name string, level chainLevel) (*relayProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(h.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args, err := relayArgs(dir, addr, h.dns.addr, h.sink.addr, h.capture.addr, level)
	if err != nil {
		return nil, err
	}
	h.logf("starting the relay: %s %s", h.relayBin, strings.Join(args, " "))
	return startRelay(ctx, h.relayBin, dir, args, addr)
}

// captureServer is a go-smtp server that keeps what it gets: the relay
// routes check.test to it, so the harness can see what the chain did to
// a message (Authentication-Results, Received-SPF).
type captureServer struct {
	addr string
	srv  *smtp.Server
	mu   sync.Mutex
	msgs [][]byte
}

func startCapture() (*captureServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &captureServer{addr: l.Addr().String()}
	c.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &captureSession{c: c}, nil }))
	c.srv.Domain = "capture.bench.test"
	c.srv.ErrorLog = log.New(io.Discard, "", 0)
	go c.srv.Serve(l)
	return c, nil
}

func (c *captureServer) close() { c.srv.Close() }

func (c *captureServer) wait(ctx context.Context, within time.Duration) ([]byte, error) {
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		if len(c.msgs) > 0 {
			m := c.msgs[len(c.msgs)-1]
			c.mu.Unlock()
			return m, nil
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: nothing arrived at the capture server within %v", ErrPeer, within)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type captureSession struct{ c *captureServer }

func (s *captureSession) Reset()                               {}
func (s *captureSession) Logout() error                        { return nil }
func (s *captureSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *captureSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.c.mu.Lock()
	s.c.msgs = append(s.c.msgs, b)
	s.c.mu.Unlock()
	return nil
}
