package postern

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// ErrAddressSyntax is returned (wrapped, with the reason) by SplitAddress
// and ParseMailbox for an address that SMTP cannot carry.
var ErrAddressSyntax = errors.New("postern: bad address syntax")

// maxDomain bounds a domain (RFC 5321 §4.5.3.1.2) and maxLabel one of its
// labels (RFC 1035 §2.3.4).
const (
	maxDomain = 255
	maxLabel  = 63
)

// Address is an envelope mailbox (RFC 5321 §4.1.2) taken apart. An address
// has two spellings:
//
//   - the canonical form, String: the local part as a plain string (a
//     Quoted-string's content without its quotes and backslashes, a
//     Dot-string as written), "@", the domain. It is what go-smtp hands a
//     server session, what Txn.From and Rcpt.Addr hold, and what every
//     lookup (access map, recipient list, rate-limit keys, per-user
//     policy) is given. `"ceo"@example.test` and ceo@example.test are one
//     mailbox (RFC 5321 §4.1.2) and have one canonical form.
//   - the wire form, Wire: the local part quoted when it is not a
//     Dot-string, as RFC 5321 §4.1.2 writes a Mailbox. It is what goes into
//     MAIL FROM and RCPT TO, and into the addresses of a DSN, so that the
//     next hop reads the very mailbox the policy judged: `"ceo(x)"@…` stays
//     one mailbox whose local part is "ceo(x)", and never becomes a comment
//     to strip.
type Address struct {
	// Local is the local part: printable ASCII (space included) or, for
	// SMTPUTF8 (RFC 6531), UTF-8; never empty.
	Local string
	// Domain is a domain name with its ASCII letters in lower case and
	// no trailing dot, or an address literal in normal form
	// ("[192.0.2.1]", "[IPv6:2001:db8::1]"). It is "" only for the bare
	// "Postmaster" recipient (RFC 5321 §4.5.1).
	Domain string
}

// String returns the canonical form: Local "@" Domain, or Local alone for
// the bare Postmaster.
func (a Address) String() string {
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Wire returns the RFC 5321 Mailbox: the local part as a Dot-string when it
// is one, else as a Quoted-string with '"' and '\' escaped (§4.1.2).
func (a Address) Wire() string {
	l := quoteLocal(a.Local)
	if a.Domain == "" {
		return l
	}
	return l + "@" + a.Domain
}

// NeedsQuoting reports whether the wire form quotes the local part: the
// local part is not an RFC 5321 Dot-string.
func (a Address) NeedsQuoting() bool { return !isDotString(a.Local) }

// IsASCII reports whether the address is all ASCII, so that it may travel
// without SMTPUTF8 (RFC 6531 §3.2).
func (a Address) IsASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// SplitAddress parses an address in canonical form (see Address): the
// local part is the text before the LAST '@', since an unquoted local part
// may hold '@' (go-smtp hands `"a@b"@example.org` over as a@b@example.org).
// The local part must be non-empty printable ASCII or valid UTF-8 without
// control characters; the domain a host name (letters, digits, '-', '_',
// UTF-8 labels; one trailing dot dropped) or an IPv4 or IPv6 address
// literal. An address without '@' is taken only when it is "postmaster" in
// any case (RFC 5321 §4.5.1), with an empty Domain. Errors wrap
// ErrAddressSyntax.
func SplitAddress(addr string) (Address, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		if strings.EqualFold(addr, "postmaster") {
			return Address{Local: addr}, nil
		}
		return Address{}, fmt.Errorf("%w: %q has no domain", ErrAddressSyntax, addr)
	}
	if err := checkLocal(addr[:at]); err != nil {
		return Address{}, err
	}
	d, err := normalDomain(addr[at+1:])
	if err != nil {
		return Address{}, err
	}
	return Address{Local: addr[:at], Domain: d}, nil
}

// ParseMailbox parses an address in wire form, an RFC 5321 Mailbox
// (§4.1.2, with the RFC 6531 UTF-8 extension): a Dot-string or a
// Quoted-string, "@", and a domain or address literal, without angle
// brackets. The result is in canonical form and obeys what SplitAddress
// checks. Errors wrap ErrAddressSyntax.
func ParseMailbox(s string) (Address, error) {
	local, rest, err := cutLocal(s)
	if err != nil {
		return Address{}, err
	}
	if err := checkLocal(local); err != nil {
		return Address{}, err
	}
	d, err := normalDomain(rest)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: d}, nil
}

// WireAddr returns the wire form of an address held in canonical form
// (Txn.From, Rcpt.Addr): the text after the last '@' is kept as it is and
// the local part quoted when it is not a Dot-string. "" (the null reverse
// path) stays "". It never fails; check the address with SplitAddress
// first where it may be malformed.
func WireAddr(addr string) string {
	if addr == "" {
		return ""
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return quoteLocal(addr)
	}
	return quoteLocal(addr[:at]) + addr[at:]
}

// cutLocal reads the local part of a Mailbox and returns it unquoted, with
// the text after its '@'.
func cutLocal(s string) (local, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			return "", "", fmt.Errorf("%w: %q has no domain", ErrAddressSyntax, s)
		}
		if !isDotString(s[:at]) {
			return "", "", fmt.Errorf("%w: local part %q is neither a dot-string nor quoted", ErrAddressSyntax, s[:at])
		}
		return s[:at], s[at+1:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			if i+1 >= len(s) || s[i+1] != '@' {
				return "", "", fmt.Errorf("%w: no '@' after the quoted local part of %q", ErrAddressSyntax, s)
			}
			return b.String(), s[i+2:], nil
		case c == '\\':
			// quoted-pairSMTP: a backslash and one printable character.
			if i+1 >= len(s) || s[i+1] < 0x20 || s[i+1] > 0x7e {
				return "", "", fmt.Errorf("%w: bad escape in %q", ErrAddressSyntax, s)
			}
			i++
			b.WriteByte(s[i])
		case c >= 0x20 && c != 0x7f:
			b.WriteByte(c) // qtextSMTP, or UTF-8 checked with the rest
		default:
			return "", "", fmt.Errorf("%w: control character in %q", ErrAddressSyntax, s)
		}
	}
	return "", "", fmt.Errorf("%w: unterminated quoted local part in %q", ErrAddressSyntax, s)
}

// checkLocal accepts a local part SMTP can carry, quoted if need be:
// non-empty, valid UTF-8, no control characters (qtextSMTP and
// quoted-pairSMTP have none).
func checkLocal(l string) error {
	if l == "" {
		return fmt.Errorf("%w: empty local part", ErrAddressSyntax)
	}
	if !utf8.ValidString(l) {
		return fmt.Errorf("%w: local part %q is not valid UTF-8", ErrAddressSyntax, l)
	}
	for i := 0; i < len(l); i++ {
		if l[i] < 0x20 || l[i] == 0x7f {
			return fmt.Errorf("%w: control character in local part %q", ErrAddressSyntax, l)
		}
	}
	for _, r := range l {
		if r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("%w: control character in local part %q", ErrAddressSyntax, l)
		}
	}
	return nil
}

// normalDomain checks a domain or address literal and returns it in normal
// form.
func normalDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		return normalLiteral(d)
	}
	name := strings.TrimSuffix(d, ".")
	if name == "" || len(name) > maxDomain || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: bad domain %q", ErrAddressSyntax, d)
	}
	var b strings.Builder
	b.Grow(len(name))
	label, ascii := 0, true
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if label == 0 || ascii && label > maxLabel {
				return "", fmt.Errorf("%w: bad domain %q", ErrAddressSyntax, d)
			}
			if i < len(name) {
				b.WriteByte('.')
			}
			label, ascii = 0, true
			continue
		}
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c >= 0x80:
			ascii = false // a U-label (RFC 6531 §3.3); its A-label is the resolver's business
		default:
			return "", fmt.Errorf("%w: bad domain %q", ErrAddressSyntax, d)
		}
		b.WriteByte(c)
		label++
	}
	return b.String(), nil
}

// normalLiteral accepts "[IPv4]" and "[IPv6:addr]" (RFC 5321 §4.1.3) and
// writes them the one way netip does. General address literals have no
// registered tag but IPv6 and are refused.
func normalLiteral(d string) (string, error) {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return "", fmt.Errorf("%w: bad address literal %q", ErrAddressSyntax, d)
	}
	in := d[1 : len(d)-1]
	if len(in) >= 5 && strings.EqualFold(in[:5], "IPv6:") {
		a, err := netip.ParseAddr(in[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("%w: bad IPv6 address literal %q", ErrAddressSyntax, d)
		}
		return "[IPv6:" + a.String() + "]", nil
	}
	a, err := netip.ParseAddr(in)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("%w: bad address literal %q", ErrAddressSyntax, d)
	}
	return "[" + a.String() + "]", nil
}

// isDotString reports whether l is an RFC 5321 Dot-string: atoms of atext
// (RFC 6531 adds UTF-8) joined by single dots.
func isDotString(l string) bool {
	if l == "" || l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

// isAtext is RFC 5321's atext (from RFC 5322 §3.2.3), with every non-ASCII
// byte taken as part of a UTF-8 character (RFC 6531 §3.3).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// quoteLocal writes a local part as a Dot-string, or as a Quoted-string
// when it is not one.
func quoteLocal(l string) string {
	if isDotString(l) {
		return l
	}
	var b strings.Builder
	b.Grow(len(l) + 2)
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
