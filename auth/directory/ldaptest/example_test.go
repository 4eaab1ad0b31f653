package ldaptest_test

import (
	"fmt"

	"github.com/postern/postern/auth/directory/ldaptest"
)

// The entries a test puts in the directory. In a test, pass them to
// ldaptest.Start(t, ldaptest.Options{LDIF: ...}) and give a
// directory.Config the server's URL, Base ldaptest.Suffix, BindDN
// ldaptest.ServiceDN and BindPassword ldaptest.ServicePassword; slapd is
// killed when the test ends.
func ExamplePerson() {
	fmt.Print(ldaptest.Person("alice", "secret", []string{"alice@example.test", "a@example.test"},
		"amavisBypassSpamChecks: TRUE"))
	// Output:
	// dn: uid=alice,ou=people,dc=example,dc=test
	// objectClass: inetOrgPerson
	// objectClass: posternTestMailUser
	// uid: alice
	// cn: alice
	// sn: alice
	// userPassword: secret
	// mail: alice@example.test
	// mailAlternateAddress: a@example.test
	// amavisBypassSpamChecks: TRUE
}
