package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver/dnstest"
)

// startRedis runs a private redis-server on a free loopback port.
func startRedis(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin := need(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dnsZone is the DNS of the relay under test: a dnstest server on
// loopback. listed maps a name to its A answer (AAAA for an IPv6
// address); setTXT and setPTR add records; setServfail and setSilent
// make a name fail temporarily.
type dnsZone struct {
	*dnstest.Server
	addr string
}

func startDNS(t *testing.T, listed map[string]string) *dnsZone {
	t.Helper()
	s := dnstest.Start(t)
	for name, ip := range listed {
		s.AddA(name, ip)
	}
	if os.Getenv("POSTERN_DEBUG_DNS") != "" {
		t.Logf("dns on %s", s.Addr)
	}
	return &dnsZone{Server: s, addr: s.Addr}
}

func (z *dnsZone) setTXT(name, txt string) { z.AddTXT(name, txt) }

// setPTR gives ip the PTR names (any number; none is NXDOMAIN).
func (z *dnsZone) setPTR(ip string, names ...string) { z.AddPTR(ip, names...) }

// setServfail answers SERVFAIL for name (an address is taken as its
// reverse name); setSilent never answers.
func (z *dnsZone) setServfail(name string) {
	z.Set(reverseOf(name), 0, dnstest.Reply{Rcode: dns.RcodeServerFailure})
}

func (z *dnsZone) setSilent(name string) { z.Set(reverseOf(name), 0, dnstest.Reply{Drop: true}) }

// queries says how often name (an address: its reverse name) was asked
// for qtype ("A", "PTR").
func (z *dnsZone) queries(name, qtype string) int {
	return z.Queries(reverseOf(name), dns.StringToType[qtype])
}

func reverseOf(name string) string {
	if _, err := netip.ParseAddr(name); err == nil {
		return dnstest.Reverse(name)
	}
	return name
}
