package integration

import (
	"net"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One resolver serves every DNS lookup of the relay: the servers of
// dnsbl.resolvers are asked in turn by SPF as by the DNS lists (auth used
// to ask only the first), and one cache answers the same question for
// every message and every check.
func TestDNSResolversShared(t *testing.T) {
	swaks := need(t, "swaks")
	zone := startDNS(t, map[string]string{"good.example": "127.0.0.9"})
	zone.setTXT("good.example", "v=spf1 ip4:127.0.0.0/8 -all")
	// A resolver that is down: its port is closed (ICMP port unreachable).
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := pc.LocalAddr().String()
	pc.Close()

	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "", "-auth-check", "enforce",
		"-dnsbl", "bl.test", "-dns-resolver", dead+","+zone.addr, "-hostname", "mx.example.test")
	for range 3 {
		out, err := exec.Command(swaks, "--server", r.addr, "--from", "alice@good.example", "--to", "bob@example.test").CombinedOutput()
		require.NoError(t, err, string(out))
		m := queuedRE.FindStringSubmatch(string(out))
		require.NotNil(t, m, string(out))
		msg := r.delivered(t, m[1])
		assert.Regexp(t, `spf=pass`, msg, "SPF asked the second resolver")
		assert.Contains(t, msg, "Received-SPF: pass")
	}
	assert.Equal(t, 1, zone.queries("good.example", "TXT"), "the SPF record was asked once for three messages")
	assert.Equal(t, 1, zone.queries("_dmarc.good.example", "TXT"), "and the DMARC record")
	assert.Equal(t, 1, zone.queries("1.0.0.127.bl.test", "A"), "and the DNS list (NXDOMAIN, kept for its SOA minimum)")
}
