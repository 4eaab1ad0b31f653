package route

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// maxCNAME bounds a CNAME chain, in one answer and across queries.
const maxCNAME = 8

// dnsClient asks the configured resolvers: UDP, then TCP when the answer
// is truncated (RFC 7766 §5); each server in turn on failure.
type dnsClient struct {
	servers  []string
	udp, tcp *dns.Client
	timeout  time.Duration
	attempts int
}

func newDNSClient(servers []string, timeout time.Duration, attempts int) *dnsClient {
	return &dnsClient{
		servers:  servers,
		udp:      &dns.Client{Net: "udp", Timeout: timeout},
		tcp:      &dns.Client{Net: "tcp", Timeout: timeout},
		timeout:  timeout,
		attempts: attempts,
	}
}

// exchange asks for name/qtype until a server gives an answer that is
// NOERROR or NXDOMAIN; anything else ends in an error wrapping ErrDNS.
func (c *dnsClient) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, false) // the DNS flag day 2020 buffer size
	var last error
	for range c.attempts {
		for _, srv := range c.servers {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w: %s %s: %w", ErrDNS, dns.TypeToString[qtype], trimDot(name), err)
			}
			r, err := c.once(ctx, q, srv)
			if err != nil {
				last = err
				continue
			}
			if r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError {
				return r, nil
			}
			last = fmt.Errorf("server %s answered %s", srv, dns.RcodeToString[r.Rcode])
		}
	}
	return nil, fmt.Errorf("%w: %s %s: %v", ErrDNS, dns.TypeToString[qtype], trimDot(name), last)
}

func (c *dnsClient) once(ctx context.Context, q *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := exchangeWith(ctx, c.udp, q, srv)
	if err == nil && r.Truncated {
		r, err = exchangeWith(ctx, c.tcp, q, srv)
	}
	return r, err
}

func exchangeWith(ctx context.Context, cl *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	co, err := cl.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// miekg/dns honours the context's deadline but not its cancellation.
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r, _, err := cl.ExchangeWithConnContext(ctx, m, co)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return r, nil
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

// decoded is what one response says about a question.
type decoded struct {
	rrs   []dns.RR // records of the asked type owned by the final name
	final string   // the name reached through the CNAME chain
	cname bool     // a CNAME was followed
}

// errNXDomain is the internal form of an NXDOMAIN answer.
var errNXDomain = errors.New("NXDOMAIN")

// decodeAnswer checks that m answers qname/qtype and collects the
// records of that type owned by qname or by the end of its CNAME chain in
// the answer section. NXDOMAIN gives errNXDomain; a response that does
// not answer the question gives an error wrapping ErrDNS.
func decodeAnswer(qname string, qtype uint16, m *dns.Msg) (decoded, error) {
	d := decoded{final: qname}
	if !m.Response || len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, qname) ||
		m.Question[0].Qtype != qtype || m.Question[0].Qclass != dns.ClassINET {
		return d, fmt.Errorf("%w: %s %s: response does not match the question", ErrDNS, dns.TypeToString[qtype], trimDot(qname))
	}
	switch m.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return d, errNXDomain
	default:
		return d, fmt.Errorf("%w: %s %s: %s", ErrDNS, dns.TypeToString[qtype], trimDot(qname), dns.RcodeToString[m.Rcode])
	}
	name := qname
	for range maxCNAME + 1 {
		var next string
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, name) {
				continue
			}
			if h.Rrtype == qtype {
				d.rrs = append(d.rrs, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && next == "" {
				next = c.Target
			}
		}
		if len(d.rrs) > 0 || next == "" {
			break
		}
		name, d.cname = next, true
	}
	d.final = name
	return d, nil
}

// query asks name/qtype and follows a CNAME chain the resolver left
// unfinished.
func (c *dnsClient) query(ctx context.Context, name string, qtype uint16) (decoded, error) {
	cname := false
	for range maxCNAME {
		m, err := c.exchange(ctx, name, qtype)
		if err != nil {
			return decoded{}, err
		}
		d, err := decodeAnswer(name, qtype, m)
		d.cname = d.cname || cname
		if err != nil || len(d.rrs) > 0 || strings.EqualFold(d.final, name) {
			return d, err
		}
		name, cname = d.final, true
	}
	return decoded{}, fmt.Errorf("%w: %s %s: CNAME chain too long", ErrDNS, dns.TypeToString[qtype], trimDot(name))
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
func (c *dnsClient) lookupMX(ctx context.Context, domain string) (mxs []mxRecord, null, cname bool, err error) {
	name, err := fqdn(domain)
	if err != nil {
		return nil, false, false, err
	}
	d, err := c.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, false, false, err
	}
	for _, rr := range d.rrs {
		mx := rr.(*dns.MX)
		if mx.Mx == "." {
			if len(d.rrs) == 1 {
				return nil, true, d.cname, nil
			}
			continue
		}
		mxs = append(mxs, mxRecord{host: strings.ToLower(trimDot(mx.Mx)), pref: mx.Preference})
	}
	return mxs, false, d.cname, nil
}

// lookupAddrs returns the addresses of host: A records, then AAAA,
// as network allows ("ip", "ip4" or "ip6"), asked at the same time. It
// fails with errNXDomain when the name does not exist, with an error
// wrapping ErrDNS when a lookup failed and nothing was found.
func (c *dnsClient) lookupAddrs(ctx context.Context, host, network string) (addrs []netip.Addr, cname bool, err error) {
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
	res := make([]decoded, len(types))
	errs := make([]error, len(types))
	var wg sync.WaitGroup
	for i, t := range types {
		wg.Go(func() { res[i], errs[i] = c.query(ctx, name, t) })
	}
	wg.Wait()
	nx := 0
	var tempErr error
	for i := range types {
		switch {
		case errors.Is(errs[i], errNXDomain):
			nx++
		case errs[i] != nil:
			tempErr = errs[i]
		}
		cname = cname || res[i].cname
		for _, rr := range res[i].rrs {
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
