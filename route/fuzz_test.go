package route

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/route/resolver"
)

// FuzzParseMailertable parses arbitrary files: never a panic; errors wrap
// ErrSyntax with a line number; every entry's hop prints in a form that
// parses back to the same hop, and its key finds it.
func FuzzParseMailertable(f *testing.F) {
	f.Add(siteMailertable)
	f.Add("nix.co.jj esmtp:[192.168.1.1]\n")
	f.Add(". relay:[smarthost]\n.example smtp:a:b:25\n")
	f.Add("x error:5.7.1:550 Relaying denied\ny error:nouser gone\n")
	f.Add("[IPv6:2001:db8::1] esmtp:[IPv6:2001:db8::2]:2525\n")
	f.Add("a lmtp:/run/lmtp\nb lmtp:inet:[10.0.0.1]:24\nc local:\nd local:box\n")
	f.Add("dup esmtp:x\ndup esmtp:y\n")
	f.Add("bad..key smtp:x\nnovalue\n\ufeff# c\n")
	f.Add("r smtp:user@[10.0.0.1]\n")
	f.Fuzz(func(t *testing.T, text string) {
		tb, err := ParseMailertable(strings.NewReader(text), "mt")
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !strings.HasPrefix(err.Error(), "route: reading") {
				t.Fatalf("error without ErrSyntax: %v", err)
			}
			var pe *ParseError
			if errors.As(err, &pe) && pe.Line < 1 {
				t.Fatalf("line %d", pe.Line)
			}
			return
		}
		for k, e := range tb.entries {
			back, err := ParseNextHop(e.Hop.String())
			if err != nil {
				t.Fatalf("%q prints as %q, which does not parse: %v", k, e.Hop.String(), err)
			}
			if back.String() != e.Hop.String() {
				t.Fatalf("%q: %q parses back as %q", k, e.Hop.String(), back.String())
			}
			if k == "." || strings.HasPrefix(k, ".") {
				continue
			}
			got, ok := tb.Lookup(k)
			if !ok || got.Key != k {
				t.Fatalf("Lookup(%q) = %v, %v", k, got.Key, ok)
			}
		}
	})
}

// FuzzParseNextHop: never a panic, and the canonical form is a fixed
// point.
func FuzzParseNextHop(f *testing.F) {
	for _, s := range []string{"esmtp:[192.168.1.1]", "smtp:a.example:25:b.example", "relay:[IPv6:::1]:26",
		"lmtp:/x", "local:", "error:4.7.1:451 later", "error:550 5.1.1 x", "smtp:u@h", "esmtp:", "esmtp:[a]:[b]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseNextHop(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error without ErrSyntax: %v", err)
			}
			return
		}
		if h.Kind == KindError && !h.Reply.Temporary() && !h.Reply.Permanent() {
			t.Fatalf("error hop with reply %v", h.Reply)
		}
		back, err := ParseNextHop(h.String())
		if err != nil || back.String() != h.String() {
			t.Fatalf("%q → %q → %q, %v", s, h.String(), back.String(), err)
		}
	})
}

// FuzzParseRecipients: never a panic, and every listed address is valid.
func FuzzParseRecipients(f *testing.F) {
	f.Add("alice@nix.co.jj\n<bob@x.example> OK\n@catchall.example\n# comment\n")
	f.Add("no-at\nuser@bad..domain\n")
	f.Add("a#b@x.example # c\n")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := ParseRecipients(strings.NewReader(text), "rcpts")
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !strings.HasPrefix(err.Error(), "route: reading") {
				t.Fatalf("error without ErrSyntax: %v", err)
			}
			return
		}
		for a := range r.addrs {
			if !r.Valid(a) || !r.Covers(postern.AddrDomain(a)) {
				t.Fatalf("%q listed but not valid", a)
			}
		}
	})
}

// FuzzReplyFromSMTPError maps arbitrary go-smtp errors: never a panic;
// every reply code maps; the reply keeps the code, has an enhanced code
// of its class or none, and survives its own wire form.
func FuzzReplyFromSMTPError(f *testing.F) {
	f.Add(550, 5, 1, 1, "User unknown")
	f.Add(450, 4, 2, 0, "Greylisted\nline two")
	f.Add(250, 0, 0, 0, "Ok: queued as X")
	f.Add(421, -1, -1, -1, "closing")
	f.Add(554, 4, 7, 1, "class mismatch")
	f.Add(999, 5, 0, 0, "bad code")
	f.Add(550, 5, 1000, 1, "big subject\r\nwith CR")
	f.Fuzz(func(t *testing.T, code, a, b, c int, msg string) {
		r, ok := replyFromSMTPError(&smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{a, b, c}, Message: msg})
		if !ok {
			if code >= 200 && code <= 599 {
				t.Fatalf("reply code %d not mapped (%q)", code, msg)
			}
			return
		}
		if r.Code != code {
			t.Fatalf("code %d became %d", code, r.Code)
		}
		if !r.Enhanced.IsZero() && r.Enhanced[0] != code/100 {
			t.Fatalf("enhanced %v for %d", r.Enhanced, code)
		}
		back, err := postern.ParseReplyString(r.Wire())
		if err != nil {
			t.Fatalf("wire form %q does not parse: %v", r.Wire(), err)
		}
		if back.Code != r.Code || back.Enhanced != r.Enhanced {
			t.Fatalf("%v → %q → %v", r, r.Wire(), back)
		}
	})
}

// FuzzLookupMX puts arbitrary bytes on the wire as the answer to the
// Router's MX query (the resolver patches in nothing: the test server
// copies the query's ID): never a panic; MX hosts come out lower case
// without the final dot, and a null MX has no hosts beside it.
func FuzzLookupMX(f *testing.F) {
	pack := func(build func(m *dns.Msg)) []byte {
		q := new(dns.Msg)
		q.SetQuestion("example.net.", dns.TypeMX)
		m := new(dns.Msg)
		m.SetReply(q)
		build(m)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	f.Add(pack(func(m *dns.Msg) { m.Answer = []dns.RR{rr("example.net. 60 IN MX 10 MX.Example.NET.")} }))
	f.Add(pack(func(m *dns.Msg) { m.Answer = []dns.RR{rr("example.net. 60 IN MX 0 .")} }))
	f.Add(pack(func(m *dns.Msg) {
		m.Answer = []dns.RR{rr("example.net. 60 IN MX 0 ."), rr("example.net. 60 IN MX 10 mx.example.net.")}
	}))
	f.Add(pack(func(m *dns.Msg) {
		m.Answer = []dns.RR{rr("example.net. 60 IN CNAME b.example."), rr("b.example. 60 IN MX 5 mx.b.example.")}
	}))
	f.Add(pack(func(m *dns.Msg) { m.Rcode = dns.RcodeNameError }))
	f.Add(pack(func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure }))
	f.Add(pack(func(m *dns.Msg) { m.Answer = []dns.RR{rr("other.example. 60 IN MX 10 mx.other.example.")} }))
	f.Add([]byte{})

	addr, answer := testutil.ReplayDNS(f)
	res, err := resolver.New(resolver.Config{Servers: []string{addr}, Timeout: 50 * time.Millisecond,
		Attempts: 1, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		answer(data)
		mxs, null, _, err := lookupMX(context.Background(), res, "example.net")
		if err != nil && (len(mxs) > 0 || null) {
			t.Fatalf("error %v with records", err)
		}
		if null && len(mxs) > 0 {
			t.Fatal("null MX beside hosts")
		}
		for _, mx := range mxs {
			if mx.host == "" || mx.host != strings.ToLower(mx.host) || strings.HasSuffix(mx.host, ".") {
				t.Fatalf("MX host %q", mx.host)
			}
		}
	})
}

// FuzzMaildirFolder: the folder of any address stays under the root.
func FuzzMaildirFolder(f *testing.F) {
	f.Add("", "bob@example.com")
	f.Add("catchall", "x@y")
	f.Add("", "../../etc@example.com")
	f.Add("..", "a@b")
	f.Add("", "a@..")
	f.Add("", "a/b@c")
	f.Fuzz(func(t *testing.T, user, addr string) {
		root := "/srv/mail"
		dir, err := MaildirFolder(root, user, addr)
		if err != nil {
			return
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			t.Fatalf("MaildirFolder(%q, %q) = %q outside the root", user, addr, dir)
		}
	})
}
