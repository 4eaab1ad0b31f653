package directory_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/auth/directory/ldaptest"
)

// BenchmarkRecipientCheck: a recipient check through the cache, one that
// searches every time, and a bare go-ldap search on one connection (the
// floor: what any LDAP lookup costs), against the same slapd on loopback
// over StartTLS, in one run. slapd is started here; without it the
// benchmark is skipped (it fails under CI=true).
func BenchmarkRecipientCheck(b *testing.B) {
	var ldif []string
	for i := range 1000 {
		ldif = append(ldif, ldaptest.Person(fmt.Sprintf("u%04d", i), "pw", []string{fmt.Sprintf("u%04d@example.test", i)}))
	}
	srv := ldaptest.Start(b, ldaptest.Options{LDIF: strings.Join(ldif, "\n")})
	ctx := context.Background()
	newDir := func(b *testing.B, ttl int) *directory.Directory {
		cfg := directory.Config{URLs: []string{srv.URL}, TLS: directory.TLSStartTLS, CAFile: srv.CAFile,
			BindDN: ldaptest.ServiceDN, BindPassword: ldaptest.ServicePassword, Base: ldaptest.Suffix}
		if ttl < 0 {
			cfg.CacheTTL, cfg.NegativeTTL = -1, -1
		}
		d, err := directory.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Close() })
		return d
	}
	check := func(b *testing.B, d *directory.Directory) {
		for i := 0; b.Loop(); i++ {
			ok, err := d.RecipientExists(ctx, fmt.Sprintf("u%04d@example.test", i%1000))
			if err != nil || !ok {
				b.Fatalf("%v %v", ok, err)
			}
		}
	}
	b.Run("cached", func(b *testing.B) {
		d := newDir(b, 0)
		for i := range 1000 { // warm: every address found once
			if _, err := d.RecipientExists(ctx, fmt.Sprintf("u%04d@example.test", i)); err != nil {
				b.Fatal(err)
			}
		}
		check(b, d)
	})
	b.Run("uncached", func(b *testing.B) { check(b, newDir(b, -1)) })
	b.Run("bare-go-ldap", func(b *testing.B) {
		pem, err := os.ReadFile(srv.CAFile)
		if err != nil {
			b.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		c, err := ldap.DialURL(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.StartTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}); err != nil {
			b.Fatal(err)
		}
		if err := c.Bind(ldaptest.ServiceDN, ldaptest.ServicePassword); err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			a := ldap.EscapeFilter(fmt.Sprintf("u%04d@example.test", i%1000))
			res, err := c.Search(ldap.NewSearchRequest(ldaptest.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
				0, 0, false, "(|(mail="+a+")(mailAlternateAddress="+a+"))", []string{"mail"}, nil))
			if err != nil || len(res.Entries) != 1 {
				b.Fatalf("%v %v", res, err)
			}
		}
	})
}
