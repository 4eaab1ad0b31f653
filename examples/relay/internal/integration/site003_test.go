package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scantest"
)

// site003Conf is the relay of seed 4, Sendmail's Mailstream Manager
// (2006): virus, spam and sender-authentication filters plugged into the
// MTA and arranged by priority, rejecting during SMTP; per user, spam
// filtering ON or OFF (OFF: the mail is not scanned at all). Here the
// virus filter ranks above sender authentication, the other way round
// from the relay's default order. %s are filled in by the test: the DNS
// server, clamd, spamd.
const site003Conf = `
hostname = "mx.mss.example"
local_domains = ["mss.example"]
trusted_networks = []

[smtp]
listen = "127.0.0.1:0"
greet_pause = "0s"

[policy]
# By priority: the virus and spam filters (scan) answer before sender
# authentication (auth-verify: DKIM and DMARC at the end of DATA).
order = ["trust", "access", "relay", "dnsbl", "ratelimit", "outbound-ratelimit",
         "harvest-guard", "verify", "spf", "scan", "auth-verify", "dkim-sign"]

[auth]
check = "enforce"

[dnsbl]
resolvers = ["DNS"]

[scan]
clamd = ["CLAMD"]
spamd = ["SPAMD"]
spam_subject = "[SPAM]"
# Per user: spam=off means not scanned at all.
policy = "scan-policy"

[metrics]
listen = "127.0.0.1:0"
`

func TestSite003(t *testing.T) {
	swaks := need(t, "swaks")
	clamd, spamd := scantest.Clamd(t), scantest.Spamd(t)
	zone := startDNS(t, map[string]string{"bank.example": "192.0.2.10", "_dmarc.bank.example": "192.0.2.10",
		"friend.example": "192.0.2.11"})
	// bank.example publishes DMARC p=reject and an SPF record that vouches
	// for nobody; friend.example's SPF passes for loopback.
	zone.setTXT("bank.example", "v=spf1 ?all")
	zone.setTXT("_dmarc.bank.example", "v=DMARC1; p=reject")
	zone.setTXT("friend.example", "v=spf1 ip4:127.0.0.0/8 -all")

	dir := t.TempDir()
	writeFile(t, dir, "scan-policy", "# bob reads all his mail himself\nbob@mss.example spam=off\n")
	conf := strings.NewReplacer(`"DNS"`, `"`+zone.addr+`"`, `"CLAMD"`, `"`+clamd.Addr+`"`, `"SPAMD"`, `"`+spamd.Addr+`"`).Replace(site003Conf)
	prioritized := writeFile(t, dir, "relay.toml", conf)
	// The same site with the default order: the policy.order lines out.
	i, j := strings.Index(conf, "order = ["), strings.Index(conf, "\n\n[auth]")
	defaultConf := writeFile(t, dir, "default.toml", conf[:i]+conf[j:])

	t.Run("relay check shows the configured order", func(t *testing.T) {
		out, err := exec.Command(relayBin, "check", "-config", prioritized, "-ip", "192.0.2.7",
			"-from", "ceo@bank.example", "-rcpt", "alice@mss.example").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "filters: trust, relay, outbound-ratelimit, harvest-guard, spf, scan, auth-verify (policy.order, "+prioritized+":13)")
		out, err = exec.Command(relayBin, "check", "-config", defaultConf, "-ip", "192.0.2.7").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Contains(t, string(out), "filters: trust, relay, outbound-ratelimit, harvest-guard, spf, auth-verify, scan (default order)")
		// A broken order is refused with file and line, before serving.
		bad := writeFile(t, t.TempDir(), "relay.toml", strings.Replace(conf, `"trust", "access", "relay",`, `"trust", "scan", "relay", "access",`, 1))
		out, err = exec.Command(relayBin, "check-config", "-config", bad).CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), bad+":13: policy.order: scan is listed twice")
	})

	// A forged bank mail carrying a virus: the virus filter and DMARC
	// would both refuse it. The order decides which answers.
	eicar := writeFile(t, dir, "invoice.com", string(scantest.EICAR()))
	forged := func(addr string) string {
		out, err := exec.Command(swaks, "--server", addr, "--from", "ceo@bank.example", "--to", "alice@mss.example",
			"--header", "Subject: invoice", "--attach", "@"+eicar).CombinedOutput()
		require.Error(t, err, string(out))
		return string(out)
	}
	t.Run("the order decides which filter answers", func(t *testing.T) {
		byDefault := startRelay(t, "-config", defaultConf, "-spool", filepath.Join(t.TempDir(), "spool"))
		out := forged(byDefault.addr)
		assert.Contains(t, out, "<** 550 5.7.1 Email rejected per DMARC policy for bank.example", "default: sender authentication first")
		assert.NotContains(t, out, "5.7.0")
		assert.Contains(t, byDefault.logs(), "filter=auth-verify action=reject")

		byPriority := startRelay(t, "-config", prioritized, "-spool", filepath.Join(t.TempDir(), "spool"))
		out = forged(byPriority.addr)
		assert.Contains(t, out, "<** 554 5.7.0 ", "configured: the virus filter first")
		assert.Contains(t, out, scantest.EICARSignature)
		assert.NotContains(t, byPriority.logs(), "filter=auth-verify action=reject", "DMARC was never asked")
	})

	t.Run("spam filtering per user: off is not scanned, on is tagged", func(t *testing.T) {
		r := startRelay(t, "-config", prioritized, "-spool", filepath.Join(t.TempDir(), "spool"))
		body := writeFile(t, t.TempDir(), "body", "Buy now!\n"+scantest.GTUBE()+"\n")
		send := func(to string) string {
			out, err := exec.Command(swaks, "--server", r.addr, "--from", "news@friend.example", "--to", to,
				"--header", "Subject: offer", "--body", body).CombinedOutput()
			require.NoError(t, err, string(out))
			m := queuedRE.FindStringSubmatch(string(out))
			require.NotNil(t, m, string(out))
			return m[1]
		}
		scored := func() float64 {
			m := scrape(t, r.metricsAddr(t))
			return m[`postern_scan_results_total{result="spam"}`] + m[`postern_scan_results_total{result="ham"}`]
		}
		bob := r.delivered(t, send("bob@mss.example"))
		assert.NotContains(t, bob, "X-Spam-")
		assert.Contains(t, bob, "Subject: offer")
		assert.Zero(t, scored(), "spamd was not asked for bob's mail")

		alice := r.delivered(t, send("alice@mss.example"))
		assert.Contains(t, alice, "X-Spam-Flag: YES")
		assert.Contains(t, alice, "Subject: [SPAM] offer")
		assert.Equal(t, 1.0, scored(), "scored once, for alice")
		// Off is about spam only: bob's mail went through the walk and
		// the virus scanner, and came out clean.
		assert.Equal(t, 1.0, scrape(t, r.metricsAddr(t))[`postern_scan_results_total{result="clean"}`])
	})
}
