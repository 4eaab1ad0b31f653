package directory_test

import (
	"log"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/route"
	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver"
)

// One directory serves recipient verification, the per-recipient spam
// policy, SMTP AUTH and sender binding, each through its consumer's
// interface. (It needs a running LDAP server; see package ldaptest.)
func Example() {
	dir, err := directory.New(directory.Config{
		URLs:             []string{"ldap://ldap1.example.com", "ldap://ldap2.example.com"}, // StartTLS: not on loopback
		BindDN:           "cn=postern,ou=services,dc=example,dc=com",
		BindPasswordFile: "/etc/postern/ldap.secret",
		Base:             "dc=example,dc=com",
		Domains:          []string{"example.com"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer dir.Close()

	// RCPT: unknown recipients 550 5.1.1; directory down 451 4.3.0.
	verifier, err := route.NewVerifier(route.VerifierConfig{Directory: dir})
	if err != nil {
		log.Fatal(err)
	}
	verify, err := route.NewFilter(route.FilterConfig{Verifier: verifier, Domains: []string{"example.com"}})
	if err != nil {
		log.Fatal(err)
	}
	// Each recipient's spam setting and sender lists from their entry.
	content, err := scan.NewFilter(scan.FilterConfig{Lookup: dir})
	if err != nil {
		log.Fatal(err)
	}
	// Submission: log in by binding as the user; send as their addresses.
	senders, err := auth.NewSenderFilter(auth.SenderFilterConfig{Directory: dir})
	if err != nil {
		log.Fatal(err)
	}
	_ = smtpserver.Config{Auth: dir}
	_, _, _ = verify, content, senders
}
