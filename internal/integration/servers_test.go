package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
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

// dnsZone is an in-process DNS server for blocklist zones: listed maps a
// query name (lower case, with the final dot) to its A answer.
type dnsZone struct {
	mu     sync.Mutex
	listed map[string]string
	txt    map[string]string
	addr   string
}

func startDNS(t *testing.T, listed map[string]string) *dnsZone {
	t.Helper()
	z := &dnsZone{listed: map[string]string{}, txt: map[string]string{}}
	for k, v := range listed {
		z.listed[strings.ToLower(dns.Fqdn(k))] = v
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(z.serve)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	z.addr = pc.LocalAddr().String()
	if os.Getenv("POSTERN_DEBUG_DNS") != "" {
		t.Logf("dns on %s", z.addr)
	}
	return z
}

func (z *dnsZone) setTXT(name, txt string) {
	z.mu.Lock()
	z.txt[strings.ToLower(dns.Fqdn(name))] = txt
	z.mu.Unlock()
}

func (z *dnsZone) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	z.mu.Lock()
	a, ok := z.listed[strings.ToLower(q.Name)]
	txt := z.txt[strings.ToLower(q.Name)]
	z.mu.Unlock()
	switch {
	case ok && q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.ParseIP(a)})
	case ok && q.Qtype == dns.TypeTXT && txt != "":
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{txt}})
	case !ok:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}
