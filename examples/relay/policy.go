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
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver/access"
	"github.com/postern/postern/smtpserver/milter"
)

// policy is the relay's chain and what the listeners need to know.
type policy struct {
	chain   *postern.Chain
	amap    access.MapSource // nil without an access file
	watcher *access.Watcher
	// rcptVerify is route's recipient verification filter, nil without
	// -recipients or -callahead; the submission chain uses it too.
	rcptVerify *route.Filter
	// outbound limits the site's own senders; nil when both outbound
	// rates are unlimited. The submission chain shares it.
	outbound *ratelimit.Filter
	// milters are the [[milter]] tables as one filter, nil without
	// them; the submission chain shares it.
	milters *postern.Chain
	store   ratelimit.Store // shared counters: memory, or Redis
	// names are the chain's filters in order, for the check command.
	names []string
	s     *Config
	front *frontParts // nil: no pass cache, no greylisting
}

// openStore opens the counters' store: Redis when configured, so relays
// share them, else memory.
func openStore(s *Config) (ratelimit.Store, error) {
	if s.Redis.Addr != "" {
		rs, err := redisstore.New(redisstore.Config{Addr: s.Redis.Addr})
		if err != nil {
			return nil, fmt.Errorf("redis.addr %s: %w", s.Redis.Addr, err)
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

// buildPolicy wires the filters in the order of policy.order (see
// order.go). Serving and the check command share it, so a dry run answers
// what the server would.
//
// store holds the rate and harvest counters; it outlives reloads, so a
// reload does not forget who was limited.
func buildPolicy(s *Config, log *slog.Logger, obs postern.Observer, verifier *route.Verifier, ap *authParts, sc *scanning, store ratelimit.Store, front *frontParts) (*policy, error) {
	p := &policy{s: s, store: store, front: front}
	if s.Policy.Access != "" {
		// The watcher logs the warnings of each load (entries that cannot
		// mean what they say) and keeps the last good map on a broken file.
		w, err := access.NewWatcher(s.Policy.Access, access.WatcherConfig{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("policy.access: %w", err)
		}
		p.watcher, p.amap = w, w
	}
	built, err := p.buildFilters(log, verifier, ap, sc)
	if err != nil {
		return nil, err
	}
	if g, ok := built[ratelimit.GuardName].(*ratelimit.Guard); ok {
		// The guard counts the 550 5.1.1 answers of the filters after it.
		if obs == nil {
			obs = g.Observe
		} else {
			outer := obs
			obs = func(ctx context.Context, d postern.Decision) { g.Observe(ctx, d); outer(ctx, d) }
		}
	}
	entries, names, err := orderFilters(s, built)
	if err != nil {
		return nil, err
	}
	p.names = names
	p.chain, err = postern.NewChain(postern.ChainConfig{Name: "relay", Entries: entries, Observer: obs})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// buildFilters builds every filter the settings call for, by name.
// Trust (trusted networks, Connect: RELAY) is derived anew at every
// command from the configuration in force, so a reload that withdraws it
// reaches open connections too.
func (p *policy) buildFilters(log *slog.Logger, verifier *route.Verifier, ap *authParts, sc *scanning) (map[string]postern.Filter, error) {
	s := p.s
	built := map[string]postern.Filter{}
	trust, err := access.NewTrust(access.TrustConfig{Map: p.amap, TrustedNets: s.trusted, Logger: log})
	if err != nil {
		return nil, err
	}
	built[access.TrustFilterName] = trust
	relay, err := access.NewRelayControl(access.RelayConfig{Map: p.amap, LocalDomains: s.domains,
		TrustedNets: s.trusted, RelaySubdomains: s.Policy.RelaySubdomains, Logger: log})
	if err != nil {
		return nil, err
	}
	built[access.RelayFilterName] = relay
	if p.amap != nil {
		af, err := access.NewFilter(access.FilterConfig{Map: p.amap, LocalDomains: s.domains, Logger: log})
		if err != nil {
			return nil, err
		}
		built[access.FilterName] = af
	}
	if len(s.DNSBL.Zones)+len(s.DNSBL.Allow)+len(s.DNSBL.Domain) > 0 {
		// The filter applies its own per-zone error policy, so a lookup
		// failure arrives as a verdict, not an error.
		var record func(context.Context, *postern.Conn, dnsbl.Result)
		if p.front != nil {
			record = p.front.recordDNSBL
		}
		if built[dnsbl.FilterName], err = dnsblFilter(s, ap.dns, log, record); err != nil {
			return nil, err
		}
	}
	if p.front != nil && p.front.filter {
		built[ratelimit.GreylistName] = p.front.grey
	}
	if err := p.buildLimits(built, log); err != nil {
		return nil, err
	}
	if verifier != nil {
		vf, err := route.NewFilter(route.FilterConfig{Verifier: verifier, Domains: s.domains, Logger: log})
		if err != nil {
			return nil, err
		}
		p.rcptVerify = vf
		built[route.FilterName] = vf
	}
	if ap != nil {
		if ap.hosts != nil {
			// Refusals at connect and HELO; Connect: OK and RELAY, which
			// end the connect stage in the access filter, exempt a client
			// as sendmail's check_relay does.
			built[auth.HostFilterName] = ap.hosts
		}
		if ap.spf != nil {
			built[auth.SPFFilterName] = ap.spf
		}
		built[auth.VerifyFilterName] = ap.verify
		if ap.sign != nil {
			built[auth.SignFilterName] = ap.sign
		}
	}
	if sc != nil {
		built[scan.FilterName] = sc.filter
	}
	if len(s.Milters) > 0 {
		if p.milters, err = milterChain(s, log); err != nil {
			return nil, err
		}
		built[milterFilterName] = p.milters
	}
	return built, nil
}

// milterChain is the [[milter]] tables as one filter: a chain of milter
// clients in their order. Each applies its own on_error, so the chain
// sees verdicts, never errors.
func milterChain(s *Config, log *slog.Logger) (*postern.Chain, error) {
	var entries []postern.Entry
	for i, m := range s.Milters {
		c, err := milter.NewClient(milter.ClientConfig{Address: m.Address, Name: m.Name, OnError: m.OnError,
			ConnectTimeout: m.ConnectTimeout.Duration, CommandTimeout: m.CommandTimeout.Duration,
			ContentTimeout: m.ContentTimeout.Duration, Hostname: s.Hostname, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("milter[%d]: %w", i, err)
		}
		entries = append(entries, postern.Entry{Filter: c})
	}
	return postern.NewChain(postern.ChainConfig{Name: milterFilterName, Entries: entries})
}

// buildLimits builds the inbound and outbound rate limits and the
// harvest guard.
func (p *policy) buildLimits(built map[string]postern.Filter, log *slog.Logger) error {
	s := p.s
	if !s.Limits.MessageRate.Rate.Unlimited() || !s.Limits.RecipientRate.Rate.Unlimited() {
		rl, err := ratelimit.NewFilter(ratelimit.FilterConfig{Store: p.store, Messages: s.Limits.MessageRate.Rate,
			Recipients: s.Limits.RecipientRate.Rate, OnError: s.Redis.OnError, Logger: log})
		if err != nil {
			return err
		}
		built[ratelimit.FilterName] = rl
	}
	if !s.Limits.OutboundMessageRate.Rate.Unlimited() || !s.Limits.OutboundRecipientRate.Rate.Unlimited() {
		// Trusted clients by address (limits.outbound_exempt aside), users
		// who logged in by name: what a worm on a campus PC or a stolen
		// password sends, on every listener.
		all := ratelimit.ByOutbound(ratelimit.Class{})
		key := func(c *postern.Conn, t *postern.Txn) string {
			if !c.Authenticated() && s.outboundExempt(c.RemoteAddr()) {
				return ""
			}
			return all(c, t)
		}
		out, err := ratelimit.NewFilter(ratelimit.FilterConfig{Name: outboundFilterName, Store: p.store, Key: key,
			Messages: s.Limits.OutboundMessageRate.Rate, Recipients: s.Limits.OutboundRecipientRate.Rate, LimitTrusted: true, OnError: s.Redis.OnError, Logger: log})
		if err != nil {
			return err
		}
		p.outbound = out
		built[outboundFilterName] = out
	}
	if s.harvest.Threshold >= 0 {
		gc := s.harvest
		gc.Store, gc.Logger, gc.OnError = p.store, log, s.Redis.OnError
		g, err := ratelimit.NewGuard(gc)
		if err != nil {
			return err
		}
		built[ratelimit.GuardName] = g
	}
	return nil
}

// outboundExempt reports whether ip is in limits.outbound_exempt.
func (s *Config) outboundExempt(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, n := range s.outExempt {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// dnsblFilter builds the DNS list checks. A lookup that fails answers as
// dnsbl.on_error says (by default 4xx: mail waits rather than passing
// unchecked).
func dnsblFilter(s *Config, res *resolver.Resolver, log *slog.Logger, record func(context.Context, *postern.Conn, dnsbl.Result)) (*dnsbl.Filter, error) {
	policy := s.DNSBL.OnError
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
	if err := add(s.DNSBL.Zones, dnsbl.IPZone, 1); err != nil {
		return nil, err
	}
	if err := add(s.DNSBL.Allow, dnsbl.IPZone, -1); err != nil {
		return nil, err
	}
	if err := add(s.DNSBL.Domain, dnsbl.DomainZone, 1); err != nil {
		return nil, err
	}
	c, err := dnsbl.New(dnsbl.Config{Zones: zones, Resolver: res, Logger: log})
	if err != nil {
		return nil, err
	}
	at := postern.StageConnect
	if s.DNSBL.AtRcpt {
		at = postern.StageRcpt
	}
	return dnsbl.NewFilter(dnsbl.FilterConfig{Checker: c, EnforceAt: at, CheckHELO: len(s.DNSBL.Domain) > 0,
		CheckSender: len(s.DNSBL.Domain) > 0, ClientResult: record, Logger: log})
}

// trustedNet returns the trusted network (Postfix mynetworks) holding ip.
func (s *Config) trustedNet(ip netip.Addr) (netip.Prefix, bool) {
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
	return p.s.SMTP.GreetPause.Duration, "default"
}

// greetEntry reports whether the access map has a GreetPause: entry
// naming ip (its address or a network of it): it wins over the pass
// cache. The default entry ("GreetPause: 5000", empty key) is the site's
// pause for everyone, which the cache may cut short like the configured
// one.
func (p *policy) greetEntry(ip netip.Addr) bool {
	if p.amap == nil {
		return false
	}
	e, ok := p.amap.Current().LookupClient(access.TagGreetPause, ip, "")
	return ok && e.Action == access.ActionValue && e.Key != ""
}

// clientLimit is a connection limit (tag access.TagClientRate or
// access.TagClientConn) for a client. An access entry naming the client's
// address or network applies to every client, trusted or not, as in
// sendmail; otherwise trusted networks have none (as Postfix exempts
// mynetworks from its anvil limits), and others get the access file's
// default entry ("ClientRate: n") or the configured default.
func (p *policy) clientLimit(ip netip.Addr, def int, tag string) (int, bool) {
	var e access.Entry
	found := false
	if p.amap != nil {
		e, found = p.amap.Current().LookupClient(tag, ip, "")
		found = found && e.Action == access.ActionValue
	}
	if found && e.Key != "" {
		return int(e.Number), true
	}
	if _, ok := p.s.trustedNet(ip); ok {
		return 0, true
	}
	if found {
		return int(e.Number), true
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
func (s *Config) hostnameOrDefault() string {
	if s.Hostname != "" {
		return s.Hostname
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}
