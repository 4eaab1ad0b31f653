package auth

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
