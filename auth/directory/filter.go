package directory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// template is a search filter with placeholders: %s the value, %u its
// local part, %d its domain, %% a '%'. Values are escaped before they go
// in (RFC 4515 §3: '*', '(', ')', '\', NUL and every octet outside ASCII
// as \XX), so no address or login name can change the filter's
// structure: "*)(uid=*" is looked up as those eight characters.
type template struct {
	text  string
	parts []string // literal text and placeholders ("%s", "%u", "%d")
}

func parseTemplate(s string) (template, error) {
	t := template{text: s}
	var lit strings.Builder
	holders := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return t, errors.New("ends in a lone '%'")
		}
		i++
		switch s[i] {
		case '%':
			lit.WriteByte('%')
		case 's', 'u', 'd':
			t.parts = append(t.parts, lit.String(), "%"+string(s[i]))
			lit.Reset()
			holders++
		default:
			return t, fmt.Errorf("unknown placeholder %%%c (want %%s, %%u, %%d or %%%%)", s[i])
		}
	}
	t.parts = append(t.parts, lit.String())
	if holders == 0 {
		return t, errors.New("has no %s, %u or %d: it would find the same entry for everyone")
	}
	if _, err := ldap.CompileFilter(t.expand("probe@example.test")); err != nil {
		return t, fmt.Errorf("%q is not a valid LDAP filter: %w", s, err)
	}
	return t, nil
}

// expand returns the filter for value, every substitution escaped.
func (t template) expand(value string) string {
	local, domain := value, ""
	if at := strings.LastIndexByte(value, '@'); at >= 0 {
		local, domain = value[:at], value[at+1:]
	}
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		switch p {
		case "%s":
			b.WriteString(ldap.EscapeFilter(value))
		case "%u":
			b.WriteString(ldap.EscapeFilter(local))
		case "%d":
			b.WriteString(ldap.EscapeFilter(domain))
		}
	}
	return b.String()
}

// filterChars reports a value holding characters that mean something in
// a filter: looked up as themselves (escaped), but worth a log line, as
// no real address or login name has them.
func filterChars(v string) bool { return strings.ContainsAny(v, "()*\\\x00") }

// String returns the template as configured.
func (t template) String() string { return t.text }
