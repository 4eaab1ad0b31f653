package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultNegativeTTL is the TTL and MINIMUM of the SOA put in negative
// answers for names under no SOA the server holds.
const DefaultNegativeTTL = 300

// Reply changes how the server answers a question; see Server.Set.
type Reply struct {
	// Rcode, when not 0, is the response code, with no records:
	// dns.RcodeServerFailure, dns.RcodeRefused ..., or
	// dns.RcodeNameError (with the CNAME chain that led to the name, and
	// an SOA).
	Rcode int
	// Drop sends no answer at all: the client times out.
	Drop bool
	// Delay is waited before answering.
	Delay time.Duration
	// TruncateUDP answers over UDP with the TC bit and no records, so
	// the client must ask again over TCP.
	TruncateUDP bool
	// NoDataOnly applies the Reply only to types the name has no records
	// of (the SPF test suite's TIMEOUT).
	NoDataOnly bool
	// NoChase answers with the name's CNAME alone, as an authoritative
	// server does for an alias into another zone: the client must ask
	// again for the target.
	NoChase bool
	// NoEDNS answers queries that carry EDNS0 with FORMERR and no OPT
	// record, as a server that predates EDNS does (RFC 6891 §7).
	NoEDNS bool
}

type ruleKey struct {
	name  string
	qtype uint16
}

// Server is a DNS server on one loopback port, UDP and TCP, that answers
// as a recursive resolver would from the records it holds. Its methods
// are safe for concurrent use, also while it serves.
type Server struct {
	// Addr is "127.0.0.1:port", for UDP and TCP alike.
	Addr string

	udp, tcp *dns.Server

	mu     sync.Mutex
	rrs    map[string][]dns.RR // by lower-case owner name
	exists map[string]bool
	rules  map[ruleKey]Reply
	secure []string // names at or under which answers are authenticated
	negTTL uint32
	noSOA  bool
	counts map[ruleKey]int
	tcpN   int
}

// NewServer starts an empty server on 127.0.0.1. Close stops it.
func NewServer() (*Server, error) {
	s := &Server{rrs: map[string][]dns.RR{}, exists: map[string]bool{}, rules: map[ruleKey]Reply{},
		counts: map[ruleKey]int{}, negTTL: DefaultNegativeTTL}
	pc, ln, err := listen()
	if err != nil {
		return nil, err
	}
	s.Addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { failed <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-failed:
			s.Close()
			return nil, fmt.Errorf("dnstest: %w", err)
		}
	}
	return s, nil
}

// listen takes a UDP port on 127.0.0.1 whose TCP twin is free too.
func listen() (net.PacketConn, net.Listener, error) {
	var last error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dnstest: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		last = err
	}
	return nil, nil, fmt.Errorf("dnstest: no port free on both UDP and TCP: %w", last)
}

// TB is the part of testing.TB that Start uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Start starts a server for a test, which fails if it cannot; the server
// stops when the test ends. Zone text, if given, is loaded as AddZone
// does.
func Start(t TB, zone ...string) *Server {
	t.Helper()
	s, err := NewServer()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Close)
	for _, z := range zone {
		if err := s.AddZone(z); err != nil {
			t.Fatalf("%v", err)
		}
	}
	return s
}

// Close stops the server.
func (s *Server) Close() {
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv != nil {
			_ = srv.Shutdown()
		}
	}
}

// ---- data ----

// canon returns a name lower case, fully qualified, in the presentation
// form miekg/dns gives names read off the wire (the zone parser keeps
// some characters unescaped).
func canon(name string) string {
	n := lower(dns.Fqdn(name))
	var buf [256]byte
	if off, err := dns.PackDomainName(n, buf[:], 0, nil, false); err == nil {
		if u, _, err := dns.UnpackDomainName(buf[:off], 0); err == nil {
			return u
		}
	}
	return n
}

// Add adds records. An SOA record makes its owner a zone apex: negative
// answers under it carry it.
func (s *Server) Add(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		n := canon(rr.Header().Name)
		s.rrs[n] = append(s.rrs[n], rr)
	}
}

// AddZone adds the records of a zone file (RFC 1035 §5: $ORIGIN, $TTL,
// relative names, parentheses, comments; the origin is "." until the
// text sets one, the TTL 300). Nothing is added when the text has an
// error.
func (s *Server) AddZone(text string) error {
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "zone")
	zp.SetDefaultTTL(300)
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if rr.Header().Class != dns.ClassINET {
			return fmt.Errorf("dnstest: %s: only class IN is served", rr.Header().Name)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("dnstest: %w", err)
	}
	s.Add(rrs...)
	return nil
}

// MustAddZone is AddZone for zone text known to be good; it panics on an
// error.
func (s *Server) MustAddZone(text string) {
	if err := s.AddZone(text); err != nil {
		panic(err)
	}
}

// AddA adds A records, or AAAA records for IPv6 addresses, with TTL 300.
// It panics on a string that is not an address.
func (s *Server) AddA(name string, addrs ...string) {
	for _, a := range addrs {
		ip := netip.MustParseAddr(a).Unmap()
		if ip.Is4() {
			s.Add(&dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()})
		} else {
			s.Add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()})
		}
	}
}

// AddTXT adds one TXT record per text, cut into character strings of 255
// octets (RFC 1035 §3.3.14), as a zone file writes long records. The
// text is sent as it is: no escapes are read.
func (s *Server) AddTXT(name string, texts ...string) {
	for _, t := range texts {
		var strs []string
		for len(t) > 255 {
			strs = append(strs, escape(t[:255]))
			t = t[255:]
		}
		s.Add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: append(strs, escape(t))})
	}
}

// escape gives miekg/dns the presentation form of raw octets.
func escape(t string) string {
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// AddMX adds an MX record.
func (s *Server) AddMX(name string, pref uint16, host string) {
	s.Add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: pref, Mx: canon(host)})
}

// AddCNAME makes name an alias of target.
func (s *Server) AddCNAME(name, target string) {
	s.Add(&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: canon(target)})
}

// AddPTR gives the address ip (IPv4 or IPv6) PTR records naming names.
// It panics on a string that is not an address.
func (s *Server) AddPTR(ip string, names ...string) {
	rev := Reverse(ip)
	for _, n := range names {
		s.Add(&dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: dns.Fqdn(n)})
	}
}

// Reverse returns the reverse name of an address (RFC 1035 §3.5, RFC
// 3596 §2.5): "4.3.2.1.in-addr.arpa." for 1.2.3.4. It panics on a string
// that is not an address.
func Reverse(ip string) string {
	rev, err := dns.ReverseAddr(netip.MustParseAddr(ip).Unmap().String())
	if err != nil {
		panic(err)
	}
	return rev
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: canon(name), Rrtype: t, Class: dns.ClassINET, Ttl: 300}
}

// Remove removes the records of name of type qtype (0: of every type).
func (s *Server) Remove(name string, qtype uint16) {
	n := canon(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []dns.RR
	for _, rr := range s.rrs[n] {
		if qtype != 0 && rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(s.rrs, n)
	} else {
		s.rrs[n] = keep
	}
}

// Exists makes names exist without records: they answer NOERROR with no
// data instead of NXDOMAIN.
func (s *Server) Exists(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.exists[canon(n)] = true
	}
}

// Set makes the server answer questions for name of type qtype (0: of
// every type without a Set of its own) as r says; the zero Reply undoes
// it. It also applies where name is reached through a CNAME.
func (s *Server) Set(name string, qtype uint16, r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := ruleKey{canon(name), qtype}
	if r == (Reply{}) {
		delete(s.rules, k)
		return
	}
	s.rules[k] = r
}

// Secure marks the answers about names at or under each of zones as
// validated: they carry the AD bit when the query set AD or DO (RFC 6840
// §5.7, §5.8), as a validating resolver answers.
func (s *Server) Secure(zones ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range zones {
		s.secure = append(s.secure, canon(z))
	}
}

// SetNegativeTTL sets the TTL and MINIMUM of the SOA that negative
// answers carry for names under no SOA the server holds (default
// DefaultNegativeTTL, RFC 2308 §5); with omit, such answers carry no SOA,
// and RFC 2308 caches do not keep them.
func (s *Server) SetNegativeTTL(ttl uint32, omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negTTL, s.noSOA = ttl, omit
}

// ---- counts ----

// Queries returns how many questions about name of type qtype arrived;
// qtype 0 counts every type, name "" every name.
func (s *Server) Queries(name string, qtype uint16) int {
	n := ""
	if name != "" {
		n = canon(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0
	for k, c := range s.counts {
		if (n == "" || k.name == n) && (qtype == 0 || k.qtype == qtype) {
			total += c
		}
	}
	return total
}

// Questions returns how many times each question (class IN) was asked.
func (s *Server) Questions() map[dns.Question]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[dns.Question]int, len(s.counts))
	for k, c := range s.counts {
		out[dns.Question{Name: k.name, Qtype: k.qtype, Qclass: dns.ClassINET}] = c
	}
	return out
}

// TCPQueries returns how many queries came over TCP.
func (s *Server) TCPQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpN
}

// ResetCounts sets every count back to 0.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.tcpN = 0
}

// ---- answers ----

// ServeDNS answers one query. It implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	tcp := w.LocalAddr().Network() == "tcp"
	s.mu.Lock()
	s.counts[ruleKey{canon(q.Name), q.Qtype}]++
	if tcp {
		s.tcpN++
	}
	res := s.resolve(canon(q.Name), q.Qtype)
	if res.rule.NoEDNS && req.IsEdns0() != nil {
		res = result{rcode: dns.RcodeFormatError, rule: Reply{Delay: res.rule.Delay}}
	}
	res.ad = res.ad && (req.AuthenticatedData || req.IsEdns0() != nil && req.IsEdns0().Do())
	s.mu.Unlock()

	if res.rule.Delay > 0 {
		time.Sleep(res.rule.Delay)
	}
	if res.rule.Drop {
		return
	}
	m.SetReply(req)
	m.RecursionAvailable = true
	m.AuthenticatedData = res.ad
	if res.rule.TruncateUDP && !tcp {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	m.Rcode, m.Answer, m.Ns = res.rcode, res.answer, res.ns
	for _, rr := range m.Answer {
		// Keep the case the client asked with (RFC 4343), as servers do.
		if strings.EqualFold(rr.Header().Name, q.Name) {
			rr.Header().Name = q.Name
		}
	}
	size := dns.MinMsgSize
	if o := req.IsEdns0(); o != nil && m.Rcode != dns.RcodeFormatError {
		size = max(int(o.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	if !tcp {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

type result struct {
	answer, ns []dns.RR
	rcode      int
	ad         bool
	rule       Reply
}

// resolve answers (name, qtype) following CNAMEs, as a recursive
// resolver does. Call with s.mu held.
func (s *Server) resolve(name string, qtype uint16) result {
	res := result{ad: true}
	seen := map[string]bool{}
	for {
		if seen[name] {
			return result{rcode: dns.RcodeServerFailure} // a CNAME loop
		}
		seen[name] = true
		res.ad = res.ad && s.isSecure(name)
		var cname dns.RR
		var found []dns.RR
		for _, rr := range s.rrs[name] {
			switch rr.Header().Rrtype {
			case qtype:
				found = append(found, dns.Copy(rr))
			case dns.TypeCNAME:
				cname = rr
			}
		}
		noData := len(found) == 0 && (cname == nil || qtype == dns.TypeCNAME)
		if r, ok := s.rule(name, qtype); ok && (!r.NoDataOnly || noData) {
			res.rule = r
			if r.Rcode != 0 {
				res.rcode = r.Rcode
				if r.Rcode == dns.RcodeNameError {
					res.ns = s.soaFor(name)
				} else {
					res.answer = nil
				}
				return res
			}
		}
		if len(found) > 0 {
			res.answer = append(res.answer, found...)
			return res
		}
		if cname != nil && qtype != dns.TypeCNAME {
			res.answer = append(res.answer, dns.Copy(cname))
			if res.rule.NoChase {
				return res
			}
			name = canon(cname.(*dns.CNAME).Target)
			continue
		}
		if !s.nameExists(name) {
			res.rcode = dns.RcodeNameError
		}
		res.ns = s.soaFor(name)
		return res
	}
}

func (s *Server) rule(name string, qtype uint16) (Reply, bool) {
	if r, ok := s.rules[ruleKey{name, qtype}]; ok {
		return r, true
	}
	r, ok := s.rules[ruleKey{name, 0}]
	return r, ok
}

// nameExists reports a name with records, marked to exist, or an empty
// non-terminal: a name with names below it (RFC 8020).
func (s *Server) nameExists(name string) bool {
	if len(s.rrs[name]) > 0 || s.exists[name] {
		return true
	}
	for n := range s.rrs {
		if strings.HasSuffix(n, "."+name) || name == "." {
			return true
		}
	}
	for n := range s.exists {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

func (s *Server) isSecure(name string) bool {
	for _, z := range s.secure {
		if dns.IsSubDomain(z, name) {
			return true
		}
	}
	return false
}

// soaFor returns the authority section of a negative answer about name:
// the SOA of the closest enclosing zone the server holds, or one made up
// for the name's last two labels.
func (s *Server) soaFor(name string) []dns.RR {
	for n := name; ; {
		for _, rr := range s.rrs[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return []dns.RR{dns.Copy(rr)}
			}
		}
		i := strings.IndexByte(n, '.')
		if n == "." || i < 0 {
			break
		}
		n = n[i+1:]
		if n == "" {
			n = "."
		}
	}
	if s.noSOA {
		return nil
	}
	zone := name
	if labels := dns.SplitDomainName(name); len(labels) > 2 {
		zone = strings.Join(labels[len(labels)-2:], ".") + "."
	}
	apex := zone
	if apex == "." {
		apex = ""
	}
	return []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns: "ns." + apex, Mbox: "hostmaster." + apex, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: s.negTTL}}
}

// String describes the server for logs.
func (s *Server) String() string {
	return "dnstest " + s.Addr + " (" + strconv.Itoa(s.Queries("", 0)) + " queries)"
}

// lower folds ASCII letters only: DNS names compare so (RFC 4343), and
// other octets must stay as they are.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
