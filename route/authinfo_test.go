package route

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestParseAuthInfo(t *testing.T) {
	c, err := ParseAuthInfo(`"U:smmsp" "I:relay-user" "P:s3cret pass" "R:example.com" "M:PLAIN LOGIN"`)
	require.NoError(t, err)
	assert.Equal(t, Credentials{User: "smmsp", AuthID: "relay-user", Password: "s3cret pass", Realm: "example.com",
		Mechanisms: []string{"PLAIN", "LOGIN"}}, c)

	c, err = ParseAuthInfo(`"U:alice" "P=c2VjcmV0IHdpdGggIiBxdW90ZQ=="`)
	require.NoError(t, err)
	assert.Equal(t, `secret with " quote`, c.Password, "P= is base64")
	assert.Equal(t, "alice", c.authc(), "U stands for I")

	c, err = ParseAuthInfo(`"I:bob" "P:x" "M:xoauth2"`)
	require.NoError(t, err)
	assert.Equal(t, "bob", c.authz())
	assert.Equal(t, []string{"XOAUTH2"}, c.Mechanisms)

	for _, bad := range []string{``, `"P:x"`, `"U:a"`, `"U:a" "P:x`, `"X:a" "P:x"`, `"U:a" "U:b" "P:x"`, `"U:a" "P=***"`,
		`"Ua" "P:x"`, "\"U:a\x00\" \"P:x\""} {
		_, err := ParseAuthInfo(bad)
		assert.ErrorIs(t, err, ErrSyntax, bad)
		if err != nil {
			assert.NotContains(t, err.Error(), "***", "an error never shows the secret")
		}
	}
}

func TestCredentialsNeverShowThePassword(t *testing.T) {
	c := Credentials{User: "alice", Password: "hunter2-secret"}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("login", "credentials", c)
	for _, s := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v", c), buf.String()} {
		assert.NotContains(t, s, "hunter2")
	}
	assert.Contains(t, c.String(), "password=set")
}

func TestAuthTableLookup(t *testing.T) {
	tb, err := NewAuthTable([]AuthEntry{
		{Key: "smtp.isp.example", Value: `"U:isp" "P:1"`},
		{Key: "example.net", Value: `"U:parent" "P:2"`},
		{Key: "[192.0.2.7]", Value: `"U:bracket" "P:3"`},
		{Key: "198.51.100", Value: `"U:net" "P:4"`},
		{Key: "[relay.example]", Value: `"U:named" "P:5"`},
		{Key: "", Value: `"U:default" "P:6"`},
		{Key: "smtp.isp.example", Value: `"U:second" "P:7"`},
	})
	require.NoError(t, err)
	for _, tc := range []struct {
		host  string
		addr  string
		named bool
		user  string
	}{
		{"smtp.isp.example", "203.0.113.1", false, "isp"},
		{"SMTP.ISP.EXAMPLE.", "203.0.113.1", false, "isp"},
		{"mx1.example.net", "203.0.113.1", false, "parent"},
		{"mx.other.example", "192.0.2.7", false, "bracket"},
		{"mx.other.example", "198.51.100.9", false, "net"},
		{"[relay.example]", "203.0.113.1", true, "named"},
		{"relay.example", "203.0.113.1", true, "named"},
		{"mx.other.example", "203.0.113.1", true, "default"},
		{"mx.other.example", "203.0.113.1", false, ""}, // the default never goes to MX hosts
		{"192.0.2.8", "192.0.2.8", false, ""},
	} {
		c, ok := tb.Lookup(tc.host, mustAddr(tc.addr), tc.named)
		assert.Equal(t, tc.user != "", ok, tc.host)
		assert.Equal(t, tc.user, c.User, tc.host)
		if ok {
			assert.Equal(t, tc.user != "default", c.Required, tc.host)
		}
	}
	_, err = NewAuthTable([]AuthEntry{{Key: "x.example", Value: `"U:a"`, Source: "access:3"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "access:3")
}

// FuzzParseAuthInfo: a value either fails with ErrSyntax, never quoting
// what may be a password, or gives credentials with a password and an
// identity and without line ends.
func FuzzParseAuthInfo(f *testing.F) {
	for _, s := range []string{`"U:u" "I:i" "P:p" "R:r" "M:PLAIN LOGIN"`, `"U:u" "P=cA=="`, `U:u P:p`, `"U:u" "P:p`, `"u:x" "p:y" "m:xoauth2"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseAuthInfo(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		require.NotEmpty(t, c.Password)
		require.NotEmpty(t, c.authc())
		for _, v := range []string{c.User, c.AuthID, c.Password, c.Realm} {
			require.False(t, strings.ContainsAny(v, "\x00\r\n"), "%q", v)
		}
		other := c
		other.Password = "x"
		require.Equal(t, other.String(), c.String(), "the password leaves no trace in String")
	})
}
