package route_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/queue"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

// A site's mailertable, unchanged from sendmail: where does mail go?
func Example_mailertable() {
	table, err := route.ParseMailertable(strings.NewReader(`
nix.co.jj    esmtp:[192.168.1.1]
.nix.co.jj   esmtp:[192.168.1.1]
old.example  error:5.1.6:550 This domain has moved
`), "mailertable")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Route asks no DNS; Resolve would ask this resolver.
	res, err := resolver.New(resolver.Config{Servers: []string{"127.0.0.1:53"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := route.NewRouter(route.RouterConfig{
		Mailertable:    table,
		Resolver:       res,
		FallbackRelays: []string{"[relay2.nix.co.jj]"},
		RelayDomains:   []string{"nix.co.jj", ".nix.co.jj"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, rcpt := range []string{"alice@nix.co.jj", "bob@lab.nix.co.jj", "carol@old.example", "dave@example.net"} {
		rt, _ := r.Route(rcpt)
		fmt.Printf("%-18s %-12s %-40s fallback=%v\n", rcpt, rt.Source, rt.Dest, rt.Fallback != nil)
	}

	_, err = route.ParseMailertable(strings.NewReader("ok.example esmtp:[10.0.0.1]\nbad.example uucp:gateway\n"), "mailertable")
	fmt.Println(err)
	// Output:
	// alice@nix.co.jj    mailertable  esmtp:[192.168.1.1]                      fallback=false
	// bob@lab.nix.co.jj  mailertable  esmtp:[192.168.1.1]                      fallback=false
	// carol@old.example  mailertable  error:5.1.6:550 This domain has moved    fallback=false
	// dave@example.net   mx           mx:example.net                           fallback=true
	// mailertable:2: unsupported mailer "uucp"
}

// inbox is a tiny go-smtp backend standing in for the internal mail
// store.
type inbox struct{ users map[string]bool }

func (b inbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &inboxSession{b}, nil }

type inboxSession struct{ b inbox }

func (s *inboxSession) Reset()                               {}
func (s *inboxSession) Logout() error                        { return nil }
func (s *inboxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *inboxSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (s *inboxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !s.b.users[to] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	}
	return nil
}

// Deliver a message to the internal store named by the mailertable, then
// verify recipients against it (call-ahead).
func ExampleTransport() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := smtp.NewServer(inbox{users: map[string]bool{"alice@nix.co.jj": true}})
	srv.Domain = "store.nix.co.jj"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(l)
	defer srv.Close()

	host, port, _ := net.SplitHostPort(l.Addr().String())
	table, _ := route.ParseMailertable(strings.NewReader("nix.co.jj esmtp:["+host+"]:"+port+"\n"), "mailertable")
	res, _ := resolver.New(resolver.Config{Servers: []string{"127.0.0.1:53"}})
	r, _ := route.NewRouter(route.RouterConfig{Mailertable: table, Resolver: res})
	tr, err := route.NewTransport(route.TransportConfig{Router: r, Hostname: "relay1.nix.co.jj"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()

	msg := "Subject: hello\r\n\r\nHi.\r\n"
	d := &queue.Delivery{
		ID:         "Q1",
		Envelope:   &queue.Envelope{From: "sender@example.net"},
		Recipients: []queue.Recipient{{Addr: "alice@nix.co.jj"}, {Addr: "nobody@nix.co.jj"}},
		Message:    strings.NewReader(msg),
		Size:       int64(len(msg)),
	}
	for i, res := range tr.Deliver(context.Background(), d) {
		fmt.Println(d.Recipients[i].Addr, res.Reply.Code, res.Reply.Enhanced)
	}

	v, _ := route.NewVerifier(route.VerifierConfig{CallAhead: true, Transport: tr})
	for _, a := range []string{"alice@nix.co.jj", "nobody@nix.co.jj"} {
		res, _ := v.Verify(context.Background(), a)
		if res.Status == route.StatusInvalid {
			fmt.Println(a, res.Status, res.Reply.Error())
		} else {
			fmt.Println(a, res.Status)
		}
	}
	// Output:
	// alice@nix.co.jj 250 2.0.0
	// nobody@nix.co.jj 550 5.1.1
	// alice@nix.co.jj valid
	// nobody@nix.co.jj invalid 550 5.1.1 <nobody@nix.co.jj>: Recipient address rejected: User unknown
}

// Resolve a domain by its MX records (the DNS here is a test server).
func ExampleRouter_Resolve() {
	srv, err := dnstest.NewServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	srv.MustAddZone(`
$ORIGIN example.net.
@    MX 10 mx1
@    MX 20 mx2
mx1  A  192.0.2.1
mx2  A  192.0.2.2
`)
	srv.MustAddZone("nomail.example. MX 0 .")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, _ := route.NewRouter(route.RouterConfig{Resolver: res})
	for _, rcpt := range []string{"bob@example.net", "carol@nomail.example", "dave@gone.example"} {
		rt, _ := r.Route(rcpt)
		p, err := r.Resolve(context.Background(), rt)
		if err != nil {
			fmt.Println(rcpt, err.(*route.Failure).Reply)
			continue
		}
		fmt.Println(rcpt, p.Targets)
	}
	// Output:
	// bob@example.net [mx1.example.net[192.0.2.1]:25 mx2.example.net[192.0.2.2]:25]
	// carol@nomail.example 556 5.1.10 Recipient address rejected: nomail.example does not accept mail (null MX)
	// dave@gone.example 550 5.1.2 Host or domain name not found: gone.example
}

// A Postfix smtp_tls_policy_maps file, read unchanged: the level of each
// next hop.
func ExampleParseTLSPolicyMap() {
	m, err := route.ParseTLSPolicyMap(strings.NewReader(`# /etc/postfix/tls_policy
example.com             secure match=.example.com:example.com
.example.com            encrypt protocols=>=TLSv1.2
[smtp.isp.example]:587  verify
`), "tls_policy")
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range []route.Host{{Name: "example.com"}, {Name: "mx1.example.com"},
		{Name: "smtp.isp.example", NoMX: true, Port: 587}, {Name: "example.net"}} {
		if e, ok := m.Lookup(h); ok {
			fmt.Println(h, e.Level, e.Match)
		} else {
			fmt.Println(h, "default level")
		}
	}
	// Output:
	// example.com secure [.example.com example.com]
	// mx1.example.com encrypt []
	// [smtp.isp.example]:587 verify []
	// example.net default level
}

// A sendmail AuthInfo entry's value: the password stays out of String
// (and of logs).
func ExampleParseAuthInfo() {
	c, err := route.ParseAuthInfo(`"U:relay@example.org" "P=c2VjcmV0" "M:PLAIN LOGIN"`)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c)
	fmt.Println(c.Password == "secret")
	// Output:
	// user=relay@example.org authid=relay@example.org mechanisms=PLAIN,LOGIN password=set
	// true
}
