package dane

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver"
)

// Resolver is how Lookup asks the DNS; *resolver.Resolver implements it.
// The AD bit of its answers is believed only when it also has a method
// TrustAD() bool that says true (resolver.Config.TrustAD).
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error)
}

// Trusted reports whether res declares its AD bit trustworthy.
func Trusted(res Resolver) bool {
	t, ok := res.(interface{ TrustAD() bool })
	return ok && t.TrustAD()
}

// Status is what a TLSA lookup allows.
type Status uint8

// The statuses of a lookup (see the package documentation).
const (
	Insecure Status = iota
	None
	Usable
	Unusable
)

var statusNames = [...]string{"insecure", "none", "usable", "unusable"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// ErrLookup wraps a TLSA or address lookup that failed: the host must
// not be used for now (RFC 7672 §2.2).
var ErrLookup = errors.New("dane: DNSSEC lookup failed")

// TLSA is the answer of Lookup.
type TLSA struct {
	Status Status
	// Records are the validated records (usable or not) of the first
	// name that had any.
	Records []Record
	// Names are the reference names for a DANE-TA certificate (RFC 7672
	// §3.2.2): the TLSA base domain and, when an alias led to it, the
	// host name first asked.
	Names []string
}

// Lookup finds the TLSA records of host (an MX host or a host the
// configuration names) for port. DANE applies only when the host's
// address records are validated: then the TLSA records of the name the
// aliases end at are asked first, then those of host itself (RFC 7672
// §2.2.2). Nothing is asked of a resolver that is not trusted.
func Lookup(ctx context.Context, res Resolver, host string, port uint16) (TLSA, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !Trusted(res) {
		return TLSA{Status: Insecure}, nil
	}
	canonical, secure, err := addrSecure(ctx, res, host)
	if err != nil || !secure {
		return TLSA{Status: Insecure}, err
	}
	names := []string{host}
	if canonical != host {
		names = []string{canonical, host}
	}
	for i, base := range names {
		q := "_" + strconv.Itoa(int(port)) + "._tcp." + base
		a, err := res.Lookup(ctx, q, dns.TypeTLSA)
		if err != nil {
			return TLSA{}, fmt.Errorf("%w: TLSA %s: %w", ErrLookup, q, err)
		}
		if !a.AD {
			return TLSA{Status: Insecure}, nil
		}
		if len(a.Records) == 0 {
			if i == len(names)-1 {
				return TLSA{Status: None}, nil
			}
			continue
		}
		t := TLSA{Status: Unusable, Names: names[i:]}
		for _, rr := range a.Records {
			if tr, ok := rr.(*dns.TLSA); ok {
				r := FromRR(tr)
				t.Records = append(t.Records, r)
				if r.Usable() {
					t.Status = Usable
				}
			}
		}
		return t, nil
	}
	return TLSA{Status: None}, nil
}

// addrSecure asks host's A and AAAA records (answers the router's lookup
// left in the cache) and reports whether those found are validated, and
// the name their aliases end at.
func addrSecure(ctx context.Context, res Resolver, host string) (string, bool, error) {
	canonical, secure, found := host, true, false
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := res.Lookup(ctx, host, qt)
		if err != nil {
			return "", false, fmt.Errorf("%w: %s %s: %w", ErrLookup, dns.TypeToString[qt], host, err)
		}
		if len(a.Records) == 0 {
			secure = secure && a.AD // a validated "none" is fine
			continue
		}
		found = true
		secure = secure && a.AD
		canonical = strings.TrimSuffix(a.Canonical, ".")
	}
	return canonical, secure && found, nil
}
