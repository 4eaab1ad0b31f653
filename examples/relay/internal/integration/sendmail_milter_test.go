package integration

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scantest"
)

// sendmailRoot is where scripts/test-all.sh unpacks Debian's sendmail-bin
// and sendmail-cf: they cannot be installed beside Postfix.
func sendmailRoot(t *testing.T) string {
	t.Helper()
	root := cmp.Or(os.Getenv("POSTERN_SENDMAIL_ROOT"), "/opt/postern-sendmail")
	if _, err := os.Stat(filepath.Join(root, "usr/libexec/sendmail/sendmail")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sendmail is not unpacked in %s; scripts/test-all.sh does it", root)
		}
		t.Skipf("sendmail is not unpacked in %s (scripts/test-all.sh does it)", root)
	}
	return root
}

// startSendmail runs a private sendmail daemon (its own .mc built with
// m4, queue and pid files in a temporary directory) on a loopback port,
// relaying example.test to sinkAddr, with extraMC (the milter lines
// under test). It runs in a mount namespace of its own where /etc/hosts
// gives the host a qualified name and DNS answers nothing: sendmail
// sleeps and retries while its own name is unqualified.
func startSendmail(t *testing.T, sinkAddr, extraMC string) (addr, queueDir string) {
	t.Helper()
	root := sendmailRoot(t)
	m4 := need(t, "m4")
	unshare := need(t, "unshare")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the sendmail test runs as root (a mount namespace, a daemon port)")
		}
		t.Skip("the sendmail test runs as root")
	}
	dir, err := os.MkdirTemp("", "sendmail-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "mqueue"), 0o700))
	addr = freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	_, sinkPort, _ := strings.Cut(sinkAddr, ":")
	mc := fmt.Sprintf("divert(-1)\ndivert(0)dnl\nOSTYPE(`linux')dnl\n"+
		"define(`confDONT_PROBE_INTERFACES', `True')dnl\n"+
		"define(`QUEUE_DIR', `%[1]s/mqueue')dnl\n"+
		"define(`confPID_FILE', `%[1]s/sendmail.pid')dnl\n"+
		"define(`STATUS_FILE', `%[1]s/statistics')dnl\n"+
		"define(`ALIAS_FILE', `')dnl\n"+
		"define(`confHELP_FILE', `')dnl\n"+
		"define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe')dnl\n"+
		"define(`confDOMAIN_NAME', `mx.sendmail.test')dnl\n"+
		"define(`SMART_HOST', `relay:[127.0.0.1]')dnl\n"+
		"define(`RELAY_MAILER_ARGS', `TCP $h %[3]s')dnl\n"+
		"define(`ESMTP_MAILER_ARGS', `TCP $h %[3]s')dnl\n"+
		"DAEMON_OPTIONS(`Port=%[2]s, Addr=127.0.0.1, Name=MTA')dnl\n"+
		"FEATURE(`no_default_msa')dnl\n"+
		// DNS answers nothing in the namespace: sender domains cannot be
		// checked, which is not what the test is about.
		"FEATURE(`accept_unresolvable_domains')dnl\n"+
		"FEATURE(`nocanonify')dnl\n"+
		"RELAY_DOMAIN(`example.test')dnl\n", dir, port, sinkPort) + extraMC + "MAILER(`smtp')dnl\n"
	cfDir := filepath.Join(root, "usr/share/sendmail/cf")
	cf, err := exec.Command(m4, "-D_CF_DIR_="+cfDir+"/", filepath.Join(cfDir, "m4/cf.m4"), writeFile(t, dir, "test.mc", mc)).Output()
	require.NoError(t, err, "m4")
	cfPath := writeFile(t, dir, "sendmail.cf", string(cf))
	switchPath := writeFile(t, dir, "service.switch", "hosts files\naliases files\n")
	hosts := writeFile(t, dir, "hosts", "127.0.0.1 localhost\n127.0.0.1 sendmail.postern.test "+mustHostname(t)+"\n")
	resolv := writeFile(t, dir, "resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
	script := fmt.Sprintf("mount --bind %s /etc/hosts && mount --bind %s /etc/resolv.conf && exec %s -C %s -bD -O ServiceSwitchFile=%s",
		hosts, resolv, filepath.Join(root, "usr/libexec/sendmail/sendmail"), cfPath, switchPath)
	cmd := exec.Command(unshare, "-m", "sh", "-c", script)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sendmail output:\n%s", out.String())
			qfs, _ := filepath.Glob(filepath.Join(dir, "mqueue", "qf*"))
			for _, qf := range qfs {
				b, _ := os.ReadFile(qf)
				t.Logf("%s:\n%s", qf, b)
			}
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
	}, 30*time.Second, 50*time.Millisecond, "sendmail listens on %s", addr)
	select {
	case <-exited:
		t.Fatalf("sendmail exited: %s", out.String())
	default:
	}
	return addr, filepath.Join(dir, "mqueue")
}

func mustHostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	require.NoError(t, err)
	return h
}

// Real sendmail with docs/milter.md's INPUT_MAIL_FILTER lines in front of
// the relay's milter server: Postern's refusal at MAIL and its temporary
// refusal reach the client with Postern's codes and text, GTUBE arrives
// at the next hop with Postern's header edits, a quarantine verdict
// quarantines sendmail's queue file, and with the relay down F=T answers
// 451.
func TestSendmailWithPosternMilter(t *testing.T) {
	spamd := scantest.Spamd(t)
	clamd := scantest.Clamd(t)
	dir := t.TempDir()
	acc := writeFile(t, dir, "access", "From:spammer@example.net REJECT\nFrom:later@example.net ERROR:4.7.1:451 Try again later\n")
	milterAddr := freeAddr(t)
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-milter-listen", "inet:"+milterAddr,
		"-spamd", spamd.Addr, "-spam-subject", "[SPAM]", "-access", acc, "-clamd", clamd.Addr, "-virus-action", "quarantine")
	sink := startSink(t, "127.0.0.1:0")
	mcLines := docMilterBlock(t, "m4 sendmail.mc")
	require.Contains(t, mcLines, "inet:8891@127.0.0.1")
	host, port, _ := strings.Cut(milterAddr, ":")
	sm, mqueue := startSendmail(t, sink.addr, strings.ReplaceAll(mcLines, "inet:8891@127.0.0.1", "inet:"+port+"@"+host))

	for _, from := range []string{"spammer@example.net", "later@example.net"} {
		direct, ok := swaksTo(t, r.addr, "--from", from, "--to", "bob@example.test")
		require.False(t, ok, direct)
		via, ok := swaksTo(t, sm, "--from", from, "--to", "bob@example.test")
		require.False(t, ok, via)
		// sendmail puts the address before the text of a permanent
		// envelope refusal: "550 5.7.1 <a@b>... text".
		assert.Equal(t, refusal(t, direct), strings.Replace(refusal(t, via), "<"+from+">... ", "", 1),
			"sendmail gives the client Postern's reply")
		assert.Regexp(t, `(?m)^ -> MAIL FROM:<`+from+`>\n<\*\* +[45]`, via, "refused at MAIL")
	}

	body := writeFile(t, dir, "gtube", "Buy now!\n"+scantest.GTUBE()+"\n")
	via, ok := swaksTo(t, sm, "--from", "a@example.net", "--to", "alice@example.test", "--header", "Subject: offer", "--body", "@"+body)
	require.True(t, ok, via)
	got := sink.waitFor(t, 1, 60*time.Second)
	msg := string(got[0].Data)
	assert.Contains(t, msg, "Subject: [SPAM] offer")
	assert.Contains(t, msg, "X-Spam-Flag: YES")
	assert.Contains(t, msg, "by mx.sendmail.test", "relayed by sendmail")

	// A quarantine verdict: accepted, and sendmail quarantines the queue
	// file (an hf file with the reason) instead of relaying it.
	eicar := writeFile(t, dir, "eicar.com", string(scantest.EICAR()))
	via, ok = swaksTo(t, sm, "--from", "a@example.net", "--to", "bob@example.test", "--attach", "@"+eicar)
	require.True(t, ok, via)
	var held []string
	require.Eventually(t, func() bool {
		held, _ = filepath.Glob(filepath.Join(mqueue, "hf*"))
		return len(held) == 1
	}, 30*time.Second, 100*time.Millisecond, "a quarantined queue file")
	b, err := os.ReadFile(held[0])
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^q.*Postern\.Test\.EICAR`, string(b), "the quarantine reason names the virus")

	require.NoError(t, r.cmd.Process.Signal(os.Interrupt))
	require.Eventually(t, func() bool { _, err := dialTCP(milterAddr); return err != nil },
		20*time.Second, 50*time.Millisecond, "the milter socket closes")
	via, ok = swaksTo(t, sm, "--from", "a@example.net", "--to", "bob@example.test")
	require.False(t, ok, via)
	assert.Regexp(t, `^451 4\.\d\.\d `, refusal(t, via), "F=T: tempfail while the milter is down")
	assert.Len(t, sink.received(), 1)
}
