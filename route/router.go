package route

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/postern/postern"
	"github.com/postern/postern/route/resolver"
)

// DefaultMXAddressLimit is the default of RouterConfig.MXAddressLimit.
const DefaultMXAddressLimit = 5

// RouterConfig configures a Router. The zero value routes every
// recipient by MX with the resolvers of /etc/resolv.conf.
//
// The order is sendmail's: the mailertable, then local delivery for
// LocalDomains, then the smart host, then MX.
type RouterConfig struct {
	// Mailertable, if set, is consulted first: a *Table, or a
	// *Watcher[*Table] that follows the file.
	Mailertable TableSource
	// LocalDomains are delivered on this host when the mailertable does
	// not name them (sendmail's class {w}): by LocalHop.
	LocalDomains []string
	// LocalHop is how local domains are delivered, in mailertable syntax:
	// "local:" (Maildir, the default), "local:user", or an LMTP or SMTP
	// hop such as "lmtp:unix:/run/dovecot/lmtp" or "lmtp:[127.0.0.1]:24".
	LocalHop string
	// SmartHost is the next hop of every domain the mailertable does not
	// name, in mailertable syntax ("relay:[smtp.isp.example]",
	// "esmtp:smtp.isp.example:587"); the mailer may be left out
	// ("[smtp.isp.example]"), and is then "relay". Empty: deliver by MX.
	SmartHost string
	// FallbackRelays are tried, in order, when every host of an SMTP
	// destination failed temporarily or its DNS lookup did (Postfix
	// smtp_fallback_relay, sendmail FallbackSmartHost). Same syntax as
	// SmartHost hosts: "[relay2.example]", "relay2.example:2525".
	FallbackRelays []string
	// RelayDomains are the domains this host is a mail exchanger for
	// ("example.com", or ".example.com" for every subdomain): mail for
	// them is never handed to a fallback relay, which would only send it
	// back. A domain whose MX records name this host is treated the same.
	RelayDomains []string
	// LocalNames and LocalAddrs identify this host: an MX record naming
	// one of them, or resolving to one ("192.0.2.25" or a prefix), is
	// this host (RFC 5321 §5.1). Put the EHLO name and the public
	// addresses (net.InterfaceAddrs) here. Loopback and unspecified
	// addresses are always this host when DNS or the recipient's own
	// address literal chose them.
	LocalNames []string
	LocalAddrs []string
	// ListenAddrs are the sockets this host's SMTP servers listen on; an
	// unspecified address (0.0.0.0:25, [::]:25) means every local
	// address. A next hop the configuration names (mailertable, smart
	// host, fallback relay) is a loop only when it is one of these
	// sockets, so "esmtp:[127.0.0.1]:2526" may reach a store on the same
	// machine. Without ListenAddrs such a hop is a loop when its address
	// is in LocalAddrs, whatever the port.
	ListenAddrs []netip.AddrPort
	// Resolver answers the MX and address queries: a
	// *resolver.Resolver, shared with the other DNS users of the
	// program so they share its cache. Nil means resolver.New with its
	// defaults (the nameservers of /etc/resolv.conf), made by NewRouter.
	Resolver Resolver
	// Port is the SMTP port of hosts given without one and of mail
	// exchangers (DefaultSMTPPort); LMTPPort the same for LMTP
	// (DefaultLMTPPort).
	Port     uint16
	LMTPPort uint16
	// Network restricts addresses: "ip" (the default: IPv4 and IPv6, IPv4
	// first), "ip4" or "ip6".
	Network string
	// MXAddressLimit bounds the addresses one delivery attempt tries
	// (Postfix smtp_mx_address_limit; DefaultMXAddressLimit); negative
	// means no limit.
	MXAddressLimit int
	// AllowNumericMX accepts MX records whose target is an IP address
	// written as a name. They violate RFC 5321 §5.1 ("a domain name"),
	// and Postfix ignores them; so does the Router unless this is set.
	AllowNumericMX bool
	// Rand returns a random int in [0, n); it shuffles MX records of
	// equal preference (RFC 5321 §5.1). Default: math/rand/v2.IntN.
	Rand func(n int) int
	// Logger receives warnings about DNS data (an MX pointing at a
	// CNAME or at an address); nil discards.
	Logger *slog.Logger
}

// Source says how a route was found.
type Source uint8

// The sources of a route.
const (
	FromMailertable Source = iota + 1
	FromSmartHost
	FromMX
	FromLocal // a local domain the mailertable does not name
)

var sourceNames = [...]string{"", "mailertable", "smarthost", "mx", "local"}

func (s Source) String() string {
	if int(s) < len(sourceNames) && s != 0 {
		return sourceNames[s]
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// Route is where the mail for one recipient goes; the answer of
// Router.Route. It is a value; its slices must not be modified.
type Route struct {
	// Domain is the recipient's domain in lower case.
	Domain string
	Source Source
	// Key is the mailertable key that matched.
	Key string
	// Hop is the next hop. For FromMX it is "esmtp:" the domain, by MX;
	// an empty SMTP host list of the mailertable is filled in the same
	// way.
	Hop NextHop
	// Rcpt is the address given in RCPT TO: the recipient, or the
	// address of an "smtp:user@host" entry.
	Rcpt string
	// Dest is the destination key: the hop in mailertable syntax
	// ("esmtp:[192.168.1.1]"), or "mx:" and the domain.
	Dest string
	// Fallback are the fallback relays, nil when they must not be used
	// (not SMTP, a relay domain of ours).
	Fallback []Host
}

// Target is one address a delivery attempt connects to.
type Target struct {
	// Host names the server: the MX host, the bracketed host name, or
	// the address. It is what TLS verifies and what logs and DSNs show.
	Host string
	// Addr is the address and port; zero for a Unix socket.
	Addr netip.AddrPort
	// Socket is the path of a Unix socket (LMTP).
	Socket string
	// Pref is the MX preference, 0 when not found by MX.
	Pref int
}

// String formats the target as "mx.example.net[192.0.2.1]:25".
func (t Target) String() string {
	if t.Socket != "" {
		return t.Socket
	}
	a := t.Addr.Addr().String()
	if t.Host == a {
		return "[" + a + "]:" + strconv.Itoa(int(t.Addr.Port()))
	}
	return t.Host + "[" + a + "]:" + strconv.Itoa(int(t.Addr.Port()))
}

// Plan is the resolved form of a route: the addresses to try, in order.
type Plan struct {
	Targets []Target
	// SelfMX is set when this host is one of the MX hosts of a domain on
	// the route: fallback relays must then not be used.
	SelfMX bool
}

// Router decides where mail goes: the mailertable, then the smart host,
// then the recipient domain's MX records. It does no I/O but DNS. It is
// safe for concurrent use.
type Router struct {
	table       TableSource
	locals      map[string]bool
	localHop    NextHop
	smart       *NextHop
	fallback    []Host
	relay       domainSet
	localNames  map[string]bool
	localAddrs  []netip.Prefix
	listenAddrs []netip.AddrPort
	dns         Resolver
	port        uint16
	lmtpPort    uint16
	network     string
	addrLimit   int
	numericMX   bool
	rand        func(int) int
	log         *slog.Logger
	warnedMu    sync.Mutex
	warnedCNAME map[string]bool
}

// NewRouter validates cfg and returns a Router.
func NewRouter(cfg RouterConfig) (*Router, error) {
	r := &Router{
		table: cfg.Mailertable, port: cfg.Port, lmtpPort: cfg.LMTPPort, network: cfg.Network,
		addrLimit: cfg.MXAddressLimit, numericMX: cfg.AllowNumericMX, rand: cfg.Rand, log: cfg.Logger,
		localNames: map[string]bool{}, warnedCNAME: map[string]bool{},
	}
	if r.log == nil {
		r.log = postern.DiscardLogger()
	}
	if r.rand == nil {
		r.rand = rand.IntN
	}
	if r.port == 0 {
		r.port = DefaultSMTPPort
	}
	if r.lmtpPort == 0 {
		r.lmtpPort = DefaultLMTPPort
	}
	switch r.network {
	case "":
		r.network = "ip"
	case "ip", "ip4", "ip6":
	default:
		return nil, fmt.Errorf("%w: Network %q (want ip, ip4 or ip6)", ErrConfig, cfg.Network)
	}
	if r.addrLimit == 0 {
		r.addrLimit = DefaultMXAddressLimit
	}
	if err := r.setLocal(cfg); err != nil {
		return nil, err
	}
	if err := r.setRelays(cfg); err != nil {
		return nil, err
	}
	var err error
	if r.relay, err = newDomainSet(cfg.RelayDomains); err != nil {
		return nil, fmt.Errorf("%w: RelayDomains: %w", ErrConfig, err)
	}
	if err := r.setSelf(cfg); err != nil {
		return nil, err
	}
	r.dns = cfg.Resolver
	if r.dns == nil {
		res, err := resolver.New(resolver.Config{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		r.dns = res
	}
	return r, nil
}

// setLocal reads LocalDomains and LocalHop.
func (r *Router) setLocal(cfg RouterConfig) error {
	r.locals = map[string]bool{}
	for _, d := range cfg.LocalDomains {
		n, err := normalizeDomain(strings.TrimSpace(d))
		if err != nil {
			return fmt.Errorf("%w: LocalDomains: %q", ErrConfig, d)
		}
		r.locals[n] = true
	}
	hop := cmp.Or(strings.TrimSpace(cfg.LocalHop), "local:")
	h, err := ParseNextHop(hop)
	if err != nil {
		return fmt.Errorf("%w: LocalHop: %w", ErrConfig, err)
	}
	if h.Kind == KindSMTP && len(h.Hosts) == 0 {
		return fmt.Errorf("%w: LocalHop %q names no host (an MX lookup of a local domain finds this host)", ErrConfig, hop)
	}
	r.localHop = h
	return nil
}

// setRelays reads SmartHost and FallbackRelays.
func (r *Router) setRelays(cfg RouterConfig) error {
	if cfg.SmartHost != "" {
		h, err := parseRelay(cfg.SmartHost, "relay")
		if err != nil {
			return fmt.Errorf("%w: SmartHost: %w", ErrConfig, err)
		}
		r.smart = &h
	}
	for _, s := range cfg.FallbackRelays {
		h, err := parseRelay(s, "esmtp")
		if err != nil {
			return fmt.Errorf("%w: FallbackRelays: %w", ErrConfig, err)
		}
		if h.Kind != KindSMTP || len(h.Hosts) == 0 || h.User != "" {
			return fmt.Errorf("%w: fallback relay %q is not an SMTP host", ErrConfig, s)
		}
		r.fallback = append(r.fallback, h.Hosts...)
	}
	return nil
}

// setSelf reads what names this host, so that it never delivers to
// itself: LocalNames, ListenAddrs and LocalAddrs.
func (r *Router) setSelf(cfg RouterConfig) error {
	for _, n := range cfg.LocalNames {
		d, err := normalizeDomain(n)
		if err != nil {
			return fmt.Errorf("%w: LocalNames: %q", ErrConfig, n)
		}
		r.localNames[d] = true
	}
	for _, ap := range cfg.ListenAddrs {
		if !ap.IsValid() {
			return fmt.Errorf("%w: ListenAddrs: %v", ErrConfig, ap)
		}
		r.listenAddrs = append(r.listenAddrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	for _, a := range cfg.LocalAddrs {
		p, err := parsePrefix(a)
		if err != nil {
			return fmt.Errorf("%w: LocalAddrs: %q", ErrConfig, a)
		}
		r.localAddrs = append(r.localAddrs, p)
	}
	return nil
}

// parseRelay parses a smart host or fallback relay: a next hop, or a bare
// host list that gets defaultMailer.
func parseRelay(s, defaultMailer string) (NextHop, error) {
	s = strings.TrimSpace(s)
	if m, _, ok := strings.Cut(s, ":"); ok {
		if _, known := mailerKinds[strings.ToLower(m)]; known {
			return ParseNextHop(s)
		}
	}
	return ParseNextHop(defaultMailer + ":" + s)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// domainSet matches domains as mailertable keys do: "example.com"
// exactly, ".example.com" every subdomain.
type domainSet map[string]bool

func newDomainSet(list []string) (domainSet, error) {
	s := domainSet{}
	for _, d := range list {
		k, err := normalizeKey(strings.TrimSpace(d))
		if err != nil || k == "." {
			return nil, fmt.Errorf("bad domain %q", d)
		}
		s[k] = true
	}
	return s, nil
}

func (s domainSet) match(domain string) bool {
	if len(s) == 0 {
		return false
	}
	d := strings.ToLower(trimDot(domain))
	if s[d] {
		return true
	}
	for i := strings.IndexByte(d, '.'); i >= 0; {
		if s[d[i:]] {
			return true
		}
		j := strings.IndexByte(d[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// Route finds the next hop for a recipient address: its mailertable
// entry, else LocalHop for a local domain, else the smart host, else the
// MX records of its domain. It fails with ErrBadAddress for an address
// without a domain.
func (r *Router) Route(addr string) (Route, error) {
	domain := postern.AddrDomain(addr)
	if domain == "" || strings.ContainsAny(domain, " \t\r\n<>") {
		return Route{}, fmt.Errorf("%w: %q has no domain", ErrBadAddress, addr)
	}
	rt := Route{Domain: domain, Rcpt: addr}
	var t *Table
	if r.table != nil {
		t = r.table.Current()
	}
	if e, ok := t.Lookup(domain); ok {
		rt.Source, rt.Key, rt.Hop = FromMailertable, e.Key, e.Hop
	} else if r.locals[strings.TrimSuffix(domain, ".")] {
		rt.Source, rt.Hop = FromLocal, r.localHop
	} else if r.smart != nil {
		rt.Source, rt.Hop = FromSmartHost, *r.smart
	} else {
		rt.Source = FromMX
		rt.Hop = NextHop{Mailer: "esmtp", Kind: KindSMTP}
	}
	if rt.Hop.Kind == KindSMTP && len(rt.Hop.Hosts) == 0 {
		h := Host{Name: domain}
		if a, ok := literalAddr(domain); ok {
			h = Host{Name: a.String(), Addr: a, NoMX: true}
		} else if _, err := normalizeDomain(domain); err != nil {
			return Route{}, fmt.Errorf("%w: %q: bad domain", ErrBadAddress, addr)
		}
		rt.Hop.Hosts = []Host{h}
	}
	if rt.Hop.Kind == KindSMTP && rt.Hop.User != "" && len(rt.Hop.Hosts) == 1 {
		rt.Rcpt = rt.Hop.User + "@" + rt.Hop.Hosts[0].Name
		if rt.Hop.Hosts[0].Addr.IsValid() {
			rt.Rcpt = rt.Hop.User + "@" + Host{Name: rt.Hop.Hosts[0].Name, Addr: rt.Hop.Hosts[0].Addr}.String()
		}
	}
	if rt.Source == FromMX && !rt.Hop.Hosts[0].NoMX {
		rt.Dest = "mx:" + domain
	} else {
		rt.Dest = rt.Hop.String()
	}
	if rt.Hop.Kind == KindSMTP && len(r.fallback) > 0 && !r.relay.match(domain) {
		rt.Fallback = r.fallback
	}
	return rt, nil
}

// Resolve looks up the addresses of a route's hosts: each host in turn,
// by MX unless bracketed (RFC 5321 §5.1), its addresses by A and AAAA.
// The result holds at most MXAddressLimit targets. A failure is a
// *Failure with the reply the delivery reports: 550 5.1.2 for a domain
// that does not exist, 556 5.1.10 for a null MX, 554 5.4.6 when the best
// MX is this host, 451 4.4.3 when DNS failed.
//
// A target that is this host is a loop (554 5.4.6 "mail for X loops back
// to myself", Postfix's words): for hosts found by MX, and for the
// recipient's own address literal, an address of LocalAddrs, loopback or
// unspecified; for hosts the configuration names, one of ListenAddrs.
func (r *Router) Resolve(ctx context.Context, rt Route) (Plan, error) {
	return r.resolveHosts(ctx, rt.Hop.Kind, rt.Hop.Hosts, rt.Source == FromMX)
}

// ResolveHosts resolves a host list named by the configuration (fallback
// relays) as Resolve does; kind chooses the default port.
func (r *Router) ResolveHosts(ctx context.Context, kind Kind, hosts []Host) (Plan, error) {
	return r.resolveHosts(ctx, kind, hosts, false)
}

// resolveHosts resolves hosts; fromAddr says that the recipient address,
// not the configuration, chose them.
func (r *Router) resolveHosts(ctx context.Context, kind Kind, hosts []Host, fromAddr bool) (Plan, error) {
	defPort := r.port
	if kind == KindLMTP {
		defPort = r.lmtpPort
	}
	var plan Plan
	var fails []*Failure
	for _, h := range hosts {
		port := h.Port
		if port == 0 {
			port = defPort
		}
		switch {
		case h.Socket != "":
			plan.Targets = append(plan.Targets, Target{Host: h.Name, Socket: h.Socket})
		case h.Addr.IsValid():
			if !r.allowed(h.Addr) {
				fails = append(fails, failure(550, postern.ESC(5, 4, 4), "address "+h.Addr.String()+" is of a disabled address family", ErrNoAddress))
				continue
			}
			if r.isSelf(h.Addr, port, fromAddr) {
				fails = append(fails, r.loopFailure(h.String()))
				continue
			}
			plan.Targets = append(plan.Targets, Target{Host: h.Name, Addr: netip.AddrPortFrom(h.Addr, port)})
		case h.NoMX:
			if r.localNames[h.Name] {
				fails = append(fails, r.loopFailure(h.Name))
				continue
			}
			addrs, err := r.hostAddrs(ctx, h.Name, "")
			if err != nil {
				fails = append(fails, err)
				continue
			}
			n := 0
			for _, a := range addrs {
				if r.isSelf(a, port, fromAddr) {
					continue
				}
				plan.Targets = append(plan.Targets, Target{Host: h.Name, Addr: netip.AddrPortFrom(a, port)})
				n++
			}
			if n == 0 {
				fails = append(fails, r.loopFailure(h.Name))
			}
		default:
			ts, self, err := r.mxTargets(ctx, h.Name, port)
			plan.SelfMX = plan.SelfMX || self
			if err != nil {
				fails = append(fails, err)
				continue
			}
			plan.Targets = append(plan.Targets, ts...)
		}
	}
	if r.addrLimit > 0 && len(plan.Targets) > r.addrLimit {
		plan.Targets = plan.Targets[:r.addrLimit]
	}
	if len(plan.Targets) > 0 {
		return plan, nil
	}
	if len(fails) == 0 {
		return plan, failure(554, postern.ESC(5, 4, 4), "no hosts to deliver to", ErrNoAddress)
	}
	// Report a temporary failure if there is one: another attempt may
	// find the host that failed.
	for _, f := range fails {
		if f.Temporary() {
			return plan, f
		}
	}
	return plan, fails[0]
}

func (r *Router) allowed(a netip.Addr) bool {
	switch r.network {
	case "ip4":
		return a.Is4()
	case "ip6":
		return a.Is6()
	}
	return true
}

func (r *Router) isLocalAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.localAddrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isSelf reports whether connecting to a:port reaches this host. When DNS
// or the recipient chose the address (strict) any local address is this
// host, loopback and unspecified included: an MX pointing at 127.0.0.1
// is a loop whatever port we listen on. A configured next hop is this
// host only when it is a socket we listen on.
func (r *Router) isSelf(a netip.Addr, port uint16, strict bool) bool {
	a = a.Unmap()
	local := a.IsLoopback() || a.IsUnspecified() || r.isLocalAddr(a)
	if strict {
		return local
	}
	if len(r.listenAddrs) == 0 {
		return r.isLocalAddr(a)
	}
	for _, l := range r.listenAddrs {
		if l.Port() != port {
			continue
		}
		if l.Addr() == a || l.Addr().IsUnspecified() && local {
			return true
		}
	}
	return false
}

func (r *Router) loopFailure(what string) *Failure {
	return failure(554, postern.ESC(5, 4, 6), "mail for "+what+" loops back to myself", ErrMailLoop)
}

// hostAddrs resolves a host name; why names the MX domain for messages.
func (r *Router) hostAddrs(ctx context.Context, host, why string) ([]netip.Addr, *Failure) {
	addrs, cname, err := lookupAddrs(ctx, r.dns, host, r.network)
	if cname && why != "" {
		r.warnCNAME(ctx, why, host)
	}
	if f := lookupFailure(err, "host", host); f != nil {
		return nil, f
	}
	if len(addrs) == 0 {
		return nil, failure(550, postern.ESC(5, 4, 4), "Host found but no address record: "+host, fmt.Errorf("%w: %s", ErrNoAddress, host))
	}
	out := addrs[:0]
	for _, a := range addrs {
		if r.allowed(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, failure(550, postern.ESC(5, 4, 4), "Host found but no address record of an enabled family: "+host, fmt.Errorf("%w: %s", ErrNoAddress, host))
	}
	return out, nil
}

// warnCNAME logs, once per MX host, that an MX record names an alias
// (RFC 2181 §10.3 forbids it; Postfix and sendmail follow it anyway).
func (r *Router) warnCNAME(ctx context.Context, domain, host string) {
	r.warnedMu.Lock()
	seen := r.warnedCNAME[host]
	if !seen {
		if len(r.warnedCNAME) > 1000 {
			clear(r.warnedCNAME)
		}
		r.warnedCNAME[host] = true
	}
	r.warnedMu.Unlock()
	if !seen {
		r.log.LogAttrs(ctx, slog.LevelWarn, "MX host is an alias (CNAME); following it",
			slog.String("domain", domain), slog.String("mx", host))
	}
}

func dnsText(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, ErrDNS.Error()+": ")
	s = strings.TrimPrefix(s, "resolver: ")
	return s
}

// mxTargets expands a domain by its MX records (RFC 5321 §5.1).
func (r *Router) mxTargets(ctx context.Context, domain string, port uint16) ([]Target, bool, *Failure) {
	mxs, null, _, err := lookupMX(ctx, r.dns, domain)
	if f := lookupFailure(err, "domain", domain); f != nil {
		return nil, false, f
	}
	if null {
		// RFC 7505 §4.1: 556 5.1.10 for a domain that accepts no mail.
		return nil, false, failure(556, postern.ESC(5, 1, 10), "Recipient address rejected: "+domain+" does not accept mail (null MX)", fmt.Errorf("%w: %s", ErrNullMX, domain))
	}
	if len(mxs) == 0 {
		return r.implicitMX(ctx, domain, port)
	}
	r.sortMX(mxs)
	hosts := r.mxHosts(ctx, domain, mxs)
	selfPref, self := r.selfPreference(mxs, hosts, port)
	var ts []Target
	var fails []*Failure
	for i, mx := range mxs {
		if self && int(mx.pref) >= selfPref {
			break
		}
		if hosts[i].fail != nil {
			fails = append(fails, hosts[i].fail)
			continue
		}
		for _, a := range hosts[i].addrs {
			if r.allowed(a) {
				ts = append(ts, Target{Host: mx.host, Addr: netip.AddrPortFrom(a, port), Pref: int(mx.pref)})
			}
		}
	}
	if len(ts) > 0 {
		return ts, self, nil
	}
	return nil, self, r.noMXTarget(domain, self, fails)
}

// lookupFailure is the failure of a DNS lookup of a "host" or "domain"
// name; nil if err is.
func lookupFailure(err error, what, name string) *Failure {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBadAddress):
		return failure(550, postern.ESC(5, 1, 2), "bad "+what+" name "+name, err)
	case errors.Is(err, errNXDomain):
		return failure(550, postern.ESC(5, 1, 2), "Host or domain name not found: "+name, fmt.Errorf("%w: %s", ErrNoDomain, name))
	default:
		return failure(451, postern.ESC(4, 4, 3), "DNS lookup failed: "+dnsText(err), err)
	}
}

// implicitMX is the domain itself as its MX, preference 0, for a domain
// without MX records (RFC 5321 §5.1).
func (r *Router) implicitMX(ctx context.Context, domain string, port uint16) ([]Target, bool, *Failure) {
	if r.localNames[domain] {
		return nil, true, r.loopFailure(domain)
	}
	addrs, f := r.hostAddrs(ctx, domain, "")
	if f != nil {
		return nil, false, f
	}
	var ts []Target
	self := false
	for _, a := range addrs {
		if r.isSelf(a, port, true) {
			self = true
			continue
		}
		ts = append(ts, Target{Host: domain, Addr: netip.AddrPortFrom(a, port)})
	}
	if len(ts) == 0 {
		return nil, self, r.loopFailure(domain)
	}
	return ts, self, nil
}

// mxHost is what an MX host resolved to.
type mxHost struct {
	addrs []netip.Addr
	fail  *Failure
	self  bool // one of this host's names
}

// mxHosts resolves the MX hosts of domain, all at once.
func (r *Router) mxHosts(ctx context.Context, domain string, mxs []mxRecord) []mxHost {
	res := make([]mxHost, len(mxs))
	var wg sync.WaitGroup
	for i, mx := range mxs {
		if a, err := netip.ParseAddr(mx.host); err == nil {
			// An MX naming an address (RFC 5321 §5.1 wants a name):
			// used only when configured, like Postfix.
			if !r.numericMX {
				r.log.LogAttrs(ctx, slog.LevelWarn, "MX host is a numeric IP address; ignored",
					slog.String("domain", domain), slog.String("mx", mx.host))
				res[i].fail = failure(451, postern.ESC(4, 4, 4), "MX host "+mx.host+" of "+domain+" is a numeric IP address", ErrNoAddress)
				continue
			}
			res[i].addrs = []netip.Addr{a.Unmap()}
			continue
		}
		if r.localNames[mx.host] {
			res[i].self = true
			continue
		}
		wg.Go(func() { res[i].addrs, res[i].fail = r.hostAddrs(ctx, mx.host, domain) })
	}
	wg.Wait()
	return res
}

// selfPreference finds this host among the exchangers, by name or
// address, and returns its preference: RFC 5321 §5.1, only those
// strictly more preferred may be used.
func (r *Router) selfPreference(mxs []mxRecord, hosts []mxHost, port uint16) (pref int, self bool) {
	for i, mx := range mxs {
		if !hosts[i].self {
			for _, a := range hosts[i].addrs {
				if r.isSelf(a, port, true) {
					hosts[i].self = true
				}
			}
		}
		if hosts[i].self {
			return int(mx.pref), true
		}
	}
	return -1, false
}

// noMXTarget is the failure when no MX host of domain gave a target.
func (r *Router) noMXTarget(domain string, self bool, fails []*Failure) *Failure {
	if self && len(fails) == 0 {
		return r.loopFailure(domain)
	}
	for _, f := range fails {
		if f.Temporary() {
			return f
		}
	}
	if len(fails) > 0 {
		return failure(550, postern.ESC(5, 4, 4), "no address for any MX host of "+domain, fmt.Errorf("%w: MX hosts of %s: %v", ErrNoAddress, domain, fails[0].Err))
	}
	return failure(550, postern.ESC(5, 4, 4), "no usable MX host for "+domain, fmt.Errorf("%w: %s", ErrNoAddress, domain))
}

// sortMX orders by preference and shuffles records of equal preference
// (RFC 5321 §5.1), so load spreads over them.
func (r *Router) sortMX(mxs []mxRecord) {
	slices.SortStableFunc(mxs, func(a, b mxRecord) int { return cmp.Compare(a.pref, b.pref) })
	for i := 0; i < len(mxs); {
		j := i + 1
		for j < len(mxs) && mxs[j].pref == mxs[i].pref {
			j++
		}
		group := mxs[i:j]
		for k := len(group) - 1; k > 0; k-- {
			n := r.rand(k + 1)
			if n < 0 || n > k {
				n = k // a broken Rand must not index out of range
			}
			group[k], group[n] = group[n], group[k]
		}
		i = j
	}
}
