package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
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

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// testCA issues certificates for a test, and writes its own as PEM for
// delivery.tls_ca_file.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pemDir string
	serial int64
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Integration CA " + dir},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: c, key: key, pemDir: dir, serial: 1}
}

// file writes the CA certificate as PEM and returns its path.
func (ca *testCA) file(t *testing.T) string {
	p := filepath.Join(ca.pemDir, "ca.pem")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644))
	return p
}

// issue makes a server certificate for names (IP addresses become IP
// subject alternative names) and writes it and its key as PEM; the
// returned certificate has its Leaf.
func (ca *testCA) issue(t *testing.T, names ...string) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ca.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	base := filepath.Join(ca.pemDir, strings.ReplaceAll(names[0], "*", "_")+"-"+strconv.FormatInt(ca.serial, 10))
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	require.NoError(t, os.WriteFile(base+".crt", chain, 0o644))
	require.NoError(t, os.WriteFile(base+".key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600))
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, base + ".crt", base + ".key"
}

// dnsTypeA is for tests whose DNS server is named dns.
const (
	dnsTypeA   = dns.TypeA
	dnsTypeTXT = dns.TypeTXT
)

// stop ends the relay (SIGINT, as an init system does) and waits for
// it, so another can start on its spool.
func (r *relay) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, r.cmd.Process.Signal(os.Interrupt))
	_ = r.cmd.Wait()
}

// tapProxy forwards connections to target and keeps every byte the
// clients sent, to prove what crossed the wire in clear.
type tapProxy struct {
	addr string
	mu   sync.Mutex
	raw  bytes.Buffer
}

func startTapProxy(t *testing.T, target string) *tapProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tapProxy{addr: l.Addr().String()}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c, target)
		}
	}()
	return p
}

func (p *tapProxy) serve(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go io.Copy(c, up)
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		p.mu.Lock()
		p.raw.Write(buf[:n])
		p.mu.Unlock()
		if _, werr := up.Write(buf[:n]); werr != nil || err != nil {
			return
		}
	}
}

func (p *tapProxy) bytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.raw.Bytes()...)
}

// postfixSmartHost is a private Postfix instance whose smtpd wants
// STARTTLS and then SMTP AUTH (Cyrus SASL, sasldb) before it relays, as
// an ISP's or a hosted service's submission server does; it relays to
// relayTo.
type postfixSmartHost struct {
	addr, etc, log string
}

func startPostfixSmartHost(t *testing.T, relayTo, certFile, keyFile, user, realm, password string) *postfixSmartHost {
	t.Helper()
	need(t, "postfix")
	saslpasswd := need(t, "saslpasswd2")
	need(t, "script")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a private Postfix instance needs root (its daemons run as user postfix)")
		}
		t.Skip("a private Postfix instance needs root (its daemons run as user postfix)")
	}
	dir, err := os.MkdirTemp("", "postern-postfix-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	p := &postfixSmartHost{etc: filepath.Join(dir, "etc"), log: filepath.Join(dir, "maillog"), addr: freeAddr(t)}
	// Debian's Postfix reads Cyrus SASL's smtpd.conf from
	// $config_directory/sasl whatever cyrus_sasl_config_path says.
	sasl := filepath.Join(p.etc, "sasl")
	for _, d := range []string{p.etc, filepath.Join(dir, "data"), filepath.Join(dir, "spool"), sasl} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	require.NoError(t, exec.Command("chown", "postfix", filepath.Join(dir, "data")).Run())
	db := filepath.Join(sasl, "sasldb2")
	cmd := exec.Command(saslpasswd, "-f", db, "-c", "-p", "-u", realm, user)
	cmd.Stdin = strings.NewReader(password)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "saslpasswd2: %s", out)
	require.NoError(t, os.Chmod(db, 0o644))
	writeFile(t, sasl, "smtpd.conf", "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: "+db+"\n")
	// The certificate files must be readable by smtpd.
	for _, f := range []string{certFile, keyFile} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644))
	}
	writeFile(t, p.etc, "main.cf", postfixSASLMain(dir, relayTo, filepath.Join(dir, filepath.Base(certFile)), filepath.Join(dir, filepath.Base(keyFile))))
	writeFile(t, p.etc, "master.cf", p.addr+" inet n - n - - smtpd\n"+postfixServices)
	// script(1) gives postfix a terminal, so its fatal errors are shown.
	out, err = exec.Command("script", "-qc", "postfix -c "+p.etc+" start", "/dev/null").CombinedOutput()
	if err != nil || !waitDial(p.addr, 30*time.Second) {
		logs, _ := os.ReadFile(p.log)
		t.Fatalf("postfix did not start: %v: %s\n%s", err, out, logs)
	}
	t.Cleanup(func() {
		_ = exec.Command("postfix", "-c", p.etc, "stop").Run()
		if t.Failed() {
			logs, _ := os.ReadFile(p.log)
			t.Logf("postfix log:\n%s", logs)
		}
	})
	return p
}

func waitDial(addr string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (p *postfixSmartHost) logs() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func postfixSASLMain(dir, relayTo, cert, key string) string {
	return fmt.Sprintf(`# a smart host that wants STARTTLS and a login before it relays
compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = smarthost.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 192.0.2.255/32
relay_domains =
relayhost = %[2]s
alias_maps =
alias_database =
local_recipient_maps =
smtpd_tls_security_level = may
smtpd_tls_cert_file = %[3]s
smtpd_tls_key_file = %[4]s
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = %[1]s/etc/sasl
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtp_tls_security_level = none
biff = no
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
`, dir, relayTo, cert, key)
}

// postfixServices is Debian's master.cf without chroot and without the
// transports a relay does not use.
const postfixServices = `pickup    unix  n       -       n       60      1       pickup
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
