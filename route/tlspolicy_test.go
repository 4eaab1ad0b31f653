package route

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A policy map as a Postfix site has it (smtp_tls_policy_maps), read
// unchanged.
const postfixPolicyMap = `# /etc/postfix/tls_policy
example.com        secure match=.example.com:example.com
.example.com       encrypt protocols=!SSLv2,!SSLv3,!TLSv1,!TLSv1.1
[mail.example.net]:587  verify
    match=hostname:mail.example.net ciphers=high
example.org        dane-only
example.info       dane
partner.example    may
legacy.example     none
[192.0.2.25]       encrypt exclude=3DES
[IPv6:2001:db8::25] may
bank.example       verify protocols=>=TLSv1.2 servername=hostname connection_reuse=no
`

func TestParseTLSPolicyMap(t *testing.T) {
	m, err := ParseTLSPolicyMap(strings.NewReader(postfixPolicyMap), "tls_policy")
	require.NoError(t, err)
	assert.Equal(t, 10, m.Len())
	for _, tc := range []struct {
		host  Host
		key   string
		level TLSPolicy
	}{
		{Host{Name: "example.com"}, "example.com", TLSSecure},
		{Host{Name: "a.b.example.com"}, ".example.com", TLSEncrypt},
		{Host{Name: "mail.example.net", NoMX: true, Port: 587}, "[mail.example.net]:587", TLSVerify},
		{Host{Name: "example.org"}, "example.org", TLSDaneOnly},
		{Host{Name: "example.info"}, "example.info", TLSDane},
		{Host{Name: "partner.example"}, "partner.example", TLSMay},
		{Host{Name: "legacy.example"}, "legacy.example", TLSNone},
		{Host{Name: "192.0.2.25", Addr: mustAddr("192.0.2.25"), NoMX: true}, "[192.0.2.25]", TLSEncrypt},
		{Host{Name: "2001:db8::25", Addr: mustAddr("2001:db8::25"), NoMX: true}, "[IPv6:2001:db8::25]", TLSMay},
	} {
		e, ok := m.Lookup(tc.host)
		require.True(t, ok, tc.host.String())
		assert.Equal(t, tc.key, e.Key)
		assert.Equal(t, tc.level, e.Level, tc.key)
	}
	e, _ := m.Lookup(Host{Name: "example.com"})
	assert.Equal(t, []string{".example.com", "example.com"}, e.Match)
	e, _ = m.Lookup(Host{Name: "x.example.com"})
	assert.Equal(t, uint16(tls.VersionTLS12), e.MinVersion)
	assert.Equal(t, uint16(tls.VersionTLS13), e.MaxVersion)
	e, _ = m.Lookup(Host{Name: "mail.example.net", NoMX: true, Port: 587})
	assert.Equal(t, []string{"hostname", "mail.example.net"}, e.Match, "a continuation line")
	assert.Equal(t, 4, e.Line)

	for _, miss := range []Host{
		{Name: "mail.example.net", NoMX: true},             // [host] differs from [host]:587
		{Name: "mail.example.net", Port: 587},              // not bracketed
		{Name: "sub.example.org"},                          // example.org names itself only
		{Name: "example.com", NoMX: true},                  // [example.com]: no parent walk
		{Name: "elsewhere.example", Socket: "/run/lmtp"},   // sockets have no policy
		{Name: "192.0.2.26", Addr: mustAddr("192.0.2.26")}, // another address
	} {
		_, ok := m.Lookup(miss)
		assert.False(t, ok, miss.String())
	}
}

func TestParseTLSPolicyMapErrors(t *testing.T) {
	for _, bad := range []string{
		"example.com\n",
		"example.com fingerprint match=3D:95:34\n",
		"example.com sometimes\n",
		"example.com verify tafile=/etc/ta.pem\n",
		"example.com verify match\n",
		"example.com verify match=exa mple\n",
		"example.com encrypt protocols=TLSv9\n",
		"example.com encrypt protocols=!TLSv1.2\n", // leaves 1.0-1.1 and 1.3: not a range
		"example.com encrypt protocols=<=SSLv3\n",  // leaves nothing
		"example.com encrypt ciphers=null\n",
		"bad..key may\n",
		"[unbalanced may\n",
		"  continued with nothing before\n",
		"a.example may\na.example none\n",
	} {
		_, err := ParseTLSPolicyMap(strings.NewReader(bad), "tls_policy")
		assert.ErrorIs(t, err, ErrSyntax, "%q", bad)
	}
}

func TestParseProtocols(t *testing.T) {
	for in, want := range map[string][2]uint16{
		">=TLSv1.2":            {tls.VersionTLS12, tls.VersionTLS13},
		"<=TLSv1.2":            {tls.VersionTLS10, tls.VersionTLS12},
		"TLSv1.2:TLSv1.3":      {tls.VersionTLS12, tls.VersionTLS13},
		"!SSLv2:!SSLv3:!TLSv1": {tls.VersionTLS11, tls.VersionTLS13},
		"!SSLv2, !SSLv3":       {tls.VersionTLS10, tls.VersionTLS13},
		"TLSv1.3":              {tls.VersionTLS13, tls.VersionTLS13},
		">=TLSv1.1:<=TLSv1.2":  {tls.VersionTLS11, tls.VersionTLS12},
		">=TLSv1.1,!TLSv1.3":   {tls.VersionTLS11, tls.VersionTLS12},
	} {
		lo, hi, err := parseProtocols(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, [2]uint16{lo, hi}, in)
	}
}

// FuzzParseTLSPolicyMap: a map either fails with ErrSyntax or gives
// entries whose keys look themselves up.
func FuzzParseTLSPolicyMap(f *testing.F) {
	f.Add(postfixPolicyMap)
	f.Add("a.example may\n .b.example encrypt\n")
	f.Add("[x]:1 verify match=nexthop:dot-nexthop\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseTLSPolicyMap(strings.NewReader(s), "fuzz")
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		for k, e := range m.entries {
			require.Equal(t, k, e.Key)
			require.LessOrEqual(t, e.Level, TLSSecure)
			if e.MinVersion != 0 {
				require.LessOrEqual(t, e.MinVersion, e.MaxVersion)
			}
			if strings.HasPrefix(k, ".") {
				continue
			}
			hs, err := parseHosts(k)
			require.NoError(t, err, k)
			got, ok := m.Lookup(hs[0])
			require.True(t, ok, k)
			require.Equal(t, k, got.Key)
		}
	})
}
