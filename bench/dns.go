package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

// The names of the benchmark's small internet. All under .test (RFC 2606).
const (
	senderDomain = "origin.test" // envelope and header sender: SPF, DKIM, DMARC
	senderAddr   = "bench@" + senderDomain
	heloName     = "mail." + senderDomain // smtp-source's HELO
	rcptDomain   = "example.test"         // relayed to the sink
	rcptAddr     = "user@" + rcptDomain
	checkDomain  = "check.test" // relayed to the harness's capture server
	dnsblZone    = "bl.bench.test"
	dkimSelector = "bench"
	relayName    = "relay.bench.test"
)

// dnsServer answers the queries of the relay's chain on 127.0.0.1 over UDP
// and TCP: the DNS block list (nothing listed, NXDOMAIN with an SOA so the
// negative answer can be cached, RFC 2308), SPF, DKIM and DMARC records of
// the sender domain. It counts the queries by kind, so the report can show
// that the chain really asked.
type dnsServer struct {
	addr    string
	servers []*dns.Server
	txt     map[string][]string // fully qualified, lower case
	counts  sync.Map            // kind → *atomic.Int64
}

func startDNS(dkimRecord string) (*dnsServer, error) {
	d := &dnsServer{txt: map[string][]string{
		dns.Fqdn(senderDomain):                                 {"v=spf1 ip4:127.0.0.0/8 -all"},
		dns.Fqdn(heloName):                                     {"v=spf1 ip4:127.0.0.0/8 -all"},
		dns.Fqdn("_dmarc." + senderDomain):                     {"v=DMARC1; p=reject; adkim=r; aspf=r"},
		dns.Fqdn(dkimSelector + "._domainkey." + senderDomain): {dkimRecord},
	}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.addr = pc.LocalAddr().String()
	l, err := net.Listen("tcp", d.addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: l, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			d.Close()
			return nil, fmt.Errorf("bench: the DNS server did not start")
		}
		d.servers = append(d.servers, srv)
	}
	return d, nil
}

func (d *dnsServer) Close() {
	for _, s := range d.servers {
		s.Shutdown()
	}
}

func (d *dnsServer) count(kind string) {
	c, _ := d.counts.LoadOrStore(kind, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
}

// Counts returns the queries answered so far by kind: dnsbl, spf,
// dkim, dmarc, other.
func (d *dnsServer) Counts() map[string]int64 {
	out := map[string]int64{}
	d.counts.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case strings.HasSuffix(name, "."+dns.Fqdn(dnsblZone)):
		d.count("dnsbl")
	case strings.Contains(name, "._domainkey."):
		d.count("dkim")
	case strings.HasPrefix(name, "_dmarc."):
		d.count("dmarc")
	case q.Qtype == dns.TypeTXT:
		d.count("spf")
	default:
		d.count("other")
	}
	txt, ok := d.txt[name]
	switch {
	case ok && q.Qtype == dns.TypeTXT:
		for _, t := range txt {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT,
				Class: dns.ClassINET, Ttl: 300}, Txt: splitTXT(t)})
		}
	case ok:
		// The name exists, without records of this type: NODATA.
		m.Ns = append(m.Ns, d.soa(q.Name))
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, d.soa(q.Name))
	}
	w.WriteMsg(m)
}

func (d *dnsServer) soa(name string) dns.RR {
	zone := "test."
	if strings.HasSuffix(strings.ToLower(name), dns.Fqdn(dnsblZone)) {
		zone = dns.Fqdn(dnsblZone)
	}
	return &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
		Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
}

// splitTXT cuts a record into the 255-byte character strings a TXT record
// is made of (RFC 1035 §3.3.14); a DKIM key is longer than one.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// testMessage is the message every ingest client sends: a 1 KiB body and
// the header of an ordinary mail, signed with DKIM (RSA 2048, relaxed
// canonicalization, as large senders sign) so the relay's verifier does
// the work it does on real inbound mail. It returns the message with CRLF
// line ends and the DKIM key record to publish.
func testMessage() (msg []byte, record string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, "", err
	}
	record = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: Postern benchmark message\r\n", senderAddr, rcptAddr)
	fmt.Fprintf(&b, "Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <bench-1@%s>\r\n", senderDomain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghij.\r\n" // 70 bytes
	for n := 0; n < 1024; n += len(line) {
		b.WriteString(line)
	}
	var signed bytes.Buffer
	err = dkim.Sign(&signed, &b, &dkim.SignOptions{Domain: senderDomain, Selector: dkimSelector, Signer: key,
		Hash: crypto.SHA256, HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys:           []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}})
	if err != nil {
		return nil, "", err
	}
	return signed.Bytes(), record, nil
}
