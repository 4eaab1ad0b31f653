package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postern/postern/internal/proc"
)

// ErrPeer is wrapped by every failure of a peer program (smtp-source,
// smtp-sink, Postfix, the relay).
var ErrPeer = errors.New("bench: peer failed")

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitListening dials addr until it answers or the time is up.
func waitListening(ctx context.Context, addr string, within time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: nothing listens on %s after %v", ErrPeer, addr, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("%w: the process for %s exited", ErrPeer, addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// process is a peer started by the harness.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // after done
}

func startProcess(name string, cmd *exec.Cmd) (*process, error) {
	proc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s: %v", ErrPeer, name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop asks the process to end (SIGTERM) and kills it if it has not
// within grace.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// sinkProc is Postfix's smtp-sink, the common downstream of the relays.
// Its running counter (-c) is read continuously, so the harness knows how
// many messages arrived.
type sinkProc struct {
	*process
	addr     string
	msgs     atomic.Int64
	sessions atomic.Int64
}

var sinkCounterRE = regexp.MustCompile(`sess=(\d+) .*mesg=(\d+)`)

// parseSinkCounter returns the session and message counts of one
// smtp-sink -c status line ("sess=12 quit=12 mesg=40").
func parseSinkCounter(line string) (sessions, msgs int64, ok bool) {
	m := sinkCounterRE.FindStringSubmatch(line)
	if m == nil {
		return 0, 0, false
	}
	s, err1 := strconv.ParseInt(m[1], 10, 64)
	n, err2 := strconv.ParseInt(m[2], 10, 64)
	return s, n, err1 == nil && err2 == nil
}

// splitCR is a bufio.SplitFunc for lines ended by CR or LF: smtp-sink
// rewrites its counter line in place with a carriage return.
func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func startSink(ctx context.Context, bin string) (*sinkProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"-c", "-m", "2000"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "postfix") // required when run as root
	}
	args = append(args, addr, "1024")
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	p, err := startProcess("smtp-sink", cmd)
	if err != nil {
		return nil, err
	}
	s := &sinkProc{process: p, addr: addr}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Split(splitCR)
		for sc.Scan() {
			if sess, n, ok := parseSinkCounter(sc.Text()); ok {
				s.sessions.Store(sess)
				s.msgs.Store(n)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	if err := waitListening(ctx, addr, 10*time.Second, p.done); err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("smtp-sink: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return s, nil
}

// waitFor waits until the sink has counted n messages and returns when
// it saw the count reached.
func (s *sinkProc) waitFor(ctx context.Context, n int64, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		if s.msgs.Load() >= n {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%w: the sink counted %d messages, want %d, after %v", ErrPeer, s.msgs.Load(), n, within)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-s.done:
			return time.Time{}, fmt.Errorf("%w: smtp-sink exited", ErrPeer)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// source describes one smtp-source run.
type source struct {
	bin      string
	msgFile  string // the message, LF line ends (smtp-source appends CRLF)
	addr     string
	sessions int
	msgs     int
	reuse    bool   // -d: many messages per session
	rcpt     string // default rcptAddr
}

// args are smtp-source's arguments: -N gives every recipient a sequence
// number, so no recipient cache sees the same address twice.
func (s source) args() []string {
	rcpt := s.rcpt
	if rcpt == "" {
		rcpt = rcptAddr
	}
	a := []string{"-s", strconv.Itoa(s.sessions), "-m", strconv.Itoa(s.msgs), "-F", s.msgFile,
		"-f", senderAddr, "-t", rcpt, "-M", heloName, "-N"}
	if s.reuse {
		a = append(a, "-d")
	}
	return append(a, s.addr)
}

// run runs smtp-source to the end and returns how long it took. Any reply
// but the expected one ends smtp-source with an error (no -A), so a
// successful run means every message got its 250.
func (s source) run(ctx context.Context) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, s.bin, s.args()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	proc.DieWithParent(cmd)
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%w: smtp-source %s: %v: %s", ErrPeer, strings.Join(s.args(), " "), err, strings.TrimSpace(out.String()))
	}
	return took, nil
}

// start runs smtp-source in the background; wait returns its result.
func (s source) start(ctx context.Context) (wait func() error, err error) {
	cmd := exec.CommandContext(ctx, s.bin, s.args()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	proc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: smtp-source: %v", ErrPeer, err)
	}
	return func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%w: smtp-source: %v: %s", ErrPeer, err, strings.TrimSpace(out.String()))
		}
		return nil
	}, nil
}

// writeLF writes msg with LF line ends, the form smtp-source -F reads.
func writeLF(path string, msg []byte) error {
	return os.WriteFile(path, bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), 0o644)
}

// relayProc is Postern's reference relay, built from examples/relay and
// run as its own process.
type relayProc struct {
	*process
	addr string
	dir  string
	log  string
	args []string // as given, with the work directory shown as DIR
}

// chainLevel selects how much of the realistic chain the relay runs.
type chainLevel int

const (
	chainQueue  chainLevel = iota // relay control, MIME walk and the durable queue only
	chainPolicy                   // + access file, -message-rate, DNSBL
	chainFull                     // + SPF, DKIM, DMARC (-auth-check tag): the ingest chain
)

// relayArgs is the relay's command line. At chainFull it is the realistic
// chain of the ingest benchmark. The client (127.0.0.1) is outside the
// trusted networks at every level, so every filter configured runs.
func relayArgs(dir, addr, dnsAddr, sinkAddr, checkAddr string, level chainLevel) ([]string, error) {
	access := filepath.Join(dir, "access")
	if err := os.WriteFile(access, []byte(accessFile()), 0o644); err != nil {
		return nil, err
	}
	mt := filepath.Join(dir, "mailertable")
	table := fmt.Sprintf("%s smtp:[%s]:%s\n%s smtp:[%s]:%s\n", rcptDomain, hostOf(sinkAddr), portOf(sinkAddr),
		checkDomain, hostOf(checkAddr), portOf(checkAddr))
	if err := os.WriteFile(mt, []byte(table), 0o644); err != nil {
		return nil, err
	}
	args := []string{"serve",
		"-listen", addr,
		"-spool", filepath.Join(dir, "spool"),
		"-maildir", filepath.Join(dir, "maildir"),
		"-hostname", relayName,
		"-domains", rcptDomain + "," + checkDomain,
		"-trusted", "192.0.2.0/24",
		"-greet-pause", "0",
		"-mailertable", mt,
		"-log-level", "info",
	}
	if level >= chainPolicy {
		args = append(args, "-access", access, "-message-rate", "10000000/1h", "-dnsbl", dnsblZone, "-dns-resolver", dnsAddr)
	}
	if level >= chainFull {
		args = append(args, "-auth-check", "tag")
	}
	return args, nil
}

func startRelay(ctx context.Context, bin, dir string, args []string, addr string) (*relayProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "relay.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = lf, lf
	p, err := startProcess("relay", cmd)
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, addr, 60*time.Second, p.done); err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("relay: %w; log %s:\n%s", err, logPath, tail(logPath, 20))
	}
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = strings.ReplaceAll(a, dir, "DIR")
	}
	return &relayProc{process: p, addr: addr, dir: dir, log: logPath, args: shown}, nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// accessFile is the access map of a small site that has run sendmail for
// years: its own networks, partners, blocked senders and networks, a few
// greet pause and connection limit entries. Nothing in it matches the
// benchmark's client, sender or recipients, so every lookup walks the
// whole search, as it does for most mail.
func accessFile() string {
	var b strings.Builder
	b.WriteString("# access map of a small site (generated by the benchmark harness)\n")
	b.WriteString("Connect:192.0.2        RELAY\nConnect:198.51.100.25 RELAY\nConnect:[192.0.2.10]  OK\n")
	b.WriteString("GreetPause:192.0.2     0\nGreetPause:198.51.100 10000\nClientConn:            50\nClientRate:            0\n")
	b.WriteString("To:postmaster@example.test OK\nTo:abuse@example.test      OK\nTo:noreply@example.test    REJECT\n")
	b.WriteString("From:<>                    OK\nbogus_user@               REJECT\n")
	for i := range 60 {
		fmt.Fprintf(&b, "Connect:203.0.%d          REJECT\n", i)
		fmt.Fprintf(&b, "From:spam%d.invalid       ERROR:5.7.1:550 Mail from your domain is refused\n", i)
		fmt.Fprintf(&b, "From:offers@promo%d.invalid DISCARD\n", i)
		fmt.Fprintf(&b, "To:former-staff%d@example.test ERROR:5.1.1:550 User has moved\n", i)
	}
	for i := range 20 {
		fmt.Fprintf(&b, "partner%d.invalid          OK\n", i)
		fmt.Fprintf(&b, "Connect:10.%d.0.0/16     RELAY\n", i)
	}
	return b.String()
}

// postfixInstance is a private Postfix (its own config_directory and
// queue_directory under the work directory) set up as a relay for
// example.test to the sink. Postfix's defaults are kept, fsync of every
// queue file included: it is the durability comparison.
type postfixInstance struct {
	dir     string
	etc     string
	addr    string
	version string
	log     string
}

// extra is appended to main.cf.
func startPostfix(ctx context.Context, work, sinkAddr, extra string) (*postfixInstance, error) {
	p := &postfixInstance{dir: filepath.Join(work, "postfix")}
	p.etc = filepath.Join(p.dir, "etc")
	p.log = filepath.Join(p.dir, "maillog")
	data := filepath.Join(p.dir, "data")
	for _, d := range []string{p.etc, data, filepath.Join(p.dir, "spool")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(p.dir, 0o755); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := exec.Command("chown", "postfix", data).Run(); err != nil {
			return nil, fmt.Errorf("%w: chown postfix %s: %v", ErrPeer, data, err)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p.addr = addr
	if err := os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(postfixMain(p.dir, sinkAddr)+extra), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(postfixMaster(addr)), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "postfix", "-c", p.etc, "start").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: postfix -c %s start: %v %s; %s:\n%s", ErrPeer, p.etc, err, out, p.log, tail(p.log, 10))
	}
	if err := waitListening(ctx, addr, 30*time.Second, nil); err != nil {
		p.stop()
		return nil, fmt.Errorf("postfix: %w; %s:\n%s", err, p.log, tail(p.log, 10))
	}
	out, err := exec.Command("postconf", "-c", p.etc, "-h", "mail_version").Output()
	if err == nil {
		p.version = strings.TrimSpace(string(out))
	}
	return p, nil
}

// masterPID is the pid of the instance's master process, 0 if unknown.
func (p *postfixInstance) masterPID() int {
	b, _ := os.ReadFile(filepath.Join(p.dir, "spool", "pid", "master.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stop stops the instance and waits for its master to exit.
func (p *postfixInstance) stop() {
	pid := p.masterPID()
	_ = exec.Command("postfix", "-c", p.etc, "stop").Run()
	if pid <= 0 {
		return
	}
	for range 200 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = exec.Command("postfix", "-c", p.etc, "abort").Run()
}

// postfixMain is main.cf: a relay for example.test to the sink, trusting
// loopback (mynetworks), with Debian's defaults otherwise.
func postfixMain(dir, sinkAddr string) string {
	return fmt.Sprintf(`# private Postfix instance of the benchmark harness
compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = %[2]s
relayhost = [%[3]s]:%[4]s
alias_maps =
alias_database =
local_recipient_maps =
smtpd_tls_security_level = none
smtp_tls_security_level = none
biff = no
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
`, dir, rcptDomain, hostOf(sinkAddr), portOf(sinkAddr))
}

// postfixMaster is Debian's master.cf without chroot (the queue lives in
// a temporary directory), the mailbox and pipe transports the relay does
// not need, and smtpd on a loopback port of our choosing.
func postfixMaster(addr string) string {
	return addr + ` inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
}
