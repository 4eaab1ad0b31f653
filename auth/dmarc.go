package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/postern/postern"
)

// DefaultDMARCTimeout bounds the policy discovery of one message.
const DefaultDMARCTimeout = 10 * time.Second

// DMARCPolicy is a DMARC policy (p=, sp=) or disposition.
type DMARCPolicy string

// DMARC policies (RFC 7489 §6.3).
const (
	DMARCNone       DMARCPolicy = "none"
	DMARCQuarantine DMARCPolicy = "quarantine"
	DMARCReject     DMARCPolicy = "reject"
)

// Alignment is an identifier alignment mode (adkim=, aspf=).
type Alignment string

// Alignment modes (RFC 7489 §3.1).
const (
	// AlignRelaxed: the domains share an organizational domain.
	AlignRelaxed Alignment = "r"
	// AlignStrict: the domains are the same.
	AlignStrict Alignment = "s"
)

// DMARCRecord is a parsed DMARC policy record.
type DMARCRecord struct {
	Policy DMARCPolicy
	// SubdomainPolicy is sp=, "" when absent (p= then applies to
	// subdomains too).
	SubdomainPolicy DMARCPolicy
	DKIMAlignment   Alignment
	SPFAlignment    Alignment
	// Percent is pct=, 100 when absent or invalid.
	Percent int
	// AggregateURIs and FailureURIs are the valid rua= and ruf= addresses.
	AggregateURIs []string
	FailureURIs   []string
	// Ignored lists what the parse dropped, as RFC 7489 §6.3 asks of
	// unknown tags and invalid values: "tag=value: why".
	Ignored []string
	// PolicyFallback is set when p= (or sp=) was missing or invalid and the
	// record is read as p=none because it has a valid rua= (RFC 7489
	// §6.6.3 step 6).
	PolicyFallback bool
}

// ParseDMARCRecord parses a DMARC record (RFC 7489 §6.3, §6.4) with
// go-msgauth, after dropping what the RFC says to ignore: unknown tags,
// repeated tags, malformed pieces and invalid values of optional tags
// (defaults then apply). The record must start with v=DMARC1. A missing or
// invalid p= (or an invalid sp=) makes the record p=none when it names a
// valid rua= address, and is an error (ErrDMARCRecord) otherwise. The
// returned record lists what was dropped, also with an error.
func ParseDMARCRecord(txt string) (DMARCRecord, error) {
	var rec DMARCRecord
	parts := strings.Split(txt, ";")
	if !isDMARC1(parts[0]) {
		return rec, fmt.Errorf("%w: does not start with v=DMARC1", ErrDMARCRecord)
	}
	tags := dmarcTags{rec: &rec, seen: map[string]bool{}, spOK: true}
	for _, part := range parts[1:] {
		tags.add(strings.TrimSpace(part))
	}
	if !tags.pOK || !tags.spOK {
		// RFC 7489 §6.6.3 step 6.
		if len(rec.AggregateURIs) == 0 {
			if tags.p == "" && !tags.seen["p"] {
				return rec, fmt.Errorf("%w: no p= tag", ErrDMARCRecord)
			}
			return rec, fmt.Errorf("%w: invalid policy and no valid rua=", ErrDMARCRecord)
		}
		tags.p, tags.sp, rec.PolicyFallback = "none", "", true
	}
	r, err := dmarc.Parse(tags.clean())
	if err != nil {
		return rec, fmt.Errorf("%w: %w", ErrDMARCRecord, err)
	}
	rec.Policy = DMARCPolicy(r.Policy)
	rec.SubdomainPolicy = DMARCPolicy(r.SubdomainPolicy)
	rec.DKIMAlignment = Alignment(r.DKIMAlignment)
	rec.SPFAlignment = Alignment(r.SPFAlignment)
	rec.Percent = 100
	if r.Percent != nil {
		rec.Percent = *r.Percent
	}
	return rec, nil
}

// dmarcTags sorts a record's tags into what go-msgauth is given and what
// the record lists as ignored.
type dmarcTags struct {
	rec       *DMARCRecord
	seen      map[string]bool
	kept      []string // valid optional tags, as "k=v"
	p, sp     string
	pOK, spOK bool
}

// add takes one "tag=value" piece of the record.
func (d *dmarcTags) add(t string) {
	if t == "" {
		return
	}
	k, v, ok := strings.Cut(t, "=")
	k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
	switch {
	case !ok || k == "":
		d.rec.ignore(t, "not a tag=value pair")
		return
	case d.seen[k]:
		d.rec.ignore(t, "repeated tag")
		return
	}
	d.seen[k] = true
	switch k {
	case "p":
		d.p, d.pOK = strings.ToLower(v), probeDMARC("p="+strings.ToLower(v))
		if !d.pOK {
			d.rec.ignore(t, "invalid policy")
		}
	case "sp":
		d.sp, d.spOK = strings.ToLower(v), probeDMARC("p=none; sp="+strings.ToLower(v))
		if !d.spOK {
			d.rec.ignore(t, "invalid subdomain policy")
		}
	case "adkim", "aspf", "rf":
		v = strings.ToLower(v)
		fallthrough
	case "pct", "fo", "ri":
		if probeDMARC("p=none; " + k + "=" + v) {
			d.kept = append(d.kept, k+"="+v)
		} else {
			d.rec.ignore(t, "invalid value, default used")
		}
	case "rua", "ruf":
		d.addURIs(k, v)
	default:
		d.rec.ignore(t, "unknown tag")
	}
}

// addURIs keeps the valid report addresses of rua= or ruf=.
func (d *dmarcTags) addURIs(k, v string) {
	var good []string
	for u := range strings.SplitSeq(v, ",") {
		if u = strings.TrimSpace(u); validReportURI(u) {
			good = append(good, u)
		} else {
			d.rec.ignore(k+"="+u, "invalid URI")
		}
	}
	if len(good) > 0 {
		d.kept = append(d.kept, k+"="+strings.Join(good, ","))
	}
	if k == "rua" {
		d.rec.AggregateURIs = good
	} else {
		d.rec.FailureURIs = good
	}
}

// clean is the record made of what was kept.
func (d *dmarcTags) clean() string {
	clean := "v=DMARC1; p=" + d.p
	if d.sp != "" {
		clean += "; sp=" + d.sp
	}
	for _, t := range d.kept {
		clean += "; " + t
	}
	return clean
}

func (r *DMARCRecord) ignore(what, why string) {
	const maxIgnored = 32 // a hostile record must not make a huge list
	if len(r.Ignored) < maxIgnored {
		if len(what) > 64 {
			what = what[:64] + "..."
		}
		r.Ignored = append(r.Ignored, what+": "+why)
	}
}

// probeDMARC asks go-msgauth whether one tag is valid, alone in a minimal
// record.
func probeDMARC(tags string) bool {
	_, err := dmarc.Parse("v=DMARC1; " + tags)
	return err == nil
}

// isDMARC1 reports whether the first tag of a record is v=DMARC1 (RFC 7489
// §6.3: records that do not start so are discarded).
func isDMARC1(first string) bool {
	k, v, ok := strings.Cut(first, "=")
	return ok && strings.EqualFold(strings.TrimSpace(k), "v") && strings.TrimSpace(v) == "DMARC1"
}

// validReportURI checks a dmarc-uri (RFC 7489 §6.4): a URI with a scheme,
// optionally followed by "!" and a size.
func validReportURI(s string) bool {
	if i := strings.LastIndexByte(s, '!'); i > 0 {
		size := strings.TrimRight(s[i+1:], "kmgtKMGT")
		if size == "" || strings.Trim(size, "0123456789") != "" {
			return false
		}
		s = s[:i]
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && (u.Opaque != "" || u.Host != "")
}

// FromDomain returns the author domain of m: the domain of the RFC 5322
// From field, lower-cased and in A-labels. RFC 7489 §6.6.1: a message with
// no From field, several From fields, or a From field naming authors in
// different domains has no single author domain; those, and a From field
// that does not parse, return an error wrapping ErrFrom.
func FromDomain(m *postern.Message) (string, error) {
	var vals []string
	for _, f := range m.Fields() {
		if strings.EqualFold(f.Name, "From") {
			vals = append(vals, f.Value())
		}
	}
	return fromDomain(vals)
}

func fromDomain(vals []string) (string, error) {
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("%w: no From field", ErrFrom)
	case 1:
	default:
		return "", fmt.Errorf("%w: %d From fields", ErrFrom, len(vals))
	}
	// Encoded display names in any charset are let through undecoded:
	// only the domain matters here.
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
	addrs, err := p.ParseList(vals[0])
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrFrom, err)
	}
	domain := ""
	for _, a := range addrs {
		d := postern.AddrDomain(a.Address)
		if domain != "" && d != domain {
			return "", fmt.Errorf("%w: authors in domains %s and %s", ErrFrom, domain, d)
		}
		domain = d
	}
	if domain == "" {
		return "", fmt.Errorf("%w: no author domain", ErrFrom)
	}
	ascii, err := toASCII(domain)
	if err != nil {
		return "", fmt.Errorf("%w: author domain %q: %w", ErrFrom, domain, err)
	}
	if why := spfDomainProblem(ascii); why != "" {
		return "", fmt.Errorf("%w: %s", ErrFrom, why)
	}
	return ascii, nil
}

func toASCII(d string) (string, error) {
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(d)
			return strings.ToLower(a), err
		}
	}
	return d, nil
}

// OrganizationalDomain returns the organizational domain of d (RFC 7489
// §3.2): the public suffix (by golang.org/x/net/publicsuffix) plus one
// label, so mail.example.co.uk gives example.co.uk. A name that is itself
// a public suffix, or that cannot be parsed, is its own organizational
// domain.
func OrganizationalDomain(d string) string {
	d = normDomain(d)
	if org, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return org
	}
	return d
}

// Aligned reports whether identifier domain id is aligned with the author
// domain from (RFC 7489 §3.1): the same name in strict mode, the same
// organizational domain in relaxed mode.
func Aligned(id, from string, mode Alignment) bool {
	id, from = normDomain(id), normDomain(from)
	if id == "" || from == "" {
		return false
	}
	if id == from {
		return true
	}
	return mode != AlignStrict && OrganizationalDomain(id) == OrganizationalDomain(from)
}

// DMARCConfig configures a DMARCChecker. The zero value looks policies up
// through net.DefaultResolver within 10 s and samples pct= with
// math/rand/v2.
type DMARCConfig struct {
	// Resolver looks up _dmarc records; nil means net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds the policy discovery; 0 means DefaultDMARCTimeout.
	Timeout time.Duration
	// Rand returns a number in [0, n) for pct= sampling; nil means
	// math/rand/v2.IntN.
	Rand func(n int) int
	// Logger receives one Debug line per check and an Info line for each
	// record that had to be cleaned; nil discards.
	Logger *slog.Logger
}

// DMARCChecker evaluates DMARC (RFC 7489) for received messages from their
// SPF and DKIM results. It is safe for concurrent use.
type DMARCChecker struct {
	res     Resolver
	timeout time.Duration
	rand    func(int) int
	log     *slog.Logger
}

// NewDMARCChecker validates cfg and returns a checker.
func NewDMARCChecker(cfg DMARCConfig) (*DMARCChecker, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative DMARC timeout", ErrConfig)
	}
	d := &DMARCChecker{res: orDefaultResolver(cfg.Resolver), timeout: cfg.Timeout, rand: cfg.Rand, log: orDiscard(cfg.Logger)}
	if d.timeout == 0 {
		d.timeout = DefaultDMARCTimeout
	}
	if d.rand == nil {
		d.rand = rand.IntN
	}
	return d, nil
}

// DMARCResult is the outcome of a DMARC evaluation.
type DMARCResult struct {
	// Status is Pass, Fail, None (no policy, or no author domain to look
	// one up for), TempError (the record or an aligned identifier could not
	// be checked now) or PermError (a record that cannot be used, a From
	// field without a single author domain).
	Status Status
	// FromDomain is the author domain, OrgDomain its organizational domain.
	FromDomain string
	OrgDomain  string
	// RecordDomain is where the policy record was found: FromDomain or,
	// failing that, OrgDomain (RFC 7489 §6.6.3).
	RecordDomain string
	// Record is the policy record, nil when there is none.
	Record *DMARCRecord
	// Policy is the requested policy for this author domain: sp= for a
	// subdomain whose record came from the organizational domain, else p=.
	Policy DMARCPolicy
	// Disposition is what the domain asks us to do with this message: the
	// Policy for a failing message selected by pct=, the next milder
	// policy for one not selected (RFC 7489 §6.6.4), none otherwise.
	Disposition DMARCPolicy
	// SPFAligned and DKIMAligned tell which aligned identifier passed;
	// DKIMDomain is the d= of the aligned passing signature.
	SPFAligned  bool
	DKIMAligned bool
	DKIMDomain  string
	// Reason explains the result in a few words.
	Reason string
}

// DMARCResultKey holds the DMARCResult of the message in Txn.Values, set by
// VerifyFilter.
var DMARCResultKey = postern.NewKey[DMARCResult]("auth.dmarc")

// errDMARCTemp marks a lookup that may succeed later.
var errDMARCTemp = errors.New("temporary DNS failure")

// Lookup finds the DMARC policy for an author domain (RFC 7489 §6.6.3):
// the record at _dmarc.<domain>, else at _dmarc.<organizational domain>.
// It returns the record and where it was found; found is false when
// neither has exactly one DMARC record. err is a temporary DNS failure or
// a record that cannot be used (ErrDMARCRecord).
func (d *DMARCChecker) Lookup(ctx context.Context, domain string) (rec DMARCRecord, at string, found bool, err error) {
	domain = normDomain(domain)
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	rec, found, err = d.fetch(ctx, domain)
	if found || err != nil {
		return rec, domain, found, err
	}
	if org := OrganizationalDomain(domain); org != domain {
		rec, found, err = d.fetch(ctx, org)
		return rec, org, found, err
	}
	return rec, "", false, nil
}

// fetch asks one name. Several DMARC records at one name mean no policy
// (§6.6.3 step 5).
func (d *DMARCChecker) fetch(ctx context.Context, domain string) (DMARCRecord, bool, error) {
	txts, err := d.res.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		if dnsNotFound(err) {
			return DMARCRecord{}, false, nil
		}
		return DMARCRecord{}, false, fmt.Errorf("%w: _dmarc.%s: %w", errDMARCTemp, domain, err)
	}
	var recs []string
	for _, t := range txts {
		if first, _, _ := strings.Cut(t, ";"); isDMARC1(first) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return DMARCRecord{}, false, nil
	case 1:
	default:
		d.log.LogAttrs(ctx, slog.LevelInfo, "dmarc: several records, policy ignored", slog.String("domain", domain),
			slog.Int("records", len(recs)))
		return DMARCRecord{}, false, nil
	}
	rec, err := ParseDMARCRecord(recs[0])
	if len(rec.Ignored) > 0 || err != nil {
		d.log.LogAttrs(ctx, slog.LevelInfo, "dmarc: record cleaned", slog.String("domain", domain),
			slog.Any("ignored", rec.Ignored), slog.Any("error", err))
	}
	if err != nil {
		return rec, true, fmt.Errorf("_dmarc.%s: %w", domain, err)
	}
	return rec, true, nil
}

// Check evaluates DMARC for a message whose author domain is fromDomain
// (see FromDomain), given the SPF result of its MAIL FROM (or HELO)
// identity and its DKIM results. A zero SPFResult means SPF was not
// checked. It never fails: DNS trouble is a TempError.
func (d *DMARCChecker) Check(ctx context.Context, fromDomain string, spf SPFResult, dkim []DKIMResult) DMARCResult {
	res := DMARCResult{FromDomain: normDomain(fromDomain)}
	if why := spfDomainProblem(res.FromDomain); why != "" {
		res.Status, res.Reason = None, why
		return res
	}
	res.OrgDomain = OrganizationalDomain(res.FromDomain)
	rec, at, found, err := d.Lookup(ctx, res.FromDomain)
	switch {
	case errors.Is(err, errDMARCTemp):
		res.Status, res.Reason = TempError, err.Error()
	case err != nil:
		res.Status, res.Reason, res.RecordDomain = PermError, err.Error(), at
	case !found:
		res.Status, res.Reason = None, "no DMARC policy"
	default:
		res.RecordDomain = at
		res = evaluateDMARC(res, rec, spf, dkim, d.rand)
	}
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.LogAttrs(ctx, slog.LevelDebug, "dmarc check", slog.String("domain", res.FromDomain),
			slog.String("result", string(res.Status)), slog.String("policy", string(res.Policy)),
			slog.String("disposition", string(res.Disposition)), slog.String("reason", res.Reason))
	}
	return res
}

// evaluateDMARC applies a found record (RFC 7489 §6.6.2, §6.6.4). res has
// FromDomain, OrgDomain and RecordDomain set. randN samples pct=.
func evaluateDMARC(res DMARCResult, rec DMARCRecord, spf SPFResult, dkim []DKIMResult, randN func(int) int) DMARCResult {
	res.Record = &rec
	res.Policy = rec.Policy
	if res.RecordDomain != res.FromDomain && rec.SubdomainPolicy != "" {
		res.Policy = rec.SubdomainPolicy
	}
	res.Disposition = DMARCNone
	temp := ""
	if spf.Status == Pass && Aligned(spf.Domain, res.FromDomain, rec.SPFAlignment) {
		res.SPFAligned = true
	} else if spf.Status == TempError && Aligned(spf.Domain, res.FromDomain, rec.SPFAlignment) {
		temp = "SPF of " + spf.Domain
	}
	for _, r := range dkim {
		if !Aligned(r.Domain, res.FromDomain, rec.DKIMAlignment) {
			continue
		}
		if r.Status == Pass {
			res.DKIMAligned, res.DKIMDomain = true, normDomain(r.Domain)
			break
		}
		if r.Status == TempError && temp == "" {
			temp = "DKIM of " + r.Domain
		}
	}
	switch {
	case res.SPFAligned || res.DKIMAligned:
		res.Status = Pass
		res.Reason = "aligned " + passedBy(res)
		return res
	case temp != "":
		// An aligned identifier might still pass: do not apply a policy on a
		// transient DNS failure.
		res.Status, res.Reason = TempError, "temporary error checking aligned "+temp
		return res
	}
	res.Status = Fail
	res.Reason = "no aligned SPF or DKIM pass"
	res.Disposition = res.Policy
	if res.Policy != DMARCNone && rec.Percent < 100 && randN(100) >= rec.Percent {
		// Not selected by pct=: the next milder policy (§6.6.4).
		if res.Policy == DMARCReject {
			res.Disposition = DMARCQuarantine
		} else {
			res.Disposition = DMARCNone
		}
		res.Reason += fmt.Sprintf(", not sampled by pct=%d", rec.Percent)
	}
	return res
}

func passedBy(r DMARCResult) string {
	switch {
	case r.SPFAligned && r.DKIMAligned:
		return "SPF and DKIM pass"
	case r.SPFAligned:
		return "SPF pass"
	}
	return "DKIM pass (d=" + r.DKIMDomain + ")"
}
