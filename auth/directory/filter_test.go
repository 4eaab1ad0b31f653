package directory

import (
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl, value, want string
	}{
		{"(mail=%s)", "alice@example.test", "(mail=alice@example.test)"},
		{"(&(uid=%u)(dc=%d))", "alice@example.test", "(&(uid=alice)(dc=example.test))"},
		{"(uid=%u)", "alice", "(uid=alice)"}, // no '@': all of it
		{"(mail=%s)", "*)(uid=*", `(mail=\2a\29\28uid=\2a)`},
		{"(mail=%s)", "a\x00b", `(mail=a\00b)`},
		{"(mail=%s)", `a\b`, `(mail=a\5cb)`},
		{"(mail=%s)", "jöhn@example.test", `(mail=j\c3\b6hn@example.test)`},
		{"(&(cn=100%%)(mail=%s))", "x", "(&(cn=100%)(mail=x))"},
		{"(mail=%u@%d)", `"a@b"@example.test`, `(mail="a@b"@example.test)`},
	} {
		tp, err := parseTemplate(tc.tmpl)
		require.NoError(t, err, tc.tmpl)
		assert.Equal(t, tc.want, tp.expand(tc.value), "%s with %q", tc.tmpl, tc.value)
	}
}

// assertions collects the values of the equality assertions of a
// compiled filter.
func assertions(p *ber.Packet, out *[]string) {
	if p.ClassType == ber.ClassContext && p.Tag == ldap.FilterEqualityMatch && len(p.Children) == 2 {
		*out = append(*out, p.Children[1].Data.String())
		return
	}
	for _, c := range p.Children {
		assertions(c, out)
	}
}

// FuzzFilterTemplate: whatever the address, the filter built from the
// default templates is one valid filter (go-ldap's parser, as the server
// will read it) of the template's shape, whose assertions carry the
// address, its local part and its domain exactly: no value can add a
// term, a wildcard or a presence test.
func FuzzFilterTemplate(f *testing.F) {
	for _, s := range []string{"alice@example.test", "*)(uid=*", "\x00", "\\00", "a)(|(mail=*", "(", ")", "*",
		"jöhn@exämple.test", "\xff\xfe", "@", "a@b@c", "\\", "%s"} {
		f.Add(s)
	}
	recip, err := parseTemplate(DefaultRecipientFilter)
	require.NoError(f, err)
	split, err := parseTemplate("(&(uid=%u)(|(dc=%d)(mail=%s)))")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, v string) {
		local, domain := v, ""
		if at := strings.LastIndexByte(v, '@'); at >= 0 {
			local, domain = v[:at], v[at+1:]
		}
		for _, tc := range []struct {
			t    template
			want []string
		}{{recip, []string{v, v}}, {split, []string{local, domain, v}}} {
			flt := tc.t.expand(v)
			p, err := ldap.CompileFilter(flt)
			require.NoError(t, err, "%q gave %q", v, flt)
			var got []string
			assertions(p, &got)
			require.Equal(t, tc.want, got, "filter %q", flt)
			// The same shape as the template with a harmless value.
			probe, err := ldap.CompileFilter(tc.t.expand("x@y"))
			require.NoError(t, err)
			require.Equal(t, shape(probe), shape(p))
		}
	})
}

// shape is a filter's structure without its values.
func shape(p *ber.Packet) string {
	var b strings.Builder
	var walk func(p *ber.Packet)
	walk = func(p *ber.Packet) {
		b.WriteString("(")
		b.WriteString(string(rune('0' + p.Tag)))
		if p.ClassType == ber.ClassContext && p.Tag == ldap.FilterEqualityMatch && len(p.Children) == 2 {
			b.WriteString(p.Children[0].Data.String())
		} else {
			for _, c := range p.Children {
				walk(c)
			}
		}
		b.WriteString(")")
	}
	walk(p)
	return b.String()
}
