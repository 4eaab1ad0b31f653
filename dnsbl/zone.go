package dnsbl

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
)

// Kind says what a zone lists.
type Kind uint8

const (
	// IPZone lists client addresses (RFC 5782 §2): the query name is the
	// reversed address under the zone. The zero value.
	IPZone Kind = iota
	// DomainZone lists domain names, a right-hand-side list or RHSBL
	// (RFC 5782 §3): the query name is <domain>.<zone>.
	DomainZone
)

// String returns "ip" or "domain".
func (k Kind) String() string {
	switch k {
	case IPZone:
		return "ip"
	case DomainZone:
		return "domain"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Zone is one DNS list. Only Name is required; the zero values of the
// other fields are the documented defaults.
type Zone struct {
	// Name is the zone, e.g. "zen.spamhaus.org". Case and one trailing dot
	// are ignored.
	Name string
	// Kind is IPZone (the default) or DomainZone.
	Kind Kind
	// Match selects the answers that count as a listing, in the syntax of
	// ParseMatcher, e.g. "127.0.0.2-127.0.0.11". Empty means every answer
	// in 127.0.0.0/8 outside 127.255.255.0/24. Answers it does not select
	// are not a listing (and not an error).
	Match string
	// Weight is added to the score when an answer matches; 0 means 1.
	// A negative weight makes the zone an allow list (DNSWL). Weights are
	// finite.
	Weight float64
	// Codes give return codes their own weights, as for zen.spamhaus.org,
	// where 127.0.0.2 (SBL) and 127.0.0.10 (PBL) mean different things, or
	// for bit-coded zones (multi.surbl.org style, "&0x08"). Each code whose
	// Match selects at least one answer adds its Weight once. With Codes,
	// Match and Weight must be empty.
	Codes []Code
	// ErrorMatch selects answers that mean the query was refused rather
	// than answered, e.g. "127.0.0.255" for list.dnswl.org. Such an answer
	// is an ErrBadAnswer. 127.255.255.0/24 (Spamhaus: .252 typing error,
	// .254 query through a public resolver, .255 excessive queries) always
	// is, whatever this says.
	ErrorMatch string
	// OnError is applied when the zone cannot be asked (a timeout,
	// SERVFAIL, a broken zone). A failed lookup never counts as a
	// listing. The default, postern.OnErrorAccept, counts the zone as not
	// listing the subject: a list that is down lets mail through.
	// postern.OnErrorTempFail sets Result.Failed when the zone's answer
	// could have changed the outcome, and the filter answers 451 4.7.1
	// (421 at connect) so the client retries; postern.OnErrorReject
	// answers 550 5.7.1 (554 at connect) instead.
	OnError postern.ErrorPolicy
	// Timeout bounds this zone's lookup (A and TXT queries); 0 means
	// Config.Timeout.
	Timeout time.Duration
	// TXT asks for the zone's TXT record when the subject is listed, for
	// the reply text. It costs one more query, only for listed subjects.
	TXT bool
	// Reply is the text for a listing, after "Service unavailable; " in
	// the filter's reply. Placeholders: {ip}, {domain}, {zone}, {answer}
	// (the first matching answer) and {txt} (the TXT record; when it is
	// empty, the separator before {txt} is dropped). Default:
	// "Client host [{ip}] blocked using {zone}; {txt}" for IP zones and
	// "Domain {domain} blocked using {zone}; {txt}" for domain zones.
	Reply string
	// NoHealthCheck exempts the zone from health checks, for zones that do
	// not list the RFC 5782 §5 test points.
	NoHealthCheck bool
}

// Code is a weight for the answers a Matcher selects.
type Code struct {
	// Match selects answers (ParseMatcher syntax). Required.
	Match string
	// Weight is added once when Match selects an answer; 0 means 1.
	Weight float64
}

// Matcher selects DNSBL return codes (A records in 127.0.0.0/8). Build one
// with ParseMatcher; the zero Matcher selects nothing.
type Matcher struct {
	rules []matchRule
	src   string
}

type matchRule struct {
	lo, hi uint32 // inclusive range, when mask is 0
	mask   uint32
}

// ParseMatcher parses a comma-separated list of:
//
//	127.0.0.2                 one address
//	127.0.0.4-127.0.0.7       an inclusive range
//	127.0.0.0/24              a prefix
//	&0x08                     a bit mask: answers with any of these bits set
//	                          (the address read as a 32-bit number; decimal,
//	                          0x hex, 0o octal and 0b binary are accepted)
//
// Addresses must be in 127.0.0.0/8 (RFC 5782 §2.3: only those are return
// codes). White space around items is ignored.
func ParseMatcher(s string) (Matcher, error) {
	m := Matcher{src: strings.TrimSpace(s)}
	if m.src == "" {
		return Matcher{}, fmt.Errorf("%w: empty matcher", ErrConfig)
	}
	for item := range strings.SplitSeq(m.src, ",") {
		item = strings.TrimSpace(item)
		r, err := parseRule(item)
		if err != nil {
			return Matcher{}, fmt.Errorf("%w: matcher %q: %v", ErrConfig, s, err)
		}
		m.rules = append(m.rules, r)
	}
	return m, nil
}

func parseRule(item string) (matchRule, error) {
	switch {
	case item == "":
		return matchRule{}, fmt.Errorf("empty item")
	case item[0] == '&':
		v, err := strconv.ParseUint(strings.TrimSpace(item[1:]), 0, 32)
		if err != nil || v == 0 {
			return matchRule{}, fmt.Errorf("bad bit mask %q", item)
		}
		return matchRule{mask: uint32(v)}, nil
	case strings.Contains(item, "/"):
		p, err := netip.ParsePrefix(item)
		if err != nil || !p.Addr().Is4() || !loopback8.Contains(p.Addr()) || p.Bits() < 8 {
			return matchRule{}, fmt.Errorf("bad prefix %q (want one inside 127.0.0.0/8)", item)
		}
		p = p.Masked()
		lo := addrUint(p.Addr())
		return matchRule{lo: lo, hi: lo | (1<<(32-p.Bits()) - 1)}, nil
	case strings.Contains(item, "-"):
		a, b, _ := strings.Cut(item, "-")
		lo, err1 := parseCode(a)
		hi, err2 := parseCode(b)
		if err1 != nil || err2 != nil || lo > hi {
			return matchRule{}, fmt.Errorf("bad range %q", item)
		}
		return matchRule{lo: lo, hi: hi}, nil
	default:
		v, err := parseCode(item)
		if err != nil {
			return matchRule{}, err
		}
		return matchRule{lo: v, hi: v}, nil
	}
}

func parseCode(s string) (uint32, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() || !loopback8.Contains(a) {
		return 0, fmt.Errorf("bad return code %q (want an address in 127.0.0.0/8)", s)
	}
	return addrUint(a), nil
}

func addrUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Match reports whether a is selected.
func (m Matcher) Match(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	v := addrUint(a)
	for _, r := range m.rules {
		if r.mask != 0 {
			if v&r.mask != 0 {
				return true
			}
		} else if v >= r.lo && v <= r.hi {
			return true
		}
	}
	return false
}

// IsZero reports whether m is the zero Matcher.
func (m Matcher) IsZero() bool { return len(m.rules) == 0 }

// String returns the matcher as it was parsed.
func (m Matcher) String() string { return m.src }

var (
	loopback8 = netip.MustParsePrefix("127.0.0.0/8")
	// RFC 5782 §2.3 keeps return codes in 127/8; Spamhaus uses
	// 127.255.255.0/24 for "your query was refused".
	refusedNet = netip.MustParsePrefix("127.255.255.0/24")
)

// code is a compiled Code; a nil-rule matcher with any set selects every
// valid answer.
type code struct {
	m      Matcher
	any    bool
	weight float64
}

// zone is a validated Zone.
type zone struct {
	name      string // lower case, no trailing dot
	kind      Kind
	codes     []code
	errMatch  Matcher
	onError   postern.ErrorPolicy // resolved: never OnErrorDefault
	timeout   time.Duration
	txt       bool
	reply     string
	health    bool
	posWeight float64 // the most a listing can add
	negWeight float64 // the most a listing can take away
	state     *zoneState
}

const (
	defaultIPReply     = "Client host [{ip}] blocked using {zone}; {txt}"
	defaultDomainReply = "Domain {domain} blocked using {zone}; {txt}"
	// An IPv6 query name has 32 nibble labels (64 bytes) before the zone;
	// a whole name is at most 253 bytes (RFC 1035 §2.3.4, without the
	// root dot).
	maxIPZoneLen = 253 - 64
	maxNameLen   = 253
)

func compileZone(z Zone, defTimeout time.Duration) (*zone, error) {
	name, err := normalizeName(z.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: zone %q: %v", ErrConfig, z.Name, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: zone %s: %s", ErrConfig, name, fmt.Sprintf(format, args...))
	}
	if z.Kind == IPZone && len(name) > maxIPZoneLen {
		return nil, bad("name longer than %d bytes leaves no room for an IPv6 query", maxIPZoneLen)
	}
	if z.Kind != IPZone && z.Kind != DomainZone {
		return nil, bad("unknown kind %d", z.Kind)
	}
	if !z.OnError.Valid() {
		return nil, bad("unknown error policy %v", z.OnError)
	}
	if z.Timeout < 0 {
		return nil, bad("negative timeout")
	}
	cz := &zone{name: name, kind: z.Kind, onError: z.OnError.Or(postern.OnErrorAccept), timeout: z.Timeout, txt: z.TXT,
		reply: z.Reply, health: !z.NoHealthCheck, state: new(zoneState)}
	if cz.timeout == 0 {
		cz.timeout = defTimeout
	}
	if cz.reply == "" {
		cz.reply = defaultIPReply
		if z.Kind == DomainZone {
			cz.reply = defaultDomainReply
		}
	} else if err := checkTemplate(cz.reply); err != nil {
		return nil, bad("reply: %v", err)
	}
	if z.ErrorMatch != "" {
		if cz.errMatch, err = ParseMatcher(z.ErrorMatch); err != nil {
			return nil, bad("error match: %v", err)
		}
	}
	if cz.codes, err = compileCodes(z, bad); err != nil {
		return nil, err
	}
	for _, c := range cz.codes {
		if c.weight > 0 {
			cz.posWeight += c.weight
		} else {
			cz.negWeight += c.weight
		}
	}
	return cz, nil
}

// compileCodes reads which answers of a zone count and their weights:
// Codes, or Match and Weight (any answer, weight 1, by default).
func compileCodes(z Zone, bad func(format string, args ...any) error) ([]code, error) {
	weight := func(w float64) (float64, error) {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return 0, bad("weight %v is not finite", w)
		}
		if w == 0 {
			return 1, nil
		}
		return w, nil
	}
	if len(z.Codes) == 0 {
		w, err := weight(z.Weight)
		if err != nil {
			return nil, err
		}
		c := code{any: true, weight: w}
		if z.Match != "" {
			if c.m, err = ParseMatcher(z.Match); err != nil {
				return nil, bad("match: %v", err)
			}
			c.any = false
		}
		return []code{c}, nil
	}
	if z.Match != "" || z.Weight != 0 {
		return nil, bad("set either Codes or Match and Weight")
	}
	var codes []code
	for _, c := range z.Codes {
		m, err := ParseMatcher(c.Match)
		if err != nil {
			return nil, bad("code: %v", err)
		}
		w, err := weight(c.Weight)
		if err != nil {
			return nil, err
		}
		codes = append(codes, code{m: m, weight: w})
	}
	return codes, nil
}

// checkTemplate rejects unknown placeholders, so a typo shows at startup
// rather than in a reply.
func checkTemplate(s string) error {
	for rest := s; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("unclosed { in %q", s)
		}
		switch rest[i : i+j+1] {
		case "{ip}", "{domain}", "{zone}", "{answer}", "{txt}":
		default:
			return fmt.Errorf("unknown placeholder %s in %q", rest[i:i+j+1], s)
		}
		rest = rest[i+j+1:]
	}
}

// render fills in the reply template. txt comes from the DNS and is
// already sanitized; the other values are validated names and addresses.
// Placeholders were checked by checkTemplate.
func render(tmpl string, ip netip.Addr, domain, zone string, answer netip.Addr, txt string) string {
	if txt == "" {
		if i := strings.Index(tmpl, "{txt}"); i >= 0 {
			tmpl = strings.TrimRight(tmpl[:i], " ;:,-") + tmpl[i+len("{txt}"):]
		}
	}
	var b strings.Builder
	b.Grow(len(tmpl) + len(domain) + len(zone) + len(txt) + 16)
	for {
		i := strings.IndexByte(tmpl, '{')
		j := strings.IndexByte(tmpl[max(i, 0):], '}')
		if i < 0 || j < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		switch tmpl[i : i+j+1] {
		case "{ip}":
			if ip.IsValid() {
				b.WriteString(ip.String())
			}
		case "{domain}":
			b.WriteString(domain)
		case "{zone}":
			b.WriteString(zone)
		case "{answer}":
			if answer.IsValid() {
				b.WriteString(answer.String())
			}
		case "{txt}":
			b.WriteString(txt)
		default:
			b.WriteString(tmpl[i : i+j+1])
		}
		tmpl = tmpl[i+j+1:]
	}
}

// normalizeName lower-cases a domain name and drops one trailing dot. It
// accepts letters, digits, '-' and '_' in labels of 1 to 63 bytes and
// refuses IP addresses.
func normalizeName(s string) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if s == "" {
		return "", fmt.Errorf("empty name")
	}
	if len(s) > maxNameLen {
		return "", fmt.Errorf("name longer than %d bytes", maxNameLen)
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "", fmt.Errorf("%q is an address, not a name", s)
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad label in %q", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad character %q in %q", c, s)
			}
		}
	}
	return s, nil
}
