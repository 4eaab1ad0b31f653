package integration

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scantest"
)

// site004Config is the inner gateway of the university of seed 5: every
// message from the outer relays is scanned for viruses and scored by
// SpamAssassin, "[SPAM]" is put before the Subject at a score of 6.8 so
// that users sort in their mail client, mail is routed statically to each
// department's server, and a nightly mail tells the administrator the
// day's virus counts by name and spam counts.
const site004Config = `# The university's inner gateway (seed 5).
hostname = "gw.fukushima-u.example"
# The departments' domains, each routed by the mailertable to its server.
relay_domains = ["econ.fukushima-u.example", "ipc.fukushima-u.example"]
# The outer relays and the department servers.
trusted_networks = ["127.0.0.1/32"]
spool = "spool"

[smtp]
listen = "127.0.0.1:0"
# Only the outer relays talk to the gateway: no greet pause.
greet_pause = "0s"

[scan]
clamd = ["CLAMD"]
spamd = ["SPAMD"]
# SpamAssassin tags at 6.8 here, not at its own 5.0.
spam_tag_score = 6.8
spam_subject = "[SPAM]"

[delivery]
mailertable = "mailertable"

[stats]
# The nightly script's mail, to the administrator.
daily_to = "DAILY_TO"
daily_at = "23:55"
`

// Site 004 (seed 5, Fukushima University): real clamd and spamd behind
// the relay with the site's configuration; the nightly mail, sent at once
// with relay stats -mail, reaches the administrator's department server
// with the virus counts by name and the spam count, where a message
// scored between spamd's 5.0 and the site's 6.8 is not spam (and was
// not tagged). A reload that changes stats.daily_to takes effect.
func TestSite004DailyMail(t *testing.T) {
	swaks := need(t, "swaks")
	const worm = "Postern.Test.Worm"
	wormBytes := "POSTERN-TEST-WORM-" + "9f1c2e7a4b5d8036"
	clamd := scantest.ClamdSignatures(t, map[string][]byte{worm: []byte(wormBytes)})
	// A rule of the test's own gives the in-between score: spamd calls
	// it spam (5.0), the site does not (6.8).
	const middle = "postern-middle-score-" + "b61d"
	spamd := scantest.SpamdRules(t, "body POSTERN_MIDDLE /"+middle+"/\nscore POSTERN_MIDDLE 5.9\n")
	econ := startSink(t, "127.0.0.1:0")
	ipc := startSink(t, "127.0.0.1:0")

	dir := t.TempDir()
	writeFile(t, dir, "mailertable", "econ.fukushima-u.example esmtp:"+hostPort(econ.addr)+"\n"+
		"ipc.fukushima-u.example esmtp:"+hostPort(ipc.addr)+"\n")
	config := func(dailyTo string) string {
		return strings.NewReplacer("CLAMD", clamd.Addr, "SPAMD", spamd.Addr, "DAILY_TO", dailyTo).Replace(site004Config)
	}
	cfg := writeFile(t, dir, "relay.toml", config("mailadmin@ipc.fukushima-u.example"))
	out, err := exec.Command(relayBin, "check-config", "-config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	r := startRelay(t, "-config", cfg)
	admin := func(args ...string) string {
		t.Helper()
		out, code := r.admin(t, append(args, "-config", cfg)...)
		require.Equal(t, 0, code, "%v: %s", args, out)
		return out
	}

	send := func(to, subject, body string) (string, error) {
		t.Helper()
		b := writeFile(t, t.TempDir(), "body", body)
		out, err := exec.Command(swaks, "--server", r.addr, "--from", "someone@example.net", "--to", to,
			"--header", "Subject: "+subject, "--body", b).CombinedOutput()
		return string(out), err
	}
	// Two viruses of one name and one of another: refused.
	for _, body := range []string{string(scantest.EICAR()), "see attached\n" + string(scantest.EICAR()), "run me " + wormBytes} {
		out, err := send("student@econ.fukushima-u.example", "hello", body+"\n")
		require.Error(t, err, out)
		assert.Contains(t, out, "554 5.7.0")
	}
	// Spam, tagged; the in-between score, not tagged; clean mail.
	delivered := map[string]string{}
	for subject, body := range map[string]string{
		"cheap offer":  "Buy now!\n" + scantest.GTUBE(),
		"newsletter":   "This month at the faculty. " + middle,
		"seminar room": "The seminar moves to room 201 on Friday.",
	} {
		out, err := send("prof@econ.fukushima-u.example", subject, body+"\n")
		require.NoError(t, err, out)
		m := queuedRE.FindStringSubmatch(out)
		require.NotNil(t, m, out)
		delivered[subject] = m[1]
	}
	got := econ.waitFor(t, 3, 30*time.Second)
	subjects := map[string]bool{}
	for _, m := range got {
		subjects[regexp.MustCompile(`(?m)^Subject: (.*)\r$`).FindStringSubmatch(string(m.Data))[1]] = true
	}
	assert.Equal(t, map[string]bool{"[SPAM] cheap offer": true, "newsletter": true, "seminar room": true}, subjects)

	// The premise: spamd scored the newsletter between its own 5.0 and
	// the site's 6.8 and called it spam itself.
	score := journalScore(t, filepath.Join(dir, "spool", "stats"), delivered["newsletter"])
	require.Greater(t, score, 5.0, "spamd would call it spam")
	require.Less(t, score, 6.8, "the site would not")

	// The nightly mail, now.
	sent := admin("stats", "-mail")
	assert.Contains(t, sent, "for <mailadmin@ipc.fukushima-u.example>")
	daily := ipc.waitFor(t, 1, 30*time.Second)[0]
	assert.Equal(t, "", daily.From, "from the null sender")
	assert.Equal(t, []string{"mailadmin@ipc.fukushima-u.example"}, daily.Rcpts)
	report := strings.ReplaceAll(string(daily.Data), "\r\n", "\n")
	assert.Contains(t, report, "Subject: Postern statistics for gw.fukushima-u.example")
	assert.Regexp(t, `(?m)^  viruses\s+3  found$`, report)
	assert.Regexp(t, `(?m)^  2  `+regexp.QuoteMeta(scantest.EICARSignature)+`\.UNOFFICIAL$`, report)
	assert.Regexp(t, `(?m)^  1  `+regexp.QuoteMeta(worm)+`\.UNOFFICIAL$`, report)
	assert.Regexp(t, `(?m)^  spam\s+1  of 3 scored messages \(33\.3% spam\)$`, report,
		"GTUBE only: the newsletter at %.1f is not spam here", score)

	// The administrator changes: a reload moves the mail, no restart.
	require.NoError(t, os.WriteFile(cfg, []byte(config("postmaster@econ.fukushima-u.example")), 0o644))
	assert.Contains(t, admin("reload"), "configuration reloaded")
	sent = admin("stats", "-mail")
	assert.Contains(t, sent, "for <postmaster@econ.fukushima-u.example>")
	var moved sunk
	require.Eventually(t, func() bool {
		for _, m := range econ.received() {
			if m.From == "" {
				moved = m
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond)
	assert.Equal(t, []string{"postmaster@econ.fukushima-u.example"}, moved.Rcpts)
	assert.Len(t, ipc.received(), 1, "nothing more to the old address")
	assert.NotContains(t, r.logs(), "needs a restart")
}

// journalScore finds the spam score the relay recorded for a queue ID in
// its statistics journal.
func journalScore(t *testing.T, dir, id string) float64 {
	t.Helper()
	var score float64
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				var e struct {
					Kind    string  `json:"kind"`
					QueueID string  `json:"queue_id"`
					Score   float64 `json:"score"`
				}
				if json.Unmarshal(sc.Bytes(), &e) == nil && e.QueueID == id && (e.Kind == "spam" || e.Kind == "ham") {
					score = e.Score
					fh.Close()
					return true
				}
			}
			fh.Close()
		}
		return false
	}, 10*time.Second, 100*time.Millisecond, "no score recorded for %s", id)
	return score
}
