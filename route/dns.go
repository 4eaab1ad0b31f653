package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/postern/postern/route/resolver"
)

// Resolver is how the Router asks the DNS. *resolver.Resolver
// implements it (with its cache, timeouts and TCP fallback); the Router
// needs only answers to questions.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error)
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }

// fqdn returns the ASCII (A-label, RFC 5890) fully qualified form of a
// domain for a DNS query.
func fqdn(domain string) (string, error) {
	d := trimDot(domain)
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", fmt.Errorf("%w: %q is not a valid internationalised domain name", ErrBadAddress, domain)
			}
			d = a
			break
		}
	}
	if _, ok := dns.IsDomainName(d); !ok || d == "" {
		return "", fmt.Errorf("%w: %q is not a domain name", ErrBadAddress, domain)
	}
	return dns.Fqdn(strings.ToLower(d)), nil
}

// errNXDomain is the internal form of an NXDOMAIN answer.
var errNXDomain = errors.New("NXDOMAIN")

// query asks name/qtype; a failure wraps ErrDNS.
func query(ctx context.Context, res Resolver, name string, qtype uint16) (resolver.Answer, error) {
	a, err := res.Lookup(ctx, name, qtype)
	if err != nil {
		return a, fmt.Errorf("%w: %w", ErrDNS, err)
	}
	return a, nil
}

// mxRecord is one usable MX record.
type mxRecord struct {
	host string // lower case, no trailing dot
	pref uint16
}

// lookupMX returns the MX records of domain in answer order. null is set
// for a null MX (RFC 7505 §3: a single record "0 ."). Records with the
// root as target next to others are dropped: such a domain is
// misconfigured, and its real exchangers are still worth trying.
func lookupMX(ctx context.Context, res Resolver, domain string) (mxs []mxRecord, null, cname bool, err error) {
	name, err := fqdn(domain)
	if err != nil {
		return nil, false, false, err
	}
	a, err := query(ctx, res, name, dns.TypeMX)
	if err != nil {
		return nil, false, false, err
	}
	cname = len(a.Aliases) > 0
	if a.NXDomain() {
		return nil, false, cname, errNXDomain
	}
	for _, rr := range a.Records {
		mx := rr.(*dns.MX)
		if mx.Mx == "" {
			continue
		}
		if mx.Mx == "." {
			if len(a.Records) == 1 {
				return nil, true, cname, nil
			}
			continue
		}
		mxs = append(mxs, mxRecord{host: strings.ToLower(trimDot(mx.Mx)), pref: mx.Preference})
	}
	return mxs, false, cname, nil
}

// lookupAddrs returns the addresses of host: A records, then AAAA,
// as network allows ("ip", "ip4" or "ip6"), asked at the same time. It
// fails with errNXDomain when the name does not exist, with an error
// wrapping ErrDNS when a lookup failed and nothing was found.
func lookupAddrs(ctx context.Context, res Resolver, host, network string) (addrs []netip.Addr, cname bool, err error) {
	name, err := fqdn(host)
	if err != nil {
		return nil, false, err
	}
	var types []uint16
	if network != "ip6" {
		types = append(types, dns.TypeA)
	}
	if network != "ip4" {
		types = append(types, dns.TypeAAAA)
	}
	answers := make([]resolver.Answer, len(types))
	errs := make([]error, len(types))
	var wg sync.WaitGroup
	for i, t := range types {
		wg.Go(func() { answers[i], errs[i] = query(ctx, res, name, t) })
	}
	wg.Wait()
	nx := 0
	var tempErr error
	for i := range types {
		switch {
		case errs[i] != nil:
			tempErr = errs[i]
		case answers[i].NXDomain():
			nx++
		}
		cname = cname || len(answers[i].Aliases) > 0
		for _, rr := range answers[i].Records {
			var ip net.IP
			switch r := rr.(type) {
			case *dns.A:
				ip = r.A
			case *dns.AAAA:
				ip = r.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	switch {
	case len(addrs) > 0:
		return addrs, cname, nil
	case tempErr != nil:
		return nil, cname, tempErr
	case nx > 0:
		return nil, cname, errNXDomain
	}
	return nil, cname, nil
}
