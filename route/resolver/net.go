package resolver

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// The methods below are the method set of *net.Resolver that
// blitiri.com.ar/go/spf's DNSResolver, go-msgauth and the auth package
// use, answered through Lookup (so from the cache). Names are always
// absolute: no search list is tried. Their errors are *net.DNSError, not
// wrapped (those libraries test the type directly): IsNotFound for
// NXDOMAIN and "no data" (unwrapping to ErrNXDomain or ErrNoData), and
// IsTemporary, with IsTimeout for ErrTimeout, for the temporary failures,
// unwrapping to the resolver's error.

// LookupTXT returns the TXT records of name, each record's strings
// joined, as net.Resolver does.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a, err := r.Lookup(ctx, name, dns.TypeTXT)
	if err := netErr(name, a, err); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(a.Records))
	for _, rr := range a.Records {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			b.WriteString(unescape(s))
		}
		out = append(out, b.String())
	}
	return out, nil
}

// TXTFunc returns LookupTXT bound to ctx, in the form go-msgauth's DKIM
// and DMARC options take (dkim.VerifyOptions.LookupTXT).
func (r *Resolver) TXTFunc(ctx context.Context) func(name string) ([]string, error) {
	return func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
}

// LookupMX returns the MX records of name sorted by preference (stable:
// records of equal preference stay in answer order; shuffle them if you
// spread load). Hosts are fully qualified; a null MX (RFC 7505) is one
// record with Host ".".
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	a, err := r.Lookup(ctx, name, dns.TypeMX)
	if err := netErr(name, a, err); err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(a.Records))
	for _, rr := range a.Records {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: dns.Fqdn(mx.Mx), Pref: mx.Preference})
	}
	slices.SortStableFunc(out, func(x, y *net.MX) int { return cmp.Compare(x.Pref, y.Pref) })
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: a.AsSlice()}
	}
	return out, nil
}

// LookupNetIP returns the addresses of host: A records for network "ip4",
// AAAA for "ip6", both (A first, asked at the same time) for "ip". An IP
// address is returned as it is. Errors are strict, as SPF needs (RFC
// 7208 §5): a temporary failure of either query fails the lookup rather
// than return half an answer.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	var types []uint16
	switch network {
	case "ip":
		types = []uint16{dns.TypeA, dns.TypeAAAA}
	case "ip4":
		types = []uint16{dns.TypeA}
	case "ip6":
		types = []uint16{dns.TypeAAAA}
	default:
		return nil, &net.DNSError{Err: "unsupported network " + network, Name: host}
	}
	answers := make([]Answer, len(types))
	errs := make([]error, len(types))
	if len(types) == 1 {
		answers[0], errs[0] = r.Lookup(ctx, host, types[0])
	} else {
		var wg sync.WaitGroup
		for i, t := range types {
			wg.Go(func() { answers[i], errs[i] = r.Lookup(ctx, host, t) })
		}
		wg.Wait()
	}
	var out []netip.Addr
	for i := range types {
		if errs[i] != nil {
			return nil, netErr(host, answers[i], errs[i])
		}
		for _, rr := range answers[i].Records {
			var ip net.IP
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A
			case *dns.AAAA:
				ip = rr.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) == 0 {
		return nil, netErr(host, answers[len(answers)-1], nil)
	}
	return out, nil
}

// LookupAddr returns the names of the PTR records of addr's reverse name
// (RFC 1035 §3.5, RFC 3596 §2.5), fully qualified, in answer order, as
// the server gave them: callers must check that they are host names.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr, UnwrapErr: ErrName}
	}
	rev, err := dns.ReverseAddr(ip.Unmap().WithZone("").String())
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr, UnwrapErr: ErrName}
	}
	a, err := r.Lookup(ctx, rev, dns.TypePTR)
	if err := netErr(addr, a, err); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(a.Records))
	for _, rr := range a.Records {
		out = append(out, dns.Fqdn(rr.(*dns.PTR).Ptr))
	}
	return out, nil
}

// netErr turns a lookup's outcome into the error net.Resolver would
// return: nil when a has records.
func netErr(name string, a Answer, err error) error {
	const noSuchHost = "no such host" // net's words, which callers match
	switch {
	case errors.Is(err, ErrName):
		return &net.DNSError{Err: noSuchHost, Name: name, IsNotFound: true, UnwrapErr: err}
	case err != nil:
		de := &net.DNSError{Err: "server misbehaving", Name: name, IsTemporary: true, UnwrapErr: err}
		if errors.Is(err, ErrTimeout) {
			de.Err, de.IsTimeout = "i/o timeout", true
		}
		return de
	case a.NXDomain():
		return &net.DNSError{Err: noSuchHost, Name: name, IsNotFound: true, UnwrapErr: ErrNXDomain}
	case len(a.Records) == 0:
		return &net.DNSError{Err: noSuchHost, Name: name, IsNotFound: true, UnwrapErr: ErrNoData}
	}
	return nil
}

// unescape undoes the presentation form miekg/dns gives character
// strings (\DDD and \X, RFC 1035 §5.1), giving back the octets.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
				v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
				if v <= 255 {
					b = append(b, byte(v))
					i += 3
					continue
				}
			}
			c = s[i+1]
			i++
		}
		b = append(b, c)
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
