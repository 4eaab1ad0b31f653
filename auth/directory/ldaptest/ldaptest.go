package ldaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed testdata/postern-test.schema
var testSchema []byte

// Defaults of Options and the fixed names of the test directory.
const (
	Suffix    = "dc=example,dc=test"
	People    = "ou=people," + Suffix
	Services  = "ou=services," + Suffix
	ServiceDN = "cn=postern," + Services
	// ServicePassword is the service account's password.
	ServicePassword = "service-secret"
	// DefaultSizeLimit is slapd's limit on the entries of one search
	// that is not paged; paged searches have no total limit.
	DefaultSizeLimit = 500
)

// startTimeout bounds slapd's start.
const startTimeout = 30 * time.Second

// Options configures a test directory. The zero value serves the base
// entries and the service account.
type Options struct {
	// LDIF holds entries added before slapd starts (slapadd), after the
	// base entries: "dn: uid=alice,ou=people,dc=example,dc=test" and its
	// attributes, entries separated by a blank line. Person builds one.
	LDIF string
	// SizeLimit bounds the entries of a search that is not paged
	// (slapd's sizelimit); default DefaultSizeLimit. Paged searches
	// (RFC 2696) may return any number.
	SizeLimit int
}

// Server is a slapd started for one test.
type Server struct {
	// URL is plain LDAP on 127.0.0.1 (StartTLS offered), LDAPSURL
	// LDAP over TLS.
	URL, LDAPSURL string
	// CAFile is the PEM certificate of the test CA that signed the
	// server's certificate (for 127.0.0.1 and localhost).
	CAFile string
	// RootDN and RootPassword are the directory manager's.
	RootDN, RootPassword string
	// Dir holds the configuration, the database and the certificates.
	Dir string

	conf       string
	slapd      string
	ports      [2]int
	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	log        *opLog
	tb         testing.TB
	passFile   string
	ldapmodif  string
	ldapsearch string
	markers    int
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
		tb.Fatalf("%s, and CI=true requires the tests against a real slapd", msg)
	}
	tb.Skip(msg + ": skipping the tests against a real slapd")
	return ""
}

// Available reports whether slapd and ldap-utils are installed, for a
// benchmark or example that prefers to say so itself.
func Available() bool {
	for _, p := range []string{"slapd", "slapadd", "ldapmodify"} {
		if _, err := exec.LookPath(p); err == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/usr/sbin", p)); err != nil {
			return false
		}
	}
	return true
}

// Start writes the configuration and the entries, starts slapd and
// waits until it answers. It stops when the test ends.
func Start(tb testing.TB, opt Options) *Server {
	tb.Helper()
	s := &Server{tb: tb, RootDN: "cn=admin," + Suffix, RootPassword: randomHex(tb)}
	s.slapd = need(tb, "slapd", "slapd")
	slapadd := need(tb, "slapadd", "slapd")
	s.ldapmodif = need(tb, "ldapmodify", "ldap-utils")
	s.ldapsearch = need(tb, "ldapsearch", "ldap-utils")
	dir, err := os.MkdirTemp("", "pslapd")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	s.Dir = dir
	if opt.SizeLimit == 0 {
		opt.SizeLimit = DefaultSizeLimit
	}
	if err := s.writeFiles(opt); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command(slapadd, "-f", s.conf, "-l", filepath.Join(dir, "data.ldif")).CombinedOutput()
	if err != nil {
		tb.Fatalf("ldaptest: slapadd: %v: %s", err, out)
	}
	var last error
	for range 3 {
		s.ports = [2]int{freePort(tb), freePort(tb)}
		if last = s.start(); last == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("ldaptest: %v", last)
	return nil
}

func randomHex(tb testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *Server) writeFiles(opt Options) error {
	dir := s.Dir
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		return err
	}
	if err := writeCerts(dir); err != nil {
		return err
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	s.passFile = filepath.Join(dir, "rootpw")
	files := map[string][]byte{
		"postern-test.schema": testSchema,
		"rootpw":              []byte(s.RootPassword),
		"data.ldif":           []byte(baseLDIF() + "\n" + strings.TrimSpace(opt.LDIF) + "\n"),
	}
	var conf strings.Builder
	for _, sch := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&conf, "include /etc/ldap/schema/%s.schema\n", sch)
	}
	fmt.Fprintf(&conf, "include %s\n", filepath.Join(dir, "postern-test.schema"))
	for _, l := range []string{
		"modulepath /usr/lib/ldap",
		"moduleload back_mdb",
		"pidfile " + filepath.Join(dir, "slapd.pid"),
		"argsfile " + filepath.Join(dir, "slapd.args"),
		"TLSCACertificateFile " + s.CAFile,
		"TLSCertificateFile " + filepath.Join(dir, "server.pem"),
		"TLSCertificateKeyFile " + filepath.Join(dir, "server.key"),
		// Paged searches (RFC 2696) may return every entry; others stop
		// at the size limit.
		fmt.Sprintf("sizelimit size.soft=%d size.hard=%d size.prtotal=unlimited", opt.SizeLimit, opt.SizeLimit),
		"database mdb",
		"maxsize 67108864",
		"suffix \"" + Suffix + "\"",
		"rootdn \"" + s.RootDN + "\"",
		"rootpw " + s.RootPassword,
		"directory " + filepath.Join(dir, "db"),
		"index objectClass,mail,mailAlternateAddress,uid eq",
		// Passwords are for binding only; only a bound user (the
		// service account) reads entries: an anonymous client sees
		// nothing.
		"access to attrs=userPassword by anonymous auth by * none",
		"access to * by users read by * none",
	} {
		conf.WriteString(l + "\n")
	}
	files["slapd.conf"] = []byte(conf.String())
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	s.conf = filepath.Join(dir, "slapd.conf")
	return nil
}

func baseLDIF() string {
	return strings.Join([]string{
		"dn: " + Suffix, "objectClass: dcObject", "objectClass: organization", "dc: example", "o: Example", "",
		"dn: " + People, "objectClass: organizationalUnit", "ou: people", "",
		"dn: " + Services, "objectClass: organizationalUnit", "ou: services", "",
		"dn: " + ServiceDN, "objectClass: organizationalRole", "objectClass: simpleSecurityObject", "cn: postern",
		"userPassword: " + ServicePassword, "",
	}, "\n")
}

// Person returns the LDIF of a user under ou=people: an inetOrgPerson
// with uid, a password (stored as given; slapd compares it) and mail
// addresses (the first is mail, the others mailAlternateAddress), plus
// attributes of the test schema (amavisBypassSpamChecks: TRUE, ...),
// each "name: value".
func Person(uid, password string, mails []string, attrs ...string) string {
	lines := []string{"dn: uid=" + uid + "," + People, "objectClass: inetOrgPerson", "objectClass: posternTestMailUser",
		"uid: " + uid, "cn: " + uid, "sn: " + uid}
	if password != "" {
		lines = append(lines, "userPassword: "+password)
	}
	for i, m := range mails {
		if i == 0 {
			lines = append(lines, "mail: "+m)
		} else {
			lines = append(lines, "mailAlternateAddress: "+m)
		}
	}
	lines = append(lines, attrs...)
	return strings.Join(lines, "\n") + "\n"
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(s.ports[0])
	s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(s.ports[1])
	if s.log == nil {
		s.log = &opLog{}
	}
	// -d 256: the statistics log (one line per operation) on stderr,
	// and slapd stays in the foreground.
	cmd := exec.Command(s.slapd, "-f", s.conf, "-h", s.URL+"/ "+s.LDAPSURL+"/", "-d", "256")
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("slapd exited while starting: %s", s.log.tail())
		default:
		}
		if ready(s.ports[0]) && ready(s.ports[1]) {
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("slapd not ready after %v: %s", startTimeout, s.log.tail())
		}
		time.Sleep(20 * time.Millisecond) // a real process starting up: poll
	}
}

func ready(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Stop kills slapd at once, as a crash would; its ports then refuse
// connections. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.sync() // what happened before the crash is logged
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts a stopped slapd again on the same ports, with the same
// data.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("ldaptest: restart: %v", err)
	}
}

// Modify applies LDIF change records as the directory manager
// (ldapmodify): "dn: ...\nchangetype: modify\nreplace: mail\nmail: ...".
// Records without a changetype are added.
func (s *Server) Modify(ldif string) {
	s.tb.Helper()
	cmd := exec.Command(s.ldapmodif, "-a", "-x", "-H", s.URL, "-D", s.RootDN, "-y", s.passFile)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.tb.Fatalf("ldaptest: ldapmodify: %v: %s", err, out)
	}
}

// Searches returns the number of search operations slapd has logged
// for the clients under test.
func (s *Server) Searches() int {
	s.sync()
	return s.log.count("SRCH base=")
}

// Binds returns the number of (named) bind operations slapd has logged.
func (s *Server) Binds() int {
	s.sync()
	return s.log.count("BIND dn=")
}

// Filters returns the search filters slapd logged, in its own rendering
// (values escaped as RFC 4515 says), oldest first.
func (s *Server) Filters() []string {
	s.sync()
	var out []string
	for _, l := range s.log.lines() {
		if _, rest, ok := strings.Cut(l, " SRCH base="); ok && !strings.Contains(l, markerPrefix) {
			if _, f, ok := strings.Cut(rest, " filter=\""); ok {
				out = append(out, strings.TrimSuffix(f, "\""))
			}
		}
	}
	return out
}

// markerPrefix names the searches sync makes.
const markerPrefix = "ldaptest-marker-"

// sync makes the log hold every operation that was answered before it
// was called: slapd logs an operation before answering it, but its log
// reaches the test through a pipe, later. A search of a marker, looked
// for in the log, comes after all of them.
func (s *Server) sync() {
	s.tb.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.markers++
	marker := markerPrefix + strconv.Itoa(s.markers)
	s.mu.Unlock()
	if !running {
		return // nothing new can have been logged
	}
	// Anonymous: it finds nothing, but slapd logs it.
	out, err := exec.Command(s.ldapsearch, "-x", "-H", s.URL, "-b", Suffix, "(cn="+marker+")").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such object") {
		s.tb.Fatalf("ldaptest: marker search: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.log.seen(marker) {
		if time.Now().After(deadline) {
			s.tb.Fatalf("ldaptest: slapd's log did not show %s: %s", marker, s.log.tail())
		}
		time.Sleep(5 * time.Millisecond) // another process's output on its way: poll
	}
}

// Output returns the end of slapd's log, for a failing test.
func (s *Server) Output() string { return s.log.tail() }

// opLog keeps slapd's log lines (the last maxLines of them) and counts
// operations as they are written.
type opLog struct {
	mu      sync.Mutex
	partial []byte
	kept    []string
	counts  map[string]int
}

const maxLines = 20000

var counted = []string{"SRCH base=", "BIND dn="}

func (l *opLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]int{}
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		for _, c := range counted {
			// The markers and their anonymous binds are the helper's own.
			// A bind is logged twice (the request with its method, then
			// the result): the request counts.
			if strings.Contains(line, c) && !strings.Contains(line, markerPrefix) && !strings.Contains(line, `BIND dn="" `) &&
				(c != "BIND dn=" || strings.Contains(line, " method=")) {
				l.counts[c]++
			}
		}
		l.kept = append(l.kept, line)
		if len(l.kept) > maxLines {
			l.kept = append([]string(nil), l.kept[len(l.kept)-maxLines/2:]...)
		}
	}
	return len(p), nil
}

func (l *opLog) count(what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[what]
}

func (l *opLog) seen(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.kept) - 1; i >= 0 && i >= len(l.kept)-200; i-- {
		if strings.Contains(l.kept[i], s) {
			return true
		}
	}
	return false
}

func (l *opLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.kept...)
}

func (l *opLog) tail() string {
	ls := l.lines()
	if len(ls) > 40 {
		ls = ls[len(ls)-40:]
	}
	return strings.Join(ls, "\n")
}

// writeCerts makes a test CA and a server certificate for 127.0.0.1,
// ::1 and localhost signed by it.
func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Postern ldaptest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for name, blk := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: srvDER},
		"server.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(blk), 0o600); err != nil {
			return err
		}
	}
	return nil
}
