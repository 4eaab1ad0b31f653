package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/postern/postern/route/resolver/dnstest"
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
// and TCP (a dnstest server): the DNS block list (nothing listed, NXDOMAIN
// with an SOA so the negative answer can be cached, RFC 2308), SPF, DKIM
// and DMARC records of the sender domain. It counts the queries by kind,
// so the report can show that the chain really asked.
type dnsServer struct {
	*dnstest.Server
	addr string
}

func startDNS(dkimRecord string) (*dnsServer, error) {
	srv, err := dnstest.NewServer()
	if err != nil {
		return nil, fmt.Errorf("bench: the DNS server: %w", err)
	}
	for name, txt := range map[string]string{
		senderDomain:             "v=spf1 ip4:127.0.0.0/8 -all",
		heloName:                 "v=spf1 ip4:127.0.0.0/8 -all",
		"_dmarc." + senderDomain: "v=DMARC1; p=reject; adkim=r; aspf=r",
		dkimSelector + "._domainkey." + senderDomain: dkimRecord,
	} {
		srv.AddTXT(name, txt)
	}
	return &dnsServer{Server: srv, addr: srv.Addr}, nil
}

// Counts returns the queries answered so far by kind: dnsbl, spf,
// dkim, dmarc, other.
func (d *dnsServer) Counts() map[string]int64 {
	out := map[string]int64{}
	for q, n := range d.Questions() {
		out[queryKind(q)] += int64(n)
	}
	return out
}

func queryKind(q dns.Question) string {
	name := strings.ToLower(q.Name)
	switch {
	case strings.HasSuffix(name, "."+dns.Fqdn(dnsblZone)):
		return "dnsbl"
	case strings.Contains(name, "._domainkey."):
		return "dkim"
	case strings.HasPrefix(name, "_dmarc."):
		return "dmarc"
	case q.Qtype == dns.TypeTXT:
		return "spf"
	}
	return "other"
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
