package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/milter"
)

// Config is the relay's configuration: the TOML file, then its defaults,
// then the command-line flags. It holds the values; everything else about
// a key (its flag, default, whether a reload may change it, its
// documentation) is declared once beside it, in keys.go, from which the
// flags, "serve -h" and the tables of docs/configuration.md are made. A
// key the relay does not know, or a value of the wrong type, is an error
// naming the file and line. The builders read it directly, with the
// values resolve derives from it (unexported fields).
type Config struct {
	// Hostname names the relay in the banner, Received fields and DSNs;
	// default the system's host name.
	Hostname string `toml:"hostname"`
	// LocalDomains are the domains whose mail this relay accepts and hands
	// to the mail store; default ["example.test"]. RelayDomains are
	// accepted too (sendmail "To:domain RELAY"), for domains routed
	// elsewhere by the mailertable.
	LocalDomains []string `toml:"local_domains"`
	RelayDomains []string `toml:"relay_domains"`
	// TrustedNetworks may relay anywhere and skip the greet pause and
	// connection limits (Postfix mynetworks); default 127.0.0.0/8, ::1.
	TrustedNetworks []string `toml:"trusted_networks"`
	// Spool is the queue directory; default "postern-spool".
	Spool string `toml:"spool"`
	// MaxMessageSize; default "10MB" (10,485,760 bytes, sendmail's 10 MB).
	MaxMessageSize Size `toml:"max_message_size"`

	SMTP       SMTPSection       `toml:"smtp"`
	Submission SubmissionSection `toml:"submission"`
	TLS        TLSSection        `toml:"tls"`
	Policy     PolicySection     `toml:"policy"`
	DNS        DNSSection        `toml:"dns"`
	DNSBL      DNSBLSection      `toml:"dnsbl"`
	Limits     LimitsSection     `toml:"limits"`
	Greylist   GreylistSection   `toml:"greylist"`
	Redis      RedisSection      `toml:"redis"`
	Auth       AuthSection       `toml:"auth"`
	DKIM       []DKIMKey         `toml:"dkim"`
	Milters    []MilterEntry     `toml:"milter"`
	Scan       ScanSection       `toml:"scan"`
	Delivery   DeliverySection   `toml:"delivery"`
	Queue      QueueSection      `toml:"queue"`
	Log        LogSection        `toml:"log"`
	Metrics    MetricsSection    `toml:"metrics"`
	Control    ControlSection    `toml:"control"`
	Stats      StatsSection      `toml:"stats"`
	TLSRPT     TLSRPTSection     `toml:"tlsrpt"`
	Web        WebSection        `toml:"web"`
	LDAP       LDAPSection       `toml:"ldap"`

	MilterServer MilterServerSection `toml:"milter_server"`

	// set are the keys the file set: the others get their defaults.
	set map[string]bool
	// warnings about the configuration (renamed keys), for the log and
	// check-config.
	warnings []string

	// Derived by resolve from the keys above; the builders read them.
	domains      []string // accepted: local and relay domains, lower case
	localDomains []string // delivered here when the mailertable does not name them
	trusted      []netip.Prefix
	outExempt    []netip.Prefix        // trusted clients not counted by address
	harvest      ratelimit.GuardConfig // Threshold < 0 turns the guard off
	queueWarn    time.Duration         // -1: never
	maxSize      int64
	logLevel     slog.Level
	logJSON      bool
	refuseQuoted bool // smtp.quoted_local_parts = "refuse"
	bareNewline  smtpserver.BareNewline
	hostChecks   auth.HostCheck
	front        frontSettings // the front door's keys, parsed
}

// SMTPSection is the inbound listener (port 25).
type SMTPSection struct {
	// Listen; default "127.0.0.1:2525" (a production MX says ":25").
	Listen string `toml:"listen"`
	// GreetPause before the banner for untrusted clients; default "5s";
	// "0s" turns it off. Access-file GreetPause: entries win.
	GreetPause Duration `toml:"greet_pause"`
	// GreetPauseLogOnly logs early talkers instead of refusing them.
	GreetPauseLogOnly bool `toml:"greet_pause_log_only"`
	// MaxHops is the most Received and Delivered-To fields a message may
	// carry (Postfix hopcount_limit); default 50; more: 554 5.4.6.
	MaxHops int `toml:"max_hops"`
	// QuotedLocalParts is "accept" (default: carried quoted to the next
	// hop, as RFC 5321 requires) or "refuse" (553 5.1.3) for addresses
	// whose local part must be quoted, on every listener.
	QuotedLocalParts string `toml:"quoted_local_parts"`
	// BareNewline is what a bare CR or LF in a message gets: "normalize"
	// (the default: made CRLF) or "reject" (550 5.5.2).
	BareNewline string `toml:"bare_newline"`
	// MaxConnections bounds the connections open at once over the SMTP
	// and submission listeners; default 0: from RLIMIT_NOFILE,
	// (limit - 100) / 2. Negative means no limit.
	MaxConnections int `toml:"max_connections"`
	// ReverseDNS looks up each untrusted client's host name (PTR, then
	// A/AAAA must hold the address) before the connect stage; default
	// true. ReverseDNSTimeout bounds it; default "10s", at most "30s".
	ReverseDNS        bool     `toml:"reverse_dns"`
	ReverseDNSTimeout Duration `toml:"reverse_dns_timeout"`
	// MaxRecipients per message, on every listener; default 1000
	// (Postfix smtpd_recipient_limit); more get 452 4.5.3.
	MaxRecipients int `toml:"max_recipients"`

	// The front door (frontdoor.go). PassCache remembers clients that
	// waited out the greet pause and passed the connect-stage DNS lists,
	// so their next connections skip the pause (postscreen's temporary
	// allowlist); default true. The TTLs: "1d", "1h", "10m" (a failure).
	PassCache         bool     `toml:"pass_cache"`
	PassCacheTTL      Duration `toml:"pass_cache_ttl"`
	PassCacheDNSBLTTL Duration `toml:"pass_cache_dnsbl_ttl"`
	PassCacheFailTTL  Duration `toml:"pass_cache_fail_ttl"`
	// ProtocolTests are postscreen's deep protocol tests: "pipelining",
	// "non_smtp", "bare_newline"; default none. A pass counts for
	// ProtocolTestsTTL; default "30d".
	ProtocolTests    []string `toml:"protocol_tests"`
	ProtocolTestsTTL Duration `toml:"protocol_tests_ttl"`
	// ProxyBalancers are the load balancers whose connections start with
	// a PROXY protocol header (v1 or v2); default none. ProxyTimeout
	// bounds reading one; default "5s".
	ProxyBalancers []string `toml:"proxy_balancers"`
	ProxyTimeout   Duration `toml:"proxy_timeout"`
}

// GreylistSection is triplet greylisting (frontdoor.go).
type GreylistSection struct {
	// Enabled turns it on; default false.
	Enabled bool `toml:"enabled"`
	// At is "rcpt" (default) or "data".
	At string `toml:"at"`
	// MinDelay (default "5m"), RetryWindow ("2d") and PassTTL ("36d").
	MinDelay    Duration `toml:"min_delay"`
	RetryWindow Duration `toml:"retry_window"`
	PassTTL     Duration `toml:"pass_ttl"`
	// AutoAllow passes let a client network through for anyone; default
	// 5, 0 never.
	AutoAllow int `toml:"auto_allow"`
	// ExemptSPFDomains: senders of these domains (and their subdomains)
	// whose SPF passed are not greylisted.
	ExemptSPFDomains []string `toml:"exempt_spf_domains"`
	// ExemptPassCache: clients the pass cache knows are not greylisted;
	// default false.
	ExemptPassCache bool `toml:"exempt_pass_cache"`
}

// SubmissionSection is message submission for the site's own users.
type SubmissionSection struct {
	// Listen is port 587 (STARTTLS, then AUTH); ListenTLS port 465
	// (implicit TLS). Both off by default; each needs tls and credentials.
	Listen    string `toml:"listen"`
	ListenTLS string `toml:"listen_tls"`
	// Credentials is the user:hash file (bcrypt or argon2id).
	Credentials string `toml:"credentials"`
	// Senders binds users to the MAIL FROM addresses they may use;
	// default: their own login name.
	Senders string `toml:"senders"`
	// BindFrom binds the From and Sender header fields to the user's
	// addresses too (553 5.7.1 at DATA otherwise); default true.
	BindFrom bool `toml:"bind_from"`
}

// TLSSection is the certificate for STARTTLS, 465 and the web page.
type TLSSection struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// PolicySection names the sendmail-format policy files.
type PolicySection struct {
	// Access is the sendmail access file (plain text, as for makemap).
	Access string `toml:"access"`
	// Recipients lists the valid addresses of the local domains.
	Recipients string `toml:"recipients"`
	// CallAhead verifies other recipients of local domains with the next
	// hop.
	CallAhead bool `toml:"callahead"`
	// RelaySubdomains lets "To:example.com RELAY" relay the subdomains of
	// example.com too (sendmail's default); off: only example.com, and
	// "To:.example.com RELAY" names the subdomains.
	RelaySubdomains bool `toml:"relay_subdomains"`
	// HELOChecks refuse HELO names: "resolves", "not_us", "literal";
	// ClientChecks refuse clients by reverse DNS: "ptr", "name". Default
	// none.
	HELOChecks   []string `toml:"helo_checks"`
	ClientChecks []string `toml:"client_checks"`
	// Order is the order of the filters by name (order.go);
	// default defaultOrder, the relay's order before it was a key.
	Order []string `toml:"order"`

	// orderAt is where Order was set ("relay.toml:12"), for errors found
	// when the chain is built.
	orderAt string
}

// DNSSection is the one resolver every DNS lookup goes through.
type DNSSection struct {
	// Resolvers; default /etc/resolv.conf.
	Resolvers []string `toml:"resolvers"`
	// DNSSEC declares the resolvers validating and on a trusted path, so
	// their AD bit is believed (DANE); default false.
	DNSSEC bool `toml:"dnssec"`
}

// DNSBLSection configures DNS block and allow lists.
type DNSBLSection struct {
	// Zones are IP block lists, "zone" or "zone=weight" (listed at a
	// weight sum of 1 or more); Allow are allow lists (weight -1 unless
	// given); Domain are RHSBL zones for HELO names and sender domains.
	Zones  []string `toml:"zones"`
	Allow  []string `toml:"allow"`
	Domain []string `toml:"domain"`
	// Resolvers is dns.resolvers's old name.
	Resolvers []string `toml:"resolvers"`
	// AtRcpt refuses listed clients at RCPT instead of before the banner.
	AtRcpt bool `toml:"at_rcpt"`
	// OnError is what a client gets when a list cannot be asked:
	// "tempfail" (default), "accept" or "reject". FailOpen is its old
	// name's key.
	OnError  postern.ErrorPolicy `toml:"on_error"`
	FailOpen bool                `toml:"fail_open"`
}

// LimitsSection are the rate limits.
type LimitsSection struct {
	// ClientRate is connections per minute per client (sendmail
	// ClientRate); default 0, unlimited.
	ClientRate int `toml:"client_rate"`
	// ClientConn is concurrent connections per client; default 50.
	ClientConn int `toml:"client_conn"`
	// MessageRate and RecipientRate per client, "N/duration" such as
	// "100/1h"; default unlimited.
	MessageRate   Rate `toml:"message_rate"`
	RecipientRate Rate `toml:"recipient_rate"`
	// OutboundMessageRate and OutboundRecipientRate limit the site's own
	// senders: each trusted client address and each authenticated user;
	// default "300/1h" and "1000/1h"; "unlimited" turns one off.
	OutboundMessageRate   Rate `toml:"outbound_message_rate"`
	OutboundRecipientRate Rate `toml:"outbound_recipient_rate"`
	// OutboundExempt are networks whose trusted clients the outbound
	// limits do not count by address (a mail store or list server that
	// carries many users' mail); default loopback, the relay's own host.
	// Users who log in are counted wherever they connect from.
	OutboundExempt []string `toml:"outbound_exempt"`
	// HarvestThreshold unknown recipients from one source start a hold
	// (default 10; -1 turns the guard off) counted over HarvestWindow
	// (default 10m); the hold lasts HarvestHold (default 30m).
	HarvestThreshold int      `toml:"harvest_threshold"`
	HarvestWindow    Duration `toml:"harvest_window"`
	HarvestHold      Duration `toml:"harvest_hold"`
}

// RedisSection shares rate and harvest counters between relays.
type RedisSection struct {
	// Addr is host:port; default none (counters in memory).
	Addr string `toml:"addr"`
	// OnError is what the checks that count in Redis do when it cannot
	// be asked: "accept" (default: skip the check), "tempfail" (451
	// 4.3.0) or "reject". FailClosed is its old name's key.
	OnError    postern.ErrorPolicy `toml:"on_error"`
	FailClosed bool                `toml:"fail_closed"`
}

// AuthSection is sender authentication of inbound mail.
type AuthSection struct {
	// Check is "off" (default), "tag" or "enforce".
	Check string `toml:"check"`
	// AuthservID names us in Authentication-Results; default hostname.
	AuthservID string `toml:"authserv_id"`
}

// DKIMKey is one signing key ([[dkim]] tables).
type DKIMKey struct {
	Domain   string `toml:"domain"`
	Selector string `toml:"selector"`
	Key      string `toml:"key"`
}

// MilterEntry is one external milter ([[milter]] tables), called in the
// order of the tables, as Postfix calls smtpd_milters. The zero value of
// each field but Address is its documented default.
type MilterEntry struct {
	Address        string              `toml:"address"`
	Name           string              `toml:"name"`
	OnError        postern.ErrorPolicy `toml:"on_error"`
	ConnectTimeout Duration            `toml:"connect_timeout"`
	CommandTimeout Duration            `toml:"command_timeout"`
	ContentTimeout Duration            `toml:"content_timeout"`
}

// MilterServerSection serves the relay's port-25 chain to an MTA over
// the milter protocol (Postfix smtpd_milters, sendmail INPUT_MAIL_FILTER).
type MilterServerSection struct {
	// Listen is a milter address (inet:HOST:PORT or unix:PATH); default
	// off.
	Listen string `toml:"listen"`
}

// ScanSection is content scanning.
type ScanSection struct {
	Clamd  []string `toml:"clamd"`
	Spamd  []string `toml:"spamd"`
	Rspamd []string `toml:"rspamd"`
	// SpamTagScore: 0 means the scorer's own verdict. SpamRejectScore: 0
	// never.
	SpamTagScore    float64 `toml:"spam_tag_score"`
	SpamRejectScore float64 `toml:"spam_reject_score"`
	SpamSubject     string  `toml:"spam_subject"`
	// SpamAction at the reject score and VirusAction: "reject" (default),
	// "quarantine" or "discard".
	SpamAction  string `toml:"spam_action"`
	VirusAction string `toml:"virus_action"`
	// VirusOnError and SpamOnError are what happens when no virus
	// scanner (default "tempfail") or no spam scorer (default "accept")
	// answers; the other two are their old names' keys.
	VirusOnError   postern.ErrorPolicy `toml:"virus_on_error"`
	SpamOnError    postern.ErrorPolicy `toml:"spam_on_error"`
	VirusFailOpen  bool                `toml:"virus_fail_open"`
	SpamFailClosed bool                `toml:"spam_fail_closed"`
	BanAttachments bool                `toml:"ban_attachments"`
	// UnopenableArchives, with BanAttachments: what becomes of an archive
	// the check cannot look into (encrypted zip, rar, 7z…): "reject"
	// (default), "quarantine" or "accept".
	UnopenableArchives string `toml:"unopenable_archives"`
	// Policy is the per-recipient spam policy file.
	Policy string `toml:"policy"`
	// MaxMimeDepth and MaxMimeParts bound the MIME tree the walk accepts
	// (deeper or larger is refused); default 32 and 1000.
	MaxMimeDepth int `toml:"max_mime_depth"`
	MaxMimeParts int `toml:"max_mime_parts"`
	// RspamdGreylist and RspamdSoftReject are what rspamd's actions
	// "greylist" and "soft reject" get: "tempfail" (default: 451 with
	// rspamd's message), "greylist" (the relay's greylisting decides) or
	// "accept". RspamdHeaders applies the fields rspamd's milter block
	// adds and removes; default true.
	RspamdGreylist   string `toml:"rspamd_greylist"`
	RspamdSoftReject string `toml:"rspamd_soft_reject"`
	RspamdHeaders    bool   `toml:"rspamd_headers"`
}

// DeliverySection is routing.
type DeliverySection struct {
	// Mailertable in sendmail's format, consulted first; default none.
	Mailertable string `toml:"mailertable"`
	// Local is how local domains the mailertable does not name are
	// delivered, in mailertable syntax; default "local:" (Maildir folders
	// under Maildir).
	Local string `toml:"local"`
	// SmartHost for domains the mailertable does not name; default MX.
	SmartHost string `toml:"smart_host"`
	// FallbackRelays are tried when every host of a destination failed
	// temporarily (sendmail FallbackSmartHost).
	FallbackRelays []string `toml:"fallback_relays"`
	// Maildir root for local: deliveries; default "postern-maildir".
	Maildir string `toml:"maildir"`
	// MaildirCreate makes a mailbox for each new local: recipient;
	// default true. false: only mailboxes that exist take mail, and
	// others are refused at RCPT (550 5.1.1).
	MaildirCreate bool `toml:"maildir_create"`
	// NotifyUnverifiedSenders sends failure notices to senders nothing
	// vouched for (no SPF or DKIM pass); default false: they go to
	// Postmaster, since such senders are often forged (backscatter).
	NotifyUnverifiedSenders bool `toml:"notify_unverified_senders"`
	// Postmaster gets double bounces; default none (dropped, logged).
	Postmaster string `toml:"postmaster"`
	// TLS is the default TLS level of deliveries, by Postfix's names;
	// default "may". TLSPolicyMap gives levels per destination in
	// Postfix's smtp_tls_policy_maps syntax; TLSCAFile the roots that
	// verify, secure and MTA-STS check against (default the system's).
	TLS          string `toml:"tls"`
	TLSPolicyMap string `toml:"tls_policy_map"`
	TLSCAFile    string `toml:"tls_ca_file"`
	// DANE makes the default level "may" opportunistic DANE when
	// dns.dnssec is set; default true. MTASTS honours recipient domains'
	// MTA-STS policies; default true.
	DANE   bool `toml:"dane"`
	MTASTS bool `toml:"mta_sts"`
	// AuthUser and AuthPasswordFile log in to the smart host; AuthInfo is
	// a sendmail authinfo file (AuthInfo: lines, as in the access file);
	// AuthWithoutTLS lets credentials go without TLS.
	AuthUser         string `toml:"auth_user"`
	AuthPasswordFile string `toml:"auth_password_file"`
	AuthInfo         string `toml:"authinfo"`
	AuthWithoutTLS   bool   `toml:"auth_without_tls"`
}

// TLSRPTSection is SMTP TLS Reporting (RFC 8460) of the relay's own
// deliveries.
type TLSRPTSection struct {
	// Enabled sends daily reports to the domains that ask; default off.
	Enabled bool `toml:"enabled"`
	// From is the reporter address (default postmaster@<hostname>);
	// Organization the organization-name (default the host name);
	// Contact the contact-info (default From).
	From         string `toml:"from"`
	Organization string `toml:"organization"`
	Contact      string `toml:"contact"`
}

// QueueSection are the queue's times.
type QueueSection struct {
	// Warn: delay notice age (sendmail Timeout.queuewarn); default "4h";
	// "0s" never. Return: give-up age (Timeout.queuereturn); default "5d".
	Warn   Duration `toml:"warn"`
	Return Duration `toml:"return"`
	// MinBackoff (default "5m") doubles up to MaxBackoff (default
	// "4000s").
	MinBackoff Duration `toml:"min_backoff"`
	MaxBackoff Duration `toml:"max_backoff"`
}

// LogSection is logging.
type LogSection struct {
	// Level: debug, info (default), warn, error. Format: text (default)
	// or json.
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// MetricsSection is the Prometheus and health endpoint.
type MetricsSection struct {
	// Listen is an HTTP address serving /metrics and /healthz; default
	// off.
	Listen string `toml:"listen"`
	// Pprof adds Go's profiles (/debug/pprof/) to the listener.
	Pprof bool `toml:"pprof"`
}

// ControlSection is the admin commands' socket.
type ControlSection struct {
	// Socket; default "<spool>/control.sock".
	Socket string `toml:"socket"`
}

// StatsSection is the relay's statistics records.
type StatsSection struct {
	// Dir; default "<spool>/stats".
	Dir string `toml:"dir"`
	// Retain is how long day files are kept; default "35d".
	Retain Duration `toml:"retain"`
	// DailyTo gets a summary of the last 24 hours each day at DailyAt
	// (default "06:00", local time); default none.
	DailyTo string `toml:"daily_to"`
	DailyAt string `toml:"daily_at"`
}

// WebSection is the quarantine web page.
type WebSection struct {
	// Listen is its HTTPS address; default off. Needs tls and
	// submission.credentials.
	Listen string `toml:"listen"`
	// Admins see all quarantined mail and the charts.
	Admins []string `toml:"admins"`
	// URL is the page's public address for links in mail; default
	// https://<hostname>:<port>.
	URL string `toml:"url"`
	// Digests mails each user with newly quarantined mail a list of it
	// at stats.daily_at.
	Digests bool `toml:"digests"`
}

// LDAPSection is the user directory (auth/directory): recipients, their
// spam policy, and logins with their addresses.
type LDAPSection struct {
	// URLs of the servers, tried in order; none: no directory.
	URLs []string `toml:"urls"`
	// TLS for ldap:// URLs: "auto" (default: StartTLS unless on
	// loopback), "starttls" or "none". CAFile signs the servers'
	// certificates; default the system's roots.
	TLS    string `toml:"tls"`
	CAFile string `toml:"ca_file"`
	// BindDN and BindPasswordFile are the service account; Base the
	// search base.
	BindDN           string `toml:"bind_dn"`
	BindPasswordFile string `toml:"bind_password_file"`
	Base             string `toml:"base"`
	// RecipientFilter and LoginFilter find entries; %s, %u, %d are
	// substituted escaped.
	RecipientFilter string `toml:"recipient_filter"`
	LoginFilter     string `toml:"login_filter"`
	// MailAttributes hold a user's addresses.
	MailAttributes []string `toml:"mail_attributes"`
	// The spam policy attributes (amavisd-new's by default).
	SpamAttribute        string   `toml:"spam_attribute"`
	SpamOffValues        []string `toml:"spam_off_values"`
	TagScoreAttribute    string   `toml:"tag_score_attribute"`
	RejectScoreAttribute string   `toml:"reject_score_attribute"`
	AllowAttribute       string   `toml:"allow_attribute"`
	DenyAttribute        string   `toml:"deny_attribute"`
	MaxListEntries       int      `toml:"max_list_entries"`
	// Domains whose recipients the directory knows; default all local
	// and relay domains.
	Domains []string `toml:"domains"`
	// Timeout bounds one lookup or bind; CacheTTL and NegativeTTL keep
	// answers ("0s": not kept).
	Timeout     Duration `toml:"timeout"`
	CacheTTL    Duration `toml:"cache_ttl"`
	NegativeTTL Duration `toml:"negative_ttl"`
	// Uses are what the directory answers: "recipients", "spam_policy",
	// "auth".
	Uses []string `toml:"uses"`
	// OnError is what a directory that cannot answer gets: "tempfail"
	// (default: 451 4.3.0) or "accept".
	OnError postern.ErrorPolicy `toml:"on_error"`
}

// uses reports whether the directory is configured for use u.
func (l *LDAPSection) uses(u string) bool { return len(l.URLs) > 0 && slices.Contains(l.Uses, u) }

// Duration is a TOML duration: "90s", "4h", or days as "3d". A bare
// number counts seconds, as in Postfix.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseAge(string(b))
	if err != nil {
		if n, nerr := strconv.ParseInt(string(b), 10, 64); nerr == nil && n >= 0 {
			d.Duration = time.Duration(n) * time.Second
			return nil
		}
		return fmt.Errorf("%q is not a duration (like 30s, 4h or 3d)", b)
	}
	if v < 0 {
		return fmt.Errorf("%q: a duration cannot be negative", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a byte count: 10485760, "10MB" or "10MiB" (both 1024-based, as
// mail people mean them), "512k".
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.ToUpper(strings.TrimSpace(string(b)))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(str, u.suffix); ok {
			str, mult = strings.TrimSpace(rest), u.m
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size (like 10MB or 10485760)", b)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText implements encoding.TextMarshaler: the byte count.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// Rate is "N/duration", such as "100/1h", or "unlimited".
type Rate struct{ ratelimit.Rate }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := parseRate(string(b))
	if err != nil {
		return err
	}
	r.Rate = v
	return nil
}

// MarshalText implements encoding.TextMarshaler: "" when unlimited (the
// zero value), else "N/duration".
func (r Rate) MarshalText() ([]byte, error) {
	if r.Unlimited() {
		return nil, nil
	}
	return fmt.Appendf(nil, "%d/%s", r.Count, r.Per), nil
}

// ErrConfig marks configuration errors.
var ErrConfig = errors.New("bad configuration")

// loadConfig reads and checks a configuration file. Errors name the file and line: "relay.toml:12: queue.warn:
// ...".
func loadConfig(path string) (*Config, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cfg, err := parseConfig(doc, path)
	if err != nil {
		return nil, err
	}
	if cfg.Policy.Order != nil {
		cfg.Policy.orderAt = fmt.Sprintf("%s:%d", path, keyLine(doc, "policy.order"))
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

// setKeys lists the dotted keys a document sets (those of arrays of
// tables, [[dkim]], are not listed: they have no defaults).
func setKeys(doc []byte) map[string]bool {
	set := map[string]bool{}
	var p unstable.Parser
	p.Reset(doc)
	var table []string
	inArray := false
	parts := func(n *unstable.Node) (out []string) {
		for it := n.Key(); it.Next(); {
			out = append(out, string(it.Node().Data))
		}
		return out
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			table, inArray = parts(e), false
		case unstable.ArrayTable:
			table, inArray = parts(e), true
		case unstable.KeyValue:
			if !inArray {
				set[strings.Join(append(append([]string(nil), table...), parts(e)...), ".")] = true
			}
		}
	}
	return set
}

// resolvePaths makes the file names of a configuration file relative to
// the file's own directory, so a directory of files can move as a whole.
func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{&c.Spool, &c.TLS.Cert, &c.TLS.Key, &c.Submission.Credentials, &c.Submission.Senders,
		&c.Policy.Access, &c.Policy.Recipients, &c.Scan.Policy, &c.Delivery.Mailertable, &c.Delivery.Maildir,
		&c.Control.Socket, &c.Stats.Dir, &c.Delivery.TLSPolicyMap, &c.Delivery.TLSCAFile, &c.Delivery.AuthPasswordFile,
		&c.Delivery.AuthInfo, &c.LDAP.BindPasswordFile, &c.LDAP.CAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.DKIM {
		if k := &c.DKIM[i].Key; *k != "" && !filepath.IsAbs(*k) {
			*k = filepath.Join(dir, *k)
		}
	}
}

func parseConfig(doc []byte, name string) (*Config, error) {
	cfg := &Config{}
	err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(cfg)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
	case errors.As(err, &strict):
		var msgs []string
		for _, e := range strict.Errors {
			line, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("%s:%d: unknown key %s", name, line, strings.Join(e.Key(), ".")))
		}
		return nil, fmt.Errorf("%w: %s", ErrConfig, strings.Join(msgs, "; "))
	case errors.As(err, &de):
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		// go-toml names the Go struct field; the key is what the user wrote.
		if i := strings.Index(msg, " into struct field"); i >= 0 {
			if j := strings.LastIndex(msg, " of type "); j > i {
				msg = msg[:i] + ": wrong type for this key" + typeHint(msg[j+len(" of type "):])
			}
		}
		if k := de.Key(); len(k) > 0 {
			return nil, fmt.Errorf("%w: %s:%d: %s: %s", ErrConfig, name, line, strings.Join(k, "."), msg)
		}
		return nil, fmt.Errorf("%w: %s:%d: %s", ErrConfig, name, line, msg)
	default:
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	cfg.set = setKeys(doc)
	if err := cfg.validate(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			return nil, fmt.Errorf("%w: %s:%d: %s: %s", ErrConfig, name, keyLine(doc, ke.key), ke.key, ke.msg)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	return cfg, nil
}

// typeHint says what a Go type wants, in TOML words.
func typeHint(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return " (want a list, like [\"a\", \"b\"])"
	case strings.Contains(goType, "int"):
		return " (want a number)"
	case strings.Contains(goType, "float"):
		return " (want a number)"
	case goType == "bool":
		return " (want true or false)"
	case goType == "string":
		return " (want a quoted string)"
	}
	return ""
}

// keyError is a validation error about one key (dotted name).
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return e.key + ": " + e.msg }

func keyErr(key, format string, args ...any) error {
	return &keyError{key: key, msg: fmt.Sprintf(format, args...)}
}

// keyLine finds the line where a dotted key is set; 0 if it is not. A key
// of an array of tables is written "dkim[0]" (its first [[dkim]]).
func keyLine(doc []byte, key string) int {
	base, nth := key, -1
	if i := strings.IndexByte(key, '['); i > 0 {
		base = key[:i]
		nth, _ = strconv.Atoi(strings.TrimSuffix(key[i+1:], "]"))
	}
	var p unstable.Parser
	p.Reset(doc)
	var table []string
	seen := 0
	parts := func(n *unstable.Node) (out []string, line int) {
		it := n.Key()
		for it.Next() {
			if line == 0 {
				line = p.Shape(p.Range(it.Node().Data)).Start.Line
			}
			out = append(out, string(it.Node().Data))
		}
		return out, line
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			var line int
			table, line = parts(e)
			if strings.Join(table, ".") == base {
				if e.Kind == unstable.Table || seen == nth {
					return line
				}
				seen++
			}
		case unstable.KeyValue:
			k, line := parts(e)
			if strings.Join(append(append([]string(nil), table...), k...), ".") == key {
				return line
			}
		}
	}
	return 0
}

// validate checks what the types alone cannot. Files are checked when the
// relay is built (check-config builds it without listening).
func (c *Config) validate() error {
	for _, check := range []func() error{c.validateNetworks, c.validateSMTP, c.validateSubmission,
		c.validateLimits, c.validateChoices, c.validateMail, c.validateOutbound, c.validateFront, c.validateLDAP} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateNetworks checks domains and networks.
func (c *Config) validateNetworks() error {
	for i, d := range c.LocalDomains {
		if !validDomain(d) {
			return keyErr("local_domains", "%q (item %d) is not a domain name", d, i+1)
		}
	}
	for i, d := range c.RelayDomains {
		if !validDomain(d) {
			return keyErr("relay_domains", "%q (item %d) is not a domain name", d, i+1)
		}
	}
	if _, err := parsePrefixes(strings.Join(c.TrustedNetworks, ",")); err != nil {
		return keyErr("trusted_networks", "%v", err)
	}
	return nil
}

// validateSMTP checks the listeners and the SMTP server's keys.
func (c *Config) validateSMTP() error {
	if d := c.SMTP.ReverseDNSTimeout.Duration; d > maxReverseDNSTimeout {
		return keyErr("smtp.reverse_dns_timeout", "%s is longer than the connect stage may last (%s)", d, maxReverseDNSTimeout)
	}
	if _, err := hostChecks(c.Policy.HELOChecks, c.Policy.ClientChecks); err != nil {
		return err
	}
	if len(c.Policy.ClientChecks) > 0 && !c.SMTP.ReverseDNS {
		return keyErr("policy.client_checks", "needs smtp.reverse_dns")
	}
	if c.SMTP.MaxHops < 0 {
		return keyErr("smtp.max_hops", "%d: a relay needs a hop limit (0 for the default, 50)", c.SMTP.MaxHops)
	}
	for _, l := range []struct{ key, addr string }{{"smtp.listen", c.SMTP.Listen},
		{"submission.listen", c.Submission.Listen}, {"submission.listen_tls", c.Submission.ListenTLS},
		{"metrics.listen", c.Metrics.Listen}, {"web.listen", c.Web.Listen}} {
		if l.addr == "" {
			continue
		}
		if _, _, err := netSplit(l.addr); err != nil {
			return keyErr(l.key, "%q is not host:port", l.addr)
		}
	}
	if _, err := smtpserver.ParseBareNewline(c.SMTP.BareNewline); err != nil {
		return keyErr("smtp.bare_newline", "%q is not normalize or reject", c.SMTP.BareNewline)
	}
	return nil
}

// validateSubmission checks what submission and the web page need.
func (c *Config) validateSubmission() error {
	ldapAuth := c.LDAP.uses("auth")
	if (c.Submission.Listen != "" || c.Submission.ListenTLS != "") && c.Submission.Credentials == "" && !ldapAuth {
		return keyErr("submission.credentials", "the submission listeners need a credentials file (or ldap.uses = [\"auth\"])")
	}
	if (c.Submission.Listen != "" || c.Submission.ListenTLS != "" || c.Web.Listen != "") && (c.TLS.Cert == "" || c.TLS.Key == "") {
		key := "submission.listen"
		if c.Web.Listen != "" {
			key = "web.listen"
		}
		return keyErr(key, "needs tls.cert and tls.key")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return keyErr("tls.cert", "tls.cert and tls.key go together")
	}
	if c.Web.Listen != "" && c.Submission.Credentials == "" && !ldapAuth {
		return keyErr("web.listen", "needs submission.credentials (users log in with their submission passwords)")
	}
	return nil
}

// validateLDAP checks the directory's keys; the directory package checks
// the rest (filters, URLs, files) when it is built.
func (c *Config) validateLDAP() error {
	l := &c.LDAP
	for _, u := range l.Uses {
		if u != "recipients" && u != "spam_policy" && u != "auth" {
			return keyErr("ldap.uses", "%q is not recipients, spam_policy or auth", u)
		}
	}
	switch {
	case len(l.URLs) == 0 && len(l.Uses) > 0:
		return keyErr("ldap.uses", "needs ldap.urls")
	case len(l.URLs) > 0 && l.Base == "":
		return keyErr("ldap.base", "ldap.urls needs a search base")
	case l.OnError == postern.OnErrorReject:
		return keyErr("ldap.on_error", "is tempfail or accept: a directory that cannot answer never makes mail bounce")
	}
	var m directory.TLSMode
	if err := m.UnmarshalText([]byte(l.TLS)); err != nil {
		return keyErr("ldap.tls", "%q is not auto, starttls or none", l.TLS)
	}
	for i, d := range l.Domains {
		if !validDomain(strings.TrimPrefix(d, ".")) {
			return keyErr("ldap.domains", "%q (item %d) is not a domain name", d, i+1)
		}
	}
	return nil
}

// validateLimits checks counts and limits.
func (c *Config) validateLimits() error {
	if c.Limits.ClientRate < 0 {
		return keyErr("limits.client_rate", "cannot be negative")
	}
	if c.Limits.ClientConn < 0 {
		return keyErr("limits.client_conn", "cannot be negative")
	}
	if c.Limits.HarvestThreshold < -1 {
		return keyErr("limits.harvest_threshold", "is -1 (off), 0 (default 10) or a count")
	}
	if _, err := parsePrefixes(strings.Join(c.Limits.OutboundExempt, ",")); err != nil {
		return keyErr("limits.outbound_exempt", "%v", err)
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"smtp.max_recipients", c.SMTP.MaxRecipients}, {"scan.max_mime_depth", c.Scan.MaxMimeDepth},
		{"scan.max_mime_parts", c.Scan.MaxMimeParts}} {
		if n.v < 0 {
			return keyErr(n.key, "cannot be negative")
		}
	}
	if c.Policy.Order != nil {
		if err := checkOrder(c.Policy.Order); err != nil {
			return keyErr("policy.order", "%v", err)
		}
	}
	return nil
}

// validateChoices checks the keys that take one of a few words.
func (c *Config) validateChoices() error {
	switch c.Auth.Check {
	case "", "off", "tag", "enforce":
	default:
		return keyErr("auth.check", "%q is not off, tag or enforce", c.Auth.Check)
	}
	for i, k := range c.DKIM {
		key := fmt.Sprintf("dkim[%d]", i)
		if k.Domain == "" || k.Selector == "" || k.Key == "" {
			return keyErr(key, "each [[dkim]] needs domain, selector and key")
		}
	}
	if a := c.MilterServer.Listen; a != "" {
		if _, _, err := milter.ParseAddress(a); err != nil {
			return keyErr("milter_server.listen", "%v", err)
		}
	}
	for i, m := range c.Milters {
		key := fmt.Sprintf("milter[%d]", i)
		if m.Address == "" {
			return keyErr(key, "each [[milter]] needs an address (inet:HOST:PORT or unix:PATH)")
		}
		if _, _, err := milter.ParseAddress(m.Address); err != nil {
			return keyErr(key, "%v", err)
		}
	}
	for _, a := range []struct{ key, v string }{{"scan.spam_action", c.Scan.SpamAction}, {"scan.virus_action", c.Scan.VirusAction}} {
		switch a.v {
		case "", "reject", "quarantine", "discard":
		default:
			return keyErr(a.key, "%q is not reject, quarantine or discard", a.v)
		}
	}
	switch c.Scan.UnopenableArchives {
	case "", "reject", "quarantine", "accept":
	default:
		return keyErr("scan.unopenable_archives", "%q is not reject, quarantine or accept", c.Scan.UnopenableArchives)
	}
	if c.Scan.SpamTagScore < 0 || c.Scan.SpamRejectScore < 0 {
		return keyErr("scan.spam_tag_score", "scores cannot be negative")
	}
	if c.Queue.Return.Duration < 0 || (c.Queue.MaxBackoff.Duration > 0 && c.Queue.MinBackoff.Duration > c.Queue.MaxBackoff.Duration) {
		return keyErr("queue.min_backoff", "is longer than queue.max_backoff")
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return keyErr("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		return keyErr("log.format", "%q is not text or json", c.Log.Format)
	}
	switch c.SMTP.QuotedLocalParts {
	case "", "accept", "refuse":
	default:
		return keyErr("smtp.quoted_local_parts", "%q is not accept or refuse", c.SMTP.QuotedLocalParts)
	}
	return nil
}

// validateMail checks addresses and times of the relay's own mail.
func (c *Config) validateMail() error {
	for _, a := range []struct{ key, v string }{{"delivery.postmaster", c.Delivery.Postmaster}, {"stats.daily_to", c.Stats.DailyTo}} {
		if _, err := envelopeAddr(a.v); a.v != "" && err != nil {
			return keyErr(a.key, "%v", err)
		}
	}
	if c.Stats.DailyAt != "" {
		if _, err := time.Parse("15:04", c.Stats.DailyAt); err != nil {
			return keyErr("stats.daily_at", "%q is not a time of day like 06:00", c.Stats.DailyAt)
		}
	}
	return nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, r := range d {
		if !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127) {
			return false
		}
	}
	return true
}

// netSplit checks a host:port listen address.
func netSplit(addr string) (string, int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err == nil {
		return ap.Addr().String(), int(ap.Port()), nil
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, errors.New("no port")
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errors.New("bad port")
	}
	return addr[:i], port, nil
}

// configKeys lists every dotted key of Config, for the reference page's
// test.
func configKeys() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("toml")
			if name == "" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				walk(ft.Elem(), prefix+name+".")
				continue
			}
			if ft.Kind() == reflect.Struct && strings.HasSuffix(ft.Name(), "Section") {
				walk(ft, prefix+name+".")
				continue
			}
			out = append(out, prefix+name)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}
