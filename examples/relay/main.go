// Command relay is Postern's reference relay: the SMTP front door of a small
// site, in front of its mail store. Run with no arguments it listens on
// 127.0.0.1:2525, accepts mail for example.test (relaying for loopback
// clients), queues each accepted message durably under ./postern-spool and
// delivers mail for example.test to Maildir folders under ./postern-maildir.
// Given a sendmail mailertable (-mailertable) it routes like the relay it
// replaces: mailertable, then -smarthost, then MX, with -fallback-relay
// hosts when a destination cannot be reached.
//
// Usage:
//
//	relay [serve] [flags]      run the server (the default)
//	relay check [flags]        what would the policy do with this mail?
//	relay dkim keygen [flags]  make a DKIM key and print its DNS record
//
// The check command is the equivalent of "sendmail -bt" or "postmap -q":
//
//	relay check -access /etc/mail/access -ip 192.0.2.7 -helo mx.example.net \
//	    -from alice@example.net -rcpt bob@example.test
//
// Send SIGINT or SIGTERM for a graceful shutdown; SIGHUP reloads the
// access, mailertable and recipients files (each is also reloaded when it
// changes).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/access"
	"github.com/postern/postern/smtpserver/greetpause"
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
	case "check":
		return check(args, stdout, stderr)
	case "dkim":
		return dkimCommand(args, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, "usage: relay [serve|check|dkim keygen] [flags]; relay serve -h, relay check -h or relay dkim keygen -h for flags")
		return 0
	}
	fmt.Fprintf(stderr, "relay: unknown command %q (serve, check, dkim)\n", cmd)
	return 2
}

// commonFlags are shared by serve and check, so check answers for the same
// configuration.
func commonFlags(fs *flag.FlagSet) (*settings, func() error) {
	s := &settings{}
	var domains, trusted string
	fs.StringVar(&s.accessFile, "access", "", "sendmail-format access `file` (plain text, as written for makemap)")
	fs.StringVar(&s.recipients, "recipients", "", "`file` of valid addresses in the local domains, one per line (@domain for a catch-all); others get 550 5.1.1")
	fs.BoolVar(&s.callAhead, "callahead", false, "verify recipients of local domains the -recipients file does not cover by asking the next hop (RCPT probe)")
	fs.StringVar(&s.mailertable, "mailertable", "", "sendmail-format mailertable `file` (default: the local domains are delivered to Maildir under -maildir)")
	fs.StringVar(&s.smartHost, "smarthost", "", "next `hop` for every domain the mailertable does not name, e.g. [smtp.isp.example] (default: MX)")
	var fallback string
	fs.StringVar(&fallback, "fallback-relay", "", "comma-separated `hosts` tried when every host of a destination failed temporarily (sendmail FallbackSmartHost)")
	fs.StringVar(&s.maildir, "maildir", "postern-maildir", "Maildir `root` for local: deliveries (<root>/<domain>/<user>/)")
	fs.StringVar(&s.authCheck, "auth-check", "off", "sender authentication of inbound mail: off, tag (SPF, DKIM, DMARC into Authentication-Results) or enforce (also refuse SPF fail, honour DMARC p=reject/quarantine)")
	fs.StringVar(&s.authServID, "authserv-id", "", "our `name` in Authentication-Results (default: the host name)")
	var dkimKeys string
	fs.StringVar(&dkimKeys, "dkim-key", "", "comma-separated DKIM signing keys `domain:selector:keyfile` (PEM); mail of trusted and authenticated clients is signed")
	var clamd, spamdAddrs, rspamdAddrs string
	fs.StringVar(&clamd, "clamd", "", "comma-separated clamd `addresses` (host:port or socket path), tried in order; viruses are refused (554 5.7.0)")
	fs.StringVar(&spamdAddrs, "spamd", "", "comma-separated SpamAssassin spamd `addresses`")
	fs.StringVar(&rspamdAddrs, "rspamd", "", "comma-separated rspamd `addresses` (host:port of the normal worker)")
	fs.Float64Var(&s.spamTag, "spam-tag-score", 0, "score at which mail is tagged X-Spam-Flag: YES (0: the scorer's own verdict)")
	fs.Float64Var(&s.spamReject, "spam-reject-score", 0, "score at which mail is refused (550 5.7.1); 0 never")
	fs.StringVar(&s.spamSubject, "spam-subject", "", "`prefix` put before the Subject of tagged mail, e.g. [SPAM]")
	fs.StringVar(&s.spamAction, "spam-action", "", "what to do with mail at -spam-reject-score: reject (default, 550 5.7.1), quarantine (hold for review) or discard")
	fs.StringVar(&s.virusAction, "virus-action", "", "what to do with a virus: reject (default), quarantine (hold in the queue) or discard")
	fs.BoolVar(&s.virusFailOpen, "virus-fail-open", false, "deliver unscanned when no virus scanner answers (default: 451, the client retries)")
	fs.BoolVar(&s.spamFailClosed, "spam-fail-closed", false, "answer 451 when no spam scorer answers (default: deliver unscored)")
	fs.BoolVar(&s.bannedAttachments, "ban-attachments", false, "refuse executable attachments (exe, scr, pif, bat, js, ..., double extensions, also inside zip files)")
	fs.StringVar(&s.scanPolicy, "scan-policy", "", "per-recipient spam policy `file` (spam=on|off, tag=, reject=, allow=, deny=); reloaded when it changes")
	fs.StringVar(&domains, "domains", "example.test", "comma-separated local `domains` the relay accepts mail for")
	fs.StringVar(&trusted, "trusted", "127.0.0.0/8,::1", "comma-separated trusted `networks` that may relay anywhere (Postfix mynetworks)")
	fs.StringVar(&s.hostname, "hostname", "", "host name for the banner and Received header (default: the system's)")
	fs.DurationVar(&s.greetPause, "greet-pause", 5*time.Second, "pause before the banner for untrusted clients; 0 turns it off")
	var bl, wl, rhs, resolvers string
	fs.StringVar(&bl, "dnsbl", "", "comma-separated DNS block lists for the client IP, `zone[=weight]`; listed at weight sum >= 1")
	fs.StringVar(&wl, "dnswl", "", "comma-separated DNS allow lists, `zone[=weight]` (weight -1 by default)")
	fs.StringVar(&rhs, "rhsbl", "", "comma-separated domain block lists for the HELO name and sender domain")
	fs.StringVar(&resolvers, "dns-resolver", "", "comma-separated DNS `servers` for the lists (default: /etc/resolv.conf)")
	fs.BoolVar(&s.dnsblAtRcpt, "dnsbl-at-rcpt", false, "refuse listed clients at RCPT (logs name sender and recipient) instead of before the banner")
	fs.BoolVar(&s.dnsFailOpen, "dnsbl-fail-open", false, "accept mail when a list cannot be asked (default: answer 4xx)")
	fs.StringVar(&s.redisAddr, "redis", "", "Redis `host:port` to share rate and harvest counters between relays (default: in memory)")
	fs.BoolVar(&s.storeClosed, "redis-fail-closed", false, "answer 451 4.3.0 when Redis cannot be asked (default: fail open, log and count)")
	fs.IntVar(&s.harvest.Threshold, "harvest-threshold", 0, "unknown recipients from one source that start a hold (default 10; -1 turns the guard off)")
	fs.DurationVar(&s.harvest.Window, "harvest-window", 0, "window for counting unknown recipients (default 10m)")
	fs.DurationVar(&s.harvest.HoldTime, "harvest-hold", 0, "how long a harvesting source is answered 451 4.7.1 (default 30m)")
	var msgRate, rcptRate string
	fs.StringVar(&msgRate, "message-rate", "", "messages per client, `N/duration` (e.g. 100/1h); default unlimited")
	fs.StringVar(&rcptRate, "recipient-rate", "", "recipients per client, `N/duration`; default unlimited")
	return s, func() error {
		var err error
		if s.msgRate, err = parseRate(msgRate); err != nil {
			return fmt.Errorf("-message-rate: %w", err)
		}
		if s.rcptRate, err = parseRate(rcptRate); err != nil {
			return fmt.Errorf("-recipient-rate: %w", err)
		}
		s.dnsbl, s.dnswl, s.rhsbl, s.dnsResolvers = splitList(bl), splitList(wl), splitList(rhs), splitList(resolvers)
		s.fallbackRelays = splitList(fallback)
		s.dkimKeys = splitList(dkimKeys)
		s.clamd, s.spamd, s.rspamd = splitList(clamd), splitList(spamdAddrs), splitList(rspamdAddrs)
		for _, d := range strings.Split(domains, ",") {
			if d = strings.TrimSpace(d); d != "" {
				s.domains = append(s.domains, strings.ToLower(d))
			}
		}
		s.trusted, err = parsePrefixes(trusted)
		return err
	}
}

func parseRate(s string) (ratelimit.Rate, error) {
	if s == "" {
		return ratelimit.Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count <= 0 {
		return ratelimit.Rate{}, fmt.Errorf("%q is not N/duration", s)
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return ratelimit.Rate{}, fmt.Errorf("%q is not N/duration", s)
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

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s, finish := commonFlags(fs)
	fs.StringVar(&s.listen, "listen", "127.0.0.1:2525", "`address` to listen on")
	fs.StringVar(&s.spoolDir, "spool", "postern-spool", "queue `directory` for accepted mail")
	queueWarn := fs.String("queue-warn", "4h", "age at which senders get a delay notice (sendmail Timeout.queuewarn); 0 never")
	queueReturn := fs.String("queue-return", "5d", "age at which delivery is given up and the mail bounced (sendmail Timeout.queuereturn)")
	fs.DurationVar(&s.minBackoff, "min-backoff", 5*time.Minute, "first retry delay; it doubles up to -max-backoff")
	fs.DurationVar(&s.maxBackoff, "max-backoff", 4000*time.Second, "longest retry delay")
	fs.StringVar(&s.postmaster, "postmaster", "", "`address` that gets double bounces (default: dropped and logged)")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM certificate `file` for STARTTLS and the submission ports")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key `file` for -tls-cert")
	fs.StringVar(&s.submission, "submission", "", "listen `address` for message submission (port 587): STARTTLS, then AUTH, required")
	fs.StringVar(&s.submissions, "submissions", "", "listen `address` for submission over implicit TLS (port 465)")
	fs.StringVar(&s.credentials, "credentials", "", "`file` of user:hash lines (bcrypt or argon2id) for SMTP AUTH; reloaded when it changes")
	fs.StringVar(&s.senders, "senders", "", "sender binding `file`: which MAIL FROM addresses each user may use (default: their own login name)")
	fs.BoolVar(&s.greetLogOnly, "greet-pause-log-only", false, "log early talkers instead of refusing them (rollout)")
	fs.Int64Var(&s.maxSize, "max-size", 10<<20, "maximum message size in `bytes`")
	fs.IntVar(&s.clientRate, "client-rate", 0, "connections per minute per client (sendmail ClientRate; access ClientRate: entries win); 0 unlimited")
	fs.IntVar(&s.clientConn, "client-conn", 50, "concurrent connections per client (sendmail ClientConn; access ClientConn: entries win; Postfix's default 50); 0 unlimited")
	fs.StringVar(&s.webListen, "web-listen", "", "HTTPS listen `address` of the quarantine page (needs -tls-cert and -credentials)")
	var webAdmins string
	fs.StringVar(&webAdmins, "web-admins", "", "comma-separated `users` of the credentials file who see all quarantined mail and the relay's charts")
	fs.StringVar(&s.webURL, "web-url", "", "public base `URL` of the quarantine page, for links in digests (default https://<hostname><web-listen port>)")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := finish(); err != nil {
		fmt.Fprintln(stderr, "relay:", err)
		return 2
	}
	s.webAdmins = splitList(webAdmins)
	var err error
	if s.queueWarn, err = parseAge(*queueWarn); err != nil {
		fmt.Fprintln(stderr, "relay: -queue-warn:", err)
		return 2
	}
	if s.queueWarn == 0 {
		s.queueWarn = -1 // never
	}
	if s.queueReturn, err = parseAge(*queueReturn); err != nil || s.queueReturn <= 0 {
		fmt.Fprintln(stderr, "relay: -queue-return: must be a positive duration such as 5d or 72h")
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(stderr, "relay: -log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if err := serveWith(s, log); err != nil {
		log.Error("relay stopped", "error", err)
		return 1
	}
	return 0
}

func serveWith(s *settings, log *slog.Logger) error {
	dl, err := openDelivery(s, log)
	if err != nil {
		return err
	}
	defer dl.Close()
	ap, err := buildAuth(s, log)
	if err != nil {
		return err
	}
	sc, err := buildScan(s, log)
	if err != nil {
		return err
	}
	pol, err := buildPolicy(s, log, nil, dl.verifier, ap, sc)
	if err != nil {
		return err
	}
	defer pol.Close()
	srv, err := smtpserver.New(smtpserver.Config{Hostname: s.hostname, Policy: pol.chain, Handoff: queueHandoff{dl.q, log},
		TLSConfig: ap.tls, Logger: log, MaxMessageBytes: s.maxSize})
	if err != nil {
		return err
	}
	type listener struct {
		srv *smtpserver.Server
		l   net.Listener
	}
	var subs []listener
	for _, sub := range []struct {
		addr     string
		implicit bool
	}{{s.submission, false}, {s.submissions, true}} {
		if sub.addr == "" {
			continue
		}
		chain, err := submissionChain(s, ap, sc, pol.rcptVerify, pol.amap, log)
		if err != nil {
			return err
		}
		// RFC 6409 and RFC 8314: TLS first (implicit, or STARTTLS before
		// MAIL and AUTH), then AUTH before MAIL.
		ssrv, err := smtpserver.New(smtpserver.Config{Hostname: s.hostname, Policy: chain, Handoff: queueHandoff{dl.q, log},
			Logger: log, MaxMessageBytes: s.maxSize, TLSConfig: ap.tls, ImplicitTLS: sub.implicit, RequireTLS: true,
			RequireAuth: true, Auth: ap.creds, AuthLimit: ap.authLim})
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", sub.addr)
		if err != nil {
			return err
		}
		subs = append(subs, listener{ssrv, l})
		log.Info("submission listening", "addr", l.Addr().String(), "implicit_tls", sub.implicit)
	}
	inner, err := net.Listen("tcp", s.listen)
	if err != nil {
		return err
	}
	// TCP → connection limits → greet pause → connect stage → go-smtp: the
	// cheapest refusal comes first.
	rlCfg := ratelimit.ListenerConfig{Hostname: s.hostname, Logger: log,
		ClientRate: func(ip netip.Addr) (int, bool) { return pol.clientLimit(ip, s.clientRate, (*access.Map).ClientRate) },
		ClientConn: func(ip netip.Addr) (int, bool) { return pol.clientLimit(ip, s.clientConn, (*access.Map).ClientConn) },
	}
	limited, err := ratelimit.NewListener(inner, rlCfg)
	if err != nil {
		return err
	}
	gl, err := greetpause.New(limited, greetpause.Config{LogOnly: s.greetLogOnly, Logger: log,
		Pause: func(ip netip.Addr) time.Duration { d, _ := pol.pause(ip); return d }})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if pol.watcher != nil {
		go pol.watcher.Run(ctx)
	}
	ap.watch(ctx)
	sc.watch(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if pol.watcher != nil {
				if err := pol.watcher.Reload(); err != nil {
					log.Error("reload failed, previous access map stays in force", "error", err)
				}
			}
			dl.reload(log)
			ap.reload(log)
			sc.reload(log)
		}
	}()
	// The queue runner gets its own context: it stops after the server,
	// so deliveries under way at shutdown finish recording their results.
	qctx, qstop := context.WithCancel(context.Background())
	qdone := make(chan struct{})
	go func() { dl.run(qctx, log); close(qdone) }()
	defer func() { qstop(); <-qdone }()
	stopWeb, err := startWeb(ctx, s, dl.q, ap, nil, log)
	if err != nil {
		return err
	}
	defer stopWeb(context.Background())
	log.Info("relay listening", "addr", inner.Addr().String(), "domains", s.domains, "spool", s.spoolDir,
		"mailertable", cmp.Or(s.mailertable, "built-in: local domains to "+s.maildir),
		"greet_pause", s.greetPause.String())
	done := make(chan error, 1+len(subs))
	go func() { done <- srv.Serve(gl) }()
	for _, sub := range subs {
		go func() { done <- sub.srv.Serve(sub.l) }()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sub := range subs {
		go sub.srv.Shutdown(sctx)
	}
	err = srv.Shutdown(sctx)
	gl.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timed out; open connections closed")
		return nil
	}
	return err
}
