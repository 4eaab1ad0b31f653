package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scantest"
)

// docMilterBlock is the fenced block of docs/milter.md whose info string
// is info ("conf main.cf"): the tests run the configuration the page
// shows.
func docMilterBlock(t *testing.T, info string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "milter.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)```" + regexp.QuoteMeta(info) + "\n(.*?)```").FindSubmatch(b)
	require.NotNil(t, m, "docs/milter.md has a ```%s block", info)
	return string(m[1])
}

// postfixMTA is a private Postfix instance (its own config, queue and
// data directories under a temporary directory) relaying example.test to
// a sink.
type postfixMTA struct {
	addr string // smtpd's loopback address
	etc  string
	log  string
}

// startPostfix starts Postfix with main.cf's relaying settings plus
// extra (the milter settings under test). Postfix prints fatal errors
// only to a terminal, so it is started under script(1).
func startPostfix(t *testing.T, sinkAddr, extra string) *postfixMTA {
	t.Helper()
	need(t, "postfix")
	scriptBin := need(t, "script")
	dir, err := os.MkdirTemp("", "postfix-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	p := &postfixMTA{addr: freeAddr(t), etc: filepath.Join(dir, "etc"), log: filepath.Join(dir, "maillog")}
	data := filepath.Join(dir, "data")
	for _, d := range []string{p.etc, data, filepath.Join(dir, "spool")} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	if os.Geteuid() == 0 {
		require.NoError(t, exec.Command("chown", "postfix", data).Run())
	}
	sh, sp, _ := strings.Cut(sinkAddr, ":")
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydomain = postfix.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
relayhost = [%[2]s]:%[3]s
alias_maps =
alias_database =
local_recipient_maps =
smtpd_tls_security_level = none
smtp_tls_security_level = none
biff = no
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
`, dir, sh, sp) + extra
	require.NoError(t, os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(main), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(postfixMasterCf(p.addr)), 0o644))
	out, err := exec.Command(scriptBin, "-qc", "postfix -c "+p.etc+" start", "/dev/null").CombinedOutput()
	// script(1) exits 0 whatever postfix did: its words tell.
	require.NoError(t, err, "postfix start: %s", out)
	require.NotContains(t, string(out), "fatal:", "postfix start")
	t.Cleanup(func() {
		_, _ = exec.Command(scriptBin, "-qc", "postfix -c "+p.etc+" stop", "/dev/null").CombinedOutput()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("postfix log:\n%s", b)
		}
	})
	require.Eventually(t, func() bool {
		c, err := dialTCP(p.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "postfix smtpd on %s", p.addr)
	return p
}

// postfixMasterCf is Debian's master.cf without chroot (the queue is in
// a temporary directory) and without the local transports, with smtpd on
// addr.
func postfixMasterCf(addr string) string {
	return addr + " inet  n       -       n       -       -       smtpd\n" + postfixServices
}

// swaksTo sends one message with swaks and returns its transcript and
// whether the server accepted it.
func swaksTo(t *testing.T, server string, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(need(t, "swaks"), append([]string{"--server", server}, args...)...).CombinedOutput()
	return string(out), err == nil
}

var replyLineRE = regexp.MustCompile(`(?m)^<\*\* +(\d{3} .*)$`)

// refusal is the first refusal line of a swaks transcript.
func refusal(t *testing.T, transcript string) string {
	t.Helper()
	m := replyLineRE.FindStringSubmatch(transcript)
	require.NotNil(t, m, "a refusal in:\n%s", transcript)
	return strings.TrimSpace(m[1])
}

// Real Postfix with smtpd_milters pointing at the relay's milter server
// (the main.cf lines of docs/milter.md): Postern's verdicts reach the
// SMTP client with Postern's code and text, its header edits reach the
// next hop, and with the relay down Postfix's milter_default_action
// answers.
func TestPostfixWithPosternMilter(t *testing.T) {
	spamd := scantest.Spamd(t)
	clamd := scantest.Clamd(t)
	dir := t.TempDir()
	acc := writeFile(t, dir, "access", "From:spammer@example.net REJECT\n")
	milterAddr := freeAddr(t)
	dns := startDNS(t, map[string]string{"localhost": "127.0.0.1"})
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-milter-listen", "inet:"+milterAddr,
		"-spamd", spamd.Addr, "-clamd", clamd.Addr, "-spam-subject", "[SPAM]", "-access", acc,
		"-auth-check", "tag", "-authserv-id", "postern.test", "-dns-resolver", dns.addr,
		// The relay judges Postfix's client, not Postfix: loopback is an
		// outside client here, checked like one.
		"-trusted", "192.0.2.0/24")
	sink := startSink(t, "127.0.0.1:0")
	cf := docMilterBlock(t, "conf main.cf")
	require.Contains(t, cf, "inet:127.0.0.1:8891")
	pf := startPostfix(t, sink.addr, strings.ReplaceAll(cf, "inet:127.0.0.1:8891", "inet:"+milterAddr))

	// The access file's From: REJECT at MAIL: the same reply as the
	// relay's own port 25 gives.
	direct, ok := swaksTo(t, r.addr, "--from", "spammer@example.net", "--to", "bob@example.test")
	require.False(t, ok, direct)
	via, ok := swaksTo(t, pf.addr, "--from", "spammer@example.net", "--to", "bob@example.test")
	require.False(t, ok, via)
	assert.Equal(t, refusal(t, direct), refusal(t, via), "Postfix gives the client Postern's reply")
	assert.Contains(t, refusal(t, via), "550 5.7.1")
	assert.Regexp(t, `(?m)^ -> MAIL FROM:<spammer@example\.net>\n<\*\* +550`, via, "refused at MAIL")

	// A virus at the end of DATA: 554 5.7.0 with clamd's name.
	eicar := writeFile(t, dir, "eicar.com", string(scantest.EICAR()))
	via, ok = swaksTo(t, pf.addr, "--from", "a@example.net", "--to", "bob@example.test", "--attach", "@"+eicar)
	require.False(t, ok, via)
	assert.Contains(t, refusal(t, via), "554 5.7.0")
	assert.Contains(t, via, scantest.EICARSignature)

	// GTUBE is accepted and arrives tagged by Postern's edits, made by
	// Postfix; a clean message arrives untagged.
	body := writeFile(t, dir, "gtube", "Buy now!\n"+scantest.GTUBE()+"\n")
	via, ok = swaksTo(t, pf.addr, "--from", "a@example.net", "--to", "alice@example.test",
		"--header", "Subject: offer", "--body", body)
	require.True(t, ok, via)
	via, ok = swaksTo(t, pf.addr, "--from", "b@example.net", "--to", "carol@example.test",
		"--header", "Subject: hello")
	require.True(t, ok, via)
	got := sink.waitFor(t, 2, 60*time.Second)
	require.Len(t, got, 2, "the refused messages never reached the sink")
	byRcpt := map[string]string{}
	for _, m := range got {
		byRcpt[strings.Join(m.Rcpts, ",")] = string(m.Data)
	}
	spam, clean := byRcpt["alice@example.test"], byRcpt["carol@example.test"]
	assert.Contains(t, spam, "Subject: [SPAM] offer")
	assert.Contains(t, spam, "X-Spam-Flag: YES")
	assert.Regexp(t, `(?m)^Received: from [^\n]*\n\s+by mx\.postfix\.test \(Postfix\)`, spam, "relayed by Postfix\n%s", spam)
	assert.Contains(t, clean, "Subject: hello")
	assert.NotContains(t, clean, "[SPAM]")
	assert.NotContains(t, clean, "X-Spam-Flag: YES")
	for _, m := range []string{spam, clean} {
		assert.Regexp(t, `(?m)^Authentication-Results: postern\.test;`, m, "Postern's SPF/DKIM/DMARC results, added by Postfix")
	}
	// The relay knows the message by Postfix's queue ID (macro i).
	if m := regexp.MustCompile(`with ESMTP id ([0-9A-F]+)`).FindStringSubmatch(spam); assert.NotNil(t, m) {
		assert.Contains(t, r.logs(), "queue_id="+m[1])
	}

	// The relay down: Postfix's milter_default_action (tempfail).
	require.NoError(t, r.cmd.Process.Signal(os.Interrupt))
	require.Eventually(t, func() bool { _, err := dialTCP(milterAddr); return err != nil },
		20*time.Second, 50*time.Millisecond, "the milter socket closes")
	via, ok = swaksTo(t, pf.addr, "--from", "a@example.net", "--to", "bob@example.test")
	require.False(t, ok, via)
	assert.Regexp(t, `^4\d\d 4\.7\.1 `, refusal(t, via))
	assert.Len(t, sink.received(), 2)
}

func dialTCP(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

// startMilterDaemon runs a milter in the foreground until the test ends
// and waits for it to listen on addr. The returned function stops it.
func startMilterDaemon(t *testing.T, addr string, argv ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", argv[0], out.String())
		}
	})
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		c, err := dialTCP(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "%s listens on %s", argv[0], addr)
	select {
	case <-exited:
		t.Fatalf("%s exited: %s", argv[0], out.String())
	default:
	}
	return stop
}

var txtPartRE = regexp.MustCompile(`"([^"]*)"`)

// The relay calls real external milters from its [[milter]] tables:
// clamav-milter (over a real clamd) refuses EICAR, opendkim signs, and
// the relayed copy's signature verifies with go-msgauth against the key
// record the relay's keygen printed; opendkim down → on_error's default,
// 451 4.7.1.
func TestRelayCallsRealMilters(t *testing.T) {
	opendkim := need(t, "opendkim")
	clamavMilter := need(t, "clamav-milter")
	clamd := scantest.Clamd(t)
	dir := t.TempDir()

	keyOut, err := runRelayOnce("dkim", "keygen", "-domain", "example.net", "-selector", "s1", "-out", filepath.Join(dir, "s1.pem"))
	require.NoError(t, err, keyOut)
	line, _, _ := strings.Cut(keyOut, "\n")
	var record strings.Builder
	for _, m := range txtPartRE.FindAllStringSubmatch(line, -1) {
		record.WriteString(m[1])
	}
	require.Contains(t, record.String(), "p=")

	dkimAddr, clamAddr := freeAddr(t), freeAddr(t)
	dh, dp, _ := strings.Cut(dkimAddr, ":")
	ch, cp, _ := strings.Cut(clamAddr, ":")
	odConf := writeFile(t, dir, "opendkim.conf", fmt.Sprintf(`Mode s
Domain example.net
Selector s1
KeyFile %s
Socket inet:%s@%s
Background no
Syslog no
RequireSafeKeys no
InternalHosts 127.0.0.1
Canonicalization relaxed/relaxed
`, filepath.Join(dir, "s1.pem"), dp, dh))
	stopDKIM := startMilterDaemon(t, dkimAddr, opendkim, "-f", "-x", odConf)
	cmConf := writeFile(t, dir, "clamav-milter.conf", fmt.Sprintf(`MilterSocket inet:%s@%s
ClamdSocket tcp:%s
Foreground yes
LogFile %s
OnInfected Reject
AddHeader Replace
`, cp, ch, clamd.Addr, filepath.Join(dir, "clamav-milter.log")))
	startMilterDaemon(t, clamAddr, clamavMilter, "-c", cmConf)

	cfg := writeFile(t, dir, "relay.toml", fmt.Sprintf(`[[milter]]
address = "inet:%s"
name = "clamav"

[[milter]]
address = "inet:%s@%s"
name = "opendkim"
`, clamAddr, dp, dh))
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0")

	eicar := writeFile(t, dir, "eicar.com", string(scantest.EICAR()))
	eicarOut, ok := swaksTo(t, r.addr, "--from", "a@example.net", "--to", "bob@example.test", "--attach", "@"+eicar)
	require.False(t, ok, eicarOut)
	assert.Regexp(t, `^5\d\d `, refusal(t, eicarOut), "clamav-milter's refusal")
	assert.Contains(t, r.logs(), "milter:clamav")

	out, ok := swaksTo(t, r.addr, "--from", "a@example.net", "--to", "bob@example.test", "--header", "Subject: signed")
	require.True(t, ok, out)
	m := queuedRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	got := r.delivered(t, m[1])
	require.Contains(t, got, "DKIM-Signature:")
	assert.Regexp(t, `(?s)DKIM-Signature:.*d=example\.net;`, got)
	assert.Contains(t, got, "X-Virus-Scanned:", "clamav-milter's header, added by the relay")
	_, msg, _ := strings.Cut(got, "DKIM-Signature:") // from the signature down: what opendkim saw and signed
	verify := func(text string) error {
		verifs, err := dkim.VerifyWithOptions(strings.NewReader(text), &dkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) {
				if domain != "s1._domainkey.example.net" {
					return nil, fmt.Errorf("no TXT for %s", domain)
				}
				return []string{record.String()}, nil
			}})
		require.NoError(t, err)
		require.Len(t, verifs, 1)
		assert.Equal(t, "example.net", verifs[0].Domain)
		return verifs[0].Err
	}
	assert.NoError(t, verify("DKIM-Signature:"+msg), "opendkim's signature verifies with go-msgauth")
	assert.Error(t, verify("DKIM-Signature:"+strings.Replace(msg, "Subject: signed", "Subject: changed", 1)),
		"and a changed copy does not")
	t.Logf("clamav-milter's refusal through the relay: %s", refusal(t, eicarOut))

	stopDKIM()
	out, ok = swaksTo(t, r.addr, "--from", "a@example.net", "--to", "bob@example.test")
	require.False(t, ok, out)
	assert.Contains(t, refusal(t, out), "451 4.7.1")
}

// A milter that accepts the connection and never answers: past
// connect_timeout the relay applies on_error ("accept": the message goes
// on without it).
func TestRelayHangingMilter(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	dir := t.TempDir()
	cfg := writeFile(t, dir, "relay.toml", fmt.Sprintf(`[[milter]]
address = "inet:%s"
name = "hangs"
on_error = "accept"
connect_timeout = "1s"
`, l.Addr()))
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-greet-pause", "0")
	out, ok := swaksTo(t, r.addr, "--from", "a@example.net", "--to", "bob@example.test")
	require.True(t, ok, out)
	m := queuedRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	r.delivered(t, m[1])
	assert.Contains(t, r.logs(), "milter:hangs")
	assert.NotEmpty(t, held, "the relay did connect to the milter")
}

// A Postern quarantine verdict through Postfix: the client is told 250,
// and the message waits on Postfix's hold queue (postqueue -j), not at
// the next hop.
func TestPostfixHoldsPosternQuarantine(t *testing.T) {
	clamd := scantest.Clamd(t)
	milterAddr := freeAddr(t)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-milter-listen", "inet:"+milterAddr,
		"-clamd", clamd.Addr, "-virus-action", "quarantine")
	sink := startSink(t, "127.0.0.1:0")
	cf := strings.ReplaceAll(docMilterBlock(t, "conf main.cf"), "inet:127.0.0.1:8891", "inet:"+milterAddr)
	pf := startPostfix(t, sink.addr, cf)
	eicar := writeFile(t, t.TempDir(), "eicar.com", string(scantest.EICAR()))
	out, ok := swaksTo(t, pf.addr, "--from", "a@example.net", "--to", "bob@example.test", "--attach", "@"+eicar)
	require.True(t, ok, out)
	var queue string
	require.Eventually(t, func() bool {
		b, err := exec.Command("postqueue", "-c", pf.etc, "-j").CombinedOutput()
		queue = string(b)
		return err == nil && strings.Contains(queue, `"queue_name": "hold"`)
	}, 30*time.Second, 100*time.Millisecond, "postqueue -j: %s", queue)
	assert.Contains(t, queue, `"sender": "a@example.net"`)
	assert.Contains(t, queue, "bob@example.test")
	assert.Empty(t, sink.received(), "held, not relayed")
	assert.Contains(t, r.logs(), "action=quarantine")
}

// `relay milter` serves the filters to the MTA and opens no SMTP port;
// it follows the relay's reloads and counts in its metrics: an access
// file added to the configuration and SIGHUP refuse through Postfix what
// passed before; the messages Postfix asked about are in
// postern_messages_total.
func TestPostfixMilterReloadAndMetrics(t *testing.T) {
	dir := t.TempDir()
	milterAddr, smtpAddr := freeAddr(t), freeAddr(t)
	acc := writeFile(t, dir, "access", "From:spammer@example.net REJECT\n")
	cfgText := fmt.Sprintf("[smtp]\nlisten = %q\n", smtpAddr)
	cfg := writeFile(t, dir, "relay.toml", cfgText)
	r := startRelay(t, "milter", "-config", cfg, "-listen", "inet:"+milterAddr, "-metrics-listen", "127.0.0.1:0")
	assert.Equal(t, milterAddr, r.addr, "the milter socket is the one it listens on")
	assert.Contains(t, r.logs(), "milter_only=true")
	_, err := net.DialTimeout("tcp", smtpAddr, time.Second)
	assert.Error(t, err, "no SMTP listener in relay milter")
	sink := startSink(t, "127.0.0.1:0")
	pf := startPostfix(t, sink.addr, strings.ReplaceAll(docMilterBlock(t, "conf main.cf"), "inet:127.0.0.1:8891", "inet:"+milterAddr))

	out, ok := swaksTo(t, pf.addr, "--from", "spammer@example.net", "--to", "bob@example.test")
	require.True(t, ok, "no access file yet: %s", out)
	sink.waitFor(t, 1, 30*time.Second)

	writeFile(t, dir, "relay.toml", cfgText+fmt.Sprintf("[policy]\naccess = %q\n", acc))
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		out, ok = swaksTo(t, pf.addr, "--from", "spammer@example.net", "--to", "bob@example.test")
		return !ok
	}, 30*time.Second, 200*time.Millisecond, "the reloaded access file refuses through Postfix")
	assert.Contains(t, refusal(t, out), "550 5.7.1")
	assert.Len(t, sink.received(), 1)

	m := scrape(t, r.metricsAddr(t))
	assert.Equal(t, 1.0, m[`postern_messages_total{outcome="queued"}`], "the message Postfix queued")
	assert.Equal(t, 1.0, m[`postern_verdicts_total{action="reject",filter="access",stage="mail"}`])
}
