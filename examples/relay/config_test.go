package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/smtpserver"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string
	}{
		{"unknown key", "[queue]\nwarn = \"4h\"\nretrun = \"3d\"\n", "relay.toml:3: unknown key queue.retrun"},
		{"unknown section", "[smpt]\nlisten = \":25\"\n", "relay.toml:1: unknown key smpt"},
		{"bad duration", "[smtp]\n\ngreet_pause = \"5x\"\n", `relay.toml:3: smtp.greet_pause: "5x" is not a duration`},
		{"negative duration", "[queue]\nreturn = \"-3d\"\n", `relay.toml:2: queue.return: "-3d" is not a duration`},
		{"string for list", "local_domains = \"nix.co.jj\"\n", "relay.toml:1: local_domains: cannot decode TOML string: wrong type for this key (want a list"},
		{"string for bool", "[policy]\ncallahead = \"yes\"\n", "relay.toml:2: policy.callahead: cannot decode TOML string: wrong type for this key (want true or false)"},
		{"number for string", "hostname = 7\n", "relay.toml:1: hostname: cannot decode TOML integer: wrong type for this key (want a quoted string)"},
		{"bad size", "max_message_size = \"ten megabytes\"\n", `relay.toml:1: max_message_size: "ten megabytes" is not a size`},
		{"bad rate", "[limits]\nmessage_rate = \"100 per hour\"\n", `relay.toml:2: limits.message_rate: "100 per hour" is not N/duration`},
		{"bad network", "trusted_networks = [\"127.0.0.1/8\", \"10.0.0.0/33\"]\n", `relay.toml:1: trusted_networks: trusted network "10.0.0.0/33"`},
		{"bad domain", "\nlocal_domains = [\"nix co jj\"]\n", `relay.toml:2: local_domains: "nix co jj" (item 1) is not a domain name`},
		{"bad listen", "[smtp]\nlisten = \"25\"\n", `relay.toml:2: smtp.listen: "25" is not host:port`},
		{"bad action", "[scan]\nspam_action = \"bounce\"\n", `relay.toml:2: scan.spam_action: "bounce" is not reject, quarantine or discard`},
		{"bad auth check", "[auth]\ncheck = \"strict\"\n", `relay.toml:2: auth.check: "strict" is not off, tag or enforce`},
		{"submission without tls", "[submission]\nlisten = \":587\"\ncredentials = \"users\"\n", "relay.toml:2: submission.listen: needs tls.cert and tls.key"},
		{"dkim without key", "[[dkim]]\ndomain = \"nix.co.jj\"\nselector = \"s1\"\n", "relay.toml:1: dkim[0]: each [[dkim]] needs domain, selector and key"},
		{"bad log level", "[log]\nlevel = \"loud\"\n", `relay.toml:2: log.level: "loud" is not debug, info, warn or error`},
		{"syntax", "[smtp\nlisten = 1\n", "relay.toml:1: "},
		{"bad quoted_local_parts", "[smtp]\nquoted_local_parts = \"maybe\"\n", `relay.toml:2: smtp.quoted_local_parts: "maybe" is not accept or refuse`},
		{"bad postmaster", "[delivery]\npostmaster = \"postmaster@[1.2.3]\"\n", `relay.toml:2: delivery.postmaster: "postmaster@[1.2.3]" is not an address`},
		{"bad daily_to", "[stats]\ndaily_to = \"root\"\n", `relay.toml:2: stats.daily_to: "root" is not an address`},
		{"bad bare newline", "[smtp]\nbare_newline = \"allow\"\n", `relay.toml:2: smtp.bare_newline: "allow" is not normalize or reject`},
		{"milter without address", "[[milter]]\nname = \"dkim\"\n", "relay.toml:1: milter[0]: each [[milter]] needs an address"},
		{"bad milter address", "[[milter]]\naddress = \"inet:8891\"\n", "relay.toml:1: milter[0]: "},
		{"bad milter on_error", "[[milter]]\naddress = \"inet:127.0.0.1:8891\"\non_error = \"bounce\"\n", "milter"},
		{"bad milter_server.listen", "[milter_server]\nlisten = \"inet:nowhere\"\n", "relay.toml:2: milter_server.listen: "},
		{"backoff order", "[queue]\nmin_backoff = \"2h\"\nmax_backoff = \"1h\"\n", "relay.toml:2: queue.min_backoff: is longer than queue.max_backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.doc), "relay.toml")
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// [[milter]] tables keep their order and their failure policies; the
// listener is a milter address.
func TestConfigMilters(t *testing.T) {
	doc := `
[milter_server]
listen = "unix:/run/postern/milter.sock"
[[milter]]
address = "unix:/run/clamav/clamav-milter.ctl"
name = "clamav"
[[milter]]
address = "inet:8892@127.0.0.1"
on_error = "accept"
command_timeout = "5s"
`
	cfg, err := parseConfig([]byte(doc), "relay.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.Equal(t, "unix:/run/postern/milter.sock", s.MilterServer.Listen)
	require.Len(t, s.Milters, 2)
	assert.Equal(t, "clamav", s.Milters[0].Name)
	assert.Equal(t, postern.OnErrorDefault, s.Milters[0].OnError, "the client's default: tempfail")
	assert.Equal(t, postern.OnErrorAccept, s.Milters[1].OnError)
	assert.Equal(t, 5*time.Second, s.Milters[1].CommandTimeout.Duration)
	assert.Contains(t, s.Policy.Order, milterFilterName)
}

func TestConfigValues(t *testing.T) {
	doc := `
hostname = "relay.nix.co.jj"
local_domains = ["NIX.co.jj"]
relay_domains = ["sub.example"]
max_message_size = "20MiB"
[smtp]
greet_pause = "0s"
bare_newline = "reject"
max_connections = 300
[limits]
client_conn = 0
message_rate = "100/1h"
[queue]
warn = 0
return = "3d"
[[dkim]]
domain = "nix.co.jj"
selector = "s1"
key = "/etc/postern/s1.pem"
[log]
format = "json"
`
	cfg, err := parseConfig([]byte(doc), "relay.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.Equal(t, []string{"nix.co.jj", "sub.example"}, s.domains)
	assert.Equal(t, []string{"nix.co.jj"}, s.localDomains)
	assert.Equal(t, int64(20<<20), s.maxSize)
	assert.Zero(t, s.SMTP.GreetPause.Duration, "an explicit 0s turns the pause off")
	assert.Equal(t, smtpserver.BareNewlineReject, s.bareNewline)
	assert.Equal(t, 300, s.SMTP.MaxConnections)
	assert.Zero(t, s.Limits.ClientConn, "an explicit 0 means unlimited")
	assert.Equal(t, 100, s.Limits.MessageRate.Rate.Count)
	assert.Equal(t, time.Duration(-1), s.queueWarn, "warn 0 is never")
	assert.Equal(t, 72*time.Hour, s.Queue.Return.Duration)
	assert.Equal(t, 5*time.Minute, s.Queue.MinBackoff.Duration, "default")
	assert.Equal(t, []DKIMKey{{Domain: "nix.co.jj", Selector: "s1", Key: "/etc/postern/s1.pem"}}, s.DKIM)
	assert.True(t, s.logJSON)
	assert.Equal(t, "postern-spool/control.sock", s.Control.Socket)
}

// Address keys are written as in mail and kept in the canonical form the
// queue holds; quoted_local_parts reaches the servers' settings.
func TestConfigAddresses(t *testing.T) {
	doc := `
[smtp]
quoted_local_parts = "refuse"
[delivery]
postmaster = '"john smith"@NIX.co.jj'
[stats]
daily_to = "Postmaster <postmaster@nix.co.jj>"
`
	cfg, err := parseConfig([]byte(doc), "relay.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.True(t, s.refuseQuoted)
	assert.Equal(t, "john smith@nix.co.jj", s.Delivery.Postmaster)
	assert.Equal(t, "postmaster@nix.co.jj", s.Stats.DailyTo)
	assert.Equal(t, "john smith@nix.co.jj", s.sitePostmaster(), "the bare <Postmaster> goes to delivery.postmaster")

	cfg, err = parseConfig(nil, "relay.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.applyDefaults())
	s, err = cfg.resolved()
	require.NoError(t, err)
	assert.False(t, s.refuseQuoted, "quoted local parts are accepted by default")
	assert.Equal(t, "postmaster@example.test", s.sitePostmaster(), "else to the first local domain's")
}

// With no file the settings are the built-in defaults the README promises.
func TestConfigDefaults(t *testing.T) {
	cfg := &Config{}
	require.NoError(t, cfg.applyDefaults())
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:2525", s.SMTP.Listen)
	assert.Equal(t, []string{"example.test"}, s.domains)
	assert.Equal(t, "postern-spool", s.Spool)
	assert.Equal(t, "postern-maildir", s.Delivery.Maildir)
	assert.Equal(t, 5*time.Second, s.SMTP.GreetPause.Duration)
	assert.Equal(t, 50, s.Limits.ClientConn)
	assert.Equal(t, smtpserver.BareNewlineNormalize, s.bareNewline)
	assert.Zero(t, s.SMTP.MaxConnections, "automatic, from RLIMIT_NOFILE")
	assert.Equal(t, int64(10<<20), s.maxSize)
	assert.Equal(t, 4*time.Hour, s.queueWarn)
	assert.Equal(t, 5*24*time.Hour, s.Queue.Return.Duration)
	assert.Equal(t, "off", s.Auth.Check)
	assert.Len(t, s.trusted, 2)
}

// A flag given on the command line wins over the file; the file's
// relative paths are taken from its directory.
func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.toml")
	require.NoError(t, os.WriteFile(path, []byte("spool = \"spool\"\n[smtp]\nlisten = \"127.0.0.1:2600\"\ngreet_pause = \"12s\"\n[policy]\naccess = \"access\"\n"), 0o644))
	var errb bytes.Buffer
	cfg, got, _, err := loadWithFlags("relay serve", []string{"-config", path, "-listen", "127.0.0.1:2700"}, &errb, nil)
	require.NoError(t, err, errb.String())
	assert.Equal(t, path, got)
	s, err := cfg.resolved()
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:2700", s.SMTP.Listen, "flag wins")
	assert.Equal(t, 12*time.Second, s.SMTP.GreetPause.Duration, "file wins over the default")
	assert.Equal(t, filepath.Join(dir, "access"), s.Policy.Access)
	assert.Equal(t, filepath.Join(dir, "spool"), s.Spool)
	assert.Equal(t, filepath.Join(dir, "spool", "control.sock"), s.Control.Socket)
}

// The migration guide shows the files the migration test runs, and they
// pass check-config.
func TestMigrationGuide(t *testing.T) {
	guide, err := os.ReadFile("../../docs/migrating-from-sendmail.md")
	require.NoError(t, err)
	for _, f := range []string{"relay.toml", "access", "mailertable"} {
		b, err := os.ReadFile(filepath.Join("migration", f))
		require.NoError(t, err)
		assert.Contains(t, string(guide), "\n"+string(b)+"```", "the guide shows migration/%s as it is", f)
	}
	var out, errb bytes.Buffer
	code := run([]string{"check-config", "-config", "migration/relay.toml"}, &out, &errb)
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out.String(), errb.String())
	assert.Contains(t, out.String(), "configuration OK (migration/relay.toml)")
	assert.Contains(t, out.String(), "access: migration/access (read)")
}

func TestCheckConfigBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	tests := []struct {
		name, doc, want string
	}{
		{"missing access file", "[policy]\naccess = \"nope\"\n", "policy.access: "},
		{"bad access line", "[policy]\naccess = \"" + write("access", "Connect:10.0.0.1 RELAY\nTo:x@y FROBNICATE\n") + "\"\n", "access:2"},
		{"unreadable certificate", "[tls]\ncert = \"" + write("cert.pem", "not a certificate") + "\"\nkey = \"" + write("key.pem", "nor a key") + "\"\n", "tls.cert/tls.key"},
		{"missing mailertable", "[delivery]\nmailertable = \"none\"\n", "delivery.mailertable: "},
		{"unknown action for unopenable archives", "[scan]\nban_attachments = true\nunopenable_archives = \"discard\"\n", "scan.unopenable_archives: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write("relay.toml", tt.doc)
			var out, errb bytes.Buffer
			assert.Equal(t, 1, run([]string{"check-config", "-config", p}, &out, &errb))
			assert.Contains(t, errb.String(), tt.want)
		})
	}
	var out, errb bytes.Buffer
	assert.Equal(t, 1, run([]string{"check-config", "-config", filepath.Join(dir, "absent.toml")}, &out, &errb))
	assert.Contains(t, errb.String(), "absent.toml: no such file")
}

// The admin commands work on the spool directly when no relay runs, and
// the quarantine commands see held messages only.
func TestAdminCommandsOnStoppedSpool(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "spool")
	q, err := queue.Open(queue.Config{Dir: spool})
	require.NoError(t, err)
	msg := "From: a@example.net\r\nTo: b@example.test\r\nSubject: hello\x1b[31m\r\n\r\nbody\r\n"
	_, err = q.Enqueue(context.Background(), queue.Envelope{ID: "MSG1", From: "a@example.net",
		Recipients: []queue.Recipient{{Addr: "b@example.test"}}}, strings.NewReader(msg))
	require.NoError(t, err)
	_, err = q.Enqueue(context.Background(), queue.Envelope{ID: "SPAM1", From: "s@spam.example", Hold: "spam score 12.5",
		Recipients: []queue.Recipient{{Addr: "c@example.test"}}}, strings.NewReader(msg))
	require.NoError(t, err)
	require.NoError(t, q.Close())

	relay := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append(args[:1:1], append([]string{"-spool", spool}, args[1:]...)...), &out, &errb)
		return code, out.String() + errb.String()
	}
	code, out := relay("queue", "list")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "MSG1")
	assert.Contains(t, out, "(held: spam score 12.5)")
	assert.Contains(t, out, "-- 2 message(s), 1 held")

	code, out = relay("quarantine", "list")
	require.Equal(t, 0, code, out)
	assert.NotContains(t, out, "MSG1")
	assert.Contains(t, out, "SPAM1")

	code, out = relay("queue", "show", "MSG1")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "Sender: <a@example.net>")
	assert.Contains(t, out, "Subject: hello?[31m", "terminal escapes are not passed through")

	code, out = relay("quarantine", "release", "MSG1")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "MSG1: not in quarantine")
	code, out = relay("quarantine", "release", "SPAM1")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "SPAM1: released")
	code, out = relay("queue", "hold", "-reason", "looks odd", "MSG1")
	require.Equal(t, 0, code, out)
	code, out = relay("quarantine", "list")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "(held: looks odd)")
	code, out = relay("queue", "delete", "MSG1", "NOPE")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "MSG1: deleted")
	assert.Contains(t, out, "NOPE: ")
	code, out = relay("queue", "frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "unknown command")
}

// A control socket that belongs to another user is refused by the
// commands (they would be talking to anybody's server) and by the relay.
func TestControlSocketOwnedBySomeoneElse(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give the socket to another user")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, os.Chown(sock, 65534, 65534))

	var out, errb bytes.Buffer
	code := run([]string{"queue", "list", "-spool", dir, "-control-socket", sock}, &out, &errb)
	assert.Equal(t, 1, code)
	assert.Contains(t, errb.String(), "owned by uid 65534")

	r := &relayServer{log: discardLog()}
	_, err = r.listenControl(sock)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "owned by uid 65534")
}

func discardLog() *slog.Logger { return postern.DiscardLogger() }

// A port in use stops serve at once, naming the key and the address.
func TestServePortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"serve", "-listen", l.Addr().String(), "-spool", filepath.Join(dir, "spool"),
		"-maildir", filepath.Join(dir, "maildir")}, &out, &errb)
	assert.Equal(t, 1, code)
	assert.Contains(t, errb.String(), "smtp.listen "+l.Addr().String()+": ")
	assert.Contains(t, errb.String(), "address already in use")
}

// A reload keeps what only a restart can change, and says which keys.
func TestKeepFixed(t *testing.T) {
	old := &Config{Spool: "/var/spool/postern", SMTP: SMTPSection{Listen: "127.0.0.1:25", GreetPause: Duration{time.Second}}}
	s := &Config{Spool: "/var/spool/postern", SMTP: SMTPSection{Listen: "127.0.0.1:2525", GreetPause: Duration{5 * time.Second}},
		Log: LogSection{Format: "json"}}
	assert.Equal(t, []string{"smtp.listen", "log.format"}, keepFixed(old, s))
	assert.Equal(t, "127.0.0.1:25", s.SMTP.Listen)
	assert.Equal(t, "", s.Log.Format)
	assert.Equal(t, 5*time.Second, s.SMTP.GreetPause.Duration, "reloadable settings take the new value")
}

// An old key name still works for a release, with a warning; the new one
// wins when both are set.
func TestRenamedKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.toml")
	require.NoError(t, os.WriteFile(path, []byte("[dnsbl]\nresolvers = [\"192.0.2.53\"]\n"), 0o644))
	cfg, _, _, err := loadWithFlags("relay serve", []string{"-config", path}, io.Discard, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"192.0.2.53"}, cfg.DNS.Resolvers)
	assert.Equal(t, []string{"dnsbl.resolvers is renamed dns.resolvers; the old name works until the next release"}, cfg.warnings)

	require.NoError(t, os.WriteFile(path, []byte("[dns]\nresolvers = [\"192.0.2.1\"]\n[dnsbl]\nresolvers = [\"192.0.2.53\"]\n"), 0o644))
	cfg, _, _, err = loadWithFlags("relay serve", []string{"-config", path}, io.Discard, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"192.0.2.1"}, cfg.DNS.Resolvers, "the new key wins")
	assert.Len(t, cfg.warnings, 1)

	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"check-config", "-config", path, "-spool", filepath.Join(dir, "spool")}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), "WARNING: dnsbl.resolvers is renamed dns.resolvers")
}
