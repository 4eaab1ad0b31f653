package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/ratelimit/redisstore"
	"github.com/postern/postern/route"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/access"
)

// settings are what the flags (later a config file) say.
type settings struct {
	listen       string
	hostname     string
	domains      []string // accepted: local and relay domains
	localDomains []string // delivered by the built-in mailertable when there is none
	trusted      []netip.Prefix
	accessFile   string
	recipients   string
	// relaySubdomains: To:domain RELAY covers subdomains (sendmail's way).
	relaySubdomains bool
	maxHops         int
	dnsbl           []string // IP zones, "zone" or "zone=weight"
	dnswl           []string // allow-list IP zones, weight -1 unless given
	rhsbl           []string // domain zones for HELO and sender
	dnsResolvers    []string
	dnsblAtRcpt     bool
	dnsFailOpen     bool
	redisAddr       string
	storeClosed     bool // fail closed (451 4.3.0) when the counter store is down
	clientRate      int  // connections per minute per client; 0 unlimited
	clientConn      int  // concurrent connections per client; 0 unlimited
	msgRate         ratelimit.Rate
	rcptRate        ratelimit.Rate
	harvest         ratelimit.GuardConfig // Threshold < 0 turns the guard off
	spoolDir        string
	// Delivery.
	mailertable    string
	localHop       string // delivery of local domains the mailertable does not name
	smartHost      string
	fallbackRelays []string
	maildir        string
	maildirCreate  bool // local: makes mailboxes; false: existing ones only
	// notifyUnverified sends failure notices to unverified senders.
	notifyUnverified bool
	callAhead        bool
	queueWarn        time.Duration
	queueReturn      time.Duration
	minBackoff       time.Duration
	maxBackoff       time.Duration
	postmaster       string
	// Authentication and submission.
	authCheck   string // off, tag, enforce
	authServID  string
	dkimKeys    []string // domain:selector:keyfile
	tlsCert     string
	tlsKey      string
	submission  string // listen address, STARTTLS then AUTH (port 587)
	submissions string // listen address, implicit TLS (port 465)
	credentials string
	senders     string
	bindFrom    bool // From and Sender header fields bound to the user too
	// Content scanning.
	clamd             []string
	spamd             []string
	rspamd            []string
	spamTag           float64
	spamReject        float64
	spamSubject       string
	virusAction       string
	virusFailOpen     bool
	spamFailClosed    bool
	bannedAttachments bool
	scanPolicy        string
	spamAction        string // what -spam-reject-score does: reject, quarantine, discard
	// With bannedAttachments: reject, quarantine or accept ("": reject).
	unopenableArchives string
	// Quarantine web page.
	webListen  string   // HTTPS listen address; empty: no web page
	webAdmins  []string // users who see everything
	webURL     string   // public base URL of the page, for links in digests
	webDigests bool     // mail users a daily list of their quarantined mail
	// Operations.
	metricsListen string
	controlSocket string
	statsDir      string
	statsRetain   time.Duration
	dailyTo       string
	dailyAt       string
	logLevel      slog.Level
	logJSON       bool
	greetPause    time.Duration
	greetLogOnly  bool
	refuseQuoted  bool // smtp.quoted_local_parts = "refuse"
	maxSize       int64
	bareNewline   smtpserver.BareNewline
	maxConns      int // 0: from RLIMIT_NOFILE; negative: none
	// Reverse DNS of clients, and the checks on it and on HELO.
	reverseDNS        bool
	reverseDNSTimeout time.Duration
	hostChecks        auth.HostCheck
}

// policy is the relay's chain and what the listeners need to know.
type policy struct {
	chain   *postern.Chain
	amap    access.MapSource // nil without an access file
	watcher *access.Watcher
	// rcptVerify is route's recipient verification filter, nil without
	// -recipients or -callahead; the submission chain uses it too.
	rcptVerify *route.Filter
	store      ratelimit.Store // shared counters: memory, or Redis
	s          *settings
}

// openStore opens the counters' store: Redis when configured, so relays
// share them, else memory.
func openStore(s *settings) (ratelimit.Store, error) {
	if s.redisAddr != "" {
		rs, err := redisstore.New(redisstore.Config{Addr: s.redisAddr})
		if err != nil {
			return nil, fmt.Errorf("redis.addr %s: %w", s.redisAddr, err)
		}
		return rs, nil
	}
	return ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
}

func closeStore(st ratelimit.Store) {
	if c, ok := st.(interface{ Close() error }); ok {
		c.Close()
	}
}

// buildPolicy wires the filters (see the order below). Serving and the
// check command share it, so a dry run answers what the server would.
//
// store holds the rate and harvest counters; it outlives reloads, so a
// reload does not forget who was limited.
func buildPolicy(s *settings, log *slog.Logger, obs postern.Observer, verifier *route.Verifier, ap *authParts, sc *scanning, store ratelimit.Store) (*policy, error) {
	p := &policy{s: s}
	if s.accessFile != "" {
		// The watcher logs the warnings of each load (entries that cannot
		// mean what they say) and keeps the last good map on a broken file.
		w, err := access.NewWatcher(s.accessFile, access.WatcherConfig{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("policy.access: %w", err)
		}
		p.watcher, p.amap = w, w
	}
	relay, err := access.NewRelayControl(access.RelayConfig{Map: p.amap, LocalDomains: s.domains,
		TrustedNets: s.trusted, RelaySubdomains: s.relaySubdomains, Logger: log})
	if err != nil {
		return nil, err
	}
	p.store = store
	// Order matters, as in sendmail's rulesets:
	//  - access first: Connect: OK/RELAY exempts a client from DNS lists
	//    (check_relay answers before the RBL rules); at RCPT its OK/RELAY
	//    only continue, so it cannot open the relay;
	//  - relay control before anything that could accept a recipient;
	//  - the harvest guard before the recipient list, whose 550 5.1.1
	//    answers it counts through the chain's observer.
	// Trust (trusted networks, Connect: RELAY) is derived anew at every
	// command from the configuration in force, so a reload that withdraws
	// it reaches open connections too.
	trust, err := access.NewTrust(access.TrustConfig{Map: p.amap, TrustedNets: s.trusted, Logger: log})
	if err != nil {
		return nil, err
	}
	entries := []postern.Entry{{Filter: trust}}
	if p.amap != nil {
		af, err := access.NewFilter(access.FilterConfig{Map: p.amap, LocalDomains: s.domains, Logger: log})
		if err != nil {
			return nil, err
		}
		entries = append(entries, postern.Entry{Filter: af})
	}
	// Host and HELO checks after access, so that Connect: OK exempts a
	// client as sendmail's check_relay does.
	if ap != nil && ap.hosts != nil {
		entries = append(entries, postern.Entry{Filter: ap.hosts})
	}
	entries = append(entries, postern.Entry{Filter: relay})
	if len(s.dnsbl)+len(s.dnswl)+len(s.rhsbl) > 0 {
		f, err := dnsblFilter(s, log)
		if err != nil {
			return nil, err
		}
		// The filter applies its own per-zone error policy, so a lookup
		// failure arrives as a verdict, not an error.
		entries = append(entries, postern.Entry{Filter: f})
	}
	if !s.msgRate.Unlimited() || !s.rcptRate.Unlimited() {
		rl, err := ratelimit.NewFilter(ratelimit.FilterConfig{Store: p.store, Messages: s.msgRate,
			Recipients: s.rcptRate, FailClosed: s.storeClosed, Logger: log})
		if err != nil {
			return nil, err
		}
		entries = append(entries, postern.Entry{Filter: rl})
	}
	if s.harvest.Threshold >= 0 {
		gc := s.harvest
		gc.Store, gc.Logger, gc.FailClosed = p.store, log, s.storeClosed
		g, err := ratelimit.NewGuard(gc)
		if err != nil {
			return nil, err
		}
		entries = append(entries, postern.Entry{Filter: g})
		if obs == nil {
			obs = g.Observe
		} else {
			outer := obs
			obs = func(ctx context.Context, d postern.Decision) { g.Observe(ctx, d); outer(ctx, d) }
		}
	}
	if verifier != nil {
		vf, err := route.NewFilter(route.FilterConfig{Verifier: verifier, Domains: s.domains, Logger: log})
		if err != nil {
			return nil, err
		}
		p.rcptVerify = vf
		entries = append(entries, postern.Entry{Filter: vf})
	}
	// Sender authentication: SPF at MAIL, DKIM/DMARC and
	// Authentication-Results at DATA (on the bytes as received), then the
	// content scan (its RCPT stage applies recipients' deny lists), then
	// DKIM signing, last of all the header edits.
	if ap != nil {
		entries = append(entries, ap.checkEntries()...)
	}
	if sc != nil {
		entries = append(entries, postern.Entry{Filter: sc.filter})
	}
	if ap != nil {
		entries = append(entries, ap.signEntries()...)
	}
	p.chain, err = postern.NewChain(postern.ChainConfig{Name: "relay", Entries: entries, Observer: obs})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// dnsblFilter builds the DNS list checks. A lookup that fails answers 4xx
// (mail waits rather than passing unchecked) unless -dnsbl-fail-open.
func dnsblFilter(s *settings, log *slog.Logger) (*dnsbl.Filter, error) {
	policy := dnsbl.TempFailOnError
	if s.dnsFailOpen {
		policy = dnsbl.PassOnError
	}
	var zones []dnsbl.Zone
	add := func(list []string, kind dnsbl.Kind, defWeight float64) error {
		for _, z := range list {
			name, w, hasW := strings.Cut(z, "=")
			weight := defWeight
			if hasW {
				var err error
				if weight, err = strconv.ParseFloat(w, 64); err != nil {
					return fmt.Errorf("dnsbl zone %q: bad weight: %w", z, err)
				}
			}
			zones = append(zones, dnsbl.Zone{Name: name, Kind: kind, Weight: weight, OnError: policy, TXT: weight > 0})
		}
		return nil
	}
	if err := add(s.dnsbl, dnsbl.IPZone, 1); err != nil {
		return nil, err
	}
	if err := add(s.dnswl, dnsbl.IPZone, -1); err != nil {
		return nil, err
	}
	if err := add(s.rhsbl, dnsbl.DomainZone, 1); err != nil {
		return nil, err
	}
	c, err := dnsbl.New(dnsbl.Config{Zones: zones, Resolvers: s.dnsResolvers, Logger: log})
	if err != nil {
		return nil, err
	}
	at := postern.StageConnect
	if s.dnsblAtRcpt {
		at = postern.StageRcpt
	}
	return dnsbl.NewFilter(dnsbl.FilterConfig{Checker: c, EnforceAt: at, CheckHELO: len(s.rhsbl) > 0,
		CheckSender: len(s.rhsbl) > 0, Logger: log})
}

// trustedNet returns the trusted network (Postfix mynetworks) holding ip.
func (s *settings) trustedNet(ip netip.Addr) (netip.Prefix, bool) {
	for _, n := range s.trusted {
		if n.Contains(ip) {
			return n, true
		}
	}
	return netip.Prefix{}, false
}

// pause is the greet pause for a client: none for trusted networks, the
// access map's GreetPause: entry if any, else the configured default.
func (p *policy) pause(ip netip.Addr) (time.Duration, string) {
	if n, ok := p.s.trustedNet(ip); ok {
		return 0, "trusted network " + n.String()
	}
	if p.amap != nil {
		if d, ok := p.amap.Current().GreetPause(ip, ""); ok {
			return d, "access GreetPause: entry"
		}
	}
	return p.s.greetPause, "default"
}

// clientLimit is a connection limit for a client: none for trusted
// networks (as Postfix exempts mynetworks from its anvil limits), the access
// map's ClientRate:/ClientConn: entry if any, else the default.
func (p *policy) clientLimit(ip netip.Addr, def int, lookup func(*access.Map, netip.Addr) (int, bool)) (int, bool) {
	if _, ok := p.s.trustedNet(ip); ok {
		return 0, true
	}
	if p.amap != nil {
		if n, ok := lookup(p.amap.Current(), ip); ok {
			return n, true
		}
	}
	return def, true
}

func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted network %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pf, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted network %q: %w", f, err)
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// hostnameOrDefault is the configured host name or the system's.
func (s *settings) hostnameOrDefault() string {
	if s.hostname != "" {
		return s.hostname
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}
