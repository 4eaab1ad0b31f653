package postern_test

import (
	"errors"
	"net/mail"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestSplitAddress(t *testing.T) {
	tests := []struct {
		in, canonical, wire string
		quoted              bool
	}{
		{"ceo@example.test", "ceo@example.test", "ceo@example.test", false},
		{"CEO@EXAMPLE.Test.", "CEO@example.test", "CEO@example.test", false},
		// What go-smtp hands over for "ceo(x)"@…, "a b"@…, "a\"b"@…, "a@b"@….
		{"ceo(x)@example.test", "ceo(x)@example.test", `"ceo(x)"@example.test`, true},
		{"a b@example.test", "a b@example.test", `"a b"@example.test`, true},
		{`a"b@example.test`, `a"b@example.test`, `"a\"b"@example.test`, true},
		{`a\b@example.test`, `a\b@example.test`, `"a\\b"@example.test`, true},
		{"a@b@example.test", "a@b@example.test", `"a@b"@example.test`, true},
		{".ceo@example.test", ".ceo@example.test", `".ceo"@example.test`, true},
		{"ce..o@example.test", "ce..o@example.test", `"ce..o"@example.test`, true},
		{"ceo.@example.test", "ceo.@example.test", `"ceo."@example.test`, true},
		{"a.b+c=d/e{f}@example.test", "a.b+c=d/e{f}@example.test", "a.b+c=d/e{f}@example.test", false},
		{"user%remote@example.test", "user%remote@example.test", "user%remote@example.test", false},
		{"山田@例え.jp", "山田@例え.jp", "山田@例え.jp", false},
		{"x@[192.0.2.1]", "x@[192.0.2.1]", "x@[192.0.2.1]", false},
		{"x@[ipv6:2001:DB8:0::1]", "x@[IPv6:2001:db8::1]", "x@[IPv6:2001:db8::1]", false},
		{"x@under_score.example", "x@under_score.example", "x@under_score.example", false},
		{"Postmaster", "Postmaster", "Postmaster", false},
		{"POSTMASTER", "POSTMASTER", "POSTMASTER", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := postern.SplitAddress(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.canonical, a.String())
			assert.Equal(t, tt.wire, a.Wire())
			assert.Equal(t, tt.quoted, a.NeedsQuoting())
			assert.Equal(t, tt.wire, postern.WireAddr(a.String()))
			back, err := postern.ParseMailbox(a.Wire())
			if a.Domain == "" {
				require.Error(t, err, "a Mailbox has a domain")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, a, back)
		})
	}
}

func TestSplitAddressRefuses(t *testing.T) {
	for _, in := range []string{
		"", "ceo", "@example.test", "ceo@", "ceo@.", "ceo@example..test", "ceo@.example.test", "ceo@example.test..",
		"ceo@example.test(x)", "ceo@exa mple.test", `ceo@example.test"`, "ceo@example.test>", "ceo@exa\\mple",
		"ceo@[192.0.2.1", "ceo@[1.2.3]", "ceo@[300.1.1.1]", "ceo@[IPv6:fe80::1%eth0]", "ceo@[IPv6:192.0.2.1]",
		"ceo@[x-tag:content]", "ceo@[2001:db8::1]", "c\x00eo@example.test", "c\teo@example.test",
		"c\x7feo@example.test", "c\x85eo@example.test", "c\xffeo@example.test", "ceo@exa\xffmple.test",
		"ceo@" + string(make([]byte, 256)),
	} {
		_, err := postern.SplitAddress(in)
		assert.ErrorIs(t, err, postern.ErrAddressSyntax, "%q", in)
	}
}

func TestParseMailbox(t *testing.T) {
	tests := []struct{ in, canonical string }{
		{"ceo@example.test", "ceo@example.test"},
		{`"ceo"@example.test`, "ceo@example.test"},
		{`"c\eo"@Example.Test.`, "ceo@example.test"},
		{`"ceo(x)"@example.test`, "ceo(x)@example.test"},
		{`"a\"b"@example.test`, `a"b@example.test`},
		{`"a@b"@example.test`, "a@b@example.test"},
		{`" "@example.test`, " @example.test"},
	}
	for _, tt := range tests {
		a, err := postern.ParseMailbox(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.canonical, a.String(), tt.in)
	}
	for _, in := range []string{
		"ceo(x)@example.test", "a b@example.test", ".ceo@example.test", "a..b@example.test", `""@example.test`,
		`"ceo"example.test`, `"ceo`, `"c\` + "\x01" + `"@x.test`, "\"c\teo\"@x.test", "a@b@example.test",
		"ceo", "<ceo@example.test>",
	} {
		_, err := postern.ParseMailbox(in)
		assert.ErrorIs(t, err, postern.ErrAddressSyntax, "%q", in)
	}
}

// The wire form is an RFC 5322 addr-spec too (a DSN's To: and
// Final-Recipient): net/mail reads back the canonical local part.
func TestWireIsAnAddrSpec(t *testing.T) {
	for _, in := range []string{"ceo(x)@example.test", "a b@example.test", `a"b\c@example.test`, "a@b@example.test", ".x.@example.test"} {
		a, err := postern.SplitAddress(in)
		require.NoError(t, err)
		m, err := mail.ParseAddress("<" + a.Wire() + ">")
		require.NoError(t, err, a.Wire())
		assert.Equal(t, in, m.Address)
	}
}

func TestWireAddr(t *testing.T) {
	assert.Equal(t, "", postern.WireAddr(""), "the null reverse path")
	assert.Equal(t, `"a b"@Example.TEST`, postern.WireAddr("a b@Example.TEST"), "the domain is left as it is")
	assert.Equal(t, `"a b"`, postern.WireAddr("a b"))
	_, err := postern.SplitAddress("x")
	assert.True(t, errors.Is(err, postern.ErrAddressSyntax))
}
