package main

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver"
)

// The relay's flags are another way to write keys of the configuration
// file: a flag given on the command line wins over the file, which wins
// over the built-in defaults. The flags are parsed after the file is read,
// so -h shows the values in force.

// commandSettings reads a command's configuration file and flags and
// resolves them. On failure it has told stderr why (nothing when -h was
// asked for) and ok is false.
func commandSettings(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (s *settings, path string, ok bool) {
	cfg, path, _, err := loadWithFlags(name, args, stderr, extra)
	if err == nil {
		s, err = cfg.settings()
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "relay:", safe(err.Error())) // may quote the file
		}
		return nil, path, false
	}
	return s, path, true
}

// configArg finds -config in args before the flags are parsed.
func configArg(args []string) string {
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if !strings.HasPrefix(args[i], "-") {
			continue
		}
		if v, ok := strings.CutPrefix(a, "config="); ok {
			return v
		}
		if a == "config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// loadWithFlags reads the file named by -config (if any), applies the
// defaults and then the flags. extra adds command-specific flags.
func loadWithFlags(name string, args []string, stderr interface{ Write([]byte) (int, error) }, extra func(*flag.FlagSet)) (*Config, string, *flag.FlagSet, error) {
	path := configArg(args)
	cfg := &Config{}
	if path != "" {
		var err error
		if cfg, err = loadConfig(path); err != nil {
			return nil, path, nil, err
		}
	}
	cfg.applyDefaults()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", path, "TOML configuration `file` (see docs/configuration.md); flags override its keys")
	bindFlags(fs, cfg)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, path, fs, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "policy-order" {
			cfg.Policy.orderAt = "-policy-order"
		}
	})
	if err := cfg.validate(); err != nil {
		return nil, path, fs, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cfg, path, fs, nil
}

func bindFlags(fs *flag.FlagSet, c *Config) {
	str := func(p *string, name, usage string) { fs.StringVar(p, name, *p, usage) }
	list := func(p *[]string, name, usage string) { fs.Var((*listValue)(p), name, usage) }
	text := func(p encoding.TextUnmarshaler, show func() string, name, usage string) {
		fs.Var(&textValue{p, show}, name, usage)
	}
	dur := func(p *Duration, name, usage string) { text(p, p.String, name, usage) }
	// Listeners, names and domains.
	str(&c.SMTP.Listen, "listen", "`address` to listen on (smtp.listen)")
	str(&c.Hostname, "hostname", "host `name` for the banner and Received header (default: the system's)")
	list(&c.LocalDomains, "domains", "comma-separated local `domains` the relay accepts mail for (local_domains)")
	list(&c.RelayDomains, "relay-domains", "comma-separated `domains` accepted and routed on by the mailertable (relay_domains)")
	list(&c.TrustedNetworks, "trusted", "comma-separated trusted `networks` that may relay anywhere (Postfix mynetworks)")
	str(&c.Spool, "spool", "queue `directory` for accepted mail")
	text(&c.MaxMessageSize, func() string { return strconv.FormatInt(int64(c.MaxMessageSize), 10) }, "max-size", "maximum message `size` (10485760, 10MB)")
	dur(c.SMTP.GreetPause, "greet-pause", "pause before the banner for untrusted clients; 0s turns it off")
	fs.BoolVar(&c.SMTP.GreetPauseLogOnly, "greet-pause-log-only", c.SMTP.GreetPauseLogOnly, "log early talkers instead of refusing them (rollout)")
	fs.IntVar(&c.SMTP.MaxHops, "max-hops", c.SMTP.MaxHops, "most Received and Delivered-To fields in a message; more is a mail loop (554 5.4.6)")
	str(&c.SMTP.QuotedLocalParts, "quoted-local-parts", "addresses whose local part must be quoted (\"a b\"@example.org): accept (default, carried quoted) or refuse (553 5.1.3)")
	str(&c.SMTP.BareNewline, "bare-newline", "bare CR or LF in a message: normalize (make it CRLF) or reject (550 5.5.2)")
	fs.IntVar(&c.SMTP.MaxConnections, "max-connections", c.SMTP.MaxConnections, "connections open at once, all listeners; 0: from RLIMIT_NOFILE, (limit-100)/2; negative: no limit")
	fs.BoolVar(c.SMTP.ReverseDNS, "reverse-dns", *c.SMTP.ReverseDNS, "look up each untrusted client's host name (PTR, confirmed by A/AAAA) before the connect stage, for access entries by name and the Received field")
	dur(&c.SMTP.ReverseDNSTimeout, "reverse-dns-timeout", "bound on that lookup; running out of time is a temporary failure (no name)")
	fs.IntVar(&c.SMTP.MaxRecipients, "max-recipients", c.SMTP.MaxRecipients, "recipients per message, all listeners; more get 452 4.5.3")
	// Submission and TLS.
	str(&c.TLS.Cert, "tls-cert", "PEM certificate `file` for STARTTLS, the submission ports and the web page")
	str(&c.TLS.Key, "tls-key", "PEM private key `file` for -tls-cert")
	str(&c.Submission.Listen, "submission", "listen `address` for message submission (port 587): STARTTLS, then AUTH, required")
	str(&c.Submission.ListenTLS, "submissions", "listen `address` for submission over implicit TLS (port 465)")
	str(&c.Submission.Credentials, "credentials", "`file` of user:hash lines (bcrypt or argon2id) for SMTP AUTH; reloaded when it changes")
	str(&c.Submission.Senders, "senders", "sender binding `file`: which MAIL FROM addresses each user may use (default: their own login name)")
	fs.BoolVar(c.Submission.BindFrom, "bind-from", *c.Submission.BindFrom, "bind the From and Sender header fields of submitted mail to the user's addresses too (553 5.7.1 at DATA)")
	// Policy files.
	str(&c.Policy.Access, "access", "sendmail-format access `file` (plain text, as written for makemap)")
	str(&c.Policy.Recipients, "recipients", "`file` of valid addresses in the local domains, one per line (@domain for a catch-all); others get 550 5.1.1")
	fs.BoolVar(&c.Policy.CallAhead, "callahead", c.Policy.CallAhead, "verify recipients of local domains the -recipients file does not cover by asking the next hop (RCPT probe)")
	fs.BoolVar(&c.Policy.RelaySubdomains, "relay-subdomains", c.Policy.RelaySubdomains, "To:example.com RELAY relays subdomains of example.com too (sendmail's default)")
	list(&c.Policy.HELOChecks, "helo-checks", "comma-separated HELO `checks`: resolves (A, AAAA or MX), not_us (not our name or address), literal (an address literal is the client's)")
	list(&c.Policy.ClientChecks, "client-checks", "comma-separated client `checks`: ptr (a PTR record), name (a verified host name); 554 5.7.25, 421 when DNS fails for now")
	list(&c.Policy.Order, "policy-order", "comma-separated filter `names` in the order they run (trust first, then relay; relay check shows the order in force)")
	// DNS lists.
	list(&c.DNSBL.Zones, "dnsbl", "comma-separated DNS block lists for the client IP, `zone[=weight]`; listed at weight sum >= 1")
	list(&c.DNSBL.Allow, "dnswl", "comma-separated DNS allow lists, `zone[=weight]` (weight -1 by default)")
	list(&c.DNSBL.Domain, "rhsbl", "comma-separated domain block lists for the HELO name and sender domain")
	list(&c.DNSBL.Resolvers, "dns-resolver", "comma-separated DNS `servers` for the lists and sender authentication (default: /etc/resolv.conf)")
	fs.BoolVar(&c.DNSBL.AtRcpt, "dnsbl-at-rcpt", c.DNSBL.AtRcpt, "refuse listed clients at RCPT (logs name sender and recipient) instead of before the banner")
	fs.BoolVar(&c.DNSBL.FailOpen, "dnsbl-fail-open", c.DNSBL.FailOpen, "accept mail when a list cannot be asked (default: answer 4xx)")
	// Limits.
	fs.IntVar(&c.Limits.ClientRate, "client-rate", c.Limits.ClientRate, "connections per minute per client (sendmail ClientRate; access ClientRate: entries win); 0 unlimited")
	fs.IntVar(c.Limits.ClientConn, "client-conn", *c.Limits.ClientConn, "concurrent connections per client (sendmail ClientConn; access ClientConn: entries win); 0 unlimited")
	text(&c.Limits.MessageRate, c.Limits.MessageRate.show, "message-rate", "messages per client, `N/duration` (e.g. 100/1h); default unlimited")
	text(&c.Limits.RecipientRate, c.Limits.RecipientRate.show, "recipient-rate", "recipients per client, `N/duration`; default unlimited")
	text(c.Limits.OutboundMessageRate, c.Limits.OutboundMessageRate.show, "outbound-message-rate", "messages per trusted client address and per authenticated user, `N/duration` or unlimited")
	text(c.Limits.OutboundRecipientRate, c.Limits.OutboundRecipientRate.show, "outbound-recipient-rate", "recipients per trusted client address and per authenticated user, `N/duration` or unlimited")
	list(&c.Limits.OutboundExempt, "outbound-exempt", "comma-separated `networks` whose trusted clients the outbound limits do not count by address (a mail store, a list server)")
	fs.IntVar(&c.Limits.HarvestThreshold, "harvest-threshold", c.Limits.HarvestThreshold, "unknown recipients from one source that start a hold; -1 turns the guard off")
	dur(&c.Limits.HarvestWindow, "harvest-window", "window for counting unknown recipients")
	dur(&c.Limits.HarvestHold, "harvest-hold", "how long a harvesting source is answered 451 4.7.1")
	str(&c.Redis.Addr, "redis", "Redis `host:port` to share rate and harvest counters between relays (default: in memory)")
	fs.BoolVar(&c.Redis.FailClosed, "redis-fail-closed", c.Redis.FailClosed, "answer 451 4.3.0 when Redis cannot be asked (default: fail open, log and count)")
	// Sender authentication.
	str(&c.Auth.Check, "auth-check", "sender authentication of inbound mail: off, tag (SPF, DKIM, DMARC into Authentication-Results) or enforce (also refuse SPF fail, honour DMARC p=reject/quarantine)")
	str(&c.Auth.AuthservID, "authserv-id", "our `name` in Authentication-Results (default: the host name)")
	fs.Var((*dkimFlag)(&c.DKIM), "dkim-key", "comma-separated DKIM signing keys `domain:selector:keyfile` (PEM); mail of trusted and authenticated clients is signed")
	// Content scanning.
	list(&c.Scan.Clamd, "clamd", "comma-separated clamd `addresses` (host:port or socket path), tried in order; viruses are refused (554 5.7.0)")
	list(&c.Scan.Spamd, "spamd", "comma-separated SpamAssassin spamd `addresses`")
	list(&c.Scan.Rspamd, "rspamd", "comma-separated rspamd `addresses` (host:port of the normal worker)")
	fs.Float64Var(&c.Scan.SpamTagScore, "spam-tag-score", c.Scan.SpamTagScore, "score at which mail is tagged X-Spam-Flag: YES (0: the scorer's own verdict)")
	fs.Float64Var(&c.Scan.SpamRejectScore, "spam-reject-score", c.Scan.SpamRejectScore, "score at which -spam-action applies (550 5.7.1 by default); 0 never")
	str(&c.Scan.SpamSubject, "spam-subject", "`prefix` put before the Subject of tagged mail, e.g. [SPAM]")
	str(&c.Scan.SpamAction, "spam-action", "what to do with mail at -spam-reject-score: reject (default, 550 5.7.1), quarantine (hold for review) or discard")
	str(&c.Scan.VirusAction, "virus-action", "what to do with a virus: reject (default), quarantine (hold in the queue) or discard")
	fs.BoolVar(&c.Scan.VirusFailOpen, "virus-fail-open", c.Scan.VirusFailOpen, "deliver unscanned when no virus scanner answers (default: 451, the client retries)")
	fs.BoolVar(&c.Scan.SpamFailClosed, "spam-fail-closed", c.Scan.SpamFailClosed, "answer 451 when no spam scorer answers (default: deliver unscored)")
	fs.BoolVar(&c.Scan.BanAttachments, "ban-attachments", c.Scan.BanAttachments, "refuse executable attachments (exe, scr, pif, bat, js, ..., double extensions, also inside zip, tar, gzip and bzip2 archives, known by content)")
	str(&c.Scan.UnopenableArchives, "unopenable-archives", "with -ban-attachments, what to do with an archive nothing can look into (encrypted zip, rar, 7z, ...): reject (default, 552 5.7.0), quarantine or accept")
	str(&c.Scan.Policy, "scan-policy", "per-recipient spam policy `file` (spam=on|off, tag=, reject=, allow=, deny=); reloaded when it changes")
	fs.IntVar(&c.Scan.MaxMimeDepth, "max-mime-depth", c.Scan.MaxMimeDepth, "deepest MIME nesting a message may have; deeper is refused (554 5.6.0)")
	fs.IntVar(&c.Scan.MaxMimeParts, "max-mime-parts", c.Scan.MaxMimeParts, "most MIME parts a message may have; more is refused (554 5.6.0)")
	// Delivery and queue.
	str(&c.Delivery.Mailertable, "mailertable", "sendmail-format mailertable `file` (default: the local domains are delivered to Maildir under -maildir)")
	str(&c.Delivery.SmartHost, "smarthost", "next `hop` for every domain the mailertable does not name, e.g. [smtp.isp.example] (default: MX)")
	list(&c.Delivery.FallbackRelays, "fallback-relay", "comma-separated `hosts` tried when every host of a destination failed temporarily (sendmail FallbackSmartHost)")
	str(&c.Delivery.Local, "local-delivery", "how local domains the mailertable does not name are delivered, in mailertable `syntax` (local:, lmtp:unix:/path, lmtp:[host]:24)")
	str(&c.Delivery.Maildir, "maildir", "Maildir `root` for local: deliveries (<root>/<domain>/<user>/)")
	fs.BoolVar(c.Delivery.MaildirCreate, "maildir-create", *c.Delivery.MaildirCreate, "make a mailbox for each new local: recipient; false: only existing mailboxes take mail (others 550 5.1.1 at RCPT)")
	fs.BoolVar(&c.Delivery.NotifyUnverifiedSenders, "notify-unverified-senders", c.Delivery.NotifyUnverifiedSenders, "send failure notices to senders no SPF or DKIM pass vouched for (default: to -postmaster; such senders are often forged)")
	str(&c.Delivery.Postmaster, "postmaster", "`address` that gets double bounces (default: dropped and logged)")
	dur(c.Queue.Warn, "queue-warn", "age at which senders get a delay notice (sendmail Timeout.queuewarn); 0s never")
	dur(&c.Queue.Return, "queue-return", "age at which delivery is given up and the mail bounced (sendmail Timeout.queuereturn), e.g. 5d")
	dur(&c.Queue.MinBackoff, "min-backoff", "first retry delay; it doubles up to -max-backoff")
	dur(&c.Queue.MaxBackoff, "max-backoff", "longest retry delay")
	// Operations.
	str(&c.Log.Level, "log-level", "log `level`: debug, info, warn, error")
	str(&c.Log.Format, "log-format", "log `format`: text or json")
	str(&c.Metrics.Listen, "metrics-listen", "HTTP `address` for Prometheus /metrics and /healthz (default off)")
	str(&c.Control.Socket, "control-socket", "admin commands' Unix socket `path` (default <spool>/control.sock)")
	str(&c.Stats.Dir, "stats-dir", "`directory` of the statistics records (default <spool>/stats)")
	str(&c.Web.Listen, "web-listen", "HTTPS listen `address` of the quarantine page (needs -tls-cert and -credentials)")
	list(&c.Web.Admins, "web-admins", "comma-separated `users` of the credentials file who see all quarantined mail and the relay's charts")
	str(&c.Web.URL, "web-url", "public base `URL` of the quarantine page, for links in mail")
	fs.BoolVar(&c.Web.Digests, "web-digests", c.Web.Digests, "mail each user a daily list of their newly quarantined mail, with links to the page")
}

// applyDefaults fills in the built-in defaults, so the flags show them and
// settings() reads explicit values.
func (c *Config) applyDefaults() {
	if c.LocalDomains == nil && c.RelayDomains == nil {
		c.LocalDomains = []string{"example.test"}
	}
	if c.TrustedNetworks == nil {
		c.TrustedNetworks = []string{"127.0.0.0/8", "::1"}
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Spool, "postern-spool")
	def(&c.SMTP.Listen, "127.0.0.1:2525")
	def(&c.SMTP.QuotedLocalParts, "accept")
	def(&c.SMTP.BareNewline, "normalize")
	def(&c.Delivery.Maildir, "postern-maildir")
	def(&c.Delivery.Local, "local:")
	def(&c.Auth.Check, "off")
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "text")
	def(&c.Stats.DailyAt, "06:00")
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 10 << 20
	}
	if c.SMTP.GreetPause == nil {
		c.SMTP.GreetPause = &Duration{5 * time.Second}
	}
	if c.Delivery.MaildirCreate == nil {
		yes := true
		c.Delivery.MaildirCreate = &yes
	}
	if c.SMTP.MaxHops == 0 {
		c.SMTP.MaxHops = smtpserver.DefaultMaxHops
	}
	if c.Submission.BindFrom == nil {
		yes := true
		c.Submission.BindFrom = &yes
	}
	if c.Limits.ClientConn == nil {
		n := 50 // Postfix's smtpd_client_connection_count_limit
		c.Limits.ClientConn = &n
	}
	// A few hundred messages an hour bother no person (Postfix sites set
	// such limits for their users) and hold a worm to a trickle.
	if c.Limits.OutboundMessageRate == nil {
		c.Limits.OutboundMessageRate = &Rate{ratelimit.Rate{Count: 300, Per: time.Hour}}
	}
	if c.Limits.OutboundRecipientRate == nil {
		c.Limits.OutboundRecipientRate = &Rate{ratelimit.Rate{Count: 1000, Per: time.Hour}}
	}
	if c.Limits.OutboundExempt == nil {
		c.Limits.OutboundExempt = []string{"127.0.0.0/8", "::1"}
	}
	if c.Limits.HarvestThreshold == 0 {
		c.Limits.HarvestThreshold = ratelimit.DefaultHarvestThreshold
	}
	if c.Policy.Order == nil {
		c.Policy.Order = slices.Clone(defaultOrder)
	}
	intDef := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	intDef(&c.SMTP.MaxRecipients, 1000) // smtpserver's default, Postfix's smtpd_recipient_limit
	intDef(&c.Scan.MaxMimeDepth, scan.DefaultMaxDepth)
	intDef(&c.Scan.MaxMimeParts, scan.DefaultMaxParts)
	def(&c.Scan.SpamAction, "reject")
	def(&c.Scan.VirusAction, "reject")
	def(&c.Scan.UnopenableArchives, "reject")
	if c.Queue.Warn == nil {
		c.Queue.Warn = &Duration{4 * time.Hour}
	}
	if c.SMTP.ReverseDNS == nil {
		yes := true
		c.SMTP.ReverseDNS = &yes
	}
	durDef := func(d *Duration, v time.Duration) {
		if d.Duration == 0 {
			d.Duration = v
		}
	}
	durDef(&c.Queue.Return, 5*24*time.Hour)
	durDef(&c.Queue.MinBackoff, 5*time.Minute)
	durDef(&c.Queue.MaxBackoff, 4000*time.Second)
	durDef(&c.Stats.Retain, 35*24*time.Hour)
	durDef(&c.SMTP.ReverseDNSTimeout, 10*time.Second)
	durDef(&c.Limits.HarvestWindow, ratelimit.DefaultHarvestWindow)
	durDef(&c.Limits.HarvestHold, ratelimit.DefaultHarvestHold)
}

// settings resolves the configuration into what the builders read.
func (c *Config) settings() (*settings, error) {
	s := &settings{
		listen: c.SMTP.Listen, hostname: c.Hostname, spoolDir: c.Spool, maxSize: int64(c.MaxMessageSize),
		greetPause: c.SMTP.GreetPause.Duration, greetLogOnly: c.SMTP.GreetPauseLogOnly, refuseQuoted: c.SMTP.QuotedLocalParts == "refuse",
		maxConns: c.SMTP.MaxConnections, maxRcpts: c.SMTP.MaxRecipients,
		mimeDepth: c.Scan.MaxMimeDepth, mimeParts: c.Scan.MaxMimeParts,
		order: c.Policy.Order, orderAt: c.Policy.orderAt,
		outMsgRate: c.Limits.OutboundMessageRate.Rate, outRcptRate: c.Limits.OutboundRecipientRate.Rate,
		accessFile: c.Policy.Access, recipients: c.Policy.Recipients, callAhead: c.Policy.CallAhead,
		relaySubdomains: c.Policy.RelaySubdomains, maxHops: c.SMTP.MaxHops,
		dnsbl: c.DNSBL.Zones, dnswl: c.DNSBL.Allow, rhsbl: c.DNSBL.Domain, dnsResolvers: c.DNSBL.Resolvers,
		dnsblAtRcpt: c.DNSBL.AtRcpt, dnsOnError: onError(c.DNSBL.FailOpen, postern.OnErrorAccept, postern.OnErrorTempFail),
		redisAddr: c.Redis.Addr, storeOnError: onError(c.Redis.FailClosed, postern.OnErrorTempFail, postern.OnErrorAccept),
		clientRate: c.Limits.ClientRate, clientConn: *c.Limits.ClientConn,
		msgRate: c.Limits.MessageRate.Rate, rcptRate: c.Limits.RecipientRate.Rate,
		mailertable: c.Delivery.Mailertable, localHop: c.Delivery.Local, smartHost: c.Delivery.SmartHost, fallbackRelays: c.Delivery.FallbackRelays,
		maildir: c.Delivery.Maildir, postmaster: c.Delivery.Postmaster,
		maildirCreate: *c.Delivery.MaildirCreate, notifyUnverified: c.Delivery.NotifyUnverifiedSenders,
		queueWarn: c.Queue.Warn.Duration, queueReturn: c.Queue.Return.Duration,
		minBackoff: c.Queue.MinBackoff.Duration, maxBackoff: c.Queue.MaxBackoff.Duration,
		authCheck: c.Auth.Check, authServID: c.Auth.AuthservID,
		tlsCert: c.TLS.Cert, tlsKey: c.TLS.Key,
		submission: c.Submission.Listen, submissions: c.Submission.ListenTLS,
		credentials: c.Submission.Credentials, senders: c.Submission.Senders, bindFrom: *c.Submission.BindFrom,
		clamd: c.Scan.Clamd, spamd: c.Scan.Spamd, rspamd: c.Scan.Rspamd,
		spamTag: c.Scan.SpamTagScore, spamReject: c.Scan.SpamRejectScore, spamSubject: c.Scan.SpamSubject,
		spamAction: c.Scan.SpamAction, virusAction: c.Scan.VirusAction,
		virusOnError: onError(c.Scan.VirusFailOpen, postern.OnErrorAccept, postern.OnErrorTempFail),
		spamOnError:  onError(c.Scan.SpamFailClosed, postern.OnErrorTempFail, postern.OnErrorAccept), bannedAttachments: c.Scan.BanAttachments, scanPolicy: c.Scan.Policy, unopenableArchives: c.Scan.UnopenableArchives,
		webListen: c.Web.Listen, webAdmins: c.Web.Admins, webURL: c.Web.URL, webDigests: c.Web.Digests,
		metricsListen: c.Metrics.Listen, controlSocket: c.Control.Socket, statsDir: c.Stats.Dir,
		statsRetain: c.Stats.Retain.Duration, dailyTo: c.Stats.DailyTo, dailyAt: c.Stats.DailyAt,
	}
	if len(s.order) == 0 {
		s.order = defaultOrder // -policy-order "": the default
	}
	if s.queueWarn == 0 {
		s.queueWarn = -1 // never
	}
	s.harvest.Threshold = c.Limits.HarvestThreshold
	s.harvest.Window, s.harvest.HoldTime = c.Limits.HarvestWindow.Duration, c.Limits.HarvestHold.Duration
	for _, k := range c.DKIM {
		s.dkimKeys = append(s.dkimKeys, k.Domain+":"+k.Selector+":"+k.Key)
	}
	for _, d := range c.LocalDomains {
		s.localDomains = append(s.localDomains, strings.ToLower(d))
	}
	s.domains = append(s.domains, s.localDomains...)
	for _, d := range c.RelayDomains {
		s.domains = append(s.domains, strings.ToLower(d))
	}
	var err error
	if s.trusted, err = parsePrefixes(strings.Join(c.TrustedNetworks, ",")); err != nil {
		return nil, err
	}
	if s.outExempt, err = parsePrefixes(strings.Join(c.Limits.OutboundExempt, ",")); err != nil {
		return nil, keyErr("limits.outbound_exempt", "%v", err)
	}
	// The queue keeps addresses in canonical form (postern.Address).
	for _, a := range []struct {
		key string
		p   *string
	}{{"delivery.postmaster", &s.postmaster}, {"stats.daily_to", &s.dailyTo}} {
		if *a.p == "" {
			continue
		}
		if *a.p, err = envelopeAddr(*a.p); err != nil {
			return nil, keyErr(a.key, "%v", err)
		}
	}
	if s.controlSocket == "" {
		s.controlSocket = s.spoolDir + "/control.sock"
	}
	if s.statsDir == "" {
		s.statsDir = s.spoolDir + "/stats"
	}
	if err := s.logLevel.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	s.logJSON = c.Log.Format == "json"
	if s.bareNewline, err = smtpserver.ParseBareNewline(c.SMTP.BareNewline); err != nil {
		return nil, fmt.Errorf("smtp.bare_newline: %w", err)
	}
	s.reverseDNS, s.reverseDNSTimeout = *c.SMTP.ReverseDNS, c.SMTP.ReverseDNSTimeout.Duration
	if s.hostChecks, err = hostChecks(c.Policy.HELOChecks, c.Policy.ClientChecks); err != nil {
		return nil, err
	}
	return s, nil
}

// listValue is a comma-separated flag for a []string key.
type listValue []string

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listValue) Set(v string) error { *l = splitList(v); return nil }

// textValue is a flag for a key whose type reads text.
type textValue struct {
	u    encoding.TextUnmarshaler
	show func() string
}

func (t *textValue) String() string {
	if t == nil || t.show == nil {
		return ""
	}
	return t.show()
}

func (t *textValue) Set(v string) error { return t.u.UnmarshalText([]byte(v)) }

func (r Rate) show() string {
	if r.Unlimited() {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.Count, r.Per)
}

// dkimFlag reads -dkim-key domain:selector:keyfile,...
type dkimFlag []DKIMKey

func (d *dkimFlag) String() string {
	if d == nil {
		return ""
	}
	var out []string
	for _, k := range *d {
		out = append(out, k.Domain+":"+k.Selector+":"+k.Key)
	}
	return strings.Join(out, ",")
}

func (d *dkimFlag) Set(v string) error {
	*d = nil
	for _, spec := range splitList(v) {
		parts := strings.SplitN(spec, ":", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("%q is not domain:selector:keyfile", spec)
		}
		*d = append(*d, DKIMKey{Domain: parts[0], Selector: parts[1], Key: parts[2]})
	}
	return nil
}

// logger makes the relay's logger.
func (s *settings) logger(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	opts := &slog.HandlerOptions{Level: s.logLevel}
	if s.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// onError resolves a relay failure-policy switch (dnsbl.fail_open,
// redis.fail_closed, scan.virus_fail_open, scan.spam_fail_closed): set
// when the key is true, else the relay's default for that dependency.
func onError(key bool, set, def postern.ErrorPolicy) postern.ErrorPolicy {
	if key {
		return set
	}
	return def
}
