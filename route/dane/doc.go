// Package dane authenticates SMTP servers by DNS-based Authentication of
// Named Entities: TLSA records (RFC 6698) as SMTP uses them (RFC 7672).
// It also holds the certificate name check (RFC 6125) that route's
// "verify" and "secure" TLS levels and MTA-STS share with DANE-TA.
//
// # Records
//
// ParseRecord reads a TLSA record's presentation form ("3 1 1 <hex>");
// FromRR takes miekg/dns's. A Record is usable for SMTP (RFC 7672 §3.1)
// when its usage is DANE-TA(2) or DANE-EE(3), its selector the full
// certificate(0) or the SubjectPublicKeyInfo(1), its matching type the
// data itself(0), SHA2-256(1) or SHA2-512(2), and its data of the right
// length. PKIX-TA(0) and PKIX-EE(1) are not usable for SMTP: there is no
// agreed set of trust anchors among mail servers.
//
// # Lookup
//
// Lookup asks for _<port>._tcp.<host> TLSA through the one resolver
// (route/resolver) and says what the answer allows:
//
//	Insecure   the answer (or the host's address answer) was not
//	           validated: DANE does not apply, opportunistic TLS does
//	None       a validated "no such record": DANE does not apply
//	Usable     validated records, at least one usable: authenticate
//	Unusable   validated records, none usable: TLS is still mandatory,
//	           without authentication (RFC 7672 §3.1)
//
// and an error for a lookup that failed (a validating resolver answers
// SERVFAIL for a bogus answer): the host must not be used, never in
// plain text (RFC 7672 §2.2). The AD bit is believed only from a resolver
// that declares itself trusted (resolver.Config.TrustAD).
//
// # Verification
//
// Verify checks the chain a server presented against the usable records
// (RFC 7672 §3.1): a DANE-EE(3) record matches the server's own
// certificate, whose names and dates are then ignored; a DANE-TA(2)
// record matches a certificate of the chain, which must have issued the
// server's certificate (crypto/x509 builds the path with it as the only
// root, dates checked), and the server's certificate must carry one of
// the reference names (the TLSA base domain, the MX host name, RFC 7672
// §3.2.2). It is meant for tls.Config.VerifyConnection with
// InsecureSkipVerify set.
//
// MatchName is RFC 6125's check of a certificate against reference
// names: DNS subject alternative names (the subject common name only when
// there are none, as Postfix does), a wildcard only as the whole
// left-most label; a reference name starting with a dot matches any name
// under it (Postfix's ".example.com" and "dot-nexthop").
package dane
