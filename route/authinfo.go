package route

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
)

// Credentials are a client login to a server (SMTP AUTH, RFC 4954), as
// sendmail's AuthInfo entries give them. Their String and LogValue never
// show the password.
type Credentials struct {
	// User is the authorization identity (sendmail "U:"), AuthID the
	// authentication identity ("I:"); either stands for the other when
	// missing.
	User   string
	AuthID string
	// Password is the secret ("P:", or "P=" in base64): a password, or
	// an OAuth 2.0 access token for XOAUTH2.
	Password string
	// Realm ("R:") is kept for mechanisms that use one; PLAIN, LOGIN and
	// XOAUTH2 do not.
	Realm string
	// Mechanisms ("M:") are the SASL mechanisms to use, in order of
	// preference; empty means PLAIN, then LOGIN. XOAUTH2 is used only
	// when named.
	Mechanisms []string
	// Required makes the login mandatory: a server that offers no AUTH,
	// or no mechanism in common, is a temporary failure. Entries that
	// name a host are; sendmail's default entry ("AuthInfo:") is not: it
	// is used only where a server offers AUTH, as sendmail does.
	Required bool
}

// String describes the credentials without the password.
func (c Credentials) String() string {
	s := "user=" + c.authz() + " authid=" + c.authc()
	if len(c.Mechanisms) > 0 {
		s += " mechanisms=" + strings.Join(c.Mechanisms, ",")
	}
	if c.Password != "" {
		s += " password=set"
	}
	return s
}

// LogValue keeps the password out of logs.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c Credentials) authz() string {
	if c.User == "" {
		return c.AuthID
	}
	return c.User
}

func (c Credentials) authc() string {
	if c.AuthID == "" {
		return c.User
	}
	return c.AuthID
}

// ParseAuthInfo reads the value of a sendmail AuthInfo entry: quoted
// items "U:user" "I:authid" "P:password" "R:realm" "M:PLAIN LOGIN", each
// a letter and ':' before plain text or '=' before base64 (sendmail's
// cf/README, "authinfo"). A password is required, and a user or an
// authentication id. An item not in quotes may not hold white space.
func ParseAuthInfo(value string) (Credentials, error) {
	items, err := authItems(value)
	if err != nil {
		return Credentials{}, err
	}
	var c Credentials
	seen := map[byte]bool{}
	for _, it := range items {
		if len(it) < 2 || (it[1] != ':' && it[1] != '=') {
			return Credentials{}, fmt.Errorf("%w: AuthInfo item %q: want a letter and ':' or '='", ErrSyntax, redactItem(it))
		}
		tag, text := it[0]&^0x20, it[2:]
		if it[1] == '=' {
			b, err := base64.StdEncoding.DecodeString(text)
			if err != nil {
				return Credentials{}, fmt.Errorf("%w: AuthInfo item %c= is not base64", ErrSyntax, it[0])
			}
			text = string(b)
		}
		if seen[tag] {
			return Credentials{}, fmt.Errorf("%w: AuthInfo item %c given twice", ErrSyntax, it[0])
		}
		seen[tag] = true
		if hasCtl(text) && tag != 'P' || strings.ContainsAny(text, "\x00\r\n") {
			return Credentials{}, fmt.Errorf("%w: AuthInfo item %c has a control character", ErrSyntax, it[0])
		}
		switch tag {
		case 'U':
			c.User = text
		case 'I':
			c.AuthID = text
		case 'P':
			c.Password = text
		case 'R':
			c.Realm = text
		case 'M':
			for _, m := range strings.Fields(text) {
				c.Mechanisms = append(c.Mechanisms, strings.ToUpper(m))
			}
		default:
			return Credentials{}, fmt.Errorf("%w: AuthInfo item %c: unknown (want U, I, P, R or M)", ErrSyntax, it[0])
		}
	}
	if c.User == "" && c.AuthID == "" {
		return Credentials{}, fmt.Errorf("%w: AuthInfo needs \"U:user\" or \"I:authid\"", ErrSyntax)
	}
	if c.Password == "" {
		return Credentials{}, fmt.Errorf("%w: AuthInfo needs \"P:password\"", ErrSyntax)
	}
	return c, nil
}

// authItems splits a value into its items: quoted strings, or words.
func authItems(s string) ([]string, error) {
	var items []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return items, nil
		}
		if s[0] != '"' {
			end := strings.IndexAny(s, " \t")
			if end < 0 {
				end = len(s)
			}
			items = append(items, s[:end])
			s = s[end:]
			continue
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("%w: AuthInfo: unbalanced quote", ErrSyntax)
		}
		items = append(items, s[1:1+end])
		s = s[2+end:]
	}
}

// redactItem shows an item in an error without what may be a secret.
func redactItem(it string) string {
	if len(it) > 2 {
		return it[:2] + "..."
	}
	return it
}

// AuthEntry is one AuthInfo entry: its key without the tag ("" for the
// default entry, "smtp.isp.example", "[192.0.2.1]", "192.0.2") and its
// value as written.
type AuthEntry struct {
	Key   string
	Value string
	// Source names where it was read ("access:12"), for errors.
	Source string
}

// AuthTable finds the credentials for a server, as sendmail's authinfo
// ruleset does. It is immutable and safe for concurrent use.
type AuthTable struct {
	byKey map[string]Credentials
	def   *Credentials
}

// NewAuthTable reads entries; the first of a duplicate key wins, as in
// an access map.
func NewAuthTable(entries []AuthEntry) (*AuthTable, error) {
	t := &AuthTable{byKey: map[string]Credentials{}}
	for _, e := range entries {
		c, err := ParseAuthInfo(e.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Source, err)
		}
		k := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(e.Key), "."))
		if k == "" {
			if t.def == nil {
				t.def = &c
			}
			continue
		}
		c.Required = true
		if _, dup := t.byKey[k]; !dup {
			t.byKey[k] = c
		}
	}
	return t, nil
}

// Len returns the number of entries, the default one included.
func (t *AuthTable) Len() int {
	if t == nil {
		return 0
	}
	n := len(t.byKey)
	if t.def != nil {
		n++
	}
	return n
}

// Lookup returns the credentials for a server named host (an MX host
// name, a host name, or a bracketed name "[smtp.isp.example]") at addr:
// the host, then its parent domains (sendmail's LookUpDomain), then the
// address as "[192.0.2.1]", "192.0.2.1" and its leading octets
// ("192.0.2"; LookUpAddress), then the default entry when named is set
// (the configuration chose the server, not DNS: see Credentials.Required).
func (t *AuthTable) Lookup(host string, addr netip.Addr, named bool) (Credentials, bool) {
	if t == nil {
		return Credentials{}, false
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if c, ok := t.byKey[h]; ok {
		return c, true
	}
	bare := strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for _, k := range []string{bare, "[" + bare + "]"} {
		if c, ok := t.byKey[k]; ok && k != h {
			return c, true
		}
	}
	_, isAddr := netip.ParseAddr(strings.TrimPrefix(bare, "ipv6:"))
	for d := bare; isAddr != nil; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
		if c, ok := t.byKey[d]; ok && strings.Contains(d, ".") {
			return c, true
		}
	}
	if c, ok := t.byAddr(addr); ok {
		return c, true
	}
	if t.def != nil && named {
		return *t.def, true
	}
	return Credentials{}, false
}

func (t *AuthTable) byAddr(addr netip.Addr) (Credentials, bool) {
	if !addr.IsValid() {
		return Credentials{}, false
	}
	a := addr.Unmap()
	keys := []string{"[" + a.String() + "]", a.String()}
	if a.Is6() {
		keys = []string{"[ipv6:" + a.String() + "]", "ipv6:" + a.String(), "[" + a.String() + "]"}
	} else {
		o := a.As4()
		keys = append(keys, fmt.Sprintf("%d.%d.%d", o[0], o[1], o[2]), fmt.Sprintf("%d.%d", o[0], o[1]), fmt.Sprintf("%d", o[0]))
	}
	for _, k := range keys {
		if c, ok := t.byKey[k]; ok {
			return c, true
		}
	}
	return Credentials{}, false
}
