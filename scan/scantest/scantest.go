package scantest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EICAR returns the EICAR anti-virus test file (eicar.org), built at run
// time so that no scanner flags this package's source.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-FILE!$H+H*")
}

// GTUBE returns SpamAssassin's Generic Test for Unsolicited Bulk Email,
// which spamd and rspamd both treat as certain spam.
func GTUBE() string {
	return "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
}

// EICARSignature names the signature Clamd's database has for EICAR;
// clamd reports it as EICARSignature + ".UNOFFICIAL".
const EICARSignature = "Postern.Test.EICAR"

// startTimeout bounds a daemon's start (rspamd compiles its tables).
const startTimeout = 120 * time.Second

// Daemon is a scanner daemon started for one test.
type Daemon struct {
	// Name is "clamd", "spamd" or "rspamd".
	Name string
	// Addr is its TCP address on 127.0.0.1.
	Addr string
	// Socket is its Unix socket path, "" if it has none.
	Socket string
	// Dir holds its configuration and files.
	Dir string

	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	once   sync.Once
}

// Kill kills the daemon at once, as a crash would.
func (d *Daemon) Kill() {
	d.once.Do(func() { killGroup(d.cmd) })
	<-d.exited
}

// Output returns what the daemon wrote to stdout and stderr so far.
func (d *Daemon) Output() string { return d.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil // enough to diagnose a failure
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// need finds a program, or skips (fails under CI=true).
func need(tb testing.TB, prog, pkg string) string {
	tb.Helper()
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (apt-get install %s)", prog, pkg)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s, and CI=true requires the tests against a real %s", msg, prog)
	}
	tb.Skip(msg + ": skipping the tests against a real " + prog)
	return ""
}

// privateDir makes a short, world-readable directory: daemons that drop
// root privileges must read it, and Unix socket paths are short.
func privateDir(tb testing.TB, prefix string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

// start runs the daemon and waits until ready says it answers. The port
// may have been taken in between; the caller retries.
func start(tb testing.TB, d *Daemon, path string, args []string, ready func(ctx context.Context) error) error {
	d.out = &syncBuffer{}
	d.exited = make(chan struct{})
	d.cmd = exec.Command(path, args...)
	d.cmd.Dir = d.Dir
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// A worker that outlives the daemon keeps the output pipe open: do
	// not wait for it for long.
	d.cmd.WaitDelay = 2 * time.Second
	ownGroup(d.cmd)
	if err := d.cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited while starting: %s", d.Name, tail(d.out.String()))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			tb.Cleanup(d.Kill)
			return nil
		}
		if time.Now().After(deadline) {
			d.Kill()
			return fmt.Errorf("%s not ready after %v: %v: %s", d.Name, startTimeout, err, tail(d.out.String()))
		}
		time.Sleep(50 * time.Millisecond) // a real process starting up: poll
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return strings.TrimSpace(s)
}

func startWithRetries(tb testing.TB, try func() error) {
	tb.Helper()
	var err error
	for range 3 {
		if err = try(); err == nil {
			return
		}
	}
	tb.Fatalf("scantest: %v", err)
}

// dropPrivileges returns the user and group a daemon should switch to when
// the test runs as root, "" otherwise.
func dropPrivileges() (string, string) {
	if os.Geteuid() != 0 {
		return "", ""
	}
	group := "nogroup"
	if _, err := user.LookupGroup(group); err != nil {
		group = "nobody"
	}
	return "nobody", group
}

// Clamd starts clamd with a database of one signature, EICARSignature,
// written for the test: clamd needs no freshclam and no network that
// way. It listens on Addr and on Socket.
func Clamd(tb testing.TB) *Daemon {
	tb.Helper()
	return ClamdSignatures(tb, nil)
}

// ClamdSignatures starts clamd as Clamd does, with more body signatures
// in its database besides EICARSignature: name → bytes that, found
// anywhere in a scanned file, make clamd report name + ".UNOFFICIAL".
// A test can so see several virus names without real malware.
func ClamdSignatures(tb testing.TB, sigs map[string][]byte) *Daemon {
	tb.Helper()
	path := need(tb, "clamd", "clamav-daemon")
	dir := privateDir(tb, "pclamd")
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		tb.Fatal(err)
	}
	// An .ndb body signature (ClamAV signatures.md): name, target type 0
	// (any file), offset * (anywhere), hex pattern. It matches inside
	// archives and mail parts as clamd unpacks them.
	sig := EICARSignature + ":0:*:" + hex.EncodeToString(EICAR()) + "\n"
	for _, name := range slices.Sorted(maps.Keys(sigs)) {
		if name == "" || strings.ContainsAny(name, ":\n") || len(sigs[name]) == 0 {
			tb.Fatalf("scantest: bad signature %q", name)
		}
		sig += name + ":0:*:" + hex.EncodeToString(sigs[name]) + "\n"
	}
	if err := os.WriteFile(filepath.Join(db, "postern-test.ndb"), []byte(sig), 0o644); err != nil {
		tb.Fatal(err)
	}
	d := &Daemon{Name: "clamd", Dir: dir, Socket: filepath.Join(dir, "clamd.sock")}
	startWithRetries(tb, func() error {
		port := freePort(tb)
		d.Addr = "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(dir, "clamd.conf")
		text := strings.Join([]string{
			"Foreground yes",
			"DatabaseDirectory " + db,
			"TCPSocket " + strconv.Itoa(port),
			"TCPAddr 127.0.0.1",
			"LocalSocket " + d.Socket,
			"PidFile " + filepath.Join(dir, "clamd.pid"),
			"LogFile " + filepath.Join(dir, "clamd.log"),
			"StreamMaxLength 25M",
			"MaxThreads 4",
			"SelfCheck 3600",
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return err
		}
		return start(tb, d, path, []string{"-c", conf}, func(ctx context.Context) error {
			return rawPing(ctx, d.Addr, "zPING\x00", "PONG")
		})
	})
	return d
}

// rawPing sends cmd and wants a reply starting with want.
func rawPing(ctx context.Context, addr, cmd, want string) error {
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(strings.TrimLeft(line, "\x00"), want) && !strings.Contains(line, want) {
		if err == nil {
			err = errors.New("unexpected reply")
		}
		return fmt.Errorf("%q: %v", line, err)
	}
	return nil
}

// spamRules finds SpamAssassin rules that work offline: those sa-update
// left, else the ones the Debian package ships in /usr/share/spamassassin.
func spamRules() (string, error) {
	var dirs []string
	if m, _ := filepath.Glob("/var/lib/spamassassin/*/updates_spamassassin_org"); len(m) > 0 {
		dirs = append(dirs, m...)
	}
	dirs = append(dirs, "/usr/share/spamassassin", "/usr/local/share/spamassassin")
	for _, d := range dirs {
		if m, _ := filepath.Glob(filepath.Join(d, "*.cf")); len(m) > 10 {
			return d, nil
		}
	}
	return "", errors.New("no SpamAssassin rules found (looked in /var/lib/spamassassin and /usr/share/spamassassin)")
}

// Spamd starts spamd on Addr with the rules installed with SpamAssassin,
// network tests off (-L), no user preferences (-x), no Bayes, and the
// plugin loads (*.pre) of /etc/spamassassin.
func Spamd(tb testing.TB) *Daemon {
	tb.Helper()
	return SpamdRules(tb, "")
}

// SpamdRules starts spamd as Spamd does, with rules of the test's own
// added to its site configuration (local.cf), for example a rule that
// gives a known score:
//
//	body   TEST_MIDDLE /postern-middle-score/
//	score  TEST_MIDDLE 6.0
func SpamdRules(tb testing.TB, localRules string) *Daemon {
	tb.Helper()
	path := need(tb, "spamd", "spamd spamassassin")
	rules, err := spamRules()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	dir := privateDir(tb, "pspamd")
	site := filepath.Join(dir, "site")
	if err := os.Mkdir(site, 0o755); err != nil {
		tb.Fatal(err)
	}
	pres, _ := filepath.Glob("/etc/spamassassin/*.pre")
	for _, p := range pres {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(site, filepath.Base(p)), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if len(pres) == 0 {
		// The plugins the shipped rules need (Check is required).
		var b strings.Builder
		for _, p := range []string{"Check", "HeaderEval", "BodyEval", "MIMEEval", "HTMLEval", "URIEval",
			"RelayEval", "WLBLEval", "MIMEHeader", "ReplaceTags", "FreeMail", "ImageInfo", "VBounce"} {
			b.WriteString("loadplugin Mail::SpamAssassin::Plugin::" + p + "\n")
		}
		if err := os.WriteFile(filepath.Join(site, "init.pre"), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	local := "use_bayes 0\nbayes_auto_learn 0\ndns_available no\nskip_rbl_checks 1\n" + localRules + "\n"
	if err := os.WriteFile(filepath.Join(site, "local.cf"), []byte(local), 0o644); err != nil {
		tb.Fatal(err)
	}
	d := &Daemon{Name: "spamd", Dir: dir}
	usr, _ := dropPrivileges()
	startWithRetries(tb, func() error {
		port := freePort(tb)
		d.Addr = "127.0.0.1:" + strconv.Itoa(port)
		args := []string{
			"--listen=" + d.Addr, "--allowed-ips=127.0.0.1",
			"-x", "-L", "--max-children=2", "--min-children=1",
			"--syslog=stderr", "--siteconfigpath=" + site, "--configpath=" + rules,
			"--pidfile=" + filepath.Join(dir, "spamd.pid"),
		}
		if usr != "" {
			args = append(args, "-u", usr)
		}
		return start(tb, d, path, args, func(ctx context.Context) error {
			return rawPing(ctx, d.Addr, "PING SPAMC/1.5\r\n\r\n", "SPAMD/1.5 0 PONG")
		})
	})
	return d
}

// RspamdTestHeader is the header field by which a test asks the rspamd
// that Rspamd starts for one of the answers its test-only rule gives
// (see RspamdTestRules).
const RspamdTestHeader = "X-Postern-Rspamd-Test"

// RspamdTestRules is the test-only Lua rule Rspamd loads: a prefilter that
// reads RspamdTestHeader and makes rspamd answer
//
//   - "greylist": the action greylist, smtp_message "Greylisted by the
//     test rule, try again later";
//   - "soft-reject": the action soft reject, smtp_message "Rate limited
//     by the test rule";
//   - "rewrite-subject": the action rewrite subject ("subject" is
//     "***SPAM*** " and the Subject);
//   - "headers": no action, and a milter block that adds
//     X-Postern-Rspamd (order 0) and a DKIM-Signature field (order 1),
//     removes every X-Postern-Remove-Me, and, hostile, adds a field
//     whose name holds a line break and removes Received.
//
// Other messages are scored as rspamd scores them without modules.
const RspamdTestRules = `
local lua_mime = require "lua_mime"
rspamd_config:register_symbol({
  name = 'POSTERN_TEST_RULE',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local h = task:get_header('` + RspamdTestHeader + `')
    if not h then return end
    if h == 'greylist' then
      task:set_pre_result('greylist', 'Greylisted by the test rule, try again later')
    elseif h == 'soft-reject' then
      task:set_pre_result('soft reject', 'Rate limited by the test rule')
    elseif h == 'rewrite-subject' then
      task:set_pre_result('rewrite subject', 'subject rewritten by the test rule')
    elseif h == 'headers' then
      lua_mime.modify_headers(task, {
        add = {
          ['X-Postern-Rspamd'] = {value = 'added by the test rule', order = 0},
          ['DKIM-Signature'] = {value = 'v=1; a=rsa-sha256; d=example.test; s=test; h=from; bh=x; b=y', order = 1},
          ['X-Evil\r\nInjected'] = {value = 'no', order = 2},
        },
        remove = {['X-Postern-Remove-Me'] = 0, ['Received'] = 0},
      })
    end
  end
})
`

// Rspamd starts rspamd with a minimal configuration: one normal worker
// on Addr, no modules that need Redis or DNS (lookups go to a dead
// loopback port), actions reject 15, add header 6, greylist 4 (subject
// "***SPAM*** %s"), and the test-only rule RspamdTestRules. GTUBE is
// built into rspamd.
func Rspamd(tb testing.TB) *Daemon {
	tb.Helper()
	path := need(tb, "rspamd", "rspamd")
	dir := privateDir(tb, "prspamd")
	d := &Daemon{Name: "rspamd", Dir: dir}
	usr, grp := dropPrivileges()
	startWithRetries(tb, func() error {
		port := freePort(tb)
		d.Addr = "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(dir, "rspamd.conf")
		text := `options {
  pidfile = "` + filepath.Join(dir, "rspamd.pid") + `";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 0; }
  filters = "";
  local_addrs = [];
}
logging { type = "console"; level = "warning"; }
actions { reject = 15; add_header = 6; greylist = 4; subject = "***SPAM*** %s"; }
worker "normal" {
  bind_socket = "` + d.Addr + `";
  count = 1;
}
lua = "` + filepath.Join(dir, "postern-test.lua") + `";
`
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "postern-test.lua"), []byte(RspamdTestRules), 0o644); err != nil {
			return err
		}
		args := []string{"-f", "-c", conf}
		if usr != "" {
			args = append(args, "-u", usr, "-g", grp)
		}
		return start(tb, d, path, args, func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.Addr+"/ping", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			if strings.TrimSpace(string(b)) != "pong" {
				return fmt.Errorf("/ping: %s %q", resp.Status, b)
			}
			return nil
		})
	})
	return d
}
