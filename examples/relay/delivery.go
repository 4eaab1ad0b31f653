package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/resolver"
)

// delivery is the outbound half of the relay: the route transport that
// empties the queue, and the recipient verification that shares it.
type delivery struct {
	transport *route.Transport
	router    *route.Router
	table     *route.Watcher[*route.Table] // nil without -mailertable
	verifier  *route.Verifier              // nil unless -recipients or -callahead
	rcptWatch *route.Watcher[*route.Recipients]
}

// buildRouting makes the router, the transport and the recipient
// verifier.
//
// self are the sockets the relay listens on, and the host's interface
// addresses are its own: the router refuses to deliver to them (a mail
// loop), as Postfix refuses mail that "loops back to myself".
//
// dir, with ldap.uses "recipients", verifies the recipients it covers.
func buildRouting(s *Config, res *resolver.Resolver, log *slog.Logger, self []netip.AddrPort, dir *directory.Directory) (*delivery, error) {
	d := &delivery{}
	// sendmail's order: mailertable, local delivery, smart host, MX.
	rcfg := route.RouterConfig{LocalDomains: s.localDomains, LocalHop: s.Delivery.Local,
		SmartHost: s.Delivery.SmartHost, FallbackRelays: s.Delivery.FallbackRelays, RelayDomains: s.domains,
		Resolver: res, Logger: log, ListenAddrs: self, LocalAddrs: interfaceAddrs(log)}
	if s.Hostname != "" {
		rcfg.LocalNames = []string{s.Hostname}
	}
	if s.Delivery.Mailertable != "" {
		w, err := route.NewMailertableWatcher(s.Delivery.Mailertable, route.WatcherConfig{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("delivery.mailertable: %w", err)
		}
		d.table, rcfg.Mailertable = w, w
	}
	var err error
	if d.router, err = route.NewRouter(rcfg); err != nil {
		return nil, err
	}
	// As many idle connections per host as the queue runs deliveries per
	// destination, so each of them finds one to reuse.
	d.transport, err = route.NewTransport(route.TransportConfig{Router: d.router, Hostname: s.Hostname,
		MaildirRoot: s.Delivery.Maildir, MaildirExistingOnly: !s.Delivery.MaildirCreate, Logger: log,
		MaxIdlePerHost: queue.DefaultDestinationConcurrency})
	if err != nil {
		return nil, err
	}
	ldapRcpts := dir != nil && s.LDAP.uses("recipients")
	if s.Policy.Recipients != "" || s.Policy.CallAhead || !s.Delivery.MaildirCreate || ldapRcpts {
		vcfg := route.VerifierConfig{CallAhead: s.Policy.CallAhead, Mailboxes: !s.Delivery.MaildirCreate, Transport: d.transport, Logger: log}
		if ldapRcpts {
			vcfg.Directory, vcfg.DirectoryOnError = dir, s.LDAP.OnError
		}
		if s.Policy.Recipients != "" {
			if d.rcptWatch, err = route.NewRecipientsWatcher(s.Policy.Recipients, route.WatcherConfig{Logger: log}); err != nil {
				d.transport.Close()
				return nil, fmt.Errorf("policy.recipients: %w", err)
			}
			vcfg.Recipients = d.rcptWatch
		}
		if d.verifier, err = route.NewVerifier(vcfg); err != nil {
			d.transport.Close()
			return nil, err
		}
	}
	return d, nil
}

// interfaceAddrs are the addresses of this host's network interfaces.
func interfaceAddrs(log *slog.Logger) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("interface addresses unknown; loops through them are not detected", "error", err)
		return nil
	}
	var out []string
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap().String())
		}
	}
	return out
}

// watch reloads the mailertable and recipients files when they change,
// until ctx is done.
func (d *delivery) watch(ctx context.Context) {
	if d.table != nil {
		go d.table.Run(ctx)
	}
	if d.rcptWatch != nil {
		go d.rcptWatch.Run(ctx)
	}
}

func (d *delivery) Close() { d.transport.Close() }

// parseAge reads a duration that may be written in days, as sendmail's
// Timeout.queuereturn=5d is.
func parseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		return time.Duration(days * 24 * float64(time.Hour)), nil
	}
	return time.ParseDuration(s)
}
