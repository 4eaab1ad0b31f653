package auth

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver"
)

// The resolver speaks real DNS to the test server: a long record comes
// over TCP after a truncated UDP answer, and errors carry the flags the
// checks rely on.
func TestResolver(t *testing.T) {
	s := startDNS(t)
	long := strings.Repeat("0123456789", 300) // 3000 octets: truncated over UDP
	s.txt("big.test", long)
	s.a("host.test", "192.0.2.1", "2001:db8::1")
	s.setServfail("broken.test")
	s.setTimeout("silent.test")
	r := s.resolver()

	txts, err := r.LookupTXT(bg, "big.test")
	require.NoError(t, err)
	require.Equal(t, []string{long}, txts)

	ips, err := r.LookupIPAddr(bg, "host.test")
	require.NoError(t, err)
	assert.Len(t, ips, 2)

	var de *net.DNSError
	_, err = r.LookupTXT(bg, "nowhere.test")
	require.True(t, errors.As(err, &de))
	assert.True(t, de.IsNotFound)
	assert.True(t, dnsNotFound(err))

	_, err = r.LookupTXT(bg, "broken.test")
	require.True(t, errors.As(err, &de))
	assert.True(t, de.Temporary(), "SERVFAIL is temporary")
	assert.False(t, de.IsNotFound)

	_, err = r.LookupTXT(bg, "silent.test")
	require.True(t, errors.As(err, &de))
	assert.True(t, de.IsTimeout, "no answer is a timeout: %v", err)

	// The same name with its root label asks the same question.
	txts, err = r.LookupTXT(bg, "big.test.")
	require.NoError(t, err)
	assert.Equal(t, []string{long}, txts)
}

// route/resolver's Resolver is what the relay gives every check: its
// cache answers the SPF, DKIM and DMARC names of one domain once.
func TestSharedCachingResolver(t *testing.T) {
	var _ Resolver = (*resolver.Resolver)(nil)
	s := startDNS(t)
	s.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
	s.txt("_dmarc.example.org", "v=DMARC1; p=reject")
	res, err := resolver.New(resolver.Config{Servers: []string{s.Addr}})
	require.NoError(t, err)
	spfCk, err := NewSPFChecker(SPFConfig{Resolver: res})
	require.NoError(t, err)
	dm, err := NewDMARCChecker(DMARCConfig{Resolver: res})
	require.NoError(t, err)
	for range 3 {
		r := spfCk.Check(bg, netip.MustParseAddr("192.0.2.1"), "mail.example.org", "a@example.org")
		assert.Equal(t, Pass, r.Status)
		_, _, found, err := dm.Lookup(bg, "example.org")
		require.NoError(t, err)
		assert.True(t, found)
	}
	assert.Equal(t, 1, s.Queries("example.org", dns.TypeTXT))
	assert.Equal(t, 1, s.Queries("_dmarc.example.org", dns.TypeTXT))
}
