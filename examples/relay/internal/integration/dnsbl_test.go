package integration

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The relay asks a real DNS server (in this process, on loopback) and
// refuses a listed client before the banner; with the server gone it
// answers 421 rather than letting mail through unchecked.
func TestDNSBLThroughRelay(t *testing.T) {
	z := startDNS(t, map[string]string{"3.0.0.127.bl.test": "127.0.0.2"})
	z.setTXT("3.0.0.127.bl.test", "listed for testing")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "127.0.0.1",
		"-dnsbl", "bl.test", "-dns-resolver", z.addr)

	banner := func(src string) string {
		c := dialFrom(t, src, r.addr)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return l
	}
	got := banner("127.0.0.3")
	assert.True(t, strings.HasPrefix(got, "554 5.7.1 "), got)
	assert.Contains(t, got, "blocked using bl.test")
	assert.Contains(t, got, "listed for testing")
	assert.True(t, strings.HasPrefix(banner("127.0.0.2"), "220 "))
	assert.True(t, strings.HasPrefix(banner("127.0.0.1"), "220 "), "trusted clients are not checked")

	// "Connect:127.0.0.3 OK" in the access map exempts the client from the
	// lists, as sendmail's check_relay answers before its DNSBL rules.
	acc := writeFile(t, t.TempDir(), "access", "Connect:127.0.0.3 OK\n")
	r3 := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "",
		"-dnsbl", "bl.test", "-dns-resolver", z.addr, "-access", acc)
	c3 := dialFrom(t, "127.0.0.3", r3.addr)
	_ = c3.SetReadDeadline(time.Now().Add(20 * time.Second))
	l3, _ := bufio.NewReader(c3).ReadString('\n')
	assert.True(t, strings.HasPrefix(l3, "220 "), l3)

	// A second relay whose DNS server does not answer: temporary failure.
	r2 := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-trusted", "",
		"-dnsbl", "bl.test", "-dns-resolver", "127.0.0.1:9") // discard port: nothing answers
	c := dialFrom(t, "127.0.0.2", r2.addr)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(l, "421 4.7.1 "), l)
}
