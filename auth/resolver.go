package auth

import (
	"context"
	"errors"
	"net"
	"strings"
)

// Resolver is the DNS interface every check in this package uses. It is the
// method set of *net.Resolver (and of blitiri.com.ar/go/spf's DNSResolver),
// so route/resolver's *Resolver (one stub resolver with its cache, shared
// with dnsbl and route), net.DefaultResolver, or a test double all fit.
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

func fqdn(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
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
