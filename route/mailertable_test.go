package route

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

const siteMailertable = `# mailertable of the relay
nix.co.jj	esmtp:[192.168.1.1]
.nix.co.jj	esmtp:[192.168.1.2]
Partner.Example	smtp:mx.partner.example:2525
.sub.partner.example	relay:[a.partner.example]:[b.partner.example]

v6.example	esmtp:[IPv6:2001:db8::25]
store.example	lmtp:/run/dovecot/lmtp
lmtp.example	lmtp:store.example:2424
local.example	local:
box.example	local:catchall
old.example	error:5.1.6:550 This domain has moved
gone.example	error:550 No such domain here
busy.example	error:nouser User unknown
[192.0.2.1]	smtp:[10.0.0.1]
.	relay:[smarthost.isp.example]
`

func TestMailertableLookup(t *testing.T) {
	tb := mustTable(t, siteMailertable)
	require.Equal(t, 14, tb.Len())
	tests := []struct {
		domain, key, hop string
	}{
		{"nix.co.jj", "nix.co.jj", "esmtp:[192.168.1.1]"},
		{"NIX.CO.JJ.", "nix.co.jj", "esmtp:[192.168.1.1]"},
		{"mail.nix.co.jj", ".nix.co.jj", "esmtp:[192.168.1.2]"},
		{"a.b.nix.co.jj", ".nix.co.jj", "esmtp:[192.168.1.2]"},
		{"partner.example", "partner.example", "smtp:mx.partner.example:2525"},
		// .sub.partner.example does not match sub.partner.example itself
		{"sub.partner.example", ".", "relay:[smarthost.isp.example]"},
		{"x.sub.partner.example", ".sub.partner.example", "relay:[a.partner.example]:[b.partner.example]"},
		{"www.partner.example", ".", "relay:[smarthost.isp.example]"},
		{"v6.example", "v6.example", "esmtp:[IPv6:2001:db8::25]"},
		{"[192.0.2.1]", "[192.0.2.1]", "smtp:[10.0.0.1]"},
		{"[192.0.2.2]", ".", "relay:[smarthost.isp.example]"},
		{"elsewhere.test", ".", "relay:[smarthost.isp.example]"},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			e, ok := tb.Lookup(tt.domain)
			require.True(t, ok)
			assert.Equal(t, tt.key, e.Key)
			assert.Equal(t, tt.hop, e.Hop.String())
			assert.Equal(t, "mailertable", e.File)
		})
	}
	noCatchAll := mustTable(t, "nix.co.jj esmtp:[192.168.1.1]\n.example.com smtp:x.example\n")
	for _, d := range []string{"example.com", "co.jj", "other.test", ""} {
		_, ok := noCatchAll.Lookup(d)
		assert.False(t, ok, d)
	}
	var nilTable *Table
	_, ok := nilTable.Lookup("x.test")
	assert.False(t, ok)
}

func TestMostSpecificWins(t *testing.T) {
	tb := mustTable(t, ".example smtp:[a]\n.b.example smtp:[b]\n.c.b.example smtp:[c]\nd.c.b.example smtp:[d]\n")
	for domain, want := range map[string]string{
		"x.example":       "smtp:[a]",
		"x.b.example":     "smtp:[b]",
		"x.c.b.example":   "smtp:[c]",
		"d.c.b.example":   "smtp:[d]",
		"e.d.c.b.example": "smtp:[c]",
		"c.b.example":     "smtp:[b]",
	} {
		e, ok := tb.Lookup(domain)
		require.True(t, ok, domain)
		assert.Equal(t, want, e.Hop.String(), domain)
	}
}

func TestParseNextHop(t *testing.T) {
	v4 := netip.MustParseAddr("192.168.1.1")
	tests := []struct {
		in   string
		want NextHop
		str  string
	}{
		{"esmtp:[192.168.1.1]", NextHop{Mailer: "esmtp", Kind: KindSMTP, Hosts: []Host{{Name: "192.168.1.1", Addr: v4, NoMX: true}}}, ""},
		{"ESMTP:[Mail.Example.]", NextHop{Mailer: "esmtp", Kind: KindSMTP, Hosts: []Host{{Name: "mail.example", NoMX: true}}}, "esmtp:[mail.example]"},
		{"smtp:mail.example", NextHop{Mailer: "smtp", Kind: KindSMTP, Hosts: []Host{{Name: "mail.example"}}}, ""},
		{"smtp:mail.example:2525", NextHop{Mailer: "smtp", Kind: KindSMTP, Hosts: []Host{{Name: "mail.example", Port: 2525}}}, ""},
		{"smtp:[192.168.1.1]:587", NextHop{Mailer: "smtp", Kind: KindSMTP, Hosts: []Host{{Name: "192.168.1.1", Addr: v4, Port: 587, NoMX: true}}}, ""},
		{"smtp8:192.168.1.1", NextHop{Mailer: "smtp8", Kind: KindSMTP, Hosts: []Host{{Name: "192.168.1.1", Addr: v4, NoMX: true}}}, "smtp8:[192.168.1.1]"},
		{"relay:[a.example]:[b.example]:26", NextHop{Mailer: "relay", Kind: KindSMTP, Hosts: []Host{{Name: "a.example", NoMX: true}, {Name: "b.example", NoMX: true, Port: 26}}}, ""},
		{"dsmtp:mx1.example:mx2.example", NextHop{Mailer: "dsmtp", Kind: KindSMTP, Hosts: []Host{{Name: "mx1.example"}, {Name: "mx2.example"}}}, ""},
		{"esmtp:[IPv6:2001:DB8::25]", NextHop{Mailer: "esmtp", Kind: KindSMTP, Hosts: []Host{{Name: "2001:db8::25", Addr: netip.MustParseAddr("2001:db8::25"), NoMX: true}}}, "esmtp:[IPv6:2001:db8::25]"},
		{"esmtp:[IPv6:2001:db8::25]:2525", NextHop{Mailer: "esmtp", Kind: KindSMTP, Hosts: []Host{{Name: "2001:db8::25", Addr: netip.MustParseAddr("2001:db8::25"), NoMX: true, Port: 2525}}}, ""},
		{"esmtp:", NextHop{Mailer: "esmtp", Kind: KindSMTP}, ""},
		{"smtp:postmaster@mailhub.example", NextHop{Mailer: "smtp", Kind: KindSMTP, User: "postmaster", Hosts: []Host{{Name: "mailhub.example"}}}, ""},
		{"lmtp:/run/dovecot/lmtp", NextHop{Mailer: "lmtp", Kind: KindLMTP, Hosts: []Host{{Name: "localhost", Socket: "/run/dovecot/lmtp", NoMX: true}}}, ""},
		{"lmtp:unix:/run/lmtp", NextHop{Mailer: "lmtp", Kind: KindLMTP, Hosts: []Host{{Name: "localhost", Socket: "/run/lmtp", NoMX: true}}}, "lmtp:/run/lmtp"},
		{"lmtp:store.example:24", NextHop{Mailer: "lmtp", Kind: KindLMTP, Hosts: []Host{{Name: "store.example", Port: 24, NoMX: true}}}, "lmtp:[store.example]:24"},
		{"lmtp:inet:[10.0.0.5]:2424", NextHop{Mailer: "lmtp", Kind: KindLMTP, Hosts: []Host{{Name: "10.0.0.5", Addr: netip.MustParseAddr("10.0.0.5"), Port: 2424, NoMX: true}}}, "lmtp:[10.0.0.5]:2424"},
		{"local:", NextHop{Mailer: "local", Kind: KindLocal}, ""},
		{"local:mailbox", NextHop{Mailer: "local", Kind: KindLocal, User: "mailbox"}, ""},
		{"error:5.7.1:550 Relaying denied", NextHop{Mailer: "error", Kind: KindError, Reply: postern.NewReply(550, postern.ESC(5, 7, 1), "Relaying denied")}, ""},
		{"error:550 No such domain", NextHop{Mailer: "error", Kind: KindError, Reply: postern.NewReply(550, postern.EnhancedCode{}, "No such domain")}, ""},
		{"error:550 5.1.2 No such domain", NextHop{Mailer: "error", Kind: KindError, Reply: postern.NewReply(550, postern.ESC(5, 1, 2), "No such domain")}, "error:5.1.2:550 No such domain"},
		{"error:4.3.2:451 Try later", NextHop{Mailer: "error", Kind: KindError, Reply: postern.NewReply(451, postern.ESC(4, 3, 2), "Try later")}, ""},
		{"error:nouser User unknown", NextHop{Mailer: "error", Kind: KindError, Reply: postern.NewReply(550, postern.ESC(5, 1, 1), "User unknown")}, "error:5.1.1:550 User unknown"},
		{"error:550", NextHop{Mailer: "error", Kind: KindError, Reply: postern.NewReply(550, postern.EnhancedCode{}, defaultErrorText)}, "error:550 " + defaultErrorText},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNextHop(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			str := tt.str
			if str == "" {
				str = tt.in
			}
			assert.Equal(t, str, got.String())
			// The canonical form parses back to the same hop.
			again, err := ParseNextHop(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again)
		})
	}
}

func TestParseNextHopErrors(t *testing.T) {
	for _, in := range []string{
		"", "esmtp", "uucp:host", "procmail:x", "esmtp:[192.168.1.1", "esmtp:192.168.1.1]", "esmtp:[[a]]",
		"esmtp:host:0", "esmtp:host:70000", "esmtp:25", "esmtp:host:25:26", "esmtp:bad host", "esmtp:-bad.example",
		"esmtp:a..b", "esmtp:[IPv6:zz]", "esmtp:[IPv6:1.2.3.4]", "esmtp:@host", "esmtp:u@a:b", "lmtp:", "lmtp:unix:relative",
		"lmtp:/path with space", "local:../etc", "local:a/b", "error:", "error:hello", "error:250 ok", "error:600 x",
		"error:5.1.1:450 mismatch", "error:9.9.9:550 x", "error:abc:550 x",
	} {
		_, err := ParseNextHop(in)
		assert.ErrorIs(t, err, ErrSyntax, "%q", in)
	}
}

func TestParseMailertableErrors(t *testing.T) {
	text := "good.example esmtp:[10.0.0.1]\n" +
		"nohop.example\n" + // 2
		"bad..key esmtp:[10.0.0.1]\n" + // 3
		"x.example uucp:host\n" + // 4
		"\n# comment\n" +
		"good.example smtp:other\n" + // 7: duplicate
		"y.example error:999 nonsense\n" // 8
	_, err := ParseMailertable(strings.NewReader(text), "mailertable")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrSyntax)
	msg := err.Error()
	for _, want := range []string{
		`mailertable:2: key "nohop.example" has no value`,
		`mailertable:3: bad key "bad..key"`,
		`mailertable:4: unsupported mailer "uucp"`,
		`mailertable:7: duplicate key "good.example" (first on line 1)`,
		`mailertable:8: error mailer: reply code 999 is not 4xx or 5xx`,
	} {
		assert.Contains(t, msg, want)
	}
	var pe *ParseError
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, 2, pe.Line)

	_, err = ParseMailertable(strings.NewReader("x "+strings.Repeat("a", maxLine)), "big")
	assert.ErrorIs(t, err, ErrSyntax)
	assert.Contains(t, err.Error(), "big:1: line longer")

	tb, err := ParseMailertable(strings.NewReader("\ufeffbom.example\tesmtp:[10.0.0.1]\r\n  indented.example   smtp:x.example  \r\n"), "crlf")
	require.NoError(t, err)
	_, ok := tb.Lookup("bom.example")
	assert.True(t, ok)
	e, ok := tb.Lookup("indented.example")
	require.True(t, ok)
	assert.Equal(t, 2, e.Line)
}

func TestLoadMailertable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mailertable")
	require.NoError(t, os.WriteFile(p, []byte(siteMailertable), 0o644))
	tb, err := LoadMailertable(p)
	require.NoError(t, err)
	assert.Equal(t, p, tb.File())
	_, err = LoadMailertable(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "route: "))
}
