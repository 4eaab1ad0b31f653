package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver/dnstest"
)

// waitLog waits for a line of the relay's log.
func waitLog(t *testing.T, r *relay, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m string
	require.Eventually(t, func() bool {
		m = rx.FindString(r.logs())
		return m != ""
	}, 30*time.Second, 50*time.Millisecond, "no log line %s; relay log:\n%s", re, r.logs())
	return m
}

// smartHostRelay runs the relay with the smart host at addr and the
// access file given, and the smart host's CA trusted; extra are more
// [delivery] keys.
func smartHostRelay(t *testing.T, dir, smart, access, policy, ca string, extra ...string) *relay {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	writeFile(t, dir, "access", access)
	writeFile(t, dir, "tls_policy", policy)
	conf := writeFile(t, dir, "relay.toml", `
local_domains = ["example.test"]
[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
[policy]
access = "access"
[delivery]
smart_host = "`+smart+`"
tls_policy_map = "tls_policy"
tls_ca_file = "`+ca+`"
`+strings.Join(extra, "\n")+"\n")
	return startRelay(t, "-config", conf, "-spool", filepath.Join(dir, "spool"), "-metrics-listen", "")
}

// The relay logs in to a real Postfix smtpd that wants STARTTLS and AUTH
// PLAIN (Cyrus SASL) before it relays, with the credentials of an
// AuthInfo: line of the sendmail access file; the smart host's
// certificate is checked (a Postfix-syntax policy map says verify).
// The same with delivery.auth_user and auth_password_file instead.
// With the wrong password the mail waits, with Postfix's reply, and
// neither the password nor the mail ever crossed the wire in clear.
func TestSmartHostLoginThroughPostfix(t *testing.T) {
	need(t, "python3")
	final := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	_, certFile, keyFile := ca.issue(t, "smarthost.example.test", "127.0.0.1")
	pf := startPostfixSmartHost(t, hostPort(final.addr), certFile, keyFile, "relay", "example.test", "s3cret-pw")
	tap := startTapProxy(t, pf.addr)
	smart := hostPort(tap.addr)
	policy := "# Postfix smtp_tls_policy_maps\n" + smart + "  verify\n"

	good := smartHostRelay(t, filepath.Join(dir, "good"), smart,
		`AuthInfo:127.0.0.1 "U:relay@example.test" "I:relay@example.test" "P:s3cret-pw" "M:PLAIN"`+"\n", policy, ca.file(t))
	res := runDialog(t, good.addr, "127.0.0.1", "SEND alice@example.test bob@remote.example")
	require.Equal(t, "SENT []", res[0])
	got := final.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, []string{"bob@remote.example"}, got[0].Rcpts)
	assert.Contains(t, string(got[0].Data), "with ESMTPSA", "Postfix took it from an authenticated client")
	line := waitLog(t, good, `msg=delivery .*action=sent.*`)
	assert.Contains(t, line, `tls="TLS 1.3 verified (verify, policy map), AUTH PLAIN"`)

	// The same login from the relay's own keys, for sites without
	// sendmail files.
	keysDir := filepath.Join(dir, "keys")
	require.NoError(t, os.MkdirAll(keysDir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(keysDir, "smarthost.secret"), []byte("s3cret-pw\n"), 0o600))
	keys := smartHostRelay(t, keysDir, smart, "", policy, ca.file(t),
		`auth_user = "relay@example.test"`, `auth_password_file = "smarthost.secret"`)
	res = runDialog(t, keys.addr, "127.0.0.1", "SEND alice@example.test dave@remote.example")
	require.Equal(t, "SENT []", res[0])
	got = final.waitFor(t, 2, 30*time.Second)
	assert.Equal(t, []string{"dave@remote.example"}, got[1].Rcpts)
	assert.Contains(t, waitLog(t, keys, `msg=delivery .*action=sent.*`), `tls="TLS 1.3 verified (verify, policy map), AUTH PLAIN"`)

	bad := smartHostRelay(t, filepath.Join(dir, "bad"), smart,
		`AuthInfo:127.0.0.1 "U:relay@example.test" "P:wrong-pw" "M:PLAIN"`+"\n", policy, ca.file(t))
	res = runDialog(t, bad.addr, "127.0.0.1", "SEND alice@example.test carol@remote.example")
	require.Equal(t, "SENT []", res[0])
	line = waitLog(t, bad, `msg=delivery .*action=deferred.*`)
	assert.Contains(t, line, "SASL PLAIN authentication failed; host "+smart+" said: 535 5.7.8 Error: authentication failed")
	assert.Len(t, final.received(), 2, "nothing without the login")

	raw := tap.bytes()
	assert.Contains(t, string(raw), "STARTTLS")
	for _, s := range []string{"AUTH", "MAIL FROM", "s3cret-pw", "wrong-pw",
		base64.StdEncoding.EncodeToString([]byte("\x00relay@example.test\x00s3cret-pw"))} {
		assert.False(t, bytes.Contains(raw, []byte(s)), "%q crossed the wire in clear", s)
	}
	assert.NotContains(t, good.logs()+keys.logs()+bad.logs(), "s3cret-pw")
	assert.NotContains(t, bad.logs(), "wrong-pw")
	assert.Contains(t, pf.logs(), "SASL PLAIN authentication failed")
}

// stsHost serves MTA-STS policies over HTTPS on ip:443 (a loopback
// address of the test's own: port 443 is fixed by RFC 8461) until the
// test ends or it is closed.
func stsHost(t *testing.T, ip string, ca *testCA, policies map[string]string) *http.Server {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("an MTA-STS policy host needs port 443 (root)")
		}
		t.Skip("an MTA-STS policy host needs port 443 (root)")
	}
	var names []string
	for d := range policies {
		names = append(names, "mta-sts."+d)
	}
	cert, _, _ := ca.issue(t, names...)
	l, err := tls.Listen("tcp", ip+":443", &tls.Config{Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := policies[strings.TrimPrefix(r.Host, "mta-sts.")]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, p)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// remoteAddr adds an address of TEST-NET-3 to the loopback interface
// once the relay runs: the relay took its interface addresses at start,
// so servers on this one are, to it, another host, as MX hosts are (an MX
// on one of its own addresses is a mail loop). n tells a test's
// addresses apart (a relay started later needs a new one). Needs root.
func remoteAddr(t *testing.T, n int) string {
	t.Helper()
	ipCmd := need(t, "ip")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a remote MX address needs root (ip addr add)")
		}
		t.Skip("a remote MX address needs root (ip addr add)")
	}
	addr := "203.0.113." + strconv.Itoa(1+(os.Getpid()+n)%250)
	out, err := exec.Command(ipCmd, "addr", "add", addr+"/32", "dev", "lo").CombinedOutput()
	switch {
	case err == nil:
		t.Cleanup(func() { _ = exec.Command(ipCmd, "addr", "del", addr+"/32", "dev", "lo").Run() })
	case strings.Contains(string(out), "File exists"):
		// Another test of this process added it and removes it.
	default:
		t.Fatalf("ip addr add %s: %v: %s", addr, err, out)
	}
	return addr
}

// The relay binary with a Postfix-syntax TLS policy map and MTA-STS:
// an enforce policy and a good certificate: delivered, verified; an
// enforce policy and a certificate no trusted CA issued: deferred with
// the reason; "secure" from the map: delivered, checked against the
// domain; "verify" and a certificate of another name: deferred;
// "encrypt" and a server without STARTTLS: deferred; "none": plaintext
// though STARTTLS is offered; "may" and a certificate nobody trusts:
// delivered, unverified. The MTA-STS policies are kept on disk under the
// spool: a relay restarted while the policy host is down still enforces
// them.
func TestOutboundTLSThroughRelay(t *testing.T) {
	need(t, "python3")
	dir := t.TempDir()
	ca, rogue := newTestCA(t, dir), newTestCA(t, t.TempDir())
	stsIP := "127.0.0." + strconv.Itoa(100+os.Getpid()%150)
	policyHost := stsHost(t, stsIP, ca, map[string]string{
		"sts.example":    "version: STSv1\nmode: enforce\nmx: mx.sts.example\nmax_age: 86400\n",
		"badsts.example": "version: STSv1\nmode: enforce\nmx: mx.badsts.example\nmax_age: 86400\n",
	})
	domains := []string{"sts.example", "badsts.example", "secure.example", "encrypt.example", "verify.example",
		"none.example", "may.example"}
	ports := map[string]string{}
	var mt, policy strings.Builder
	for _, d := range domains {
		_, ports[d], _ = net.SplitHostPort(freeAddr(t))
		// By MX of the domain, on the sink's port (the mailertable's
		// "domain:port"; the policy map's key is that next hop).
		fmt.Fprintf(&mt, "%s esmtp:%s:%s\n", d, d, ports[d])
	}
	policy.WriteString("# smtp_tls_policy_maps, as Postfix reads it\n")
	for _, l := range []string{"secure", "encrypt", "verify", "none", "may"} {
		fmt.Fprintf(&policy, "%s.example:%s\t%s\n", l, ports[l+".example"], l)
	}
	writeFile(t, dir, "mailertable", mt.String())
	writeFile(t, dir, "tls_policy", policy.String())
	dns := dnstest.Start(t)
	conf := writeFile(t, dir, "relay.toml", `
local_domains = ["example.test"]
[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
[dns]
resolvers = ["`+dns.Addr+`"]
[delivery]
mailertable = "mailertable"
tls_policy_map = "tls_policy"
tls_ca_file = "`+ca.file(t)+`"
`)
	spool := filepath.Join(dir, "spool")
	r := startRelay(t, "-config", conf, "-spool", spool, "-metrics-listen", "")

	mx := remoteAddr(t, 0)
	certs := map[string]*tls.Config{}
	for d, issuer := range map[string]*testCA{"sts.example": ca, "badsts.example": rogue, "secure.example": ca,
		"none.example": ca, "may.example": rogue} {
		c, _, _ := issuer.issue(t, "mx."+d)
		certs[d] = &tls.Config{Certificates: []tls.Certificate{c}}
	}
	wrongName, _, _ := ca.issue(t, "mx.elsewhere.example")
	certs["verify.example"] = &tls.Config{Certificates: []tls.Certificate{wrongName}}
	sinks := map[string]*sink{}
	for _, d := range domains {
		sinks[d] = startSinkTLS(t, net.JoinHostPort(mx, ports[d]), certs[d])
		dns.AddMX(d, 10, "mx."+d)
		dns.AddA("mx."+d, mx)
		if strings.HasSuffix(d, "sts.example") {
			dns.AddA("mta-sts."+d, stsIP)
			dns.AddTXT("_mta-sts."+d, "v=STSv1; id=20261208;")
		}
	}
	for _, d := range domains {
		res := runDialog(t, r.addr, "127.0.0.1", "SEND alice@example.test user@"+d)
		require.Equal(t, "SENT []", res[0], d)
	}
	sinks["sts.example"].waitFor(t, 1, 30*time.Second)
	sinks["secure.example"].waitFor(t, 1, 30*time.Second)
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@sts.example .*action=sent.*`), `tls="TLS 1.3 verified by MTA-STS (sts.example)"`)
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@secure.example .*action=sent.*`), `tls="TLS 1.3 verified (secure, policy map)"`)
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@badsts.example .*action=deferred.*`),
		"does not meet the MTA-STS policy of badsts.example: x509: certificate signed by unknown authority")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@encrypt.example .*action=deferred.*`),
		"TLS is required by TLS level encrypt (policy map), but was not offered")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@verify.example .*action=deferred.*`),
		"does not meet TLS level verify (policy map): certificate name does not match: certificate of mx.elsewhere.example is not valid for mx.verify.example")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@none.example .*action=sent.*`), `tls=none `, "none: no STARTTLS though offered")
	assert.Contains(t, waitLog(t, r, `msg=delivery .*rcpt=user@may.example .*action=sent.*`), `tls="TLS 1.3 unverified"`)
	assert.Empty(t, sinks["badsts.example"].received())
	assert.Empty(t, sinks["encrypt.example"].received())
	assert.Empty(t, sinks["verify.example"].received())
	assert.Len(t, sinks["none.example"].received(), 1)
	assert.Len(t, sinks["may.example"].received(), 1)
	_, err := os.Stat(filepath.Join(spool, "mta-sts", "sts.example.json"))
	assert.NoError(t, err, "the policy is kept across restarts")

	// The policy host goes down, the policies get a new id and the relay
	// restarts: the cached policies still hold (RFC 8461 §5.1, §10.2: no
	// silent downgrade).
	require.NoError(t, policyHost.Close())
	r.stop(t)
	r2 := startRelay(t, "-config", conf, "-spool", spool, "-metrics-listen", "")
	// The MX hosts move to an address the new relay does not count as
	// its own.
	mx2 := remoteAddr(t, 1)
	for _, d := range []string{"sts.example", "badsts.example"} {
		sinks[d] = startSinkTLS(t, net.JoinHostPort(mx2, ports[d]), certs[d])
		dns.Remove("mx."+d, dnsTypeA)
		dns.AddA("mx."+d, mx2)
		// A new id: the relay wants the policy again, and cannot get it.
		dns.Remove("_mta-sts."+d, dnsTypeTXT)
		dns.AddTXT("_mta-sts."+d, "v=STSv1; id=20261209;")
	}
	for _, d := range []string{"sts.example", "badsts.example"} {
		res := runDialog(t, r2.addr, "127.0.0.1", "SEND alice@example.test again@"+d)
		require.Equal(t, "SENT []", res[0], d)
	}
	assert.Contains(t, waitLog(t, r2, `msg=delivery .*rcpt=again@sts.example .*action=sent.*`), `tls="TLS 1.3 verified by MTA-STS (sts.example)"`)
	assert.Contains(t, waitLog(t, r2, `msg=delivery .*rcpt=again@badsts.example .*action=deferred.*`),
		"does not meet the MTA-STS policy of badsts.example")
	assert.Empty(t, sinks["badsts.example"].received())
	assert.NotContains(t, r2.logs(), "MTA-STS policy fetched", "nothing was fetched: the host is down")
	assert.Regexp(t, `msg="MTA-STS policy fetch failed" domain=badsts.example .*cached=true`, r2.logs())
}

// A TLS failure reaches the sender: the delay notice of a message the
// policy map holds back (encrypt, and an MX host that offers no
// STARTTLS) carries the reason in its Diagnostic-Code (RFC 3464).
func TestTLSFailureInDelayNotice(t *testing.T) {
	need(t, "python3")
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	writeFile(t, dir, "mailertable", "plain.example esmtp:plain.example:"+port+"\n")
	writeFile(t, dir, "tls_policy", "plain.example:"+port+" encrypt\n")
	dns := dnstest.Start(t)
	conf := writeFile(t, dir, "relay.toml", `
local_domains = ["example.test"]
[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"
[dns]
resolvers = ["`+dns.Addr+`"]
[delivery]
mailertable = "mailertable"
tls_policy_map = "tls_policy"
[queue]
warn = "1s"
min_backoff = "1s"
max_backoff = "2s"
`)
	r := startRelay(t, "-config", conf, "-spool", filepath.Join(dir, "spool"), "-metrics-listen", "")
	mx := remoteAddr(t, 0)
	plain := startSinkTLS(t, net.JoinHostPort(mx, port), nil)
	dns.AddMX("plain.example", 10, "mx.plain.example")
	dns.AddA("mx.plain.example", mx)

	res := runDialog(t, r.addr, "127.0.0.1", "SEND alice@example.test user@plain.example")
	require.Equal(t, "SENT []", res[0])
	var notice string
	require.Eventually(t, func() bool {
		for _, f := range maildirFiles(t, r.maildir) {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "Action: delayed") {
				notice = string(b)
				return true
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "no delay notice; relay log:\n%s", r.logs())
	assert.Contains(t, strings.Join(strings.Fields(notice), " "),
		"Diagnostic-Code: smtp; 451 4.7.4 TLS is required by TLS level encrypt (policy map), but was not offered by host mx.plain.example")
	assert.Contains(t, notice, "Status: 4.7.4")
	assert.Contains(t, notice, "Final-Recipient: rfc822; user@plain.example")
	assert.Empty(t, plain.received())
}
