package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOrganizationalDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":          "example.com",
		"mail.example.com":     "example.com",
		"a.b.c.example.com.":   "example.com",
		"MAIL.Example.CO.UK":   "example.co.uk",
		"example.co.uk":        "example.co.uk",
		"co.uk":                "co.uk",
		"com":                  "com",
		"news.example.test":    "example.test",
		"user.github.io":       "user.github.io",
		"deep.user.github.io":  "user.github.io",
		"city.kawasaki.jp":     "city.kawasaki.jp",
		"www.city.kawasaki.jp": "city.kawasaki.jp",
		"":                     "",
		"bad..example.com":     "bad..example.com",
	} {
		assert.Equal(t, want, OrganizationalDomain(in), in)
	}
}

func TestAligned(t *testing.T) {
	tests := []struct {
		id, from string
		mode     Alignment
		want     bool
	}{
		{"example.com", "example.com", AlignStrict, true},
		{"example.com", "example.com", AlignRelaxed, true},
		{"EXAMPLE.com.", "example.COM", AlignStrict, true},
		{"mail.example.com", "example.com", AlignRelaxed, true},
		{"mail.example.com", "example.com", AlignStrict, false},
		{"example.com", "news.example.com", AlignRelaxed, true},
		{"example.com", "news.example.com", AlignStrict, false},
		{"a.example.com", "b.example.com", AlignRelaxed, true},
		{"a.example.com", "b.example.com", AlignStrict, false},
		{"example.co.uk", "mail.example.co.uk", AlignRelaxed, true},
		{"other.co.uk", "example.co.uk", AlignRelaxed, false},
		{"co.uk", "example.co.uk", AlignRelaxed, false},
		{"alice.github.io", "bob.github.io", AlignRelaxed, false},
		{"example.net", "example.com", AlignRelaxed, false},
		{"notexample.com", "example.com", AlignRelaxed, false},
		{"", "example.com", AlignRelaxed, false},
		{"example.com", "", AlignRelaxed, false},
		{"mail.example.com", "example.com", "", true}, // no mode: relaxed
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, Aligned(tc.id, tc.from, tc.mode), "%s vs %s (%s)", tc.id, tc.from, tc.mode)
	}
}

func TestParseDMARCRecord(t *testing.T) {
	tests := []struct {
		name     string
		txt      string
		err      bool
		policy   DMARCPolicy
		sp       DMARCPolicy
		adkim    Alignment
		aspf     Alignment
		pct      int
		rua      []string
		ignored  int
		fallback bool
	}{
		{name: "minimal", txt: "v=DMARC1; p=none", policy: DMARCNone, adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100},
		{name: "full", txt: "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=s; pct=20; fo=1; rf=afrf; ri=3600; rua=mailto:d@example.com; ruf=mailto:f@example.com",
			policy: DMARCReject, sp: DMARCQuarantine, adkim: AlignStrict, aspf: AlignStrict, pct: 20, rua: []string{"mailto:d@example.com"}},
		{name: "spacing and case", txt: "  v = DMARC1 ;P=Reject;  ADKIM = S ;", policy: DMARCReject, adkim: AlignStrict, aspf: AlignRelaxed, pct: 100},
		{name: "unknown tags ignored", txt: "v=DMARC1; p=quarantine; foo=bar; np=reject; x", policy: DMARCQuarantine,
			adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, ignored: 3},
		{name: "bad optional values take defaults", txt: "v=DMARC1; p=reject; adkim=x; aspf=; pct=150; fo=z; rf=xml; ri=-1",
			policy: DMARCReject, adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, ignored: 6},
		{name: "repeated tag: first wins", txt: "v=DMARC1; p=none; p=reject", policy: DMARCNone, adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, ignored: 1},
		{name: "bad rua kept out", txt: "v=DMARC1; p=none; rua=notauri, mailto:ok@example.com!10m", policy: DMARCNone,
			adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, rua: []string{"mailto:ok@example.com!10m"}, ignored: 1},
		// RFC 7489 §6.6.3 step 6: an invalid p= with a valid rua= is p=none.
		{name: "invalid p with rua", txt: "v=DMARC1; p=block; rua=mailto:d@example.com", policy: DMARCNone,
			adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, rua: []string{"mailto:d@example.com"}, ignored: 1, fallback: true},
		{name: "missing p with rua", txt: "v=DMARC1; rua=mailto:d@example.com", policy: DMARCNone,
			adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, rua: []string{"mailto:d@example.com"}, fallback: true},
		{name: "invalid sp with rua", txt: "v=DMARC1; p=reject; sp=maybe; rua=mailto:d@example.com", policy: DMARCNone,
			adkim: AlignRelaxed, aspf: AlignRelaxed, pct: 100, rua: []string{"mailto:d@example.com"}, ignored: 1, fallback: true},
		{name: "invalid p", txt: "v=DMARC1; p=block", err: true},
		{name: "missing p", txt: "v=DMARC1; adkim=s", err: true},
		{name: "invalid sp", txt: "v=DMARC1; p=none; sp=maybe", err: true},
		{name: "not first v", txt: "p=none; v=DMARC1", err: true},
		{name: "wrong version", txt: "v=DMARC2; p=none", err: true},
		{name: "lower-case version", txt: "v=dmarc1; p=none", err: true},
		{name: "spf record", txt: "v=spf1 -all", err: true},
		{name: "empty", txt: "", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := ParseDMARCRecord(tc.txt)
			if tc.err {
				require.ErrorIs(t, err, ErrDMARCRecord)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.policy, rec.Policy)
			assert.Equal(t, tc.sp, rec.SubdomainPolicy)
			assert.Equal(t, tc.adkim, rec.DKIMAlignment)
			assert.Equal(t, tc.aspf, rec.SPFAlignment)
			assert.Equal(t, tc.pct, rec.Percent)
			if tc.rua != nil {
				assert.Equal(t, tc.rua, rec.AggregateURIs)
			}
			assert.Len(t, rec.Ignored, tc.ignored, "%q", rec.Ignored)
			assert.Equal(t, tc.fallback, rec.PolicyFallback)
		})
	}
	// A hostile record cannot make a huge list of ignored tags.
	rec, err := ParseDMARCRecord("v=DMARC1; p=none" + strings.Repeat("; junk="+strings.Repeat("j", 500), 1000))
	require.NoError(t, err)
	assert.LessOrEqual(t, len(rec.Ignored), 32)
}

func TestFromDomain(t *testing.T) {
	tests := []struct {
		header string
		want   string
		err    bool
	}{
		{"From: Alice <alice@Example.COM>\r\n", "example.com", false},
		{"From: alice@example.com\r\n", "example.com", false},
		{"From: \"Smith, Alice\" <alice@example.com>\r\n", "example.com", false},
		{"From: John Q. Public <jqp@example.com>\r\n", "example.com", false},
		{"From: =?windows-1252?Q?Jos=E9?= <jose@example.com>\r\n", "example.com", false},
		{"From: a@example.com, b@example.com\r\n", "example.com", false},
		{"From: alice@b\u00fccher.example\r\n", "xn--bcher-kva.example", false},
		{"From: a@example.com, b@example.org\r\n", "", true},
		{"From: a@example.com\r\nFrom: b@example.com\r\n", "", true},
		{"Sender: a@example.com\r\n", "", true},
		{"From: undisclosed\r\n", "", true},
		{"From: <>\r\n", "", true},
		{"From: a@[192.0.2.1]\r\n", "", true},
		{"From: a@localhost\r\n", "", true},
	}
	for _, tc := range tests {
		got, err := FromDomain(newMessage(t, tc.header+"Subject: x\r\n\r\nbody\r\n"))
		if tc.err {
			assert.ErrorIs(t, err, ErrFrom, tc.header)
			continue
		}
		if assert.NoError(t, err, tc.header) {
			assert.Equal(t, tc.want, got, tc.header)
		}
	}
}

// dmarcZone publishes policies for the evaluation tests.
func dmarcZone(t *testing.T) *testDNS {
	s := startDNS(t)
	s.txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com")
	s.txt("_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s")
	s.txt("_dmarc.example.co.uk", "v=DMARC1; p=quarantine")
	s.txt("_dmarc.half.example", "v=DMARC1; p=reject; pct=50")
	s.txt("_dmarc.none.example", "v=DMARC1; p=none")
	s.txt("_dmarc.own.example.com", "v=DMARC1; p=none") // a subdomain with its own record
	s.txt("_dmarc.junk.example", "v=DMARC1; p=reject; hello=world; adkim=q; pct=-3")
	s.txt("_dmarc.broken.example", "v=DMARC1; p=maybe")
	s.txt("_dmarc.rescued.example", "v=DMARC1; p=maybe; rua=mailto:d@rescued.example")
	s.txt("_dmarc.two.example", "v=DMARC1; p=reject")
	s.txt("_dmarc.two.example", "v=DMARC1; p=none")
	s.txt("_dmarc.other.example", "v=spf1 -all") // not a DMARC record
	s.txt("_dmarc.other.example", "some verification token")
	s.setServfail("_dmarc.flaky.example")
	s.setServfail("_dmarc.sub.flaky2.example")
	return s
}

func newDMARC(t *testing.T, s *testDNS, roll int) *DMARCChecker {
	d, err := NewDMARCChecker(DMARCConfig{Resolver: s.resolver(), Rand: func(n int) int { return roll % n }})
	require.NoError(t, err)
	return d
}

func spfPass(domain string) SPFResult {
	return SPFResult{Status: Pass, Identity: IdentityMailFrom, Domain: domain}
}

func dkimPass(domain string) []DKIMResult { return []DKIMResult{{Status: Pass, Domain: domain}} }

func TestDMARCCheck(t *testing.T) {
	s := dmarcZone(t)
	tests := []struct {
		name        string
		from        string
		spf         SPFResult
		dkim        []DKIMResult
		roll        int
		want        Status
		policy      DMARCPolicy
		disposition DMARCPolicy
		recordAt    string
	}{
		{"spf aligned", "example.com", spfPass("example.com"), nil, 0, Pass, DMARCReject, DMARCNone, "example.com"},
		{"spf relaxed subdomain", "example.com", spfPass("bounce.example.com"), nil, 0, Pass, DMARCReject, DMARCNone, "example.com"},
		{"dkim aligned", "example.com", SPFResult{}, dkimPass("example.com"), 0, Pass, DMARCReject, DMARCNone, "example.com"},
		{"dkim parent of author", "news.example.com", SPFResult{}, dkimPass("example.com"), 0, Pass, DMARCQuarantine, DMARCNone, "example.com"},
		{"fail: nothing aligned", "example.com", spfPass("example.net"), dkimPass("example.net"), 0, Fail, DMARCReject, DMARCReject, "example.com"},
		{"fail: softfail is no pass", "example.com", SPFResult{Status: SoftFail, Domain: "example.com"}, nil, 0, Fail, DMARCReject, DMARCReject, "example.com"},
		{"fail: dkim fail", "example.com", SPFResult{}, []DKIMResult{{Status: Fail, Domain: "example.com"}}, 0, Fail, DMARCReject, DMARCReject, "example.com"},
		{"one good signature among bad", "example.com", SPFResult{}, []DKIMResult{{Status: Fail, Domain: "example.com"}, {Status: Pass, Domain: "mail.example.com"}}, 0, Pass, DMARCReject, DMARCNone, "example.com"},
		// sp= applies to subdomains whose policy comes from the org domain.
		{"sp for subdomain", "news.example.com", spfPass("example.net"), nil, 0, Fail, DMARCQuarantine, DMARCQuarantine, "example.com"},
		{"own record beats sp", "own.example.com", spfPass("example.net"), nil, 0, Fail, DMARCNone, DMARCNone, "own.example.com"},
		// Strict alignment.
		{"strict: exact", "strict.example", spfPass("strict.example"), nil, 0, Pass, DMARCReject, DMARCNone, "strict.example"},
		{"strict: subdomain spf", "strict.example", spfPass("mail.strict.example"), nil, 0, Fail, DMARCReject, DMARCReject, "strict.example"},
		{"strict: subdomain dkim", "strict.example", SPFResult{}, dkimPass("mail.strict.example"), 0, Fail, DMARCReject, DMARCReject, "strict.example"},
		// Organizational domains under multi-label public suffixes.
		{"co.uk org domain", "mail.example.co.uk", SPFResult{}, dkimPass("example.co.uk"), 0, Pass, DMARCQuarantine, DMARCNone, "example.co.uk"},
		{"co.uk other org", "mail.example.co.uk", SPFResult{}, dkimPass("other.co.uk"), 0, Fail, DMARCQuarantine, DMARCQuarantine, "example.co.uk"},
		// pct= sampling: selected applies the policy, not selected the next milder one.
		{"pct selected", "half.example", SPFResult{}, nil, 49, Fail, DMARCReject, DMARCReject, "half.example"},
		{"pct not selected", "half.example", SPFResult{}, nil, 50, Fail, DMARCReject, DMARCQuarantine, "half.example"},
		// Junk in records is ignored, defaults apply.
		{"junk tags", "junk.example", spfPass("mail.junk.example"), nil, 0, Pass, DMARCReject, DMARCNone, "junk.example"},
		{"rescued p", "rescued.example", SPFResult{}, nil, 0, Fail, DMARCNone, DMARCNone, "rescued.example"},
		// No policy.
		{"no record", "example.net", spfPass("example.net"), nil, 0, None, "", "", ""},
		{"two records: none", "two.example", SPFResult{}, nil, 0, None, "", "", ""},
		{"not DMARC TXT", "other.example", SPFResult{}, nil, 0, None, "", "", ""},
		{"not a domain", "[192.0.2.1]", SPFResult{}, nil, 0, None, "", "", ""},
		// Errors.
		{"broken record", "broken.example", SPFResult{}, nil, 0, PermError, "", "", "broken.example"},
		{"servfail", "flaky.example", spfPass("flaky.example"), nil, 0, TempError, "", "", ""},
		{"servfail at org fallback", "sub.flaky2.example", SPFResult{}, nil, 0, TempError, "", "", ""},
		{"aligned spf temperror", "example.com", SPFResult{Status: TempError, Domain: "example.com"}, nil, 0, TempError, DMARCReject, DMARCNone, "example.com"},
		{"aligned dkim temperror", "example.com", SPFResult{}, []DKIMResult{{Status: TempError, Domain: "example.com"}}, 0, TempError, DMARCReject, DMARCNone, "example.com"},
		{"unaligned temperror fails", "example.com", SPFResult{Status: TempError, Domain: "example.net"}, nil, 0, Fail, DMARCReject, DMARCReject, "example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newDMARC(t, s, tc.roll).Check(bg, tc.from, tc.spf, tc.dkim)
			assert.Equal(t, tc.want, r.Status, r.Reason)
			assert.Equal(t, tc.policy, r.Policy)
			assert.Equal(t, tc.disposition, r.Disposition)
			assert.Equal(t, tc.recordAt, r.RecordDomain)
			assert.NotEmpty(t, r.Reason)
		})
	}
}

func TestDMARCJunkLogged(t *testing.T) {
	s := dmarcZone(t)
	lb := &logBuf{newLogBuffer()}
	d, err := NewDMARCChecker(DMARCConfig{Resolver: s.resolver(), Logger: lb.Logger()})
	require.NoError(t, err)
	r := d.Check(bg, "junk.example", SPFResult{}, nil)
	require.NotNil(t, r.Record)
	assert.Len(t, r.Record.Ignored, 3)
	recs := lb.Records(t, "dmarc: record cleaned")
	require.Len(t, recs, 1)
	assert.Equal(t, "junk.example", recs[0]["domain"])
	d.Check(bg, "two.example", SPFResult{}, nil)
	assert.Len(t, lb.Records(t, "dmarc: several records, policy ignored"), 1)

	_, err = NewDMARCChecker(DMARCConfig{Timeout: -1})
	assert.True(t, errors.Is(err, ErrConfig))
}

// A policy lookup that never gets an answer is a temperror within the
// checker's timeout.
func TestDMARCTimeout(t *testing.T) {
	s := startDNS(t)
	s.setTimeout("_dmarc.slow.example")
	s.setTimeout("_dmarc.example")
	d, err := NewDMARCChecker(DMARCConfig{Resolver: s.resolver(), Timeout: 400 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan DMARCResult, 1)
	go func() { done <- d.Check(bg, "mail.slow.example", SPFResult{}, nil) }()
	select {
	case r := <-done:
		assert.Equal(t, TempError, r.Status, r.Reason)
	case <-time.After(time.Minute):
		t.Fatal("DMARC check hung")
	}
}
