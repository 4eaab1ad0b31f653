package auth

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"
)

// Resolver is the DNS interface every check in this package uses. It is the
// method set of *net.Resolver (and of blitiri.com.ar/go/spf's DNSResolver),
// so net.DefaultResolver, a *net.Resolver with its own Dial, or a test
// double all fit.
//
// Errors should be *net.DNSError as the standard library returns them:
// IsNotFound for NXDOMAIN and empty answers, Temporary() for timeouts and
// SERVFAIL. The SPF, DKIM and DMARC code tells "no record" from "try again
// later" by those flags.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// NewResolver returns a Resolver that sends every query to the DNS server at
// addr ("127.0.0.1:53", "[::1]:5353"), over UDP and, for truncated
// answers, TCP. It is the standard library's resolver (PreferGo) with its
// Dial pointed at addr: a local validating recursive resolver in
// production, an in-process test server in tests.
//
// queryTimeout bounds each attempt of each query (the system resolver
// makes up to resolv.conf's "attempts", 2 by default); 0 leaves only the
// context's deadline and resolv.conf's timeout. Names are looked up as
// absolute names: resolv.conf's search list is never appended.
//
// Errors of an A+AAAA lookup are strict: a timeout on one of the two fails
// the lookup instead of returning half an answer, as SPF's "a" and "mx"
// mechanisms need (RFC 7208 §5: a DNS error is a temperror).
func NewResolver(addr string, queryTimeout time.Duration) Resolver {
	r := &net.Resolver{
		PreferGo:     true,
		StrictErrors: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || queryTimeout <= 0 {
				return c, err
			}
			// The resolver sets the attempt's deadline on the connection; a
			// wrapper brings it forward. A UDP connection must stay a
			// net.PacketConn, or the resolver would frame it as TCP.
			if uc, ok := c.(*net.UDPConn); ok {
				return &udpDeadline{uc, queryTimeout}, nil
			}
			return &streamDeadline{c, queryTimeout}, nil
		},
	}
	return absoluteNames{r}
}

type udpDeadline struct {
	*net.UDPConn
	max time.Duration
}

func (c *udpDeadline) SetDeadline(t time.Time) error {
	return c.UDPConn.SetDeadline(clampDeadline(t, c.max))
}

type streamDeadline struct {
	net.Conn
	max time.Duration
}

func (c *streamDeadline) SetDeadline(t time.Time) error {
	return c.Conn.SetDeadline(clampDeadline(t, c.max))
}

func clampDeadline(t time.Time, max time.Duration) time.Time {
	if lim := time.Now().Add(max); t.IsZero() || t.After(lim) {
		return lim
	}
	return t
}

// absoluteNames adds the root label to every name so the search list in
// resolv.conf is never tried: SPF, DKIM and DMARC names are always fully
// qualified.
type absoluteNames struct{ r *net.Resolver }

func fqdn(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func (a absoluteNames) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return a.r.LookupTXT(ctx, fqdn(name))
}

func (a absoluteNames) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return a.r.LookupMX(ctx, fqdn(name))
}

func (a absoluteNames) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return a.r.LookupIPAddr(ctx, fqdn(host))
}

func (a absoluteNames) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return a.r.LookupAddr(ctx, addr)
}

func orDefaultResolver(r Resolver) Resolver {
	if r == nil {
		return net.DefaultResolver
	}
	return r
}

// dnsNotFound reports an NXDOMAIN or empty answer.
func dnsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// txtLookup adapts a Resolver to go-msgauth's context-free LookupTXT hook,
// bound to one check's context.
func txtLookup(ctx context.Context, r Resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		return r.LookupTXT(ctx, name)
	}
}
