package auth

import (
	"net/netip"
	"strings"
	"unicode"

	"github.com/emersion/go-msgauth/authres"
	"golang.org/x/net/idna"

	"github.com/postern/postern"
)

// AuthResults are the results written into one Authentication-Results
// field. Nil or empty members are left out.
type AuthResults struct {
	// IPRev is the client's forward-confirmed reverse DNS result.
	IPRev *IPRevResult
	SPF   *SPFResult
	DKIM  []DKIMResult
	DMARC *DMARCResult
	// DKIMChecked says DKIM was verified: a message without signatures
	// then gets "dkim=none".
	DKIMChecked bool
}

// FormatAuthResults returns the value of an Authentication-Results field
// (RFC 8601 §2.2) written with go-msgauth's authres package: the
// authserv-id, then one result per method, each on its own folded line.
// With no results it is "<authserv-id>; none".
func FormatAuthResults(authservID string, r AuthResults) string {
	var rs []authres.Result
	comments := map[authres.Result]string{}
	if r.IPRev != nil && r.IPRev.Status != "" {
		res := &authres.GenericResult{Method: "iprev", Value: authres.ResultValue(r.IPRev.Status),
			Params: map[string]string{"policy.iprev": r.IPRev.IP.String()}}
		if r.IPRev.Status == Pass {
			// RFC 8601 §2.7.3: the name goes in a comment.
			comments[res] = r.IPRev.Name
		} else {
			res.Params["reason"] = r.IPRev.reason()
		}
		rs = append(rs, res)
	}
	if r.SPF != nil && r.SPF.Status != "" {
		p := map[string]string{}
		if r.SPF.Identity == IdentityHELO {
			p["smtp.helo"] = r.SPF.HELO
		} else {
			p["smtp.mailfrom"] = r.SPF.MailFrom
		}
		if r.SPF.Status == TempError || r.SPF.Status == PermError {
			p["reason"] = r.SPF.Problem
		}
		rs = append(rs, &authres.GenericResult{Method: "spf", Value: authres.ResultValue(r.SPF.Status), Params: p})
	}
	for _, d := range r.DKIM {
		p := map[string]string{"header.d": d.Domain, "header.s": d.Selector, "header.i": d.Identifier,
			"header.a": d.Algorithm, "header.b": d.BPrefix}
		if d.Status != Pass {
			p["reason"] = d.Reason
		}
		rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(d.Status), Params: p})
	}
	if len(r.DKIM) == 0 && r.DKIMChecked {
		rs = append(rs, &authres.GenericResult{Method: "dkim", Value: authres.ResultNone, Params: map[string]string{}})
	}
	if r.DMARC != nil && r.DMARC.Status != "" {
		p := map[string]string{"header.from": r.DMARC.FromDomain}
		if r.DMARC.Status != Pass {
			reason := r.DMARC.Reason
			if r.DMARC.Policy != "" {
				reason += ", policy " + string(r.DMARC.Policy) + ", disposition " + string(r.DMARC.Disposition)
			}
			p["reason"] = reason
		}
		rs = append(rs, &authres.GenericResult{Method: "dmarc", Value: authres.ResultValue(r.DMARC.Status), Params: p})
	}
	if len(rs) == 0 {
		return authres.Format(authservID, nil)
	}
	for _, res := range rs {
		g := res.(*authres.GenericResult)
		for k, v := range g.Params {
			g.Params[k] = safeParam(v)
		}
	}
	// Each result is formatted alone so the field can be folded between
	// results (never inside a quoted reason).
	var b strings.Builder
	b.WriteString(authservID)
	for _, res := range rs {
		s := authres.Format("x", []authres.Result{res})
		b.WriteString(";\r\n\t")
		b.WriteString(strings.TrimSpace(strings.TrimPrefix(s, "x; ")))
		if c, ok := comments[res]; ok {
			if c, ok = hostName(c); ok { // a host name cannot break the comment
				b.WriteString(" (" + c + ")")
			}
		}
	}
	return b.String()
}

// IPRevResult is the "iprev" result of RFC 8601 §3 for one client.
type IPRevResult struct {
	Status Status
	// IP is the client address (policy.iprev).
	IP netip.Addr
	// Name is the verified name for pass, the PTR name that did not
	// confirm for fail.
	Name string
}

// IPRevResultOf returns the iprev result of c's reverse DNS lookup, nil
// when none was made.
func IPRevResultOf(c *postern.Conn) *IPRevResult {
	st := IPRevStatus(c.ClientResolve)
	if st == "" {
		return nil
	}
	name := c.ClientName
	if name == "" {
		name = c.ClientPTR
	}
	return &IPRevResult{Status: st, IP: c.RemoteAddr(), Name: name}
}

func (r *IPRevResult) reason() string {
	switch r.Status {
	case Fail:
		if r.Name == "" {
			return "no PTR name resolves to the address"
		}
		return "PTR name " + r.Name + " does not resolve to the address"
	case PermError:
		return "no PTR record"
	case TempError:
		return "DNS lookup failed temporarily"
	}
	return ""
}

// safeParam makes a value (often words from a DNS answer or a signature)
// safe in a result: go-msgauth quotes it but escapes only '"', and many
// readers split results at ';' even inside quotes. Control characters
// go, backslashes and ';' are replaced, and the length is capped.
func safeParam(v string) string {
	const maxLen = 200
	v = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f:
			return ' '
		case r == '\\':
			return '/'
		case r == ';':
			return ','
		}
		return r
	}, v)
	if len(v) > maxLen {
		v = v[:maxLen] + "..."
	}
	return strings.ToValidUTF8(v, "?")
}

// AuthServID returns the authserv-id of an Authentication-Results value
// (RFC 8601 §2.2: [CFWS] authserv-id [CFWS authres-version] ";"...): the
// first token or quoted-string after any comments, unquoted and
// unescaped. A token ends at white space, a comment or any other RFC 2045
// tspecial. It returns "" when there is none.
func AuthServID(value string) string {
	s := skipCFWS(value)
	if strings.HasPrefix(s, `"`) {
		return quotedString(s)
	}
	end := strings.IndexFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || unicode.IsSpace(r) || strings.ContainsRune(`()<>@,;:\"/[]?=`, r)
	})
	if end < 0 {
		end = len(s)
	}
	return s[:end]
}

// quotedString returns the content of the quoted-string s starts with
// (RFC 5322 §3.2.4): quoted-pairs unescaped, folding removed. "" when it
// is not closed.
func quotedString(s string) string {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String()
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '\r', '\n':
			// folding: the CRLF goes, the white space after it stays
		default:
			b.WriteByte(c)
		}
	}
	return ""
}

// SameAuthServID reports whether two authserv-ids name the same host:
// they are compared as domain names (RFC 8601 §2.5), so case, one
// trailing dot and the Unicode spellings that IDNA maps to the same
// A-labels (fullwidth letters and dots, U-labels) do not tell them apart.
// Empty ids never match.
func SameAuthServID(a, b string) bool {
	a, b = normAuthServID(a), normAuthServID(b)
	return a != "" && a == b
}

func normAuthServID(id string) string {
	id = strings.TrimSpace(id)
	for i := 0; i < len(id); i++ {
		if id[i] >= 0x80 {
			if ascii, err := idna.Lookup.ToASCII(id); err == nil {
				id = ascii
			} else if ascii, err := idna.Punycode.ToASCII(strings.ToLower(id)); err == nil {
				id = ascii // not a valid IDN, but spelled like one
			}
			break
		}
	}
	return strings.TrimSuffix(strings.ToLower(id), ".")
}

// skipCFWS drops leading white space and (nested) comments.
func skipCFWS(s string) string {
	for {
		// Every Unicode space, as go-msgauth's TrimSpace reads them:
		// a \v or U+00A0 before the id must not hide it from us.
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if !strings.HasPrefix(s, "(") {
			return s
		}
		depth := 0
		i := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
}

// RemoveAuthResults records the deletion of every received
// Authentication-Results field whose authserv-id is one of ids
// (SameAuthServID: compared as domain names, however the field spells
// it): fields that claim to come from us cannot have, and RFC 8601 §5
// asks a border MTA to remove them. It returns how many.
func RemoveAuthResults(m *postern.Message, ids ...string) int {
	n, idx := 0, 0
	var del []int
	for _, f := range m.Fields() {
		if !strings.EqualFold(f.Name, "Authentication-Results") {
			continue
		}
		got := AuthServID(f.Value())
		for _, id := range ids {
			if SameAuthServID(got, id) {
				del = append(del, idx)
				break
			}
		}
		idx++
	}
	for _, i := range del {
		if m.DeleteHeader("Authentication-Results", i) {
			n++
		}
	}
	return n
}
