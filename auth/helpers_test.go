package auth

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern/internal/testutil"
)

var bg = context.Background()

// testDNS is an in-process DNS server on UDP and TCP of one loopback port.
// It answers like a recursive resolver would: CNAME chains are followed
// and returned with the answer, a loop is SERVFAIL. Names it has no data
// for are NXDOMAIN; names with data of other types answer NODATA.
type testDNS struct {
	addr string

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	exists   map[string]bool     // names that exist without records
	servfail map[string]bool
	timeout  map[string]bool // no answer for types without data
	queries  atomic.Int64
	onQuery  func(dns.Question) // called with mu held
}

func startDNS(t testing.TB) *testDNS {
	t.Helper()
	s := &testDNS{rrs: map[string][]dns.RR{}, exists: map[string]bool{}, servfail: map[string]bool{},
		timeout: map[string]bool{}}
	// UDP and TCP on the same port (truncated answers retry over TCP).
	// The UDP port's TCP twin may be taken by another test process: try
	// again with a new port.
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for try := 0; ; try++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	s.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve)}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// resolver returns a Resolver for this server with a short per-query
// timeout, so TIMEOUT answers do not make tests slow.
func (s *testDNS) resolver() Resolver { return NewResolver(s.addr, 300*time.Millisecond) }

func fq(name string) string { return dns.CanonicalName(name) }

func (s *testDNS) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fq(rr.Header().Name)
	s.rrs[n] = append(s.rrs[n], rr)
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: fq(name), Rrtype: t, Class: dns.ClassINET, Ttl: 300}
}

// txt adds one TXT record; text longer than 255 octets is split into
// several strings, as in a zone file.
func (s *testDNS) txt(name, text string) {
	s.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: SplitTXT(text)})
}

// txtStrings adds one TXT record made of the given strings.
func (s *testDNS) txtStrings(name string, strs ...string) {
	s.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: strs})
}

func (s *testDNS) a(name string, ips ...string) {
	for _, ip := range ips {
		p := net.ParseIP(ip)
		if p.To4() != nil {
			s.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: p.To4()})
		} else {
			s.add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: p})
		}
	}
}

func (s *testDNS) mx(name string, pref uint16, host string) {
	s.add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: pref, Mx: fq(host)})
}

func (s *testDNS) ptr(name, target string) {
	s.add(&dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: fq(target)})
}

func (s *testDNS) cname(name, target string) {
	s.add(&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: fq(target)})
}

func (s *testDNS) setServfail(name string) {
	s.mu.Lock()
	s.servfail[fq(name)] = true
	s.mu.Unlock()
}

func (s *testDNS) setTimeout(name string) {
	s.mu.Lock()
	s.timeout[fq(name)] = true
	s.mu.Unlock()
}

func (s *testDNS) setExists(name string) {
	s.mu.Lock()
	s.exists[fq(name)] = true
	s.mu.Unlock()
}

func (s *testDNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	s.queries.Add(1)
	if len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	s.mu.Lock()
	if s.onQuery != nil {
		s.onQuery(q)
	}
	answer, rcode, drop := s.resolve(fq(q.Name), q.Qtype)
	s.mu.Unlock()
	if drop {
		return // the client times out
	}
	m.Rcode = rcode
	m.Answer = answer
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
			m.SetEdns0(o.UDPSize(), false)
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// resolve answers (name, qtype), following CNAMEs. Call with s.mu held.
func (s *testDNS) resolve(name string, qtype uint16) (answer []dns.RR, rcode int, drop bool) {
	seen := map[string]bool{}
	for {
		if seen[name] {
			return nil, dns.RcodeServerFailure, false // a CNAME loop
		}
		seen[name] = true
		if s.servfail[name] {
			return nil, dns.RcodeServerFailure, false
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range s.rrs[name] {
			switch {
			case rr.Header().Rrtype == qtype:
				c := dns.Copy(rr)
				c.Header().Name = name
				answer = append(answer, c)
				found = true
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if found {
			return answer, dns.RcodeSuccess, false
		}
		if cname != nil && qtype != dns.TypeCNAME {
			answer = append(answer, dns.Copy(cname))
			name = fq(cname.Target)
			continue
		}
		if s.timeout[name] {
			return nil, 0, true
		}
		if len(s.rrs[name]) > 0 || s.exists[name] || s.hasChildren(name) {
			return answer, dns.RcodeSuccess, false
		}
		return answer, dns.RcodeNameError, false
	}
}

// hasChildren reports an empty non-terminal: a name with names below it
// exists (RFC 8020).
func (s *testDNS) hasChildren(name string) bool {
	for n := range s.rrs {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

func newLogBuffer() *testutil.LogBuffer { return &testutil.LogBuffer{} }
