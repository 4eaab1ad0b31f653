package auth

import (
	"crypto"
	"fmt"
	"strings"
	"testing"
)

// benchMessage is a message of about size bytes.
func benchMessage(size int) string {
	var b strings.Builder
	b.WriteString(testMessage)
	line := "The quick brown fox jumps over the lazy dog, again and again.\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

var benchSizes = []struct {
	name string
	size int
}{{"10KiB", 10 << 10}, {"1MiB", 1 << 20}}

func benchKeys(b *testing.B) []struct {
	name string
	k    crypto.Signer
} {
	return []struct {
		name string
		k    crypto.Signer
	}{{"rsa2048", testRSAKey()}, {"ed25519", testEd25519Key(b)}}
}

// BenchmarkDKIMSign signs messages as rendered (Message.Render into the
// signer, one DKIM-Signature edit).
func BenchmarkDKIMSign(b *testing.B) {
	for _, k := range benchKeys(b) {
		sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{{"example.com", "sel", k.k}}})
		if err != nil {
			b.Fatal(err)
		}
		for _, sz := range benchSizes {
			raw := benchMessage(sz.size)
			b.Run(fmt.Sprintf("%s/%s", k.name, sz.name), func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					m := newMessage(b, raw)
					if _, err := sg.Sign(bg, m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDKIMVerify verifies one signature per message, the key fetched
// from the in-process DNS server over loopback each time (no cache, as
// with a local resolver).
func BenchmarkDKIMVerify(b *testing.B) {
	s := startDNS(b)
	v := newVerifier(b, s, DKIMVerifyConfig{})
	for _, k := range benchKeys(b) {
		publish(b, s, "example.com", k.name, k.k)
		sg, err := NewDKIMSigner(DKIMSignConfig{Keys: []DKIMKey{{"example.com", k.name, k.k}}})
		if err != nil {
			b.Fatal(err)
		}
		for _, sz := range benchSizes {
			m := newMessage(b, benchMessage(sz.size))
			if _, err := sg.Sign(bg, m); err != nil {
				b.Fatal(err)
			}
			signed := render(b, m)
			b.Run(fmt.Sprintf("%s/%s", k.name, sz.name), func(b *testing.B) {
				b.SetBytes(int64(len(signed)))
				b.ReportAllocs()
				for b.Loop() {
					res := v.Verify(bg, newMessage(b, signed))
					if len(res) != 1 || res[0].Status != Pass {
						b.Fatal(res)
					}
				}
			})
		}
	}
}

// BenchmarkCheckOriginator is the DATA-stage cost of the From binding.
func BenchmarkCheckOriginator(b *testing.B) {
	m := newMessage(b, "Sender: alice@example.com\r\n"+benchMessage(10<<10))
	allowed := func(addr string) bool { return strings.HasSuffix(addr, "@example.com") }
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckOriginator(m, allowed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRemoveAuthResults is the removal of forged fields from a
// message carrying three of them.
func BenchmarkRemoveAuthResults(b *testing.B) {
	raw := "Authentication-Results: mx.example.net.; dkim=pass\r\n" +
		"Authentication-Results: \"MX.example.net\"; spf=pass\r\n" +
		"Authentication-Results: other.example; none\r\n" + testMessage
	b.ReportAllocs()
	for b.Loop() {
		m := newMessage(b, raw)
		if RemoveAuthResults(m, "mx.example.net") != 2 {
			b.Fatal("not removed")
		}
	}
}
