// Package ldaptest starts a real OpenLDAP slapd on loopback for tests, as
// net/http/httptest starts an HTTP server: a private configuration in a
// temporary directory (the stock core, cosine, inetorgperson and nis
// schemas plus a small test schema, testdata/postern-test.schema, for
// mailAlternateAddress and per-user spam attributes), an mdb database
// loaded with the entries the test writes (LDIF, through slapadd), plain
// LDAP with StartTLS and LDAPS with a certificate from a test CA made
// for the run.
//
// The directory holds dc=example,dc=test, ou=people and ou=services under
// it, and a service account (ServiceDN, ServicePassword) that may read
// every entry; user passwords can only be bound with (anonymous auth),
// never read. Stop kills slapd as a crash would, Restart brings it back
// on the same ports with the same data, so a test can watch a consumer
// go through a directory outage. Searches and Binds count the operations
// slapd logged, so a test can tell a cached answer from one that reached
// the server.
//
// slapd and ldap-utils are Debian packages (apt-get install slapd
// ldap-utils; apt does not need to start slapd). A missing slapd skips
// the test, or fails it when the environment has CI=true.
//
// It imports only the standard library: entries are changed with
// ldapmodify, not an LDAP client library.
package ldaptest
