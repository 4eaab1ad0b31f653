package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route"
)

// check-config describes the smart host login and the AuthInfo entries
// without a trace of a password, plain or in base64; relay check shows
// none either.
func TestCheckConfigHidesCredentials(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "smarthost.secret"), "pw-from-file-4711\n")
	require.NoError(t, os.Chmod(filepath.Join(dir, "smarthost.secret"), 0o600))
	writeTestFile(t, filepath.Join(dir, "authinfo"), `AuthInfo:mx.partner.example "U:relay" "P:pw-in-authinfo-0815" "M:PLAIN"
AuthInfo:[192.0.2.25] "U:relay" "P=`+"c2VjcmV0LWluLWJhc2U2NA=="+`"
`)
	path := filepath.Join(dir, "relay.toml")
	writeTestFile(t, path, `local_domains = ["example.org"]
[delivery]
smart_host = "[smtp.isp.example]:587"
auth_user = "relay@example.org"
auth_password_file = "smarthost.secret"
authinfo = "authinfo"
`)
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"check-config", "-config", path, "-spool", filepath.Join(dir, "spool")}, &out, &errb), errb.String())
	// relay check, through to the route of a message for the smart host.
	require.Equal(t, 0, run([]string{"check", "-config", path, "-spool", filepath.Join(dir, "spool"), "-ip", "127.0.0.1",
		"-from", "a@example.org", "-rcpt", "b@remote.example"}, &out, &errb), errb.String())
	all := out.String() + errb.String()
	assert.Contains(t, all, "smart host login: user relay@example.org, password set")
	assert.Contains(t, all, "AuthInfo entries: 2 (credentials set)")
	assert.Contains(t, all, "=> message: accepted for 1 recipient(s)", "relay check ran through")
	for _, secret := range []string{"pw-from-file-4711", "pw-in-authinfo-0815", "c2VjcmV0LWluLWJhc2U2NA==", "secret-in-base64"} {
		assert.NotContains(t, all, secret)
	}
}

// The policy map and the AuthInfo lines docs/outbound-tls.md shows are
// read by the parsers the relay uses, and mean what the page says.
func TestDocsOutboundTLSFiles(t *testing.T) {
	doc := readDoc(t, "../../docs/outbound-tls.md")
	blocks := regexp.MustCompile("(?ms)^```(\\w*)\n(.*?)^```$").FindAllStringSubmatch(doc, -1)
	var policy, authinfo string
	for _, b := range blocks {
		switch {
		case b[1] != "":
		case strings.HasPrefix(b[2], "# /etc/postern/tls_policy"):
			policy = b[2]
		case strings.HasPrefix(b[2], "AuthInfo:"):
			authinfo = b[2]
		}
	}
	require.NotEmpty(t, policy, "the page shows a policy map")
	require.NotEmpty(t, authinfo, "the page shows AuthInfo lines")

	m, err := route.ParseTLSPolicyMap(strings.NewReader(policy), "tls_policy")
	require.NoError(t, err)
	assert.Equal(t, 5, m.Len())
	for host, want := range map[route.Host]route.TLSPolicy{
		{Name: "example.com"}:                             route.TLSSecure,
		{Name: "mx.example.com"}:                          route.TLSEncrypt, // .example.com
		{Name: "smtp.isp.example", NoMX: true, Port: 587}: route.TLSVerify,
		{Name: "example.net"}:                             route.TLSDaneOnly,
		{Addr: netip.MustParseAddr("192.0.2.25")}:         route.TLSNone,
	} {
		e, ok := m.Lookup(host)
		require.True(t, ok, "%v", host)
		assert.Equal(t, want, e.Level, "%v", host)
	}

	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "authinfo"), authinfo)
	s := &Config{}
	s.Delivery.AuthInfo = filepath.Join(dir, "authinfo")
	a, err := newAuthSource(s, discardLog())
	require.NoError(t, err)
	c, ok := a.Lookup("smtp.isp.example", netip.Addr{}, false)
	require.True(t, ok)
	assert.Equal(t, route.Credentials{User: "relay@example.org", AuthID: "relay@example.org", Password: "secret",
		Mechanisms: []string{"PLAIN", "LOGIN"}, Required: true}, c)
	c, ok = a.Lookup("mx.other.example", netip.MustParseAddr("192.0.2.25"), false)
	require.True(t, ok, "by address")
	assert.Equal(t, "secret", c.Password, "P= is base64")
	_, ok = a.Lookup("mx.found-by-dns.example", netip.MustParseAddr("198.51.100.7"), false)
	assert.False(t, ok, "the default entry is not for MX hosts found in DNS")
	c, ok = a.Lookup("[relay.named.example]", netip.MustParseAddr("198.51.100.7"), true)
	require.True(t, ok, "the default entry, for a host the configuration names")
	assert.False(t, c.Required)
}
