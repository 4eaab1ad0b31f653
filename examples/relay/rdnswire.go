package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/route/resolver"
)

// maxReverseDNSTimeout is the most smtp.reverse_dns_timeout may be: the
// lookup runs in the connect stage, which smtpserver bounds at 30 s.
const maxReverseDNSTimeout = 30 * time.Second

// hostChecks reads policy.helo_checks and policy.client_checks.
func hostChecks(helo, client []string) (auth.HostCheck, error) {
	var hc auth.HostCheck
	for _, l := range []struct {
		key, prefix string
		names       []string
		want        string
	}{
		{"policy.helo_checks", "helo_", helo, "resolves, not_us or literal"},
		{"policy.client_checks", "client_", client, "ptr or name"},
	} {
		for _, n := range l.names {
			c, err := auth.ParseHostCheck(l.prefix + n)
			if err != nil {
				return 0, keyErr(l.key, "%q is not %s", n, l.want)
			}
			hc |= c
		}
	}
	return hc, nil
}

// newResolver makes a generation's one DNS resolver, which the DNS lists,
// SPF, DKIM, DMARC, the client's host name and the host checks, and
// delivery's MX lookups share with its cache: the servers of
// dns.resolvers in turn, or those of /etc/resolv.conf.
func newResolver(s *Config, log *slog.Logger) (*resolver.Resolver, error) {
	res, err := resolver.New(resolver.Config{Servers: s.DNS.Resolvers, TrustAD: s.DNS.DNSSEC, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("dns.resolvers: %w", err)
	}
	return res, nil
}

// buildHostParts makes the reverse DNS lookup (nil when
// smtp.reverse_dns is off) and the host checks (nil when none is asked).
func buildHostParts(s *Config, a *authParts, log *slog.Logger) error {
	var err error
	if s.SMTP.ReverseDNS {
		if a.iprev, err = auth.NewIPRev(auth.IPRevConfig{Resolver: a.dns, Timeout: s.SMTP.ReverseDNSTimeout.Duration}); err != nil {
			return fmt.Errorf("smtp.reverse_dns: %w", err)
		}
	}
	if s.hostChecks == 0 {
		return nil
	}
	a.hosts, err = auth.NewHostFilter(auth.HostFilterConfig{Checks: s.hostChecks, Resolver: a.dns,
		Timeout: s.SMTP.ReverseDNSTimeout.Duration, OwnNames: append([]string{s.hostnameOrDefault()}, s.localDomains...), Logger: log})
	return err
}

// swapRDNS looks client names up with the generation in force, so a reload
// can turn the lookup on or off or point it at other servers.
type swapRDNS struct{ r *relayServer }

func (d swapRDNS) LookupClientHost(ctx context.Context, ip netip.Addr) postern.ClientHost {
	if v := d.r.cur.Load().ap.iprev; v != nil {
		return v.LookupClientHost(ctx, ip)
	}
	return postern.ClientHost{}
}

// skipRDNS exempts the trusted networks of the generation in force.
func (d swapRDNS) skip(ip netip.Addr) bool {
	_, ok := d.r.cur.Load().s.trustedNet(ip)
	return ok
}

// describeClientHost says what the lookup found, for relay check.
func describeClientHost(h postern.ClientHost, ip netip.Addr) string {
	switch h.Resolve {
	case postern.ResolveOK:
		return "OK " + h.Name + " (PTR confirmed by its address records)"
	case postern.ResolveForged:
		return "FORGED: PTR " + h.PTR + " does not resolve to " + ip.String() + "; host-name entries do not apply"
	case postern.ResolveFail:
		return "FAIL: no PTR record for " + ip.String() + "; host-name entries do not apply"
	case postern.ResolveTemp:
		return "TEMP: DNS failed for now; host-name entries do not apply"
	}
	return "not looked up"
}
