package auth

import (
	"flag"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares got with testdata/golden/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join("testdata", "golden", name), []byte(got), *update)
}

func sampleResults() map[string]AuthResults {
	ip := netip.MustParseAddr("192.0.2.1")
	return map[string]AuthResults{
		"authres-none.txt": {},
		"authres-pass.txt": {
			SPF:   &SPFResult{Status: Pass, Identity: IdentityMailFrom, Domain: "example.com", MailFrom: "alice@example.com", Sender: "alice@example.com", ClientIP: ip},
			DKIM:  []DKIMResult{{Status: Pass, Domain: "example.com", Selector: "s2026", Identifier: "@example.com", Algorithm: "rsa-sha256", BPrefix: "dGhpcyBp"}},
			DMARC: &DMARCResult{Status: Pass, FromDomain: "example.com", Policy: DMARCReject, Disposition: DMARCNone, Reason: "aligned SPF pass"},
		},
		"authres-fail.txt": {
			SPF: &SPFResult{Status: PermError, Identity: IdentityHELO, Domain: "client.example", HELO: "client.example",
				Sender: "postmaster@client.example", ClientIP: ip, Problem: "more than 10 DNS-querying terms (RFC 7208 section 4.6.4)"},
			DKIM: []DKIMResult{
				{Status: Fail, Domain: "example.org", Selector: "a", Identifier: "@example.org", Algorithm: "ed25519-sha256", BPrefix: "abcdEFGH", Reason: "body hash did not verify"},
				{Status: TempError, Domain: "example.org", Selector: "b", Identifier: "user@example.org", Algorithm: "rsa-sha256", BPrefix: "x+y/z=", Reason: `key unavailable: "quoted"; with (parens)`},
			},
			DMARC: &DMARCResult{Status: Fail, FromDomain: "example.org", Policy: DMARCReject, Disposition: DMARCQuarantine, Reason: "no aligned SPF or DKIM pass, not sampled by pct=50"},
		},
		"authres-iprev-pass.txt": {
			IPRev: &IPRevResult{Status: Pass, IP: netip.MustParseAddr("2001:db8::25"), Name: "mail.example.com"},
			SPF:   &SPFResult{Status: Pass, Identity: IdentityMailFrom, Domain: "example.com", MailFrom: "alice@example.com", Sender: "alice@example.com", ClientIP: ip},
		},
		"authres-iprev-fail.txt":      {IPRev: &IPRevResult{Status: Fail, IP: ip, Name: "bogus.example.gr.jp"}},
		"authres-iprev-permerror.txt": {IPRev: &IPRevResult{Status: PermError, IP: ip}},
		"authres-iprev-temperror.txt": {IPRev: &IPRevResult{Status: TempError, IP: ip}, DKIMChecked: true},
		"authres-nodkim.txt": {
			SPF:         &SPFResult{Status: None, Identity: IdentityMailFrom, Domain: "example.net", MailFrom: "bob@example.net", ClientIP: ip},
			DKIMChecked: true,
			DMARC:       &DMARCResult{Status: None, FromDomain: "example.net", Reason: "no DMARC policy"},
		},
	}
}

func TestFormatAuthResults(t *testing.T) {
	for name, r := range sampleResults() {
		t.Run(name, func(t *testing.T) {
			v := FormatAuthResults("mx.example.net", r)
			golden(t, name, v+"\n")
			// go-msgauth reads back what we wrote.
			id, parsed, err := authres.Parse(strings.NewReplacer("\r\n", "", "\t", " ").Replace(v))
			require.NoError(t, err)
			assert.Equal(t, "mx.example.net", id)
			n := len(r.DKIM)
			if n == 0 && r.DKIMChecked {
				n = 1
			}
			if r.SPF != nil {
				n++
			}
			if r.IPRev != nil {
				n++
				ipr := parsed[0].(*authres.IPRevResult)
				// An IPv6 address is not a token (RFC 8601 §2.3: ':' is a
				// tspecial): it is quoted, and go-msgauth keeps the quotes.
				assert.Equal(t, r.IPRev.IP.String(), strings.Trim(ipr.IP, `"`))
				assert.EqualValues(t, r.IPRev.Status, ipr.Value)
			}
			if r.DMARC != nil {
				n++
			}
			assert.Len(t, parsed, n)
			assert.Equal(t, "mx.example.net", AuthServID(v))
		})
	}
}

func TestReceivedSPF(t *testing.T) {
	base := SPFResult{Identity: IdentityMailFrom, Domain: "example.com", MailFrom: "alice@example.com",
		Sender: "alice@example.com", HELO: "mail.example.com", ClientIP: netip.MustParseAddr("192.0.2.1")}
	var b strings.Builder
	for _, st := range []Status{Pass, Fail, SoftFail, Neutral, None, TempError, PermError} {
		r := base
		r.Status = st
		if st == TempError || st == PermError {
			r.Problem = "DNS said \"no\" (twice)"
		}
		b.WriteString("Received-SPF: " + r.ReceivedSPF("mx.example.net") + "\r\n")
	}
	helo := SPFResult{Status: Pass, Identity: IdentityHELO, Domain: "client.example", Sender: "postmaster@client.example",
		HELO: "client.example", ClientIP: netip.MustParseAddr("2001:db8::25")}
	b.WriteString("Received-SPF: " + helo.ReceivedSPF("mx.example.net") + "\r\n")
	odd := base
	odd.Status, odd.MailFrom, odd.Sender, odd.HELO = Fail, `"a(b)\c"@example.com`, `"a(b)\c"@example.com`, "[192.0.2.1]"
	b.WriteString("Received-SPF: " + odd.ReceivedSPF("mx.example.net") + "\r\n")
	golden(t, "received-spf.txt", b.String())
}

func TestAuthServID(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.org; spf=pass":             "mx.example.org",
		"mx.example.org 1; spf=pass":           "mx.example.org",
		"  (comment (nested)) mx.example.org;": "mx.example.org",
		"mx.example.org":                       "mx.example.org",
		"mx.example.org(c); none":              "mx.example.org",
		`"mx.example.org"; none`:               "mx.example.org",
		`"mx.ex\ample.org" 1; none`:            "mx.example.org",
		"\"mx.example\r\n .org\"; none":        "mx.example .org",
		`"mx.example.org`:                      "",
		"mx.example.org.; none":                "mx.example.org.",
		"mx.example.org/1; none":               "mx.example.org",
		"mx.example.org\x00; none":             "mx.example.org",
		"\r\n\tmx.example.org\r\n\t1;":         "mx.example.org",
		"(unclosed comment mx.example.org;":    "",
		"; spf=pass":                           "",
		"":                                     "",
	} {
		assert.Equal(t, want, AuthServID(in), in)
	}
}

func TestSameAuthServID(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"mx.example.net", "mx.example.net", true},
		{"MX.Example.NET", "mx.example.net", true},
		{"mx.example.net.", "mx.example.net", true},
		{"mx.example.net", "MX.EXAMPLE.NET.", true},
		{"ｍｘ．example．net", "mx.example.net", true}, // fullwidth, mapped by IDNA
		{"bücher.example", "xn--bcher-kva.example", true},
		{"BÜCHER.example.", "xn--bcher-kva.example", true},
		{"mx.example.net..", "mx.example.net", false},
		{"mx2.example.net", "mx.example.net", false},
		{"mx.example.net.evil", "mx.example.net", false},
		{"", "", false},
		{".", "", false},
	} {
		assert.Equal(t, tc.same, SameAuthServID(tc.a, tc.b), "%q %q", tc.a, tc.b)
		assert.Equal(t, tc.same, SameAuthServID(tc.b, tc.a), "%q %q", tc.b, tc.a)
	}
}

func TestRemoveAuthResults(t *testing.T) {
	m := newMessage(t, "Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=a@b.example\r\n"+
		"Authentication-Results: other.example; dkim=pass\r\n"+
		"Authentication-results: (forged) MX.Example.NET 1; dmarc=pass\r\n"+
		"Authentication-Results: relay2.example.net; none\r\n"+
		testMessage)
	assert.Equal(t, 3, RemoveAuthResults(m, "mx.example.net", "relay2.example.net"))
	out := render(t, m)
	assert.NotContains(t, out, "mx.example.net")
	assert.NotContains(t, out, "relay2")
	assert.Contains(t, out, "Authentication-Results: other.example; dkim=pass\r\n")
	assert.Equal(t, 0, RemoveAuthResults(newMessage(t, testMessage), "mx.example.net"))

	// Every spelling of our name goes: trailing dot, quoted, escaped,
	// folded, commented, versioned, fullwidth.
	forged := []string{
		"mx.example.net.; dkim=pass",
		`"mx.example.net"; dkim=pass`,
		`"MX.example\.net." 1; dkim=pass`,
		"(ours) mx.example.net.(really) 1; dkim=pass",
		"\r\n\tmx.example.net\r\n\t; dkim=pass",
		"ｍｘ．example．net; dkim=pass",
		"mx.example.net/1; dkim=pass",
	}
	var b strings.Builder
	for _, f := range forged {
		b.WriteString("Authentication-Results: " + f + "\r\n")
	}
	b.WriteString("Authentication-Results: mx.example.net.evil.example; dkim=pass\r\n")
	m = newMessage(t, b.String()+testMessage)
	assert.Equal(t, len(forged), RemoveAuthResults(m, "mx.example.net"))
	out = render(t, m)
	assert.Equal(t, 1, strings.Count(out, "Authentication-Results:"), out)
	assert.Contains(t, out, "mx.example.net.evil.example")
}
