package dane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Verification failures. RFC 8460's result types follow from them:
// ErrNoMatch is tlsa-invalid, ErrName certificate-host-mismatch,
// ErrExpired certificate-expired.
var (
	ErrNoChain = errors.New("dane: no server certificate")
	ErrNoMatch = errors.New("dane: no TLSA record matches the server's certificate chain")
	ErrName    = errors.New("dane: certificate name does not match")
	ErrExpired = errors.New("dane: certificate expired or not yet valid")
)

// Verify checks the chain a server presented (its own certificate first)
// against records at time now, as RFC 7672 §3 says: a usable DANE-EE
// record that matches the server's certificate authenticates it, names
// and dates aside; a usable DANE-TA record that matches a certificate of
// the chain authenticates the server when that certificate issued the
// server's (dates checked) and the server's certificate carries one of
// names (see MatchName). Records that are not usable are ignored.
func Verify(chain []*x509.Certificate, records []Record, names []string, now time.Time) error {
	if len(chain) == 0 || chain[0] == nil {
		return ErrNoChain
	}
	leaf := chain[0]
	for _, r := range records {
		if r.Usable() && r.Usage == DANEEE && r.Matches(leaf) {
			return nil
		}
	}
	var taErr error
	for _, r := range records {
		if !r.Usable() || r.Usage != DANETA {
			continue
		}
		for i, c := range chain {
			if c == nil || !r.Matches(c) {
				continue
			}
			err := chainsTo(chain, i, now)
			if err == nil && !MatchName(leaf, names) {
				err = fmt.Errorf("%w: %s is not valid for %s", ErrName, certNames(leaf), strings.Join(names, ", "))
			}
			if err == nil {
				return nil
			}
			taErr = err
		}
	}
	if taErr != nil {
		return taErr
	}
	return ErrNoMatch
}

// chainsTo checks that chain[ta] issued chain[0] through the
// certificates between them, at now.
func chainsTo(chain []*x509.Certificate, ta int, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(chain[ta])
	inter := x509.NewCertPool()
	for _, c := range chain[1:ta] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil {
		return nil
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) && ci.Reason == x509.Expired {
		return fmt.Errorf("%w: %v", ErrExpired, err)
	}
	return fmt.Errorf("%w: the matching trust anchor did not issue the certificate: %v", ErrNoMatch, err)
}

// MatchName reports whether cert is valid for one of the reference names
// (RFC 6125 §6.4): its DNS subject alternative names, or its subject
// common name when it has none. A certificate name "*.example.com"
// stands for any one label in its place. A reference name ".example.com"
// matches every name under example.com (not example.com itself).
// Comparison ignores case and a final dot.
func MatchName(cert *x509.Certificate, refs []string) bool {
	if cert == nil {
		return false
	}
	names := cert.DNSNames
	if len(names) == 0 && cert.Subject.CommonName != "" {
		names = []string{cert.Subject.CommonName}
	}
	for _, ref := range refs {
		ref = canon(ref)
		if ref == "" || ref == "." {
			continue
		}
		for _, n := range names {
			if nameMatches(canon(n), ref) {
				return true
			}
		}
	}
	return false
}

func canon(s string) string { return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), ".")) }

// nameMatches matches one certificate name against one reference name.
func nameMatches(name, ref string) bool {
	wild := strings.HasPrefix(name, "*.")
	rest := strings.TrimPrefix(name, "*.")
	if wild && strings.Count(rest, ".") < 1 {
		return false // "*.com": no wildcard over a whole top-level domain
	}
	if strings.Contains(rest, "*") || rest == "" {
		return false // partial-label wildcards are not honoured (RFC 6125 §7.2)
	}
	if d, ok := strings.CutPrefix(ref, "."); ok {
		if wild {
			return rest == d || strings.HasSuffix(rest, "."+d)
		}
		return strings.HasSuffix(name, "."+d)
	}
	if !wild {
		return name == ref
	}
	_, tail, ok := strings.Cut(ref, ".")
	return ok && tail == rest && !strings.HasPrefix(ref, ".")
}

// certNames lists a certificate's names for messages.
func certNames(c *x509.Certificate) string {
	names := c.DNSNames
	if len(names) == 0 {
		names = []string{c.Subject.CommonName}
	}
	if len(names) > 4 {
		names = append(names[:4:4], "...")
	}
	return strings.Join(names, ", ")
}
