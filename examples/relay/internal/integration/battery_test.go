package integration

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/smtpserver/milter"
)

// relayAttempt is one try at using the relay for a domain that is not
// its own.
type relayAttempt struct{ from, rcpt string }

// relayBattery is the open-relay test battery, after the classic relay
// testers' list (percent hack, bang paths, quoting, source routes,
// literals, look-alike domains) and the loops of our own history
// (localhost, subdomains of a RELAY domain). local is the relay's domain,
// ip the address the client reached it on.
func relayBattery(local, ip string) []relayAttempt {
	const victim = "victim@remote.example"
	out := []relayAttempt{
		{"spammer@outside.example", victim},
		{"", victim},
		{"user@" + local, victim},
		{"postmaster@" + local, victim},
		{"spammer@[" + ip + "]", victim},
		{"spammer@outside.example", "victim%remote.example@" + local},
		{"spammer@outside.example", "victim%remote.example@[" + ip + "]"},
		{"spammer@outside.example", `"victim@remote.example"@` + local},
		{"spammer@outside.example", `"victim%remote.example"@` + local},
		{"spammer@outside.example", "victim@remote.example@" + local},
		{"spammer@outside.example", "@" + local + ":victim@remote.example"},
		{"spammer@outside.example", "@" + local + ",@other.example:victim@remote.example"},
		{"spammer@outside.example", "remote.example!victim@" + local},
		{"spammer@outside.example", "remote.example!victim"},
		{"spammer@outside.example", "victim%remote.example"},
		{"spammer@outside.example", "victim@remote.example."},
		{"spammer@outside.example", "VICTIM@REMOTE.EXAMPLE"},
		{"spammer@outside.example", "victim@" + local + ".remote.example"},
		{"spammer@outside.example", "victim@evil-" + local},
		{"spammer@outside.example", "victim@sub." + local},
		{"spammer@outside.example", "victim@localhost"},
		{"spammer@outside.example", "victim@localhost.localdomain"},
		{"spammer@outside.example", "victim@[127.0.0.1]"},
		{"spammer@outside.example", "victim@[IPv6:::1]"},
		{"spammer@outside.example", "victim@[192.0.2.1]"},
		{"spammer@outside.example", "victim@" + local + "@remote.example"},
		{"spammer@outside.example", "victim%remote.example%" + local + "@" + local},
	}
	return out
}

// runBattery sends every attempt from an untrusted address and returns
// the attempts that were not refused with 5xx at RCPT.
func runBattery(t *testing.T, r *relay, src, local string) (relayed []string) {
	t.Helper()
	host := strings.Split(r.addr, ":")[0]
	attempts := relayBattery(local, host)
	require.Len(t, attempts, 27)
	// A few per session: each refusal counts towards the error limits,
	// which would slow the dialogue and then end it.
	for i := 0; i < len(attempts); i += 4 {
		batch := attempts[i:min(i+4, len(attempts))]
		var cmds []string
		for _, a := range batch {
			cmds = append(cmds, "MAIL FROM:<"+a.from+">", "RCPT TO:<"+a.rcpt+">", "RSET")
		}
		got := runDialog(t, r.addr, src, cmds...)
		require.Len(t, got, len(cmds), "relay log:\n%s", r.logs())
		for j, a := range batch {
			rcpt := got[3*j+1]
			if !regexp.MustCompile(`^5\d\d 5\.\d+\.\d+`).MatchString(rcpt) {
				relayed = append(relayed, "MAIL FROM:<"+a.from+"> RCPT TO:<"+a.rcpt+">: "+rcpt+" (MAIL: "+got[3*j]+")")
			}
		}
	}
	return relayed
}

// shippedConfig is a configuration the repository ships, ready to run
// against local stand-ins.
type shippedConfig struct {
	name  string
	local string // a local domain of it
	// greylist: it greylists, so a stranger's first RCPT for a local
	// address is 451 4.7.1 Greylisted (it passed everything before).
	greylist bool
	args     []string // relay arguments
}

// tomlBlocks returns the ```toml blocks of a Markdown file.
func tomlBlocks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	for _, m := range regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// shippedConfigs finds every configuration the repository ships: the
// built-in defaults, every TOML file under examples/, every TOML block
// in docs/. Files they name are the ones beside them (examples), or
// stand-ins written here (docs name /etc/postern/...). Only the sockets,
// the spool, the DNS server, Redis and the greet pause are changed.
func shippedConfigs(t *testing.T, dns string) []shippedConfig {
	t.Helper()
	root := filepath.Join("..", "..", "..", "..")
	common := func(dir string) []string {
		return []string{"-listen", "127.0.0.1:0", "-spool", filepath.Join(dir, "spool"), "-dns-resolver", dns,
			"-greet-pause", "0", "-metrics-listen", "", "-web-listen", "", "-milter-listen", ""}
	}
	dir := t.TempDir()
	cfgs := []shippedConfig{{name: "built-in defaults", local: "example.test", args: common(dir)}}

	tomls, err := filepath.Glob(filepath.Join(root, "examples", "*", "*", "*.toml"))
	require.NoError(t, err)
	more, err := filepath.Glob(filepath.Join(root, "examples", "*", "*.toml"))
	require.NoError(t, err)
	for _, p := range append(tomls, more...) {
		abs, err := filepath.Abs(p)
		require.NoError(t, err)
		d := t.TempDir()
		cfgs = append(cfgs, shippedConfig{name: strings.TrimPrefix(p, root+"/"), local: firstLocal(t, abs),
			args: append([]string{"-config", abs}, common(d)...)})
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	for _, p := range docs {
		for i, block := range tomlBlocks(t, p) {
			d := t.TempDir()
			// Files under /etc/postern/ get stand-ins; the migration
			// guide's relative names are the example's own files.
			block = strings.ReplaceAll(block, "/etc/postern/", d+"/")
			local := localOf(block)
			for _, f := range []string{"access", "mailertable", "credentials", "senders", "tls_policy", "authinfo"} {
				writeFile(t, d, f, "")
			}
			writeFile(t, d, "smarthost.secret", "stand-in\n") // outbound-tls.md's smart host password
			writeFile(t, d, "recipients", "postmaster@"+local+"\n")
			writeFile(t, d, "ldap.secret", "stand-in\n") // the [ldap] example's service password
			for _, f := range []string{"access", "mailertable"} {
				if b, err := os.ReadFile(filepath.Join(root, "examples", "relay", "migration", f)); err == nil && strings.Contains(p, "migrating") {
					writeFile(t, d, f, string(b))
				}
			}
			if strings.Contains(block, "[[milter]]") {
				// The milters a page names are a Postern milter server
				// that lets everything pass: the battery is about the
				// relay's own decisions.
				block = milterAddressRE.ReplaceAllString(block, `address = "inet:`+standInMilter(t)+`"`)
			}
			cfg := writeFile(t, d, "relay.toml", block)
			args := append([]string{"-config", cfg}, common(d)...)
			if strings.Contains(block, "[redis]") {
				redis, _ := startRedis(t)
				args = append(args, "-redis", redis)
			}
			cfgs = append(cfgs, shippedConfig{name: strings.TrimPrefix(p, root+"/") + " block " + string(rune('1'+i)), local: local, args: args,
				greylist: greylistOnRE.MatchString(block)})
		}
	}
	require.GreaterOrEqual(t, len(cfgs), 4, "defaults, the migration example and the docs' configurations")
	return cfgs
}

var milterAddressRE = regexp.MustCompile(`(?m)^address = "[^"]*"`)

// standInMilter serves an empty policy (everything passes) over the
// milter protocol and returns its address.
func standInMilter(t *testing.T) string {
	t.Helper()
	srv, err := milter.New(milter.Config{})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

var greylistOnRE = regexp.MustCompile(`(?m)^\[greylist\][^\[]*^enabled\s*=\s*true`)

var localDomainsRE = regexp.MustCompile(`(?m)^local_domains\s*=\s*\["([^"]+)"`)

func firstLocal(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return localOf(string(b))
}

// localOf is the first of a configuration's local_domains.
func localOf(toml string) string {
	if m := localDomainsRE.FindStringSubmatch(toml); m != nil {
		return m[1]
	}
	return "example.test"
}

// TestOpenRelayBattery: every configuration the repository ships, the
// 27 attempts from an untrusted address, nothing relayed.
func TestOpenRelayBattery(t *testing.T) {
	need(t, "python3")
	src := outsideAddr(t)
	dns := startDNS(t, map[string]string{"localhost": "127.0.0.1", "remote.example": "192.0.2.1"})
	total := 0
	for _, c := range shippedConfigs(t, dns.addr) {
		t.Run(c.name, func(t *testing.T) {
			r := startRelay(t, c.args...)
			relayed := runBattery(t, r, src, c.local)
			total += len(relayed)
			assert.Empty(t, relayed, "relayed for an untrusted client")
			// The relay still takes mail for its own domain from the
			// same client (greylisting, which runs after relay control,
			// access, the lists and recipient checks, asks it to retry).
			got := runDialog(t, r.addr, src, "MAIL FROM:<friend@outside.example>", "RCPT TO:<postmaster@"+c.local+">")
			want := `^250 `
			if c.greylist {
				want = `^451 4\.7\.1 Greylisted, please try again in `
			}
			assert.Regexp(t, want, got[1])
		})
	}
	t.Logf("open-relay battery: %d attempts relayed", total)
}
