package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/internal/termsafe"
	"github.com/postern/postern/queue"
)

// The admin commands (queue, quarantine, reload) run inside the relay
// when it is up: the command line is sent over the control socket, the
// relay runs it against its own queue and sends back the output and exit
// code. When the relay is stopped, queue and quarantine open the spool
// themselves (the queue's lock keeps a relay from starting meanwhile). One
// implementation, adminRun, serves both ways.

// controlRequest and controlReply are the socket's protocol: one JSON
// object each way per connection.
type controlRequest struct {
	Cmd  string   `json:"cmd"`
	Args []string `json:"args"`
}

type controlReply struct {
	Out  string `json:"out"`
	Code int    `json:"code"`
}

// ErrControl marks control socket problems.
var ErrControl = errors.New("relay: control socket")

// listenControl opens the control socket: mode 0600, and only root and
// the relay's own user are served (checked again per connection with
// SO_PEERCRED). A stale socket of ours is replaced; anything else at the
// path is an error.
func (r *relayServer) listenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w %s: exists and is not a socket", ErrControl, path)
		}
		if uid := fileUID(fi); uid != os.Getuid() {
			return nil, fmt.Errorf("%w %s: owned by uid %d, not by this relay's user (uid %d); remove it or set control.socket", ErrControl, path, uid, os.Getuid())
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w %s: another relay answers on it", ErrControl, path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrControl, path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("%w %s: %w", ErrControl, path, err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.serveControl(c)
		}
	}()
	return l, nil
}

func (r *relayServer) serveControl(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	uid, err := peerUID(c)
	if err != nil || (uid != 0 && uid != os.Getuid()) {
		r.log.Warn("control connection refused", "peer_uid", uid, "error", err)
		json.NewEncoder(c).Encode(controlReply{Out: "relay: permission denied\n", Code: 1})
		return
	}
	var req controlRequest
	if err := json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(controlReply{Out: "relay: bad request: " + err.Error() + "\n", Code: 2})
		return
	}
	var out bytes.Buffer
	var code int
	switch req.Cmd {
	case "queue", "quarantine":
		code = adminRun(r.q, req.Cmd, req.Args, &out)
	case "flush-stats":
		// relay stats asks first, so it reads the last second too.
		if r.journal != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := r.journal.Flush(ctx)
			cancel()
			if err != nil {
				fmt.Fprintf(&out, "flush failed: %s\n", safe(err.Error()))
				code = 1
			}
		}
	case "mail-stats":
		// relay stats -mail: the daily mail now, with the configuration
		// in force.
		m, err := parseMailStats(req.Args)
		if err != nil {
			fmt.Fprintf(&out, "relay: bad mail-stats request: %s\n", safe(err.Error()))
			code = 2
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code = mailStats(ctx, r.sendSummary, r.cur.Load().s, m, &out)
		cancel()
	case "reload":
		if err := r.reload("relay reload command"); err != nil {
			fmt.Fprintf(&out, "reload refused, the running configuration stays in force: %s\n", safe(err.Error()))
			code = 1
		} else {
			fmt.Fprintln(&out, "configuration reloaded")
		}
	default:
		fmt.Fprintf(&out, "relay: unknown control command %q\n", req.Cmd)
		code = 2
	}
	r.log.Info("control command", "cmd", req.Cmd, "args", req.Args, "peer_uid", uid, "code", code)
	json.NewEncoder(c).Encode(controlReply{Out: out.String(), Code: code})
}

func fileUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// peerUID is the user of the process at the other end of a Unix socket.
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// askRelay sends a command to the running relay. ok is false when no relay
// listens (no socket, or nobody answering): the caller may then work on
// the spool itself.
func askRelay(path, cmd string, args []string, stdout io.Writer) (code int, ok bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w %s: %w", ErrControl, path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return 0, false, fmt.Errorf("%w %s: not a socket", ErrControl, path)
	}
	// Someone else's socket could be anybody's server: refuse to send it
	// commands or believe its answers.
	if uid := fileUID(fi); uid != 0 && uid != os.Getuid() {
		return 0, false, fmt.Errorf("%w %s: owned by uid %d, neither root nor you (uid %d); refusing to use it", ErrControl, path, uid, os.Getuid())
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return 0, false, nil // a stale socket: the relay is not running
		}
		return 0, false, fmt.Errorf("%w %s: %w", ErrControl, path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if err := json.NewEncoder(c).Encode(controlRequest{Cmd: cmd, Args: args}); err != nil {
		return 0, false, fmt.Errorf("%w %s: %w", ErrControl, path, err)
	}
	var rep controlReply
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&rep); err != nil {
		return 0, false, fmt.Errorf("%w %s: no answer: %w", ErrControl, path, err)
	}
	// Whatever the relay answers reaches a terminal: escaped once more
	// here, whichever relay (or impostor) wrote it.
	io.WriteString(stdout, termsafe.Text(rep.Out))
	return rep.Code, true, nil
}

// adminFlags reads the flags that locate the relay: -config, -spool,
// -control-socket. Everything after them is the command's own.
func adminSettings(name string, args []string, stderr io.Writer) (*Config, []string, error) {
	// Only the location flags are read here; the rest of the command line
	// goes to adminRun.
	var own, rest []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		key, _, hasVal := strings.Cut(a, "=")
		if strings.HasPrefix(args[i], "-") && (key == "config" || key == "spool" || key == "control-socket") {
			own = append(own, args[i])
			if !hasVal && i+1 < len(args) {
				own = append(own, args[i+1])
				i++
			}
			continue
		}
		rest = append(rest, args[i])
	}
	cfg, _, _, err := loadWithFlags(name, own, stderr, nil)
	if err != nil {
		return nil, nil, err
	}
	s, err := cfg.resolved()
	return s, rest, err
}

// adminCommand is "relay queue ..." and "relay quarantine ...".
func adminCommand(cmd string, args []string, stdout, stderr io.Writer) int {
	s, rest, err := adminSettings("relay "+cmd, args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "relay:", safe(err.Error()))
		}
		return 2
	}
	if code, ok, err := askRelay(s.Control.Socket, cmd, rest, stdout); err != nil {
		fmt.Fprintln(stderr, safe(err.Error()))
		return 1
	} else if ok {
		return code
	}
	// The relay is not running: work on the spool directly.
	q, err := queue.Open(queue.Config{Dir: s.Spool, Hostname: s.Hostname, Postmaster: s.Delivery.Postmaster})
	if err != nil {
		if errors.Is(err, queue.ErrLocked) {
			fmt.Fprintf(stderr, "relay: the spool %s is locked by a running relay, but its control socket %s does not answer\n", safe(s.Spool), safe(s.Control.Socket))
		} else {
			fmt.Fprintf(stderr, "relay: spool %s: %s\n", safe(s.Spool), safe(err.Error()))
		}
		return 1
	}
	defer q.Close()
	sw := termsafe.NewWriter(stdout)
	defer sw.Close()
	return adminRun(q, cmd, rest, sw)
}

// reloadCommand asks the running relay to reload.
func reloadCommand(args []string, stdout, stderr io.Writer) int {
	s, _, err := adminSettings("relay reload", args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "relay:", safe(err.Error()))
		return 2
	}
	code, ok, err := askRelay(s.Control.Socket, "reload", nil, stdout)
	if err != nil {
		fmt.Fprintln(stderr, safe(err.Error()))
		return 1
	}
	if !ok {
		fmt.Fprintf(stderr, "relay: no relay answers on %s\n", safe(s.Control.Socket))
		return 1
	}
	return code
}

// safe escapes one field of admin output: every character a terminal
// could act on becomes '?', as in mailq (internal/termsafe, the one
// helper for every admin command and report).
func safe(s string) string { return termsafe.String(s) }

// checkConfig builds everything a configuration names without serving:
// the files are read and parsed, certificates and keys loaded, listen
// addresses checked for being free.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	s, path, ok := commandSettings("relay check-config", args, stderr, nil)
	if !ok {
		return 1
	}
	var err error
	log := s.logger(stderr)
	r := &relayServer{log: log, met: newMetrics()}
	if r.store, err = openStore(s); err != nil {
		fmt.Fprintln(stderr, "relay:", safe(err.Error()))
		return 1
	}
	defer closeStore(r.store)
	g, err := r.buildGeneration(s)
	if err != nil {
		// Errors quote the files they come from: escaped.
		fmt.Fprintln(stderr, "relay:", safe(err.Error()))
		return 1
	}
	defer g.routing.Close()
	src := path
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(stdout, "configuration OK (%s)\n", safe(src))
	fmt.Fprintf(stdout, "  domains: %s; trusted networks: %d; spool: %s\n", safe(strings.Join(s.domains, ", ")), len(s.trusted), safe(s.Spool))
	for _, w := range append(s.warnings, recipientWarnings(s, g.routing)...) {
		fmt.Fprintf(stdout, "  WARNING: %s\n", safe(w))
	}
	for _, f := range []struct{ what, file string }{{"access", s.Policy.Access}, {"mailertable", s.Delivery.Mailertable},
		{"recipients", s.Policy.Recipients}, {"credentials", s.Submission.Credentials}, {"senders", s.Submission.Senders}, {"scan policy", s.Scan.Policy}} {
		if f.file != "" {
			fmt.Fprintf(stdout, "  %s: %s (read)\n", f.what, safe(f.file))
		}
	}
	for _, l := range g.routing.out.describe(s) {
		fmt.Fprintf(stdout, "  %s\n", safe(l))
	}
	for _, l := range []struct{ key, addr string }{{"smtp.listen", s.SMTP.Listen}, {"submission.listen", s.Submission.Listen},
		{"submission.listen_tls", s.Submission.ListenTLS}, {"metrics.listen", s.Metrics.Listen}, {"web.listen", s.Web.Listen}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			// Not an error here: the relay checked may be the one running.
			fmt.Fprintf(stdout, "  note: %s %s: cannot listen now: %s\n", l.key, safe(l.addr), safe(err.Error()))
			continue
		}
		ln.Close()
	}
	return 0
}
