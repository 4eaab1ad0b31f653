// Command relay is Postern's reference relay: the SMTP front door of a small
// site, in front of its mail store. Run with no arguments it listens on
// 127.0.0.1:2525, accepts mail for example.test (relaying for loopback
// clients), queues each accepted message durably under ./postern-spool and
// delivers mail for example.test to Maildir folders under ./postern-maildir.
// With a configuration file (-config relay.toml; docs/configuration.md
// lists every key) it is the relay a site runs: its sendmail access file
// and mailertable, DNS lists, rate limits, scanners, DKIM keys, submission
// ports, metrics and a quarantine page.
//
// Usage:
//
//	relay [serve] [-config file] [flags]   run the server (the default)
//	relay check-config [-config file]      check the configuration and the files it names
//	relay check [flags]                    what would the policy do with this mail?
//	relay queue list|show|hold|release|delete|retry|bounce [ID...]
//	relay quarantine list|show|release|delete [ID...]
//	relay stats [-since 24h]               a summary of what the relay did
//	relay reload                           reload the running relay's configuration
//	relay dkim keygen [flags]              make a DKIM key and print its DNS record
//
// The check command is the equivalent of "sendmail -bt" or "postmap -q":
//
//	relay check -access /etc/mail/access -ip 192.0.2.7 -helo mx.example.net \
//	    -from alice@example.net -rcpt bob@example.test
//
// The queue, quarantine and reload commands talk to the running relay over
// its control socket (<spool>/control.sock, for root and the relay's own
// user only); when the relay is stopped, queue and quarantine work on the
// spool directly.
//
// SIGINT or SIGTERM shut down gracefully; SIGHUP reloads the configuration
// (also reloaded when the file changes; the files it names are reloaded
// when they change). An invalid configuration is refused and the running
// one stays in force.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/ratelimit"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "milter":
		return milterCommand(args, stderr)
	case "check-config":
		return checkConfig(args, stdout, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "queue", "quarantine":
		return adminCommand(cmd, args, stdout, stderr)
	case "stats":
		return statsCommand(args, stdout, stderr)
	case "reload":
		return reloadCommand(args, stdout, stderr)
	case "dkim":
		return dkimCommand(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "relay: unknown command %q\n%s", cmd, usage)
	return 2
}

const usage = `usage:
  relay [serve] [-config file] [flags]   run the server (the default)
  relay milter [-config file] -listen inet:HOST:PORT|unix:PATH
                                         serve the port-25 filters to Postfix or sendmail only
  relay check-config [-config file]      check the configuration and the files it names
  relay check [-config file] -ip A -helo H -from S -rcpt R   policy dry run
  relay queue list|show|hold|release|delete|retry|bounce [ID...]
  relay quarantine list|show|release|delete [ID...]
  relay stats [-since 24h]               summary of received, delivered, rejected, spam, viruses
  relay reload                           reload the running relay's configuration
  relay dkim keygen [flags]              make a DKIM key and print its DNS record
Each command takes -h for its flags.
`

func parseRate(s string) (ratelimit.Rate, error) {
	if s == "" || s == "unlimited" {
		return ratelimit.Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count <= 0 {
		return ratelimit.Rate{}, fmt.Errorf("%q is not N/duration or unlimited", s)
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return ratelimit.Rate{}, fmt.Errorf("%q is not N/duration or unlimited", s)
	}
	return ratelimit.Rate{Count: count, Per: d}, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
