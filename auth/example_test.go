package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

// serveTXT starts a DNS server on loopback with TXT records (everything
// else is NXDOMAIN) and returns a resolver that asks it. In production:
// resolver.New with a local recursive resolver, shared by every check.
func serveTXT(records map[string]string) (res *resolver.Resolver, stop func()) {
	srv, err := dnstest.NewServer()
	if err != nil {
		panic(err)
	}
	for name, txt := range records {
		srv.AddTXT(name, txt)
	}
	if res, err = resolver.New(resolver.Config{Servers: []string{srv.Addr}}); err != nil {
		panic(err)
	}
	return res, srv.Close
}

func ExampleSPFChecker() {
	res, stop := serveTXT(map[string]string{"example.com": "v=spf1 ip4:192.0.2.0/24 ~all"})
	defer stop()
	ck, err := auth.NewSPFChecker(auth.SPFConfig{Resolver: res})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ip := range []string{"192.0.2.10", "198.51.100.1"} {
		r := ck.Check(context.Background(), netip.MustParseAddr(ip), "mail.example.com", "alice@example.com")
		fmt.Println(ip, r.Status, r.Identity, r.Domain)
	}
	// The null sender checks the HELO identity.
	r := ck.Check(context.Background(), netip.MustParseAddr("192.0.2.10"), "example.com", "")
	fmt.Println(r.Status, r.Identity, r.Sender)
	// Output:
	// 192.0.2.10 pass mailfrom example.com
	// 198.51.100.1 softfail mailfrom example.com
	// pass helo postmaster@example.com
}

func ExampleDKIMSigner() {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize) // use GenerateKey or LoadPrivateKey in real life
	key := ed25519.NewKeyFromSeed(seed)
	record, _ := auth.DKIMRecord(key.Public())
	res, stop := serveTXT(map[string]string{"s2026._domainkey.example.com": record})
	defer stop()

	signer, err := auth.NewDKIMSigner(auth.DKIMSignConfig{
		Keys: []auth.DKIMKey{{Domain: "example.com", Selector: "s2026", Signer: key}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	raw := "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: Hello\r\n\r\nHi Bob.\r\n"
	m, _ := postern.NewMessage(strings.NewReader(raw), int64(len(raw)), 0)
	if _, err := signer.Sign(context.Background(), m); err != nil {
		fmt.Println(err)
		return
	}
	var signed bytes.Buffer
	m.Render(&signed)

	// The receiving side.
	verifier, _ := auth.NewDKIMVerifier(auth.DKIMVerifyConfig{Resolver: res})
	rm, _ := postern.NewMessage(bytes.NewReader(signed.Bytes()), int64(signed.Len()), 0)
	for _, r := range verifier.Verify(context.Background(), rm) {
		fmt.Println(r.Status, r.Domain, r.Selector, r.Algorithm)
	}
	// Output:
	// pass example.com s2026 ed25519-sha256
}

func ExampleParseDMARCRecord() {
	rec, err := auth.ParseDMARCRecord("v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=x; color=blue; rua=mailto:dmarc@example.com")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Policy, rec.SubdomainPolicy, rec.Percent, rec.DKIMAlignment, rec.AggregateURIs)
	for _, ig := range rec.Ignored {
		fmt.Println("ignored", ig)
	}
	_, err = auth.ParseDMARCRecord("v=DMARC1; p=block")
	fmt.Println(err)
	// Output:
	// reject quarantine 50 r [mailto:dmarc@example.com]
	// ignored adkim=x: invalid value, default used
	// ignored color=blue: unknown tag
	// auth: invalid DMARC record: invalid policy and no valid rua=
}

func ExampleAligned() {
	fmt.Println(auth.OrganizationalDomain("mail.example.co.uk"))
	fmt.Println(auth.Aligned("bounces.example.co.uk", "example.co.uk", auth.AlignRelaxed))
	fmt.Println(auth.Aligned("bounces.example.co.uk", "example.co.uk", auth.AlignStrict))
	fmt.Println(auth.Aligned("other.co.uk", "example.co.uk", auth.AlignRelaxed))
	// Output:
	// example.co.uk
	// true
	// false
	// false
}

func ExampleFormatAuthResults() {
	spf := auth.SPFResult{Status: auth.Pass, Identity: auth.IdentityMailFrom, MailFrom: "alice@example.com"}
	dkim := []auth.DKIMResult{{Status: auth.Fail, Domain: "example.com", Selector: "s1", Reason: "body hash did not verify"}}
	dmarc := auth.DMARCResult{Status: auth.Pass, FromDomain: "example.com"}
	v := auth.FormatAuthResults("mx.example.net", auth.AuthResults{SPF: &spf, DKIM: dkim, DMARC: &dmarc})
	fmt.Println(strings.ReplaceAll(v, "\r\n", "\n")) // folded with CRLF
	// Output:
	// mx.example.net;
	// 	spf=pass smtp.mailfrom=alice@example.com;
	// 	dkim=fail reason="body hash did not verify" header.d=example.com header.s=s1;
	// 	dmarc=pass header.from=example.com
}

func ExampleParseSenderBindings() {
	b, err := auth.ParseSenderBindings(strings.NewReader("alice: alice@example.com, @sales.example.com\n"), "senders")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Allowed("alice", "Alice@Example.com"))
	fmt.Println(b.Allowed("alice", "anyone@sales.example.com"))
	fmt.Println(b.Allowed("alice", "bob@example.com"))
	_, err = auth.ParseSenderBindings(strings.NewReader("bob example.com\n"), "senders")
	fmt.Println(err)
	// Output:
	// true
	// true
	// false
	// auth: bad sender binding file: senders:1: want "user: address, @domain, ..."
}

func ExampleHashPassword() {
	hash, err := auth.HashPassword(auth.HashArgon2id, "correct horse battery staple")
	if err != nil {
		fmt.Println(err)
		return
	}
	// A line of the credentials file:
	line := "alice:" + hash
	fmt.Println(line[:37])
	// Output:
	// alice:$argon2id$v=19$m=65536,t=3,p=4$
}

func ExampleGenerateKey() {
	keyPEM, txt, err := auth.GenerateKey(auth.KeyEd25519, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	key, _ := auth.ParsePrivateKey(keyPEM)
	_, ok := key.(ed25519.PrivateKey)
	fmt.Println(ok, txt[:22], len(auth.SplitTXT(txt)))
	// Output:
	// true v=DKIM1; k=ed25519; p= 1
}

// The From a mail reader shows must be the sending user's: every mailbox
// of the one From field, and the Sender field.
func ExampleCheckOriginator() {
	b, _ := auth.ParseSenderBindings(strings.NewReader("alice: alice@example.com\n"), "senders")
	allowed := func(addr string) bool { return b.Allowed("alice", addr) }
	for _, header := range []string{
		"From: Alice <alice@example.com>",
		"From: CEO <ceo@example.com>",
		"From: alice@example.com\r\nSender: ceo@example.com",
		"From: alice@example.com\r\nFrom: ceo@example.com",
	} {
		raw := header + "\r\n\r\nbody\r\n"
		m, _ := postern.NewMessage(strings.NewReader(raw), int64(len(raw)), 0)
		fmt.Println(auth.CheckOriginator(m, allowed))
	}
	// Output:
	// <nil>
	// auth: originator field not allowed: From: <ceo@example.com> not owned by the user
	// auth: originator field not allowed: Sender: <ceo@example.com> not owned by the user
	// auth: originator field not allowed: From: 2 fields, RFC 5322 allows one
}

func ExampleSameAuthServID() {
	fmt.Println(auth.SameAuthServID(auth.AuthServID(`"MX.Example.COM." 1; dkim=pass`), "mx.example.com"))
	fmt.Println(auth.SameAuthServID("mx.example.com.evil.example", "mx.example.com"))
	// Output:
	// true
	// false
}

// serveHosts starts a DNS server on loopback with PTR and A records from
// a table of address → name and name → address, and returns a resolver
// that asks it.
func serveHosts(ptr, a map[string]string) (res *resolver.Resolver, stop func()) {
	srv, err := dnstest.NewServer()
	if err != nil {
		panic(err)
	}
	for ip, name := range ptr {
		srv.AddPTR(ip, name)
	}
	for name, ip := range a {
		srv.AddA(name, ip)
	}
	if res, err = resolver.New(resolver.Config{Servers: []string{srv.Addr}, Timeout: time.Second}); err != nil {
		panic(err)
	}
	return res, srv.Close
}

func ExampleIPRev() {
	res, stop := serveHosts(
		map[string]string{"198.51.100.7": "mail.example.org", "198.51.100.9": "bogus.example.gr.jp"},
		map[string]string{"mail.example.org": "198.51.100.7", "bogus.example.gr.jp": "192.0.2.50"})
	defer stop()
	iprev, err := auth.NewIPRev(auth.IPRevConfig{Resolver: res})
	if err != nil {
		panic(err)
	}
	for _, ip := range []string{"198.51.100.7", "198.51.100.9", "198.51.100.11"} {
		h := iprev.LookupClientHost(context.Background(), netip.MustParseAddr(ip))
		fmt.Printf("%s: %s name=%q ptr=%q iprev=%s\n", ip, h.Resolve, h.Name, h.PTR, auth.IPRevStatus(h.Resolve))
	}
	// Output:
	// 198.51.100.7: OK name="mail.example.org" ptr="mail.example.org" iprev=pass
	// 198.51.100.9: FORGED name="" ptr="bogus.example.gr.jp" iprev=fail
	// 198.51.100.11: FAIL name="" ptr="" iprev=permerror
}

func ExampleParseHELO() {
	for _, arg := range []string{"Mail.Example.ORG", "[192.0.2.1]", "[IPv6:2001:db8::1]", "not a name"} {
		fmt.Printf("%+v\n", auth.ParseHELO(arg))
	}
	// Output:
	// {Addr:invalid IP Literal:false Name:mail.example.org}
	// {Addr:192.0.2.1 Literal:true Name:}
	// {Addr:2001:db8::1 Literal:true Name:}
	// {Addr:invalid IP Literal:false Name:}
}
