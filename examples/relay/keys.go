package main

import (
	"encoding"
	"flag"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/postern/postern"
)

// setting declares one key of the configuration: everything about it but
// its value, which is the Config field it points at. The dotted key and
// the type come from that field; the flag, the defaults shown by
// "serve -h", the tables of docs/configuration.md and the keys a reload
// cannot change all come from this one list.
type setting struct {
	// field returns a pointer to the key's Config field.
	field func(c *Config) any
	// key is the dotted key; set here only for keys without a field of
	// their own (the [[dkim]] table's keys), else found from field.
	key string
	// flag is the command-line flag, "" for none.
	flag string
	// def is the default as a TOML value ("\"5s\"", "50", "true"), ""
	// when the zero value is the default or code derives it (resolve).
	def string
	// defDoc is the default as the reference shows it when def does not
	// say it ("the system's host name").
	defDoc string
	// restart: a reload keeps the running value (and says so).
	restart bool
	// doc is the reference's line in Markdown; its first sentence is the
	// flag's usage.
	doc string
	// renamed names the key that replaces this one: the old key (and its
	// flag) still works, with a warning, for one release; convert moves
	// its value to the new key when the types differ (default: copied).
	renamed string
	convert func(c *Config)
}

// settings are the relay's keys, in the order of the reference.
var settings = []setting{
	{field: func(c *Config) any { return &c.Hostname }, flag: "hostname", defDoc: "the system's host name", restart: true, doc: "Name in the banner, Received fields and DSNs (`Reporting-MTA`)."},
	{field: func(c *Config) any { return &c.LocalDomains }, flag: "domains", defDoc: "`[\"example.test\"]`", doc: "Domains whose mail the relay accepts for the mail store (sendmail `To:domain RELAY`, Postfix `relay_domains`). Without a mailertable they are delivered to Maildir folders under `delivery.maildir`."},
	{field: func(c *Config) any { return &c.RelayDomains }, flag: "relay-domains", doc: "Further domains accepted and routed on by the mailertable (for example a subsidiary's)."},
	{field: func(c *Config) any { return &c.TrustedNetworks }, flag: "trusted", def: "[\"127.0.0.0/8\", \"::1\"]", doc: "Clients that may relay anywhere (Postfix `mynetworks`). What they skip is listed below. Mail from them is DKIM-signed when keys are set."},
	{field: func(c *Config) any { return &c.Spool }, flag: "spool", def: "\"postern-spool\"", restart: true, doc: "The queue directory. Also holds `control.sock` and `stats/` by default."},
	{field: func(c *Config) any { return &c.MaxMessageSize }, flag: "max-size", def: "\"10MB\"", restart: true, doc: "Largest message accepted (`SIZE`); larger gets `552 5.3.4`."},
	{field: func(c *Config) any { return &c.SMTP.Listen }, flag: "listen", def: "\"127.0.0.1:2525\"", restart: true, doc: "Address of the MX listener; a production relay says `\":25\"`."},
	{field: func(c *Config) any { return &c.SMTP.GreetPause }, flag: "greet-pause", def: "\"5s\"", doc: "Pause before the banner for untrusted clients; a client that talks first gets `554 5.5.1` (sendmail `greet_pause`). `\"0s\"` turns it off. Access-file `GreetPause:` entries win."},
	{field: func(c *Config) any { return &c.SMTP.GreetPauseLogOnly }, flag: "greet-pause-log-only", restart: true, doc: "Log early talkers instead of refusing them, to roll the pause out."},
	{field: func(c *Config) any { return &c.SMTP.MaxHops }, flag: "max-hops", def: "50", restart: true, doc: "Most `Received` and `Delivered-To` fields a message may carry, the relay's own included (Postfix `hopcount_limit`; sendmail's `MaxHopCount` is 25). Mail that arrives with that many has been round a loop: `554 5.4.6 Too many hops` at the end of DATA."},
	{field: func(c *Config) any { return &c.SMTP.QuotedLocalParts }, flag: "quoted-local-parts", def: "\"accept\"", restart: true, doc: "Addresses whose local part must be quoted (`\"a b\"@example.test`, `\"ceo(x)\"@example.test`), on every listener: `\"accept\"` takes them and delivers them quoted, as the same mailbox; `\"refuse\"` answers `553 5.1.3` (`5.1.7` for a sender) \"quoted local parts are not accepted here\", for a mail store that cannot take them. See below."},
	{field: func(c *Config) any { return &c.SMTP.BareNewline }, flag: "bare-newline", def: "\"normalize\"", restart: true, doc: "A bare CR or bare LF (one not part of CRLF) in a message, DATA or BDAT: `\"normalize\"` makes it CRLF (Postfix 3.9's default for `smtpd_forbid_bare_newline`); `\"reject\"` reads the message to its end and answers `550 5.5.2 Error: bare <LF> received` (or `<CR>`), and answers a command line ending in a bare LF the same way; the session goes on. Either way only CRLF `.` CRLF ends DATA and the queue holds CRLF line ends only (SMTP smuggling). Applies to the submission ports too."},
	{field: func(c *Config) any { return &c.SMTP.MaxRecipients }, flag: "max-recipients", def: "1000", restart: true, doc: "Recipients per message, on every listener (Postfix `smtpd_recipient_limit`); the client is told the limit (`LIMITS RCPTMAX=`, RFC 9422) and further recipients get `452 4.5.3 Maximum limit of 1000 recipients reached`, which a client sends again in another transaction."},
	{field: func(c *Config) any { return &c.SMTP.MaxConnections }, flag: "max-connections", defDoc: "`0` (from `RLIMIT_NOFILE`)", restart: true, doc: "Connections open at once over the SMTP and submission listeners, whoever the client (`limits.client_conn` is per client); more are answered `421 4.7.0 <host> Error: too many connections, try again later` before anything is read. `0` takes `(RLIMIT_NOFILE - 100) / 2`, so connections run out before file descriptors (systemd `LimitNOFILE=` sets the limit; the value in force is logged at start as `max_connections`); negative means no limit. Should descriptors run out all the same, waiting clients get `421 4.3.2` from a descriptor kept in reserve and the relay goes on accepting."},
	{field: func(c *Config) any { return &c.SMTP.ReverseDNS }, flag: "reverse-dns", def: "true", doc: "Look up client host names as above. `false`: no lookup, host-name entries never match, Received says `([ip])`."},
	{field: func(c *Config) any { return &c.SMTP.ReverseDNSTimeout }, flag: "reverse-dns-timeout", def: "\"10s\"", doc: "Bound on one lookup (PTR and the forward queries); running out of time is `TEMP`. At most `\"30s\"`, the connect stage's own bound."},
	{field: func(c *Config) any { return &c.SMTP.PassCache }, flag: "pass-cache", def: "true", doc: "Remember clients that waited out the greet pause in silence and passed the DNS lists at connect (by address, IPv6 by /64), so their next connections get the banner at once: postscreen's temporary allowlist. Early talkers and listed clients are remembered as failed. Kept in memory, or in Redis with `redis.addr`, so a client that passed at one relay is let in at once by the others. An access-file `GreetPause:` entry naming the client (its address or network) wins; the default entry (`GreetPause: 5000`) is only the pause the cache cuts short."},
	{field: func(c *Config) any { return &c.SMTP.PassCacheTTL }, def: "\"1d\"", doc: "How long a wait through the greet pause counts (Postfix `postscreen_greet_ttl`)."},
	{field: func(c *Config) any { return &c.SMTP.PassCacheDNSBLTTL }, def: "\"1h\"", doc: "How long a pass of the DNS lists counts (with `dnsbl.zones` or `dnsbl.allow`); each connection's clean lookup renews it."},
	{field: func(c *Config) any { return &c.SMTP.PassCacheFailTTL }, def: "\"10m\"", doc: "How long a failure is remembered: the client's passes are forgotten and none is recorded meanwhile."},
	{field: func(c *Config) any { return &c.SMTP.ProtocolTests }, flag: "protocol-tests", doc: "postscreen's deep protocol tests, run on clients that are not trusted and have not passed them within `protocol_tests_ttl`: `\"pipelining\"` (a command sent together with HELO or EHLO, before the reply), `\"non_smtp\"` (an HTTP or proxy request, a header line, a TLS handshake on the plain port), `\"bare_newline\"` (a command ending in a bare LF). A client that fails one gets `421 4.7.0 <host> Error: <what>, try again later`, is disconnected and remembered as failed; one that reaches MAIL FROM has passed."},
	{field: func(c *Config) any { return &c.SMTP.ProtocolTestsTTL }, def: "\"30d\"", doc: "How long a pass of the deep protocol tests counts (postscreen's 30 days)."},
	{field: func(c *Config) any { return &c.SMTP.ProxyBalancers }, flag: "proxy-balancers", doc: "Load balancers (addresses or networks) in front of the MX listener that send a PROXY protocol header, version 1 or 2 (HAProxy `send-proxy`, `send-proxy-v2`): the client's address it names is the one every check, limit, log line and Received field uses. Connections from them must send one; a connection from any other address that sends one is closed."},
	{field: func(c *Config) any { return &c.SMTP.ProxyTimeout }, def: "\"5s\"", restart: true, doc: "How long a balancer has to send its header (Postfix `smtpd_upstream_proxy_timeout`)."},
	{field: func(c *Config) any { return &c.Submission.Listen }, flag: "submission", defDoc: "off", restart: true, doc: "Port 587: STARTTLS, then AUTH, required before MAIL (RFC 6409). Needs `tls` and the two files below."},
	{field: func(c *Config) any { return &c.Submission.ListenTLS }, flag: "submissions", defDoc: "off", restart: true, doc: "Port 465: implicit TLS (RFC 8314), then AUTH."},
	{field: func(c *Config) any { return &c.Submission.Credentials }, flag: "credentials", doc: "`user:hash` lines, bcrypt (`$2y$…`) or argon2id (`$argon2id$…`). Also the logins of the quarantine page. Failed logins (SMTP AUTH and the page alike) are counted per client network (one IPv4 address, one IPv6 /64) and per account: 5 from one network or 10 for one account within 10 minutes lock that key for 10 minutes, answered `454 4.7.0` on SMTP and `429` (with `Retry-After`) on the page, even for the right password, for unknown accounts as for known ones. With `redis.addr` the counts and locks are shared by the relays."},
	{field: func(c *Config) any { return &c.Submission.Senders }, flag: "senders", doc: "Which MAIL FROM addresses each user may use, one line per user: `alice@example.test: alice@example.test, sales@example.test, @lists.example.test` (the user, a colon, then addresses, `@domain` for a whole domain or `*` for any, separated by commas or spaces; `#` starts a comment line). Without it a user may send as their login name only. Also decides whose quarantined mail a user sees."},
	{field: func(c *Config) any { return &c.Submission.BindFrom }, flag: "bind-from", def: "true", doc: "Bind the message's `From` field (every mailbox in it, groups included; exactly one `From` field) and its `Sender` field to the same addresses as MAIL FROM: otherwise `553 5.7.1 From header rejected: <addr> not owned by user` at the end of DATA. A header that cannot be parsed is refused too. With `false` only MAIL FROM is bound; DKIM still never signs a user's mail whose `From` is not theirs (it goes unsigned, logged `dkim: not signed`)."},
	{field: func(c *Config) any { return &c.TLS.Cert }, flag: "tls-cert", doc: "PEM certificate chain for STARTTLS on port 25, the submission ports and the quarantine page. Reloads pick up a renewed file."},
	{field: func(c *Config) any { return &c.TLS.Key }, flag: "tls-key", doc: "Its PEM private key."},
	{field: func(c *Config) any { return &c.Policy.Access }, flag: "access", doc: "The sendmail access file, as written for `makemap` (plain text): `Connect:`, `From:`, `To:`, `GreetPause:`, `ClientRate:`, `ClientConn:` entries with `OK`, `RELAY`, `REJECT`, `DISCARD`, `ERROR:` actions, looked up in sendmail's order."},
	{field: func(c *Config) any { return &c.Policy.Recipients }, flag: "recipients", doc: "Valid addresses of the local domains, one per line (`@domain` for a catch-all); others get `550 5.1.1` at RCPT."},
	{field: func(c *Config) any { return &c.Policy.CallAhead }, flag: "callahead", doc: "Ask the next hop (an RCPT probe) about local recipients the recipients file does not cover; answers are cached."},
	{field: func(c *Config) any { return &c.Policy.RelaySubdomains }, flag: "relay-subdomains", doc: "Let `To:example.com RELAY` relay the subdomains of example.com too, as sendmail does by default. Off, it relays example.com alone (sendmail's `FEATURE(relay_hosts_only)`); `To:.example.com RELAY` names the subdomains deliberately."},
	{field: func(c *Config) any { return &c.Policy.HELOChecks }, flag: "helo-checks", doc: "Refuse HELO/EHLO names, at HELO, with `550 5.7.1` (trusted clients are not checked): `\"resolves\"` — the name has no A, AAAA or MX record, or is not a host name (Postfix `reject_unknown_helo_hostname`; `450 4.7.1` when DNS fails for now); `\"not_us\"` — the name is this relay's `hostname`, one of `local_domains`, `localhost` from an outside client, or the relay's address the client connected to, as a literal or bare (spam software greets with the name of the server it connects to); `\"literal\"` — an address literal (or a bare address) that is not the client's own. RFC 5321 §4.1.4 says a server MUST NOT refuse mail only because the HELO name does not match the client, which is why none is on by default."},
	{field: func(c *Config) any { return &c.Policy.ClientChecks }, flag: "client-checks", doc: "Refuse clients by reverse DNS, before the banner (trusted clients and clients with `Connect:` `OK` or `RELAY` are not checked): `\"ptr\"` — no PTR record (sendmail `FEATURE(require_rdns)`, Postfix `reject_unknown_reverse_client_hostname`): `554 5.7.25`; `\"name\"` — no verified name, i.e. no PTR or a PTR that does not resolve back (Postfix `reject_unknown_client_hostname`): `554 5.7.25`. With either, a temporary DNS failure is `421 4.7.25` (try again later). Needs `smtp.reverse_dns`."},
	{field: func(c *Config) any { return &c.Policy.Order }, flag: "policy-order", def: "[\"trust\", \"access\", \"relay\", \"host-checks\", \"dnsbl\", \"ratelimit\", \"outbound-ratelimit\", \"harvest-guard\", \"verify\", \"greylist\", \"spf\", \"auth-verify\", \"scan\", \"milter\", \"dkim-sign\"]", doc: "The order the filters run in, by name (below): at each stage of the dialogue the first filter that decides answers. `relay check` prints the order in force."},
	{field: func(c *Config) any { return &c.DNS.Resolvers }, flag: "dns-resolver", defDoc: "the system's (`/etc/resolv.conf`)", doc: "DNS servers (`host:port`, or an address for port 53), asked in turn, for every DNS lookup of the relay: the lists, SPF, DKIM, DMARC, client host names (iprev), host checks and MX lookups. One resolver and one cache serve them all: answers are kept for their TTL, at least a minute and at most an hour; \"no such name\" for the SOA minimum, at most 10 minutes; failures not at all. Each query waits 2 s per server, two rounds. Use a local recursive resolver (the lists refuse public ones)."},
	{field: func(c *Config) any { return &c.DNS.DNSSEC }, flag: "dnssec", doc: "The resolvers validate DNSSEC and are on this host or a network the site trusts (Unbound, BIND, Knot Resolver on localhost): their AD bit is believed, which DANE needs. Never set it for a resolver across an untrusted network."},
	{field: func(c *Config) any { return &c.DNSBL.Zones }, flag: "dnsbl", doc: "IP block lists, `\"zone\"` or `\"zone=weight\"`; a client is listed when the weights of its hits add up to 1 or more. Refused before the banner with `554 5.7.1` and the list's TXT text (at RCPT with `550 5.7.1` when `dnsbl.at_rcpt`)."},
	{field: func(c *Config) any { return &c.DNSBL.Allow }, flag: "dnswl", doc: "IP allow lists; weight -1 unless given."},
	{field: func(c *Config) any { return &c.DNSBL.Domain }, flag: "rhsbl", doc: "Domain block lists (RHSBL) for the HELO name and the sender's domain."},
	{field: func(c *Config) any { return &c.DNSBL.Resolvers }, renamed: "dns.resolvers"},
	{field: func(c *Config) any { return &c.DNSBL.AtRcpt }, flag: "dnsbl-at-rcpt", doc: "Refuse listed clients at RCPT instead, so the log names sender and recipients."},
	{field: func(c *Config) any { return &c.DNSBL.OnError }, flag: "dnsbl-on-error", def: `"tempfail"`, doc: "What a client gets when a list cannot be asked: `\"tempfail\"` — it retries later (as sendmail's dnsbl FEATURE does with its `t` argument): `421 4.7.1` before the banner, the only answer there that closes a connection cleanly, or `451 4.7.1` at RCPT with `dnsbl.at_rcpt`; `\"accept\"` — the lists that failed are skipped, logged; `\"reject\"` — `554`/`550 5.7.1`."},
	{field: func(c *Config) any { return &c.DNSBL.FailOpen }, flag: "dnsbl-fail-open", renamed: "dnsbl.on_error",
		convert: func(c *Config) {
			c.DNSBL.OnError = failPolicy(c.DNSBL.FailOpen, postern.OnErrorAccept, postern.OnErrorTempFail)
		}},
	{field: func(c *Config) any { return &c.Limits.ClientRate }, flag: "client-rate", defDoc: "`0` (unlimited)", doc: "Connections per minute per client address (sendmail `ClientRate`), refused `421 4.7.0` before the banner. Access `ClientRate:` entries win. For trusted clients only an entry naming their address or network applies (`ClientRate:10.1.2.3 5`, as in sendmail); this key and the default entry (`ClientRate: 10`) do not."},
	{field: func(c *Config) any { return &c.Limits.ClientConn }, flag: "client-conn", def: "50", doc: "Concurrent connections per client (sendmail `ClientConn`, Postfix's 50); `0` unlimited. Access `ClientConn:` entries win, and apply to trusted clients as `client_rate`'s do."},
	{field: func(c *Config) any { return &c.Limits.MessageRate }, flag: "message-rate", defDoc: "unlimited", doc: "Messages per client address, for clients that are not trusted (Postfix `smtpd_client_message_rate_limit`). Over it: `450 4.7.1 Error: too much mail from <ip>`."},
	{field: func(c *Config) any { return &c.Limits.RecipientRate }, flag: "recipient-rate", defDoc: "unlimited", doc: "Recipients per client address, likewise: `450 4.7.1 Error: too many recipients from <ip>`."},
	{field: func(c *Config) any { return &c.Limits.OutboundMessageRate }, flag: "outbound-message-rate", def: "\"300/1h\"", doc: "Messages from the site's own senders: per trusted client address (trusted networks and `Connect:` `RELAY` hosts, `outbound_exempt` aside) and per user logged in on the submission ports, wherever the user connects from. Over it: `450 4.7.1 Error: too much mail from <ip>`, logged with the user or the address (`reason=\"outbound-ratelimit: message rate 300/1h0m0s exceeded (user:alice@example.test); …\"`) and counted in `postern_rate_limited_total` and in the daily mail's rejections. No person sends that much; a worm on a campus PC (one site's sent 3,898 messages in 25 minutes) gets 300 out and then one every 12 seconds. `\"unlimited\"` turns it off."},
	{field: func(c *Config) any { return &c.Limits.OutboundRecipientRate }, flag: "outbound-recipient-rate", def: "\"1000/1h\"", doc: "Recipients from the site's own senders, counted the same way: `450 4.7.1 Error: too many recipients from <ip>`."},
	{field: func(c *Config) any { return &c.Limits.OutboundExempt }, flag: "outbound-exempt", def: "[\"127.0.0.0/8\", \"::1\"]", doc: "Networks whose trusted clients the outbound limits do not count by address: the relay's own host by default, and the place for a host that carries many people's mail (a mail store that sends the site's outgoing mail through the relay, a list server). Users who log in are counted as users wherever they connect from. `[]` counts every trusted client."},
	{field: func(c *Config) any { return &c.Limits.HarvestThreshold }, flag: "harvest-threshold", def: "10", doc: "Unknown recipients from one client within the window that start a hold (`451 4.7.1` to everything it sends); `-1` turns the guard off."},
	{field: func(c *Config) any { return &c.Limits.HarvestWindow }, flag: "harvest-window", def: "\"10m\"", doc: "Window for counting unknown recipients."},
	{field: func(c *Config) any { return &c.Limits.HarvestHold }, flag: "harvest-hold", def: "\"30m\"", doc: "How long a harvesting client is held."},
	{field: func(c *Config) any { return &c.Greylist.Enabled }, flag: "greylist", doc: "Greylist by triplet (client network /24 or /64, sender, recipient): the first attempt gets `451 4.7.1 Greylisted, please try again in 300 seconds`, a retry after `min_delay` within `retry_window` passes and the triplet is remembered. Trusted and authenticated clients, clients on a DNS allow list (`dnsbl.allow`) and the exemptions below are never greylisted. With `redis.addr` relays share the triplets. Needs `greylist` in `policy.order` (it is in the default)."},
	{field: func(c *Config) any { return &c.Greylist.At }, flag: "greylist-at", def: "\"rcpt\"", doc: "`\"rcpt\"`: each recipient is answered on its own; `\"data\"`: the message is answered at the end of DATA, once for all its recipients."},
	{field: func(c *Config) any { return &c.Greylist.MinDelay }, flag: "greylist-delay", def: "\"5m\"", doc: "How long after the first attempt a retry passes."},
	{field: func(c *Config) any { return &c.Greylist.RetryWindow }, def: "\"2d\"", doc: "How long after the first attempt a retry counts; later, the triplet starts again (postgrey's 2 days)."},
	{field: func(c *Config) any { return &c.Greylist.PassTTL }, def: "\"36d\"", doc: "How long a triplet that passed (and an allowlisted client) is remembered after it was last seen (postgrey's 35 days and one)."},
	{field: func(c *Config) any { return &c.Greylist.AutoAllow }, def: "5", doc: "After this many triplets of a client network passed, it is let through for any sender and recipient; `0` never."},
	{field: func(c *Config) any { return &c.Greylist.ExemptSPFDomains }, doc: "Sender domains (and their subdomains) not greylisted when SPF passed for them, such as a bank's or a partner's that retry from many addresses. Needs `auth.check` `tag` or `enforce`."},
	{field: func(c *Config) any { return &c.Greylist.ExemptPassCache }, doc: "Do not greylist clients the pass cache knows (they passed the greet pause and the DNS lists recently)."},
	{field: func(c *Config) any { return &c.Redis.Addr }, flag: "redis", defDoc: "none (in memory)", restart: true, doc: "`host:port` of a Redis server holding the rate (inbound and outbound) and harvest counters, the failed-login counts and locks, the pass cache and the greylisted triplets, so two relays behind one MX name count and remember together. See [two-relays.md](two-relays.md)."},
	{field: func(c *Config) any { return &c.Redis.OnError }, flag: "redis-on-error", def: `"accept"`, doc: "What the checks that count in Redis (rates, the harvest guard, login limits, greylisting) do when it cannot be asked: `\"accept\"` — the check is skipped, logged and counted; `\"tempfail\"` — `451 4.3.0` (`454 4.3.0` to AUTH); `\"reject\"` — `550 5.3.0`."},
	{field: func(c *Config) any { return &c.Redis.FailClosed }, flag: "redis-fail-closed", renamed: "redis.on_error",
		convert: func(c *Config) {
			c.Redis.OnError = failPolicy(c.Redis.FailClosed, postern.OnErrorTempFail, postern.OnErrorAccept)
		}},
	{field: func(c *Config) any { return &c.Auth.Check }, flag: "auth-check", def: "\"off\"", doc: "`off`: nothing is checked and no Authentication-Results field is added (forged ones naming us are still removed); `tag`: SPF, DKIM and DMARC results in one Authentication-Results field; `enforce`: also refuse SPF `fail` (`550 5.7.23`) and honour DMARC `p=reject` (`550 5.7.1`) and `p=quarantine`."},
	{field: func(c *Config) any { return &c.Auth.AuthservID }, flag: "authserv-id", defDoc: "the host name", doc: "Our name in Authentication-Results; fields claiming it that arrive with the mail are removed, however they spell it (compared as a domain name: case, a trailing dot, quoted, escaped, with comments or a version)."},
	{field: func(c *Config) any { return &c.Scan.Clamd }, flag: "clamd", doc: "clamd addresses (`host:port` or a socket path), tried in order."},
	{field: func(c *Config) any { return &c.Scan.Spamd }, flag: "spamd", doc: "SpamAssassin spamd addresses."},
	{field: func(c *Config) any { return &c.Scan.Rspamd }, flag: "rspamd", doc: "rspamd normal-worker addresses (asked before spamd when both are set)."},
	{field: func(c *Config) any { return &c.Scan.SpamTagScore }, flag: "spam-tag-score", defDoc: "`0` (scorer's verdict)", doc: "Score at which mail is tagged `X-Spam-Flag: YES`."},
	{field: func(c *Config) any { return &c.Scan.SpamRejectScore }, flag: "spam-reject-score", defDoc: "`0` (never)", doc: "Score at which `spam_action` applies."},
	{field: func(c *Config) any { return &c.Scan.SpamSubject }, flag: "spam-subject", doc: "Prefix put before the Subject of tagged mail, such as `\"[SPAM]\"`."},
	{field: func(c *Config) any { return &c.Scan.SpamAction }, flag: "spam-action", def: "\"reject\"", doc: "At the reject score: `reject` (`550 5.7.1`), `quarantine` (held for review on the quarantine page) or `discard`."},
	{field: func(c *Config) any { return &c.Scan.VirusAction }, flag: "virus-action", def: "\"reject\"", doc: "For a virus: `reject` (`554 5.7.0`), `quarantine` or `discard`."},
	{field: func(c *Config) any { return &c.Scan.VirusOnError }, flag: "virus-on-error", def: `"tempfail"`, doc: "What happens when no virus scanner answers: `\"tempfail\"` — `451 4.7.1` and the client retries; `\"accept\"` — delivered unscanned, logged; `\"reject\"` — `554 5.7.1`."},
	{field: func(c *Config) any { return &c.Scan.SpamOnError }, flag: "spam-on-error", def: `"accept"`, doc: "What happens when no spam scorer answers: `\"accept\"` — mail goes on unscored; `\"tempfail\"` — `451 4.7.1`; `\"reject\"` — `554 5.7.1`."},
	{field: func(c *Config) any { return &c.Scan.VirusFailOpen }, flag: "virus-fail-open", renamed: "scan.virus_on_error",
		convert: func(c *Config) {
			c.Scan.VirusOnError = failPolicy(c.Scan.VirusFailOpen, postern.OnErrorAccept, postern.OnErrorTempFail)
		}},
	{field: func(c *Config) any { return &c.Scan.SpamFailClosed }, flag: "spam-fail-closed", renamed: "scan.spam_on_error",
		convert: func(c *Config) {
			c.Scan.SpamOnError = failPolicy(c.Scan.SpamFailClosed, postern.OnErrorTempFail, postern.OnErrorAccept)
		}},
	{field: func(c *Config) any { return &c.Scan.BanAttachments }, flag: "ban-attachments", doc: "Refuse executable attachments (exe, scr, pif, bat, js…, double extensions, programs under any name), also inside archives: zip (a prefixed or self-extracting one too), tar, gzip, bzip2 and these nested, recognised by content whatever their name or declared type (`552 5.7.0 Message rejected: attachment \"files.tar.gz/evil.exe\" not allowed (banned-extension)`). Archives are looked into within one budget (4 levels, 2000 entries, 64 MiB decompressed); a bomb past it is refused (`archive-limit`)."},
	{field: func(c *Config) any { return &c.Scan.UnopenableArchives }, flag: "unopenable-archives", def: "\"reject\"", doc: "With `scan.ban_attachments`: what to do with an archive nothing can look into, an encrypted zip entry, rar, 7z, xz, zstd, cab, a zip method other than store/deflate/bzip2, a damaged archive. `reject` (`552 5.7.0 Message rejected: attachment \"secret.zip/a.doc\" not allowed (encrypted-archive: encrypted zip entry, cannot be inspected)`, as ClamAV's `AlertEncrypted` and amavis do), `quarantine` (hold for review) or `accept` (deliver, logged)."},
	{field: func(c *Config) any { return &c.Scan.Policy }, flag: "scan-policy", doc: "Per-recipient spam settings (`spam=on/off`, `tag=`, `reject=`, `allow=`, `deny=`). A message whose recipients all have `spam=off` is not given to the spam scorers at all."},
	{field: func(c *Config) any { return &c.Scan.MaxMimeDepth }, flag: "max-mime-depth", def: "32", doc: "Deepest MIME nesting a message may have (the message is depth 0, each multipart or attached message one deeper). Deeper: `554 5.6.0 Message rejected: MIME nesting too deep`. Worms hide attachments in nested multiparts, so the walk goes all the way down, within this bound."},
	{field: func(c *Config) any { return &c.Scan.MaxMimeParts }, flag: "max-mime-parts", def: "1000", doc: "Most MIME parts (containers included) a message may have; more: `554 5.6.0 Message rejected: too many MIME parts`."},
	{field: func(c *Config) any { return &c.Scan.RspamdGreylist }, def: "\"tempfail\"", doc: "What rspamd's action `greylist` gets: `\"tempfail\"` — `451 4.7.1` with rspamd's message (rspamd's own greylist module keeps track of the retry); `\"greylist\"` — the relay's greylisting (the `[greylist]` keys; it need not be enabled for all mail) decides, so the retry after `greylist.min_delay` passes; `\"accept\"` — logged only. Trusted and authenticated clients are never delayed."},
	{field: func(c *Config) any { return &c.Scan.RspamdSoftReject }, def: "\"tempfail\"", doc: "What rspamd's action `soft reject` gets, likewise."},
	{field: func(c *Config) any { return &c.Scan.RspamdHeaders }, def: "true", doc: "Apply the header fields rspamd's answer adds and removes (its `milter` block: a DKIM signature, an ARC set, `X-Spamd-Result`), each checked: a bad name or value, or the removal of `Received`, is skipped and logged."},
	{field: func(c *Config) any { return &c.Delivery.Mailertable }, flag: "mailertable", doc: "sendmail mailertable (`nix.co.jj esmtp:[192.168.1.1]`, `.sub.example smtp:[hub]`, `error:5.1.1:550 …`, `local:`), looked up as sendmail does."},
	{field: func(c *Config) any { return &c.Delivery.Local }, flag: "local-delivery", def: "\"local:\"", doc: "How `local_domains` the mailertable does not name are delivered, in mailertable syntax: `local:` (Maildir folders under `delivery.maildir`), `local:user` (one folder), `lmtp:unix:/run/dovecot/lmtp` or `lmtp:[127.0.0.1]:24` (a mail store on this host), `esmtp:[store.example]`."},
	{field: func(c *Config) any { return &c.Delivery.SmartHost }, flag: "smarthost", defDoc: "none (MX)", doc: "Next hop for domains the mailertable does not name (sendmail `SMART_HOST`)."},
	{field: func(c *Config) any { return &c.Delivery.FallbackRelays }, flag: "fallback-relay", doc: "Hosts tried when every host of a destination failed temporarily (sendmail `FallbackSmartHost`, Postfix `smtp_fallback_relay`); never used for the local domains."},
	{field: func(c *Config) any { return &c.Delivery.Maildir }, flag: "maildir", def: "\"postern-maildir\"", doc: "Root of `local:` deliveries: `<root>/<domain>/<user>/new/`."},
	{field: func(c *Config) any { return &c.Delivery.MaildirCreate }, flag: "maildir-create", def: "true", doc: "Make a mailbox for each new `local:` recipient (nothing is ever bounced as unknown). `false`: only mailboxes that exist (a folder with `new/`) take mail, and others are refused at RCPT with `550 5.1.1`; `postmaster`'s is always made."},
	{field: func(c *Config) any { return &c.Delivery.NotifyUnverifiedSenders }, flag: "notify-unverified-senders", doc: "Send failure notices to senders nothing vouched for. By default a notice goes to the sender only when the client is trusted or logged in, or SPF passed for the sender's domain, or a valid DKIM signature of that domain (or a parent or subdomain) came with the mail (`auth.check` `tag` or `enforce`); otherwise the failure notice goes to `delivery.postmaster` (or, without one, is logged and dropped), and delay and success notices are not sent. Such senders are often forged: notices to them are backscatter."},
	{field: func(c *Config) any { return &c.Delivery.Postmaster }, flag: "postmaster", restart: true, doc: "Gets double bounces (failure notices of null-sender mail); without it they are dropped and logged. Mail to the bare `<Postmaster>` (RFC 5321 §4.5.1) goes here too; without it to `postmaster@` the first local domain."},
	{field: func(c *Config) any { return &c.Delivery.TLS }, flag: "delivery-tls", def: "\"may\"", doc: "TLS level of deliveries that `tls_policy_map` does not name, by Postfix's names (`smtp_tls_security_level`): `none`, `may` (STARTTLS when offered, certificate not checked, plain text after a failed handshake), `encrypt` (TLS required), `dane`, `dane-only`, `verify` (TLS and a certificate valid for the MX host name), `secure` (valid for the recipient domain or a name under it). See [outbound-tls.md](outbound-tls.md)."},
	{field: func(c *Config) any { return &c.Delivery.TLSPolicyMap }, flag: "tls-policy-map", doc: "TLS levels per destination, in the text syntax of Postfix's `smtp_tls_policy_maps` (`example.com secure match=.example.com`, `.example.com encrypt`, `[smtp.isp.example]:587 verify`), read unchanged and reloaded when it changes. An entry wins over DANE, MTA-STS and `delivery.tls`."},
	{field: func(c *Config) any { return &c.Delivery.TLSCAFile }, flag: "tls-ca-file", defDoc: "the system's roots", doc: "PEM certificates of the authorities that `verify`, `secure` and MTA-STS trust (Postfix `smtp_tls_CAfile`), for servers and MTA-STS policy hosts alike."},
	{field: func(c *Config) any { return &c.Delivery.DANE }, flag: "dane", def: "true", doc: "With `dns.dnssec`, make the default level `may` opportunistic DANE (RFC 7672; Postfix `dane`): an MX host with DNSSEC-validated TLSA records must present a matching certificate or gets no mail; one without stays opportunistic. Without `dns.dnssec` there is no DANE: an AD bit from a resolver not declared validating means nothing."},
	{field: func(c *Config) any { return &c.Delivery.MTASTS }, flag: "mta-sts", def: "true", doc: "Honour recipient domains' MTA-STS policies (RFC 8461): under `enforce`, mail goes only to the MX hosts the policy lists, over TLS with a valid certificate, else it waits; under `testing` it goes anyway and failures are reported (TLS-RPT). Policies are kept in `<spool>/mta-sts` across restarts and used through DNS or HTTPS failures until they expire. DANE, where an MX host has TLSA records, comes first."},
	{field: func(c *Config) any { return &c.Delivery.AuthUser }, flag: "auth-user", doc: "Log in to `delivery.smart_host` as this user (SMTP AUTH PLAIN, or LOGIN), over TLS only. Needs `auth_password_file`. Sites with sendmail files put `AuthInfo:` lines in `policy.access` or `delivery.authinfo` instead."},
	{field: func(c *Config) any { return &c.Delivery.AuthPasswordFile }, flag: "auth-password-file", doc: "File whose first line is the smart host password (not the TOML file: that one is read by more people and tools). Read at start and at each reload; a file others may read is warned about. `relay check-config` says only \"set\"."},
	{field: func(c *Config) any { return &c.Delivery.AuthInfo }, flag: "authinfo", doc: "A sendmail authinfo file (`FEATURE(authinfo)`'s `/etc/mail/authinfo`, the text makemap reads): `AuthInfo:smtp.isp.example \"U:user\" \"P:password\" \"M:PLAIN\"` lines, read as are those in `policy.access`."},
	{field: func(c *Config) any { return &c.Delivery.AuthWithoutTLS }, flag: "auth-without-tls", doc: "Let credentials go over a session without TLS (a smart host on a trusted network that offers no STARTTLS). By default a host with credentials gets at least the level `encrypt`, and a login fails rather than go in clear."},
	{field: func(c *Config) any { return &c.Queue.Warn }, flag: "queue-warn", def: "\"4h\"", restart: true, doc: "Age at which senders get a delay notice (sendmail `Timeout.queuewarn`); `\"0s\"` never."},
	{field: func(c *Config) any { return &c.Queue.Return }, flag: "queue-return", def: "\"5d\"", restart: true, doc: "Age at which delivery is given up and the mail returned (sendmail `Timeout.queuereturn`, Postfix `maximal_queue_lifetime`)."},
	{field: func(c *Config) any { return &c.Queue.MinBackoff }, flag: "min-backoff", def: "\"5m\"", restart: true, doc: "First retry delay; it doubles per attempt."},
	{field: func(c *Config) any { return &c.Queue.MaxBackoff }, flag: "max-backoff", def: "\"4000s\"", restart: true, doc: "Longest retry delay."},
	{field: func(c *Config) any { return &c.Log.Level }, flag: "log-level", def: "\"info\"", restart: true, doc: "`debug`, `info`, `warn` or `error`. At `info` there is one line per connection, per transaction (`msg=message … queue_id=`) and per delivery attempt and recipient (`msg=delivery … queue_id=`), so `grep <queue id>` follows a message."},
	{field: func(c *Config) any { return &c.Log.Format }, flag: "log-format", def: "\"text\"", restart: true, doc: "`text` (logfmt) or `json`, on standard error."},
	{field: func(c *Config) any { return &c.Metrics.Listen }, flag: "metrics-listen", defDoc: "off", restart: true, doc: "HTTP address serving Prometheus `/metrics` and `/healthz` (200 `ok`, or 503 with the reason when the spool has no room for a message). Keep it on loopback or a management network."},
	{field: func(c *Config) any { return &c.Metrics.Pprof }, flag: "metrics-pprof", def: "false", restart: true, doc: "Also serve Go's runtime profiles under `/debug/pprof/` on `metrics.listen` (`go tool pprof http://ADDR/debug/pprof/profile?seconds=30`), for finding where CPU time goes. Off by default: profiles show the relay's internals to whoever can reach the listener."},
	{field: func(c *Config) any { return &c.Control.Socket }, flag: "control-socket", defDoc: "`\"<spool>/control.sock\"`", restart: true, doc: "Unix socket of the admin commands (`relay queue …`, `relay quarantine …`, `relay reload`). Mode 0600; the relay serves only root and its own user (checked with `SO_PEERCRED`), and the commands refuse a socket owned by anyone else."},
	{field: func(c *Config) any { return &c.Stats.Dir }, flag: "stats-dir", defDoc: "`\"<spool>/stats\"`", restart: true, doc: "The relay's statistics records, one JSON-lines file per day, read by `relay stats` and the quarantine page's chart."},
	{field: func(c *Config) any { return &c.Stats.Retain }, def: "\"35d\"", doc: "How long day files are kept."},
	{field: func(c *Config) any { return &c.Stats.DailyTo }, doc: "Address that gets a summary of the last 24 hours every day (received, delivered, deferred, bounced, rejected by reason, viruses by name, spam ratio, top senders and sources), from `MAILER-DAEMON` with the null sender. `relay stats -mail` sends it at once (`-mail-to ADDR` to another address). A reload applies a change."},
	{field: func(c *Config) any { return &c.Stats.DailyAt }, def: "\"06:00\"", doc: "Local time of day of that mail. A reload applies a change."},
	{field: func(c *Config) any { return &c.TLSRPT.Enabled }, flag: "tlsrpt", restart: true, doc: "Send SMTP TLS reports (RFC 8460): each day after midnight UTC, every domain that publishes a `_smtp._tls` record with a `mailto:` address gets the counts of the relay's sessions with its MX hosts, successful and failed by RFC 8460 result type, as gzipped JSON, queued like any mail. Off by default: it mails third parties about your traffic. `https:` addresses are skipped (logged)."},
	{field: func(c *Config) any { return &c.TLSRPT.From }, defDoc: "`postmaster@<hostname>`", restart: true, doc: "Reporter address: envelope sender and `From` of the reports (not the null sender: replies about a report should reach someone)."},
	{field: func(c *Config) any { return &c.TLSRPT.Organization }, defDoc: "the host name", restart: true, doc: "`organization-name` of the reports."},
	{field: func(c *Config) any { return &c.TLSRPT.Contact }, defDoc: "`tlsrpt.from`", restart: true, doc: "`contact-info` of the reports."},
	{field: func(c *Config) any { return &c.Web.Listen }, flag: "web-listen", defDoc: "off", restart: true, doc: "HTTPS address of the page where users review, release and delete their quarantined mail. Needs `tls` and `submission.credentials`."},
	{field: func(c *Config) any { return &c.Web.Admins }, flag: "web-admins", doc: "Users who see all quarantined mail, the queue and the 14-day chart."},
	{field: func(c *Config) any { return &c.Web.URL }, flag: "web-url", defDoc: "`https://<hostname>:<port>`", doc: "The page's public address, for links in mail."},
	{field: func(c *Config) any { return &c.Web.Digests }, flag: "web-digests", doc: "Mail each recipient address with newly quarantined mail a list of it, with links to the page, daily at `stats.daily_at` (from the null sender)."},
	{field: func(c *Config) any { return &c.LDAP.URLs }, flag: "ldap-url", defDoc: "none (no directory)", doc: "LDAP servers, `\"ldap://host[:port]\"` or `\"ldaps://host[:port]\"`, tried in order; one that cannot be reached is passed over for 30 s while another answers. Active Directory, OpenLDAP and 389 DS alike. What the directory is used for is `ldap.uses`."},
	{field: func(c *Config) any { return &c.LDAP.Uses }, flag: "ldap-uses", doc: "What the directory answers, any of: `\"recipients\"` — recipients of `ldap.domains` that have no entry get `550 5.1.1 <addr>: Recipient address rejected: User unknown in the directory` at RCPT (no bounces), and while the directory cannot answer every recipient gets `451 4.3.0` (never 550), so nothing is accepted and nothing bounced; `\"spam_policy\"` — each recipient's spam filtering on or off, tag and reject scores, allow and deny lists from the attributes below, winning over `scan.policy` for recipients whose entry has any of them; `\"auth\"` — SMTP AUTH on the submission ports and the quarantine page log users in by binding as their entry (found with `ldap.login_filter`; an empty password is refused, never sent), with the same login limits as `submission.credentials` (which, if set too, is tried first), and a user may send as the addresses of their entry's `ldap.mail_attributes` (and the senders file's). A login while the directory cannot answer gets `454 4.7.0` and is not counted as a failure."},
	{field: func(c *Config) any { return &c.LDAP.Base }, flag: "ldap-base", doc: "Search base (subtree), such as `\"dc=example,dc=com\"`. Required with `ldap.urls`."},
	{field: func(c *Config) any { return &c.LDAP.BindDN }, flag: "ldap-bind-dn", defDoc: "none (anonymous)", doc: "The service account that searches, such as `\"cn=postern,ou=services,dc=example,dc=com\"`; it needs to read the attributes below, never passwords."},
	{field: func(c *Config) any { return &c.LDAP.BindPasswordFile }, flag: "ldap-password-file", doc: "File holding the service account's password (one trailing line end is ignored). Keep it readable by the relay's user only."},
	{field: func(c *Config) any { return &c.LDAP.TLS }, def: `"auto"`, doc: "How `ldap://` connections are protected: `\"auto\"` — StartTLS to every server not on loopback (passwords never cross a network in clear); `\"starttls\"` — always (a server that cannot is unavailable); `\"none\"` — never. `ldaps://` is TLS from the first byte. Certificates must name the URL's host."},
	{field: func(c *Config) any { return &c.LDAP.CAFile }, defDoc: "the system's roots", doc: "PEM file of the CAs that sign the servers' certificates."},
	{field: func(c *Config) any { return &c.LDAP.RecipientFilter }, def: `"(|(mail=%s)(mailAlternateAddress=%s))"`, doc: "Finds a recipient's entry. `%s` is the address, `%u` its local part, `%d` its domain, `%%` a `%`; each is escaped as RFC 4515 says before it goes in (an address such as `*)(uid=*` is looked up as itself, finds nothing and is logged). Active Directory: `\"(|(mail=%s)(proxyAddresses=smtp:%s))\"`."},
	{field: func(c *Config) any { return &c.LDAP.LoginFilter }, def: `"(|(uid=%s)(mail=%s))"`, doc: "Finds the entry of a login name, with the same substitutions; the relay then binds as that entry with the password given. A login that matches several entries is refused. Active Directory: `\"(sAMAccountName=%u)\"`."},
	{field: func(c *Config) any { return &c.LDAP.MailAttributes }, def: `["mail", "mailAlternateAddress"]`, doc: "Attributes holding a user's addresses: the MAIL FROM and `From` addresses they may use, and whose quarantined mail they see."},
	{field: func(c *Config) any { return &c.LDAP.SpamAttribute }, def: `"amavisBypassSpamChecks"`, doc: "With `spam_policy`: turns spam filtering off for the recipient when it holds one of `ldap.spam_off_values` (ignoring case), on for any other value; without it, `scan.policy` decides. The defaults of this and the next attributes are amavisd-new's LDAP schema."},
	{field: func(c *Config) any { return &c.LDAP.SpamOffValues }, def: `["TRUE"]`, doc: "Values of `ldap.spam_attribute` that turn filtering off; a site whose attribute says `ON`/`OFF` sets `[\"OFF\"]`."},
	{field: func(c *Config) any { return &c.LDAP.TagScoreAttribute }, def: `"amavisSpamTag2Level"`, doc: "The recipient's tag score (a number), in place of `scan.spam_tag_score`."},
	{field: func(c *Config) any { return &c.LDAP.RejectScoreAttribute }, def: `"amavisSpamKillLevel"`, doc: "The recipient's reject score, or `off` to never refuse their spam."},
	{field: func(c *Config) any { return &c.LDAP.AllowAttribute }, def: `"amavisWhitelistSender"`, doc: "Senders whose mail to the recipient is not scored for spam: `user@domain`, `@domain`, `@.domain` (its subdomains) or `<>`. Values that are none of these are ignored and logged."},
	{field: func(c *Config) any { return &c.LDAP.DenyAttribute }, def: `"amavisBlacklistSender"`, doc: "Senders refused for the recipient at RCPT: `550 5.7.1 Recipient address rejected: sender denied by recipient's policy`."},
	{field: func(c *Config) any { return &c.LDAP.MaxListEntries }, def: "20", doc: "Entries read from each of the two lists per recipient; more are ignored and logged."},
	{field: func(c *Config) any { return &c.LDAP.Domains }, defDoc: "`local_domains` and `relay_domains`", doc: "Domains whose recipients the directory knows (`\".example.com\"` for the subdomains); others are verified as before (`policy.recipients`, `policy.callahead`)."},
	{field: func(c *Config) any { return &c.LDAP.Timeout }, def: `"10s"`, doc: "Bound on one lookup or login, connecting included (Postfix `ldap_table`'s `timeout`)."},
	{field: func(c *Config) any { return &c.LDAP.CacheTTL }, def: `"5m"`, doc: "How long an entry found is kept (recipient, policy, login name and addresses; never a password). `\"0s\"`: not kept."},
	{field: func(c *Config) any { return &c.LDAP.NegativeTTL }, def: `"1m"`, doc: "How long \"no such entry\" is kept: a user added to the directory gets mail at most this much later. A directory that could not answer is never kept."},
	{field: func(c *Config) any { return &c.LDAP.OnError }, def: `"tempfail"`, doc: "What happens while the directory cannot answer: `\"tempfail\"` — `451 4.3.0` at RCPT (and for the spam policy and sender binding), the client retries; `\"accept\"` — recipients pass unverified, the spam policy of `scan.policy` applies and senders are not bound, logged. `\"reject\"` is refused: an outage never makes mail bounce."},
	{field: func(c *Config) any { return &c.DKIM }, flag: "dkim-key"},
	{key: "dkim.domain", defDoc: "required", doc: "Signing domain (`d=`). Mail from trusted networks whose From is in this domain is signed, and so is an authenticated user's when every address of its From (and Sender) field is one the senders file gives them. The flag `-dkim-key domain:selector:keyfile` gives a whole key."},
	{key: "dkim.selector", defDoc: "required", doc: "Selector (`s=`)."},
	{key: "dkim.key", defDoc: "required", doc: "PEM private key (RSA or Ed25519); `relay dkim keygen -domain example.org -selector s1 -out s1.pem` makes one and prints its DNS record."},
	{field: func(c *Config) any { return &c.Milters }},
	{key: "milter.address", defDoc: "required", doc: "Socket of an external milter (opendkim, clamav-milter, rspamd's proxy, any milter of protocol version 2 to 6), as Postfix writes it (`inet:127.0.0.1:8891`, `unix:/run/opendkim/opendkim.sock`; sendmail's `inet:8891@127.0.0.1` too). The milters run in the order of the tables, where `milter` stands in `policy.order`; each sees the message as the filters before it left it. Each transaction opens its own connection at MAIL. Their answers refuse (with the milter's reply; per recipient at RCPT), discard or quarantine; added and changed header fields become the relay's edits, added and removed recipients and a changed sender its envelope; a replaced body counts as a failure."},
	{key: "milter.name", defDoc: "the address", doc: "Name in the logs and decisions (`milter:NAME`)."},
	{key: "milter.on_error", defDoc: "`\"tempfail\"`", doc: "What a failure of the milter answers (unreachable, past a timeout, a protocol error, a body replacement), in the words of Postfix's `milter_default_action`: `tempfail` (`451 4.7.1 Service unavailable, try again later`), `accept` (go on without it for the rest of the transaction) or `reject` (`550 5.7.1`, `554` at the end of DATA)."},
	{key: "milter.connect_timeout", defDoc: "`\"30s\"`", doc: "Bound on connecting and negotiating (Postfix `milter_connect_timeout`)."},
	{key: "milter.command_timeout", defDoc: "`\"30s\"`", doc: "Bound on each envelope event (connect, HELO, MAIL, RCPT, DATA) and its answer (Postfix `milter_command_timeout`)."},
	{key: "milter.content_timeout", defDoc: "`\"300s\"`", doc: "Bound on sending the header and the body and on the answer to the end of the message; the milter's progress reports restart it (Postfix `milter_content_timeout`)."},
	{field: func(c *Config) any { return &c.MilterServer.Listen }, flag: "milter-listen", defDoc: "off", restart: true, doc: "Serve the relay's port-25 filters (`policy.order`, with the access file, lists, scanners and `[[milter]]` tables) to Postfix or sendmail over the milter protocol (version 2 to 6), on `inet:HOST:PORT` or `unix:PATH` (a socket left by an earlier run is replaced); the MTA keeps its own queue and says what the filters decide. `smtp.max_message_size` bounds the messages; reloads, metrics (`postern_messages_total`) and statistics cover it as they cover port 25. Keep it on loopback or a Unix socket: whoever can reach it can ask the filters about any client. See [Using Postern from Postfix and sendmail](milter.md)."},
}

// keyed is a setting with its dotted key.
type keyed struct {
	setting
	key string
}

// keyedSettings pairs each setting with its dotted key, found from the
// TOML tags on the way to its field.
func keyedSettings() []keyed {
	var c Config
	at := map[uintptr]string{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			name := t.Field(i).Tag.Get("toml")
			if name == "" {
				continue
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct && strings.HasSuffix(f.Type().Name(), "Section") {
				walk(f, prefix+name+".")
				continue
			}
			at[f.Addr().Pointer()] = prefix + name
		}
	}
	walk(reflect.ValueOf(&c).Elem(), "")
	out := make([]keyed, 0, len(settings))
	for _, st := range settings {
		k := st.key
		if st.field != nil {
			k = at[reflect.ValueOf(st.field(&c)).Pointer()]
		}
		out = append(out, keyed{st, k})
	}
	return out
}

// applyDefaults gives every key the file did not set its default.
func (c *Config) applyDefaults() error {
	set := c.set
	for _, st := range keyedSettings() {
		if st.def == "" || set[st.key] {
			continue
		}
		if err := decodeValue(st.def, st.field(c)); err != nil {
			return fmt.Errorf("default of %s: %w", st.key, err) // a bug in settings
		}
	}
	// The demonstration domain, unless the file names domains of its own.
	if !set["local_domains"] && !set["relay_domains"] {
		c.LocalDomains = []string{"example.test"}
	}
	c.applyRenamed(set)
	return nil
}

// applyRenamed moves the values of old keys to the keys that replaced
// them and warns about each. set are the keys the file or the flags set;
// a new key that is set wins over its old name.
func (c *Config) applyRenamed(set map[string]bool) {
	for _, st := range keyedSettings() {
		if st.renamed == "" || !set[st.key] {
			continue
		}
		c.warnings = append(c.warnings, fmt.Sprintf("%s is renamed %s; the old name works until the next release", st.key, st.renamed))
		if set[st.renamed] {
			continue
		}
		if st.convert != nil {
			st.convert(c)
			continue
		}
		for _, nst := range keyedSettings() {
			if nst.key == st.renamed {
				reflect.ValueOf(nst.field(c)).Elem().Set(reflect.ValueOf(st.field(c)).Elem())
			}
		}
	}
}

// flagKeys maps the flags given on a command line to their keys.
func flagKeys(fs *flag.FlagSet) map[string]bool {
	byFlag := map[string]string{}
	for _, st := range keyedSettings() {
		if st.flag != "" {
			byFlag[st.flag] = st.key
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		if k, ok := byFlag[f.Name]; ok {
			set[k] = true
		}
	})
	return set
}

// decodeValue reads a TOML value into ptr, as the file's decoder would.
func decodeValue(value string, ptr any) error {
	pv := reflect.ValueOf(ptr)
	holder := reflect.New(reflect.StructOf([]reflect.StructField{{Name: "V", Type: pv.Type().Elem(), Tag: `toml:"v"`}}))
	if err := toml.Unmarshal([]byte("v = "+value), holder.Interface()); err != nil {
		return err
	}
	pv.Elem().Set(holder.Elem().Field(0))
	return nil
}

// bindFlags binds every setting that has a flag to its field: the file and
// the defaults are in the fields already, so -h shows the values in force.
func bindFlags(fs *flag.FlagSet, c *Config) {
	for _, st := range keyedSettings() {
		if st.flag == "" {
			continue
		}
		fs.Var(flagValue(st.field(c)), st.flag, flagUsage(st))
	}
}

// flagUsage is the first sentence of the doc line, without Markdown,
// and the key.
func flagUsage(st keyed) string {
	doc := strings.NewReplacer("`", "", "*", "").Replace(st.doc)
	if m := sentenceEndRE.FindStringIndex(doc); m != nil {
		doc = doc[:m[0]+1]
	}
	if doc == "" {
		return "(" + st.key + ")"
	}
	return strings.TrimSuffix(doc, ".") + " (" + st.key + ")"
}

// sentenceEndRE finds the end of a first sentence: a full stop before a
// capital ("i.e. no" goes on).
var sentenceEndRE = regexp.MustCompile(`\. [A-Z"(]`)

// flagValue makes a flag.Value of a Config field.
func flagValue(ptr any) flag.Value {
	switch p := ptr.(type) {
	case *string:
		return (*stringValue)(p)
	case *bool:
		return (*boolValue)(p)
	case *int:
		return (*intValue)(p)
	case *float64:
		return (*floatValue)(p)
	case *[]string:
		return (*listValue)(p)
	case *[]DKIMKey:
		return (*dkimFlag)(p)
	case encoding.TextUnmarshaler:
		return textValue{p}
	}
	panic(fmt.Sprintf("relay: no flag for a field of type %T", ptr)) // a bug in settings; TestSettings finds it
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

type boolValue bool

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	*v = boolValue(b)
	return err
}
func (v *boolValue) IsBoolFlag() bool { return true }

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	*v = intValue(n)
	return err
}

type floatValue float64

func (v *floatValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }
func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	*v = floatValue(f)
	return err
}

// textValue is a flag for a type that reads text (Duration, Size, Rate).
type textValue struct{ p encoding.TextUnmarshaler }

func (t textValue) String() string {
	if t.p == nil {
		return ""
	}
	if m, ok := t.p.(encoding.TextMarshaler); ok {
		b, _ := m.MarshalText()
		return string(b)
	}
	return fmt.Sprint(t.p)
}
func (t textValue) Set(s string) error { return t.p.UnmarshalText([]byte(s)) }

// restartKeys lists the keys a reload cannot change.
func restartKeys() []keyed {
	var out []keyed
	for _, st := range keyedSettings() {
		if st.restart {
			out = append(out, st)
		}
	}
	return out
}

// keepFixed gives c the values of the restart-only keys of the running
// configuration and returns the keys whose new value it overrode.
func keepFixed(running, c *Config) []string {
	var changed []string
	for _, st := range restartKeys() {
		was, now := reflect.ValueOf(st.field(running)).Elem(), reflect.ValueOf(st.field(c)).Elem()
		if !reflect.DeepEqual(was.Interface(), now.Interface()) {
			changed = append(changed, st.key)
			now.Set(was)
		}
	}
	return changed
}

// settingSection is the section of a dotted key ("" for the top level).
func settingSection(key string) string {
	if i := strings.IndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// typeName is a field type in the reference's words.
func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "duration"
	case reflect.TypeFor[Size]():
		return "size"
	case reflect.TypeFor[Rate]():
		return "rate"
	case reflect.TypeFor[[]DKIMKey](), reflect.TypeFor[[]MilterEntry]():
		return "tables"
	case reflect.TypeFor[postern.ErrorPolicy]():
		return "on error"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "list"
	case reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

// referenceTable writes the Markdown table of a section's keys for
// docs/configuration.md.
func referenceTable(section string) string {
	var b strings.Builder
	b.WriteString("| key | type | default | flag | meaning |\n|---|---|---|---|---|\n")
	var c Config
	for _, st := range keyedSettings() {
		if settingSection(st.key) != section || st.doc == "" {
			continue
		}
		typ, def := "string", st.defDoc
		if st.field != nil {
			t := reflect.TypeOf(st.field(&c)).Elem()
			typ = typeName(t)
			if def == "" {
				def = zeroDoc(t, st.def)
			}
		}
		flagCell := ""
		if st.flag != "" {
			flagCell = "`-" + st.flag + "`"
		}
		doc := st.doc
		if st.restart {
			doc += " *restart*"
		}
		cells := []string{"`" + st.key + "`", typ, def, flagCell, doc}
		fmt.Fprintf(&b, "| %s |\n", strings.TrimSpace(strings.ReplaceAll(strings.Join(cells, " | "), "|  |", "| |")))
	}
	return b.String()
}

// zeroDoc shows a default: the TOML value, or the zero value's.
func zeroDoc(t reflect.Type, def string) string {
	if def != "" {
		return "`" + def + "`"
	}
	switch t.Kind() {
	case reflect.String:
		return "none"
	case reflect.Slice:
		return "`[]`"
	case reflect.Bool:
		return "`false`"
	}
	return "`0`"
}

// referenceSections are the sections in the order of the reference.
func referenceSections() []string {
	var out []string
	for _, st := range keyedSettings() {
		if s := settingSection(st.key); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// renamedTable writes the reference's table of renamed keys.
func renamedTable() string {
	var b strings.Builder
	b.WriteString("| old key | new key |\n|---|---|\n")
	for _, st := range keyedSettings() {
		if st.renamed != "" {
			fmt.Fprintf(&b, "| `%s` | `%s` |\n", st.key, st.renamed)
		}
	}
	return b.String()
}

// failPolicy is the ErrorPolicy an old on/off failure key meant.
func failPolicy(on bool, yes, no postern.ErrorPolicy) postern.ErrorPolicy {
	if on {
		return yes
	}
	return no
}
