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

// dnsZone is an in-process DNS server for blocklist zones and client
// names: listed maps a query name (lower case, with the final dot) to its
// A answer (AAAA for an IPv6 address); setPTR gives an address its PTR
// names; setServfail and setSilent make a name fail temporarily.
type dnsZone struct {
	mu       sync.Mutex
	listed   map[string]string
	txt      map[string]string
	ptr      map[string][]string // reverse name → PTR targets
	servfail map[string]bool
	silent   map[string]bool // never answered: the client times out
	asked    map[string]int  // "name TYPE" → queries
	addr     string
}

func startDNS(t *testing.T, listed map[string]string) *dnsZone {
	t.Helper()
	z := &dnsZone{listed: map[string]string{}, txt: map[string]string{}, ptr: map[string][]string{},
		servfail: map[string]bool{}, silent: map[string]bool{}, asked: map[string]int{}}
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

// setPTR gives ip the PTR names (any number; none is NXDOMAIN).
func (z *dnsZone) setPTR(ip string, names ...string) {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, n := range names {
		z.ptr[rev] = append(z.ptr[rev], dns.Fqdn(n))
	}
}

// setServfail answers SERVFAIL for name (an address is taken as its
// reverse name); setSilent never answers.
func (z *dnsZone) setServfail(name string) { z.setFailing(z.servfail, name) }
func (z *dnsZone) setSilent(name string)   { z.setFailing(z.silent, name) }

func (z *dnsZone) setFailing(m map[string]bool, name string) {
	if rev, err := dns.ReverseAddr(name); err == nil {
		name = rev
	}
	z.mu.Lock()
	m[strings.ToLower(dns.Fqdn(name))] = true
	z.mu.Unlock()
}

// queries says how often name (an address: its reverse name) was asked
// for qtype ("A", "PTR").
func (z *dnsZone) queries(name, qtype string) int {
	if rev, err := dns.ReverseAddr(name); err == nil {
		name = rev
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.asked[strings.ToLower(dns.Fqdn(name))+" "+qtype]
}

func (z *dnsZone) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	z.asked[name+" "+dns.TypeToString[q.Qtype]]++
	a, ok := z.listed[name]
	txt := z.txt[name]
	ptrs, isPTR := z.ptr[name]
	servfail, silent := z.servfail[name], z.silent[name]
	z.mu.Unlock()
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
	ip := net.ParseIP(a)
	switch {
	case silent:
		return
	case servfail:
		m.Rcode = dns.RcodeServerFailure
	case isPTR && q.Qtype == dns.TypePTR:
		for _, p := range ptrs {
			m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr, Ptr: p})
		}
	case isPTR:
	case ok && q.Qtype == dns.TypeAAAA && ip != nil && ip.To4() == nil:
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
	case ok && q.Qtype == dns.TypeA && ip.To4() != nil:
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.To4()})
	case ok && q.Qtype == dns.TypeTXT && txt != "":
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{txt}})
	case !ok:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}
