//go:debug rsa1024min=0

package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// testRSAKey is generated once per test binary: 2048-bit keys are slow.
var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func testEd25519Key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Lunch\r\n" +
	"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <lunch-1@example.com>\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n"

var (
	newMessage = testutil.Message
	render     = testutil.Render
)

// publish serves the public key of k at sel._domainkey.domain.
func publish(t testing.TB, s *testDNS, domain, sel string, k crypto.Signer) {
	txt, err := DKIMRecord(k.Public())
	require.NoError(t, err)
	s.txt(sel+"._domainkey."+domain, txt)
}

func newVerifier(t testing.TB, s *testDNS, cfg DKIMVerifyConfig) *DKIMVerifier {
	t.Helper()
	cfg.Resolver = s.resolver()
	v, err := NewDKIMVerifier(cfg)
	require.NoError(t, err)
	return v
}

func signString(t testing.TB, cfg DKIMSignConfig, raw string) string {
	t.Helper()
	sg, err := NewDKIMSigner(cfg)
	require.NoError(t, err)
	m := newMessage(t, raw)
	d, err := sg.Sign(bg, m)
	require.NoError(t, err)
	require.NotEmpty(t, d)
	return render(t, m)
}

func TestDKIMSignVerifyRoundTrip(t *testing.T) {
	s := startDNS(t)
	rsaKey, edKey := testRSAKey(), testEd25519Key(t)
	publish(t, s, "example.com", "rsa", rsaKey)
	publish(t, s, "example.com", "ed", edKey)
	v := newVerifier(t, s, DKIMVerifyConfig{})
	for _, tc := range []struct {
		name   string
		key    DKIMKey
		hc, bc string
	}{
		{"rsa relaxed", DKIMKey{"example.com", "rsa", rsaKey}, "", ""},
		{"rsa simple", DKIMKey{"example.com", "rsa", rsaKey}, "simple", "simple"},
		{"ed25519 relaxed", DKIMKey{"Example.COM.", "ed", edKey}, "relaxed", "relaxed"},
		{"ed25519 simple/relaxed", DKIMKey{"example.com", "ed", edKey}, "simple", "relaxed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DKIMSignConfig{Keys: []DKIMKey{tc.key}, HeaderCanonicalization: tc.hc, BodyCanonicalization: tc.bc}
			signed := signString(t, cfg, testMessage)
			require.True(t, strings.HasPrefix(signed, "DKIM-Signature: "), signed)
			res := v.Verify(bg, newMessage(t, signed))
			require.Len(t, res, 1)
			assert.Equal(t, Pass, res[0].Status, res[0].Reason)
			assert.Equal(t, "example.com", res[0].Domain)
			assert.Equal(t, tc.key.Selector, res[0].Selector)
			assert.Equal(t, "@example.com", res[0].Identifier)
			assert.Len(t, res[0].BPrefix, 8)

			// A changed body, a changed From, and an added From all fail.
			tampered := map[string]string{
				"body":        strings.Replace(signed, "noon", "one", 1),
				"from":        strings.Replace(signed, "From: Alice", "From: Alicia", 1),
				"second from": strings.Replace(signed, "To: Bob", "From: Mallory <m@example.org>\r\nTo: Bob", 1),
			}
			for what, msg := range tampered {
				res := v.Verify(bg, newMessage(t, msg))
				require.Len(t, res, 1)
				assert.Equal(t, Fail, res[0].Status, what)
				assert.NotEmpty(t, res[0].Reason, what)
			}
		})
	}
}

// The signature covers the message as rendered: edits recorded before
// signing are signed, and the signature field comes out on top.
func TestDKIMSignCoversEdits(t *testing.T) {
	s := startDNS(t)
	k := testEd25519Key(t)
	publish(t, s, "example.com", "sel", k)
	sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}},
		Headers: []string{"From", "Subject", "Received", "X-Tag"}, HeaderCanonicalization: "simple"})
	require.NoError(t, err)
	m := newMessage(t, testMessage)
	m.AddHeader("Received", "from client.example.com by mx.example.com; Wed, 25 Nov 2026 09:00:01 +0000")
	m.AddHeader("X-Tag", "folded\r\n value")
	require.True(t, m.DeleteHeader("Subject", 0))
	_, err = sg.Sign(bg, m)
	require.NoError(t, err)
	out := render(t, m)
	require.True(t, strings.HasPrefix(out, "DKIM-Signature: "))
	assert.Contains(t, out, "h=From:From:Received:X-Tag;", "From oversigned, Subject deleted so not signed")
	v := newVerifier(t, s, DKIMVerifyConfig{})
	assert.Equal(t, Pass, v.Verify(bg, newMessage(t, out))[0].Status)
	// Dropping the Received field the signature covers breaks it.
	broken := strings.Replace(out, "Received: from client.example.com by mx.example.com; Wed, 25 Nov 2026 09:00:01 +0000\r\n", "", 1)
	require.NotEqual(t, out, broken)
	assert.Equal(t, Fail, v.Verify(bg, newMessage(t, broken))[0].Status)
}

func TestDKIMSignKeySelection(t *testing.T) {
	rsaKey, edKey := testRSAKey(), testEd25519Key(t)
	sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{
		{"example.com", "rsa", rsaKey}, {"example.com", "ed", edKey}, {"other.example", "o", edKey},
	}})
	require.NoError(t, err)
	assert.Len(t, sg.KeysFor("example.com"), 2)
	assert.Len(t, sg.KeysFor("news.example.com"), 2, "a subdomain uses its parent's keys")
	assert.Empty(t, sg.KeysFor("example.net"))
	// Dual signing: one field per key.
	m := newMessage(t, strings.Replace(testMessage, "alice@example.com", "alice@news.example.com", 1))
	d, err := sg.Sign(bg, m)
	require.NoError(t, err)
	assert.Equal(t, "example.com", d)
	assert.Equal(t, 2, strings.Count(render(t, m), "DKIM-Signature:"))
	// No key for the author domain, or no From at all: not signed.
	_, err = sg.Sign(bg, newMessage(t, strings.Replace(testMessage, "example.com>", "example.net>", 1)))
	assert.ErrorIs(t, err, ErrNoKey)
	_, err = sg.Sign(bg, newMessage(t, "Subject: x\r\n\r\nbody\r\n"))
	assert.ErrorIs(t, err, ErrFrom)
}

func TestDKIMSignConfig(t *testing.T) {
	k := testEd25519Key(t)
	ok := DKIMKey{"example.com", "sel", k}
	small, err := rsa.GenerateKey(rand.Reader, 512)
	require.NoError(t, err)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for name, cfg := range map[string]DKIMSignConfig{
		"no keys":      {},
		"no selector":  {Keys: []DKIMKey{{"example.com", "", k}}},
		"no domain":    {Keys: []DKIMKey{{"", "s", k}}},
		"bad selector": {Keys: []DKIMKey{{"example.com", "s;x", k}}},
		"no signer":    {Keys: []DKIMKey{{"example.com", "s", nil}}},
		"small rsa":    {Keys: []DKIMKey{{"example.com", "s", small}}},
		"ecdsa":        {Keys: []DKIMKey{{"example.com", "s", ec}}},
		"no From":      {Keys: []DKIMKey{ok}, Headers: []string{"Subject"}},
		"bad header":   {Keys: []DKIMKey{ok}, Headers: []string{"From", "X: y"}},
		"bad canon":    {Keys: []DKIMKey{ok}, HeaderCanonicalization: "nofws"},
		"negative x":   {Keys: []DKIMKey{ok}, Expiration: -time.Second},
	} {
		_, err := NewDKIMSigner(cfg)
		assert.ErrorIs(t, err, ErrConfig, name)
	}
}

func TestDKIMSignExpiration(t *testing.T) {
	k := testEd25519Key(t)
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	signed := signString(t, DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}, Expiration: time.Hour,
		Now: func() time.Time { return now }}, testMessage)
	assert.Contains(t, signed, fmt.Sprintf("x=%d;", now.Add(time.Hour).Unix()))
}

// A message without a body (no blank line) signs and verifies.
func TestDKIMHeaderOnlyMessage(t *testing.T) {
	s := startDNS(t)
	k := testEd25519Key(t)
	publish(t, s, "example.com", "sel", k)
	raw := "From: alice@example.com\r\nSubject: empty\r\n"
	signed := signString(t, DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}}, raw)
	res := newVerifier(t, s, DKIMVerifyConfig{}).Verify(bg, newMessage(t, signed))
	require.Len(t, res, 1)
	assert.Equal(t, Pass, res[0].Status, res[0].Reason)
}

func TestDKIMVerifyResults(t *testing.T) {
	s := startDNS(t)
	k := testEd25519Key(t)
	good := signString(t, DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}}, testMessage)
	publish(t, s, "example.com", "sel", k)
	s.txt("revoked._domainkey.example.com", "v=DKIM1; k=ed25519; p=")
	s.setServfail("flaky._domainkey.example.com")
	s.setTimeout("slow._domainkey.example.com")
	s.txt("junk._domainkey.example.com", "v=DKIM1; k=rsa; p=!!!notbase64")
	s.txt("twice._domainkey.example.com", "v=DKIM1; k=ed25519; p=AAAA")
	s.txt("twice._domainkey.example.com", "v=DKIM1; k=ed25519; p=BBBB")
	sig := func(tags string) string { return "DKIM-Signature: " + tags + "\r\n" }
	base := "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com; h=From:Subject; bh=AAAA; b=AAAA"
	tests := []struct {
		name   string
		field  string
		want   Status
		reason string
	}{
		{"missing key", sig(strings.Replace(base, "d=example.com", "d=example.com; s=nokey", 1)), PermError, "no key"},
		{"revoked key", sig(base + "; s=revoked"), PermError, "revoked"},
		{"servfail", sig(base + "; s=flaky"), TempError, "unavailable"},
		{"timeout", sig(base + "; s=slow"), TempError, "unavailable"},
		{"junk key record", sig(base + "; s=junk"), PermError, "key syntax"},
		{"two key records", sig(base + "; s=twice"), PermError, "multiple"},
		{"bad base64 in b=", sig(strings.Replace(base, "b=AAAA", "b=@@@@", 1) + "; s=sel"), PermError, "malformed signature"},
		{"bad base64 in bh=", sig(strings.Replace(base, "bh=AAAA", "bh=*", 1) + "; s=sel"), PermError, "malformed body hash"},
		{"body hash mismatch", sig(base + "; s=sel"), Fail, "body hash"},
		{"missing tags", sig("v=1; d=example.com; s=sel"), PermError, "missing"},
		{"bad version", sig(strings.Replace(base, "v=1", "v=2", 1) + "; s=sel"), PermError, "version"},
		{"From not signed", sig(strings.Replace(base, "h=From:Subject", "h=Subject", 1) + "; s=sel"), PermError, "From"},
		{"sha1", sig(strings.Replace(base, "ed25519-sha256", "rsa-sha1", 1) + "; s=sel"), PermError, "weak"},
		{"expired", sig(base + "; s=sel; x=1000"), PermError, "expired"},
		{"body length l=", sig(base + "; s=sel; l=99999999999999999999999"), Policy, "body length"},
		{"i= outside d=", sig(base + "; s=sel; i=@evil.example"), PermError, "domain mismatch"},
		{"duplicate tag", sig(base + "; s=sel; s=other"), PermError, "duplicate"},
		{"garbage", sig("\x00\x01;;;=;==;"), PermError, ""},
		{"absurdly long", sig(base + "; s=sel; z=" + strings.Repeat("A", 20000)), PermError, "exceeds"},
		{"absurdly long b=", sig(strings.Replace(base, "b=AAAA", "b="+strings.Repeat("QUFB", 8000), 1) + "; s=sel"), PermError, "exceeds"},
		{"too many signed fields", sig(strings.Replace(base, "h=From:Subject", "h=From"+strings.Repeat(":X", 300), 1) + "; s=sel"), PermError, "signed header fields"},
	}
	lb := &logBuf{newLogBuffer()}
	v, err := NewDKIMVerifier(DKIMVerifyConfig{Resolver: s.resolverTimeout(200 * time.Millisecond), Timeout: 5 * time.Second,
		Logger: lb.Logger()})
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := verifyBounded(t, v, newMessage(t, tc.field+testMessage))
			require.Len(t, res, 1)
			assert.Equal(t, tc.want, res[0].Status, res[0].Reason)
			assert.Contains(t, res[0].Reason, tc.reason)
		})
	}
	// Every verification was logged with its result and reason.
	assert.Len(t, lb.Records(t, "dkim verify"), len(tests))

	// A bad signature next to a good one: one result each, in order; the
	// dropped absurd one does not disturb the good one.
	huge := sig(base + "; s=sel; z=" + strings.Repeat("A", 20000))
	res := v.Verify(bg, newMessage(t, huge+sig(base+"; s=flaky")+good))
	require.Len(t, res, 3)
	assert.Equal(t, []Status{PermError, TempError, Pass}, []Status{res[0].Status, res[1].Status, res[2].Status})
	assert.Equal(t, "sel", res[2].Selector)

	// An unsigned message has no results.
	assert.Empty(t, v.Verify(bg, newMessage(t, testMessage)))
}

func TestDKIMVerifyBounds(t *testing.T) {
	s := startDNS(t)
	k := testEd25519Key(t)
	publish(t, s, "example.com", "sel", k)
	good := signString(t, DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k}}}, testMessage)
	field, rest, _ := strings.Cut(good, "\r\n\tb=")
	_ = rest
	require.NotEmpty(t, field)

	// Eight signatures: three verified, three reported neutral, two only
	// counted in the log.
	var b strings.Builder
	for range 7 {
		b.WriteString("DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=sel; h=From; bh=AAAA; b=AAAA\r\n")
	}
	lb := &logBuf{newLogBuffer()}
	v := newVerifier(t, s, DKIMVerifyConfig{MaxSignatures: 3, Logger: lb.Logger()})
	res := v.Verify(bg, newMessage(t, b.String()+good))
	require.Len(t, res, 6)
	for i, r := range res {
		if i < 3 {
			assert.Equal(t, Fail, r.Status, r.Reason)
		} else {
			assert.Equal(t, Neutral, r.Status)
			assert.Equal(t, "example.com", r.Domain)
			assert.Contains(t, r.Reason, "limit of 3")
		}
	}
	recs := lb.Records(t, "dkim signatures not verified")
	require.Len(t, recs, 1)
	assert.EqualValues(t, 5, recs[0]["skipped"])

	// Out of time: every signature is a temperror, nothing hangs.
	v = newVerifier(t, s, DKIMVerifyConfig{Timeout: time.Nanosecond})
	big := strings.Replace(good, "Shall we meet at noon?\r\n", strings.Repeat("lorem ipsum dolor sit amet\r\n", 40000), 1)
	res = verifyBounded(t, v, newMessage(t, big))
	require.Len(t, res, 1)
	assert.Equal(t, TempError, res[0].Status)
	assert.Contains(t, res[0].Reason, "not finished")

	_, err := NewDKIMVerifier(DKIMVerifyConfig{MaxSignatures: -1})
	assert.ErrorIs(t, err, ErrConfig)
}

func verifyBounded(t *testing.T, v *DKIMVerifier, m *postern.Message) []DKIMResult {
	t.Helper()
	done := make(chan []DKIMResult, 1)
	go func() { done <- v.Verify(context.Background(), m) }()
	select {
	case r := <-done:
		return r
	case <-time.After(time.Minute):
		t.Fatal("DKIM verification hung")
		return nil
	}
}

func TestParsePrivateKey(t *testing.T) {
	rsaKey, edKey := testRSAKey(), testEd25519Key(t)
	pk8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	pk1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	for name, data := range map[string][]byte{"rsa pkcs1": pk1, "rsa pkcs8": pk8(rsaKey), "ed25519 pkcs8": pk8(edKey)} {
		k, err := ParsePrivateKey(data)
		require.NoError(t, err, name)
		require.NoError(t, checkSigner(k))
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	small, err := rsa.GenerateKey(rand.Reader, 512)
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a key"),
		"ecdsa":     pk8(ec),
		"small rsa": pk8(small),
		"cert":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"encrypted": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}),
		"bad der":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	} {
		_, err := ParsePrivateKey(data)
		assert.ErrorIs(t, err, ErrKey, name)
	}
	_, err = LoadPrivateKey(t.TempDir() + "/missing.pem")
	assert.ErrorIs(t, err, ErrKey)
}

func TestGenerateKey(t *testing.T) {
	for _, tc := range []struct {
		alg  string
		bits int
		k    string
	}{{KeyRSA, 1024, "rsa"}, {KeyEd25519, 0, "ed25519"}, {"ED25519", 256, "ed25519"}} {
		keyPEM, txt, err := GenerateKey(tc.alg, tc.bits)
		require.NoError(t, err)
		k, err := ParsePrivateKey(keyPEM)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(txt, "v=DKIM1; k="+tc.k+"; p="), txt)
		want, err := DKIMRecord(k.Public())
		require.NoError(t, err)
		assert.Equal(t, want, txt)
		p := strings.TrimPrefix(txt, "v=DKIM1; k="+tc.k+"; p=")
		_, err = base64.StdEncoding.DecodeString(p)
		assert.NoError(t, err)
	}
	for _, bad := range []struct {
		alg  string
		bits int
	}{{KeyRSA, 512}, {KeyRSA, 16384}, {KeyEd25519, 2048}, {"dsa", 0}} {
		_, _, err := GenerateKey(bad.alg, bad.bits)
		assert.ErrorIs(t, err, ErrKey, "%v", bad)
	}
	assert.Equal(t, []string{strings.Repeat("a", 255), strings.Repeat("a", 255), "aa"}, SplitTXT(strings.Repeat("a", 512)))
}
