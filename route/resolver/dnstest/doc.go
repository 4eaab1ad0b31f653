// Package dnstest serves DNS for tests, as net/http/httptest serves
// HTTP: a real server on a loopback port, UDP and TCP, that answers like
// a recursive resolver from records given as Go values (AddA, AddTXT,
// AddMX, AddPTR, AddCNAME, Add) or as RFC 1035 zone text (AddZone).
//
// It follows CNAME chains into the answer (a loop is SERVFAIL), answers
// NXDOMAIN for names it does not know and NOERROR with no data for names
// that exist without records of the type asked (empty non-terminals
// included, RFC 8020); negative answers carry an SOA (RFC 2308), the
// closest one it holds or one it makes up. UDP answers larger than the
// client's buffer (512, or its EDNS0 size) are truncated, so the client
// must ask again over TCP. Set makes a question fail (SERVFAIL, REFUSED,
// no answer at all), answer late or come back truncated; Secure sets the
// AD bit for validated zones. The server counts the questions it gets
// (Queries, TCPQueries).
//
// Every test in Postern that needs DNS uses it: the packages' unit tests,
// the relay's integration tests (through the relay's configuration), the
// reliability suite and the benchmark.
package dnstest
