package auth

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/postern/postern"
)

// FuzzParseDMARCRecord: parsing never panics, and a record it accepts has
// a valid policy, alignment modes and pct.
func FuzzParseDMARCRecord(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=none",
		"v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=20; fo=0:1:d:s; rf=afrf; ri=86400; rua=mailto:a@b.example!10m,https://r.example/x; ruf=mailto:f@b.example",
		"v=DMARC1; p=bogus; rua=mailto:a@b.example",
		"v=DMARC1;;;p=none;=;x;y=;=z",
		"v=DMARC1; p=none; p=reject; pct=101; pct=-1",
		" V = DMARC1 ; P = QUARANTINE ",
		"v=DMARC2; p=none",
		"",
		"v=DMARC1; rua=mailto:x@y.example!",
		"v=DMARC1; p=none; rua=\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseDMARCRecord(txt)
		if len(rec.Ignored) > 32 {
			t.Fatalf("%d ignored tags", len(rec.Ignored))
		}
		if err != nil {
			return
		}
		if !validPolicy(rec.Policy) || (rec.SubdomainPolicy != "" && !validPolicy(rec.SubdomainPolicy)) {
			t.Fatalf("policy %q sp %q", rec.Policy, rec.SubdomainPolicy)
		}
		if rec.Percent < 0 || rec.Percent > 100 {
			t.Fatalf("pct %d", rec.Percent)
		}
		for _, a := range []Alignment{rec.DKIMAlignment, rec.SPFAlignment} {
			if a != AlignRelaxed && a != AlignStrict {
				t.Fatalf("alignment %q", a)
			}
		}
		if !isDMARC1(strings.Split(txt, ";")[0]) {
			t.Fatalf("accepted %q without v=DMARC1 first", txt)
		}
	})
}

func validPolicy(p DMARCPolicy) bool {
	return p == DMARCNone || p == DMARCQuarantine || p == DMARCReject
}

var severity = map[DMARCPolicy]int{"": 0, DMARCNone: 0, DMARCQuarantine: 1, DMARCReject: 2}

// FuzzEvaluateDMARC feeds arbitrary records, From fields and SPF/DKIM
// results to the evaluation: it never panics, a pass needs an aligned
// pass, and the disposition is never harsher than the policy.
func FuzzEvaluateDMARC(f *testing.F) {
	f.Add("v=DMARC1; p=reject; pct=50", "Alice <alice@mail.example.co.uk>", "example.co.uk", byte(1), "other.example", byte(1), 70, true)
	f.Add("v=DMARC1; p=quarantine; adkim=s", "a@example.com, b@example.com", "example.com", byte(2), "sub.example.com", byte(1), 0, false)
	f.Add("v=DMARC1; p=none; sp=reject", "=?utf-8?q?x?= <x@b\u00fccher.example>", "", byte(5), "b\u00fccher.example", byte(6), 99, false)
	f.Add("v=DMARC1; p=reject", "undisclosed-recipients:;", "x", byte(0), "", byte(0), -5, true)
	statuses := []Status{None, Pass, Fail, SoftFail, Neutral, TempError, PermError, Policy}
	f.Fuzz(func(t *testing.T, record, from, spfDomain string, spfSt byte, dkimDomain string, dkimSt byte, roll int, atOrg bool) {
		dom, err := fromDomain([]string{from})
		if err != nil {
			return
		}
		if dom != strings.ToLower(dom) || spfDomainProblem(dom) != "" {
			t.Fatalf("From %q gave domain %q", from, dom)
		}
		rec, err := ParseDMARCRecord(record)
		if err != nil {
			return
		}
		res := DMARCResult{FromDomain: dom, OrgDomain: OrganizationalDomain(dom), RecordDomain: dom}
		if atOrg {
			res.RecordDomain = res.OrgDomain
		}
		spf := SPFResult{Status: statuses[int(spfSt)%len(statuses)], Domain: spfDomain}
		dkim := []DKIMResult{{Status: statuses[int(dkimSt)%len(statuses)], Domain: dkimDomain}}
		randN := func(n int) int {
			r := roll % n
			if r < 0 {
				r += n
			}
			return r
		}
		out := evaluateDMARC(res, rec, spf, dkim, randN)
		alignedPass := (spf.Status == Pass && Aligned(spfDomain, dom, rec.SPFAlignment)) ||
			(dkim[0].Status == Pass && Aligned(dkimDomain, dom, rec.DKIMAlignment))
		if (out.Status == Pass) != alignedPass {
			t.Fatalf("status %s with aligned pass %v", out.Status, alignedPass)
		}
		if out.Status != Fail && out.Disposition != DMARCNone {
			t.Fatalf("%s with disposition %s", out.Status, out.Disposition)
		}
		if severity[out.Disposition] > severity[out.Policy] {
			t.Fatalf("disposition %s harsher than policy %s", out.Disposition, out.Policy)
		}
	})
}

// FuzzParseCredentials: a credentials file never panics the parser, and
// every accepted hash has bounded cost.
func FuzzParseCredentials(f *testing.F) {
	f.Add("# users\nalice:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQxMjM0NTY3OA$2qnI1x0rtV9fHRbA6BDEMBM3TtOsUqoWbJ6Ce/jPqRY\n")
	f.Add("bob:$2y$04$abcdefghijklmnopqrstuuVbrRWtsdTRB6XGzFHq6Dz6G0MmJJR4q\n\n")
	f.Add("a:$argon2id$v=19$m=9999999999,t=1,p=1$AAAA$AAAA\n")
	f.Add("a:$argon2id$v=19$p=1,t=1,m=64$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA==\nb:$2a$\nb:x")
	f.Add(":\n \t:\x00:$\n")
	f.Fuzz(func(t *testing.T, data string) {
		tbl, err := parseCredentials(strings.NewReader(data), "fuzz")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for user, h := range tbl.users {
			if user == "" || strings.ContainsAny(user, " \t\r\n") {
				t.Fatalf("user %q", user)
			}
			if h.bcrypt == nil && (h.memory > maxArgon2Memory || h.time > maxArgon2Time || h.time == 0 || h.threads == 0) {
				t.Fatalf("unbounded argon2id parameters for %q: %+v", user, h)
			}
		}
	})
}

// FuzzParseSenderBindings: never panics; accepted bindings answer
// Allowed for any input.
func FuzzParseSenderBindings(f *testing.F) {
	f.Add("alice: alice@example.com, @example.org *\n# c\nbob@x.example:a@b.example\n", "alice", "x@example.org")
	f.Add("a:\n", "a", "")
	f.Add("a: @\n", "a", "@")
	f.Add("u: \"q@t\"@example.com\n", "u", "\"q@t\"@example.com")
	f.Fuzz(func(t *testing.T, data, user, addr string) {
		b, err := ParseSenderBindings(strings.NewReader(data), "fuzz")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if b.Allowed(user, addr) && !strings.Contains(addr, "@") {
			t.Fatalf("allowed %q, which has no domain", addr)
		}
	})
}

// FuzzDKIMVerify verifies arbitrary messages against a live test DNS
// server with one published key: never a panic, at most MaxSignatures
// verified results and as many neutral ones, and no pass without the
// published key.
func FuzzDKIMVerify(f *testing.F) {
	s := startDNS(f)
	k := testEd25519Key(f)
	publish(f, s, "example.com", "sel", k)
	s.setServfail("bad._domainkey.example.com")
	sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}})
	if err != nil {
		f.Fatal(err)
	}
	m := newMessage(f, testMessage)
	if _, err := sg.Sign(bg, m); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(render(f, m)))
	f.Add([]byte(testMessage))
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=bad; h=From; bh=AAAA; b=AAAA; l=5\r\nFrom: a@example.com\r\n\r\nx\r\n"))
	f.Add([]byte("DKIM-Signature: v=1\r\nDKIM-Signature: \r\n\tb=\r\nFrom: a\r\n"))
	f.Add([]byte("DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=sel; h=from:from:to; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=Zm9v\r\nFrom: x\r\n\r\n"))
	v, err := NewDKIMVerifier(DKIMVerifyConfig{Resolver: s.resolverTimeout(200 * time.Millisecond), MaxSignatures: 3,
		Timeout: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		msg, err := postern.NewMessage(strings.NewReader(string(data)), int64(len(data)), 16<<10)
		if err != nil {
			return
		}
		res := v.Verify(bg, msg)
		if len(res) > 6 {
			t.Fatalf("%d results", len(res))
		}
		for i, r := range res {
			if !validStatus(r.Status) || r.Status == SoftFail || r.Status == None || (i >= 3) != (r.Status == Neutral) {
				t.Fatalf("status %q of signature %d", r.Status, i)
			}
			if r.Status == Pass && (r.Domain != "example.com" || r.Selector != "sel") {
				t.Fatalf("pass for d=%s s=%s, which publish no key", r.Domain, r.Selector)
			}
		}
	})
}

// FuzzHeaderValues: Received-SPF and Authentication-Results values made
// from hostile strings (a HELO name, an address, a DNS error) never hold a
// line break that is not a fold, and name our authserv-id.
func FuzzHeaderValues(f *testing.F) {
	f.Add("alice@example.com", "mail.example.com", "DNS said \"no\"\r\n(twice)", "example.com", "s1")
	f.Add("\"a;b\\\"c\"@x", "[192.0.2.1]", "\x00\x01\xff", "d;\\", "s\r\nX-Injected: 1")
	f.Fuzz(func(t *testing.T, mailFrom, helo, problem, domain, sel string) {
		spf := SPFResult{Status: PermError, Identity: IdentityMailFrom, Domain: domain, MailFrom: mailFrom, Sender: mailFrom,
			HELO: helo, ClientIP: netip.MustParseAddr("2001:db8::1"), Problem: problem}
		dkim := []DKIMResult{{Status: Fail, Domain: domain, Selector: sel, Identifier: mailFrom, Reason: problem}}
		dmarc := DMARCResult{Status: Fail, FromDomain: domain, Policy: DMARCReject, Disposition: DMARCReject, Reason: problem}
		for _, v := range []string{
			spf.ReceivedSPF("mx.example.net"),
			FormatAuthResults("mx.example.net", AuthResults{SPF: &spf, DKIM: dkim, DMARC: &dmarc}),
		} {
			for i := 0; i < len(v); i++ {
				switch v[i] {
				case '\r':
					if i+2 >= len(v) || v[i+1] != '\n' || v[i+2] != '\t' {
						t.Fatalf("CR that is not a fold in %q", v)
					}
				case '\n':
					if i == 0 || v[i-1] != '\r' {
						t.Fatalf("bare LF in %q", v)
					}
				case 0:
					t.Fatalf("NUL in %q", v)
				}
			}
		}
		ar := FormatAuthResults("mx.example.net", AuthResults{SPF: &spf, DKIM: dkim, DMARC: &dmarc})
		if AuthServID(ar) != "mx.example.net" {
			t.Fatalf("authserv-id of %q", ar)
		}
	})
}

// FuzzAuthServID is differential: whenever go-msgauth's parser (what a
// downstream Go program reads) takes an Authentication-Results value to
// be ours, RemoveAuthResults takes it to be ours too, so it is removed.
func FuzzAuthServID(f *testing.F) {
	for _, s := range []string{
		"mx.example.net; spf=pass",
		"mx.example.net.; dkim=pass",
		`"mx.example.net" 1; none`,
		"(c) MX.EXAMPLE.NET (d) 1 ; dkim=pass header.d=x",
		"\r\n\tmx.example.net\r\n\t; none",
		"mx.example.net",
		"ｍｘ．example．net; none",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, _, err := authres.Parse(v)
		if err != nil || !SameAuthServID(id, "mx.example.net") {
			return
		}
		if !SameAuthServID(AuthServID(v), "mx.example.net") {
			t.Fatalf("go-msgauth reads %q as ours (%q), RemoveAuthResults reads %q", v, id, AuthServID(v))
		}
	})
}
