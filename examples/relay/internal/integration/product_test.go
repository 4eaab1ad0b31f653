package integration

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var metricsRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// admin runs a relay admin command in the relay's directory, as a
// newcomer would from the same shell.
func (r *relay) admin(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(relayBin, args...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

func (r *relay) metricsAddr(t *testing.T) string {
	t.Helper()
	m := metricsRE.FindStringSubmatch(r.logs())
	require.NotNil(t, m, "no metrics listener in the log")
	return m[1]
}

// scrape returns the relay's metrics as "name{labels}" → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

// The quick start: the README's first command, a message with swaks, then
// queue list and check. The transcript is logged (go test -v shows it).
func TestQuickStart(t *testing.T) {
	swaks := need(t, "swaks")
	r := startRelay(t)
	var transcript strings.Builder
	step := func(cmd, out string) {
		transcript.WriteString("$ " + cmd + "\n" + out + "\n")
	}
	out, err := exec.Command(swaks, "--server", r.addr, "--to", "user@example.test", "--from", "me@example.net",
		"--header", "Subject: first message", "--silent", "1").CombinedOutput()
	require.NoError(t, err, string(out))
	step("swaks --server 127.0.0.1:2525 --to user@example.test --from me@example.net --header 'Subject: first message' --silent 1", string(out))
	var files []string
	require.Eventually(t, func() bool {
		files = maildirFiles(t, filepath.Join(r.maildir, "example.test", "user"))
		return len(files) == 1
	}, 10*time.Second, 50*time.Millisecond)
	rel, _ := filepath.Rel(r.dir, files[0])
	step("ls postern-maildir/example.test/user/new/", filepath.Base(rel))

	lst, code := r.admin(t, "queue", "list")
	require.Equal(t, 0, code, lst)
	assert.Contains(t, lst, "-- 0 message(s), 0 held", "delivered already")
	step("go run ./examples/relay queue list", lst)

	chk, code := r.admin(t, "check", "-ip", "192.0.2.7", "-helo", "mx.example.net", "-from", "alice@example.net",
		"-rcpt", "user@example.test", "-rcpt", "someone@elsewhere.example")
	require.Equal(t, 0, code, chk)
	assert.Contains(t, chk, "=> rcpt <user@example.test>: continue")
	assert.Contains(t, chk, "=> rcpt <someone@elsewhere.example>: 550 5.7.1 Relay access denied")
	assert.Contains(t, chk, "=> message: accepted for 1 recipient(s)")
	step("go run ./examples/relay check -ip 192.0.2.7 -helo mx.example.net -from alice@example.net -rcpt user@example.test -rcpt someone@elsewhere.example", chk)

	st, code := r.admin(t, "stats")
	require.Equal(t, 0, code, st)
	assert.Regexp(t, `(?m)^\s*received\s+1\b`, st)
	assert.Regexp(t, `(?m)^\s*delivered\s+1\b`, st)
	step("go run ./examples/relay stats", st)
	assert.NotContains(t, r.logs(), "configuration reloaded", "stats only asks the relay to write its records")

	cc, code := r.admin(t, "check-config")
	require.Equal(t, 0, code, cc)
	step("go run ./examples/relay check-config", cc)
	t.Logf("quick start transcript:\n%s", transcript.String())
}

// The migration guide's configuration, with the seed site's access file
// and mailertable, runs against local sinks standing in for the mail store
// and the second relay.
func TestMigrationConfig(t *testing.T) {
	swaks := need(t, "swaks")
	store := startSink(t, "127.0.0.1:0")
	relay2 := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	for _, f := range []string{"relay.toml", "access", "mailertable"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "migration", f))
		require.NoError(t, err)
		s := string(b)
		// The stand-ins: the mail store and relay2 are local sinks.
		s = strings.ReplaceAll(s, "esmtp:[192.168.1.1]", "esmtp:"+hostPort(store.addr))
		s = strings.ReplaceAll(s, "[relay2.nix.co.jj]", hostPort(relay2.addr))
		writeFile(t, dir, f, s)
	}
	cfg := filepath.Join(dir, "relay.toml")
	out, err := exec.Command(relayBin, "check-config", "-config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "configuration OK")

	// Only the sockets, the spool and the DNS server differ from the
	// guide: a dead resolver makes every MX lookup fail temporarily, so
	// mail for the Internet goes to the fallback relay.
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0",
		"-spool", filepath.Join(dir, "spool"), "-dns-resolver", freeAddr(t), "-min-backoff", "1s", "-max-backoff", "2s")
	send := func(from, to string) string {
		out, err := exec.Command(swaks, "--server", r.addr, "--from", from, "--to", to, "--silent", "1").CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	// Inbound mail for the own domain goes to the mail store (mailertable).
	send("alice@example.net", "user@nix.co.jj")
	got := store.waitFor(t, 1, 15*time.Second)
	assert.Equal(t, []string{"user@nix.co.jj"}, got[0].Rcpts)
	// To:postmaster@nix.co.jj DISCARD and To:baka@nix.co.jj DISCARD:
	// accepted, never delivered.
	send("alice@example.net", "postmaster@nix.co.jj")
	send("alice@example.net", "baka@nix.co.jj")
	// Mail from the site (127.0.0.1 RELAY) to the Internet: MX lookups fail,
	// so it goes to FallbackSmartHost's stand-in.
	send("user@nix.co.jj", "friend@example.org")
	got2 := relay2.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, []string{"friend@example.org"}, got2[0].Rcpts)
	// The access file's refusals work unchanged.
	out2, _ := exec.Command(swaks, "--server", r.addr, "--from", "spammer@ube.com", "--to", "user@nix.co.jj").CombinedOutput()
	assert.Contains(t, string(out2), "551 5.7.1 Relay denied")

	time.Sleep(500 * time.Millisecond)
	assert.Len(t, store.received(), 1, "the discarded messages never reach the store")
	m := scrape(t, r.metricsAddr(t))
	// DISCARD accepts the recipient and drops the message at the end.
	assert.Equal(t, 2.0, m[`postern_verdicts_total{action="accept",filter="access",stage="rcpt"}`])
	assert.Equal(t, 2.0, m[`postern_messages_total{outcome="discard"}`], "two DISCARDs")
	assert.Equal(t, 1.0, m[`postern_verdicts_total{action="reject",filter="access",stage="mail"}`])
	assert.Equal(t, 2.0, m[`postern_messages_total{outcome="queued"}`])
	assert.Equal(t, 2.0, m[`postern_deliveries_total{result="delivered"}`])
	assert.GreaterOrEqual(t, m[`postern_connections_total{listener="smtp.listen"}`], 5.0)
	assert.Contains(t, m, `postern_queue_messages`)
	resp, err := http.Get("http://" + r.metricsAddr(t) + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok\n", string(body))
}

// A reload under load loses and rejects nothing; a broken configuration
// is refused and the running one keeps serving.
func TestReloadUnderLoad(t *testing.T) {
	source := need(t, "smtp-source")
	swaks := need(t, "swaks")
	sink := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	mt := writeFile(t, dir, "mailertable", "example.test esmtp:"+hostPort(sink.addr)+"\n")
	good := func(pause string) string {
		return "local_domains = [\"example.test\"]\n[smtp]\ngreet_pause = \"" + pause + "\"\n[delivery]\nmailertable = \"" + mt + "\"\n"
	}
	cfg := writeFile(t, dir, "relay.toml", good("5s"))
	r := startRelay(t, "-config", cfg, "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0",
		"-spool", filepath.Join(dir, "spool"))
	const total = 3000
	load := exec.Command(source, "-c", "-s", "8", "-m", strconv.Itoa(total), "-f", "load@example.net", "-t", "bob@example.test", r.addr)
	var loadOut strings.Builder
	load.Stdout, load.Stderr = &loadOut, &loadOut
	require.NoError(t, load.Start())
	done := make(chan error, 1)
	go func() { done <- load.Wait() }()

	pid := r.cmd.Process.Pid
	reloads, forced := 0, 0
	for i := 0; ; i++ {
		select {
		case err := <-done:
			require.NoError(t, err, loadOut.String())
			goto finished
		case <-time.After(150 * time.Millisecond):
		}
		switch i % 3 {
		case 0:
			require.NoError(t, syscall.Kill(pid, syscall.SIGHUP))
			forced++
		case 1:
			out, code := r.admin(t, "reload", "-spool", filepath.Join(dir, "spool"))
			require.Equal(t, 0, code, out)
			forced++
		case 2:
			// An edit of the file reloads by itself.
			writeFile(t, dir, "relay.toml", good(strconv.Itoa(4+i%2)+"s"))
		}
		reloads++
	}
finished:
	t.Logf("smtp-source sent %d messages in 8 sessions during %d reloads", total, reloads)
	require.Greater(t, reloads, 3, "the load ended before the reloads began")
	assert.NotContains(t, loadOut.String(), "error", "smtp-source saw no refusal")
	sink.waitFor(t, total, 60*time.Second)
	require.Eventually(t, func() bool { return len(sink.received()) == total }, 30*time.Second, 100*time.Millisecond)

	// A broken file: refused, the old configuration keeps serving.
	writeFile(t, dir, "relay.toml", good("5s")+"[queue]\nwarn = \"soon\"\n")
	out, code := r.admin(t, "reload", "-spool", filepath.Join(dir, "spool"))
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `relay.toml:7: queue.warn: "soon" is not a duration`)
	require.Eventually(t, func() bool {
		return strings.Contains(r.logs(), `msg="reload refused, the running configuration stays in force"`)
	}, 5*time.Second, 50*time.Millisecond)
	out2, err := exec.Command(swaks, "--server", r.addr, "--to", "carol@example.test", "--from", "x@example.net").CombinedOutput()
	require.NoError(t, err, string(out2))
	sink.waitFor(t, total+1, 15*time.Second)
	m := scrape(t, r.metricsAddr(t))
	assert.GreaterOrEqual(t, m[`postern_config_reloads_total{result="ok"}`], float64(forced))
	assert.GreaterOrEqual(t, m[`postern_config_reloads_total{result="failed"}`], 1.0)
	assert.Equal(t, float64(total+1), m[`postern_messages_total{outcome="queued"}`])
	assert.Equal(t, float64(total+1), m[`postern_deliveries_total{result="delivered"}`])
}
