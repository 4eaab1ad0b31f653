package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/route/dane"
	"github.com/postern/postern/route/mtasts"
	"github.com/postern/postern/route/tlsrpt"
)

// MTASTS gives the MTA-STS policy of a recipient domain; *mtasts.Client
// implements it.
type MTASTS interface {
	Get(ctx context.Context, domain string) mtasts.Result
}

// TLSReporter is told the outcome of every new session with a host of a
// recipient domain (RFC 8460); *tlsrpt.Reporter implements it.
type TLSReporter interface {
	Record(tlsrpt.Result)
}

// tlsPlan is how one attempt with one target secures its session: the
// level in force and where it came from, what the certificate is checked
// against, the login, and what TLS-RPT is told.
type tlsPlan struct {
	level  TLSPolicy
	origin string // "default", "policy map", "DANE", "MTA-STS", "REQUIRETLS", "TLS report"
	// match are the reference names of a PKIX check (verify, secure,
	// MTA-STS).
	match      []string
	tlsa       *dane.TLSA // usable TLSA records: the certificate must match
	sts        *mtasts.Policy
	testing    bool // MTA-STS testing: verify and report, never refuse
	minV, maxV uint16
	sni        string
	auth       *Credentials
	report     *tlsrpt.Result // the TLS-RPT template; nil: not reported
	// checkErr is what a testing-mode check found (set in the handshake).
	checkErr error
}

// key tells sessions of different plans apart in the pool.
func (p *tlsPlan) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%d-%d|%s|%v", p.level, p.origin, strings.Join(p.match, ":"), p.minV, p.maxV, p.sni, p.testing)
	if p.tlsa != nil {
		for _, r := range p.tlsa.Records {
			b.WriteString("|" + r.String())
		}
	}
	if p.auth != nil {
		b.WriteString("|auth=" + p.auth.authc())
	}
	return b.String()
}

// authenticated reports a plan whose certificate check must pass.
func (p *tlsPlan) authenticated() bool {
	return p.tlsa != nil || p.level == TLSVerify || p.level == TLSSecure
}

// describe says, for logs and results, how a session was secured.
func (p *tlsPlan) describe(st *tls.ConnectionState) string {
	if st == nil {
		return "none"
	}
	v := tls.VersionName(st.Version)
	switch {
	case p.tlsa != nil:
		return v + " authenticated by DANE"
	case p.sts != nil && !p.testing:
		return v + " verified by MTA-STS (" + p.sts.Domain + ")"
	case p.authenticated():
		return v + " verified (" + p.level.String() + ", " + p.origin + ")"
	case p.testing && p.checkErr != nil:
		return v + " unverified (MTA-STS testing: " + shortErr(p.checkErr) + ")"
	}
	return v + " unverified"
}

// planFor decides how the session with tg is secured: a policy map
// entry for its next hop, else DANE when the level asks for it, else the
// recipient domain's MTA-STS policy, else the default level; REQUIRETLS
// raises the level to verify, and credentials to encrypt. A failure is
// a reason not to connect to tg at all.
func (t *Transport) planFor(ctx context.Context, tg Target, env *queue.Envelope) (*tlsPlan, *sessFail) {
	p := &tlsPlan{level: t.tls, origin: "default"}
	if tg.Socket != "" {
		p.level = TLSNone
		return p, nil
	}
	if t.auth != nil {
		if c, ok := t.auth.Lookup(tg.Host, tg.Addr.Addr(), tg.Named); ok {
			p.auth = &c
		}
	}
	if env.TLSReport {
		// RFC 8460 §3: reports go despite TLS failures, and are not
		// reported themselves.
		p.level, p.origin = TLSMay, "TLS report"
		return p, nil
	}
	if !tg.Hop.NoMX && !tg.Hop.Addr.IsValid() && tg.Hop.Name != "" && t.tlsrpt != nil {
		p.report = &tlsrpt.Result{Domain: tg.Hop.Name, PolicyType: tlsrpt.PolicyNone}
	}
	if e, ok := t.policyMap(tg.Hop); ok {
		p.level, p.origin, p.match, p.minV, p.maxV, p.sni = e.Level, "policy map", e.Match, e.MinVersion, e.MaxVersion, e.ServerName
	}
	if p.level == TLSDane || p.level == TLSDaneOnly {
		if f := t.planDANE(ctx, tg, p); f != nil {
			return nil, f
		}
	}
	if p.origin == "default" && p.tlsa == nil && t.sts != nil && !tg.Hop.NoMX && !tg.Hop.Addr.IsValid() {
		if f := t.planSTS(ctx, tg, p); f != nil {
			return nil, f
		}
	}
	if env.RequireTLS && !p.authenticated() {
		p.level, p.origin, p.match = TLSVerify, "REQUIRETLS", nil // RFC 8689 §4.2.1
	}
	if p.auth != nil && p.auth.Required && !t.authPlain && !p.level.mandatory() {
		p.level = TLSEncrypt // a password never goes in plain text
	}
	p.match = t.referenceNames(p, tg)
	return p, nil
}

func (t *Transport) policyMap(h Host) (TLSPolicyEntry, bool) {
	if t.policies == nil {
		return TLSPolicyEntry{}, false
	}
	return t.policies.Current().Lookup(h)
}

// referenceNames expands a plan's match list (Postfix's words) into the
// names a certificate must carry.
func (t *Transport) referenceNames(p *tlsPlan, tg Target) []string {
	match := p.match
	switch {
	case len(match) > 0:
	case p.level == TLSSecure:
		match = []string{"nexthop", "dot-nexthop"}
	case p.level == TLSVerify || p.testing:
		match = []string{"hostname"}
	default:
		return nil
	}
	next := tg.Hop.Name
	if next == "" {
		next = tg.Host
	}
	var out []string
	for _, m := range match {
		switch m {
		case "hostname":
			out = append(out, tg.Host)
		case "nexthop":
			out = append(out, next)
		case "dot-nexthop":
			out = append(out, "."+next)
		default:
			out = append(out, m)
		}
	}
	return out
}

// planDANE applies the TLSA records of tg (RFC 7672 §2.2): usable
// records authenticate, unusable ones make TLS mandatory, none leave
// "dane" opportunistic and "dane-only" without a host, and a lookup that
// failed leaves the host unused.
func (t *Transport) planDANE(ctx context.Context, tg Target, p *tlsPlan) *sessFail {
	only := p.level == TLSDaneOnly
	res := t.router.dns
	secure := dane.Trusted(res)
	if secure && !tg.Hop.NoMX && !tg.Hop.Addr.IsValid() && tg.Hop.Name != tg.Host {
		// A host found by MX: the MX answer must be validated too.
		if name, err := fqdn(tg.Hop.Name); err == nil {
			a, err := res.Lookup(ctx, name, dns.TypeMX)
			secure = err == nil && a.AD
		}
	}
	var ta dane.TLSA
	var err error
	if secure && !tg.Addr.Addr().IsUnspecified() {
		ta, err = dane.Lookup(ctx, res, tg.Host, tg.Addr.Port())
	}
	fail := func(result, text string) *sessFail {
		t.report(p, tg, netip.Addr{}, result, text)
		return &sessFail{reply: postern.NewReply(451, postern.ESC(4, 7, 5), text), next: true}
	}
	switch {
	case err != nil:
		return fail(tlsrpt.ResultDNSSECInvalid, "TLSA lookup for "+tg.Host+" failed, so it is not used: "+dnsText(err))
	case ta.Status == dane.Usable:
		p.tlsa, p.origin = &ta, "DANE"
		p.report = reportAs(p.report, tlsrpt.PolicyTLSA, recordStrings(ta.Records), nil)
	case ta.Status == dane.Unusable:
		p.level, p.origin = TLSEncrypt, "DANE (no usable TLSA record)"
		p.report = reportAs(p.report, tlsrpt.PolicyTLSA, recordStrings(ta.Records), nil)
	case only:
		return fail(tlsrpt.ResultDANERequired, "no DNSSEC-validated TLSA records for "+tg.Host+", and the TLS level is dane-only")
	default:
		p.level = TLSMay // opportunistic DANE without records
	}
	return nil
}

func reportAs(r *tlsrpt.Result, typ string, strs, mx []string) *tlsrpt.Result {
	if r == nil {
		return nil
	}
	r.PolicyType, r.PolicyStrings, r.MXHosts = typ, strs, mx
	return r
}

func recordStrings(rs []dane.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// planSTS applies the recipient domain's MTA-STS policy (RFC 8461 §5):
// under enforce only listed MX hosts are used, with a certificate valid
// for the MX host name; under testing the same is checked and reported
// and the mail goes anyway.
func (t *Transport) planSTS(ctx context.Context, tg Target, p *tlsPlan) *sessFail {
	r := t.sts.Get(ctx, tg.Hop.Name)
	pol := r.Policy
	if pol == nil {
		if r.Failure != "" && p.report != nil {
			p.report.PolicyType = tlsrpt.PolicySTS
			p.report.Failure, p.report.Info = r.Failure, errText(r.Err)
		}
		return nil
	}
	p.report = reportAs(p.report, tlsrpt.PolicySTS, pol.Lines(), pol.MX)
	if pol.Mode == mtasts.ModeNone {
		return nil
	}
	p.sts, p.testing = pol, pol.Mode == mtasts.ModeTesting
	if !pol.MatchMX(tg.Host) {
		text := "MX host " + tg.Host + " is not listed in the MTA-STS policy of " + pol.Domain
		t.report(p, tg, netip.Addr{}, tlsrpt.ResultValidationFailure, text)
		if p.testing {
			p.report = nil // counted once
			p.sts, p.testing = nil, false
			return nil
		}
		return &sessFail{reply: postern.NewReply(451, postern.ESC(4, 7, 5), text), next: true}
	}
	if !p.testing {
		p.level, p.origin, p.match = TLSVerify, "MTA-STS", []string{"hostname"}
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return shortErr(err)
}

// report tells TLS-RPT the outcome of a session under p.
func (t *Transport) report(p *tlsPlan, tg Target, local netip.Addr, result, info string) {
	if p.report == nil || t.tlsrpt == nil {
		return
	}
	r := *p.report
	r.Time, r.ReceivingMX, r.ReceivingIP = t.now(), tg.Host, tg.Addr.Addr().String()
	if local.IsValid() {
		r.SendingIP = local.Unmap().String()
	}
	if r.Failure == "" {
		r.Failure, r.Info = result, info
	}
	if len(r.Info) > 200 {
		r.Info = r.Info[:200]
	}
	t.tlsrpt.Record(r)
}

// verifier returns the check the handshake runs on the server's chain:
// DANE, PKIX with names, or nothing. In MTA-STS testing mode it records
// what it found and lets the handshake go on.
func (t *Transport) verifier(p *tlsPlan) func(tls.ConnectionState) error {
	switch {
	case p.tlsa != nil:
		return func(cs tls.ConnectionState) error {
			return dane.Verify(cs.PeerCertificates, p.tlsa.Records, p.tlsa.Names, t.now())
		}
	case p.authenticated():
		return func(cs tls.ConnectionState) error { return t.pkix(cs, p.match) }
	case p.testing:
		return func(cs tls.ConnectionState) error {
			p.checkErr = t.pkix(cs, p.match)
			return nil
		}
	}
	return nil
}

// errNameMismatch is a certificate valid, but not for the names wanted.
var errNameMismatch = errors.New("certificate name does not match")

// pkix verifies a chain under the configured roots, then its names.
func (t *Transport) pkix(cs tls.ConnectionState, names []string) error {
	if len(cs.PeerCertificates) == 0 {
		return dane.ErrNoChain
	}
	opts := x509.VerifyOptions{Intermediates: x509.NewCertPool(), CurrentTime: t.now()}
	if t.tlsBase != nil {
		opts.Roots = t.tlsBase.RootCAs
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return err
	}
	if !matchNames(cs.PeerCertificates[0], names) {
		return fmt.Errorf("%w: certificate of %s is not valid for %s", errNameMismatch,
			strings.Join(cs.PeerCertificates[0].DNSNames, ","), strings.Join(names, ", "))
	}
	return nil
}

// matchNames checks a certificate against reference names: DNS names
// by RFC 6125 (dane.MatchName), an address literal's address against
// the certificate's IP addresses.
func matchNames(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		if _, err := netip.ParseAddr(n); err == nil {
			if c.VerifyHostname(n) == nil {
				return true
			}
		} else if dane.MatchName(c, []string{n}) {
			return true
		}
	}
	return false
}

// rptResult is the RFC 8460 result type of a failed check or handshake.
func rptResult(err error) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.Is(err, errNameMismatch) || errors.Is(err, dane.ErrName):
		return tlsrpt.ResultCertificateHostMismatch
	case errors.Is(err, dane.ErrExpired) || errors.As(err, &ci) && ci.Reason == x509.Expired:
		return tlsrpt.ResultCertificateExpired
	case errors.Is(err, dane.ErrNoMatch):
		return tlsrpt.ResultTLSAInvalid
	case errors.As(err, &ua):
		return tlsrpt.ResultCertificateNotTrusted
	}
	return tlsrpt.ResultValidationFailure
}

// planText names the policy behind a failure, for the reply (and so the
// DSN's diagnostic and the log).
func (p *tlsPlan) planText() string {
	switch {
	case p.tlsa != nil:
		return "DANE"
	case p.sts != nil && !p.testing:
		return "the MTA-STS policy of " + p.sts.Domain
	}
	return "TLS level " + p.level.String() + " (" + p.origin + ")"
}

// markTLS notes, in the results a session's server gave, how it was
// secured.
func markTLS(results []queue.Result, jobs []*rcptJob, text string) {
	for _, j := range jobs {
		for _, i := range j.idx {
			if results[i].RemoteMTA != "" && results[i].TLS == "" {
				results[i].TLS = text
			}
		}
	}
}
