// Package resolver is Postern's one way to the DNS: a stub resolver on
// miekg/dns that asks recursive resolvers, with an answer cache, shared
// by route (MX and addresses), dnsbl (block and allow lists) and auth
// (SPF, DKIM, DMARC, iprev, host checks). It imports only the standard
// library, miekg/dns and the root package, so a program that uses dnsbl
// or auth does not build go-smtp.
//
// # Queries
//
// A query goes to the configured servers (Config.Servers, by default the
// nameservers of /etc/resolv.conf) in order, over UDP with EDNS0 (a 1232
// octet buffer) and again over TCP when the answer comes back truncated
// (RFC 7766 §5); a server that does not know EDNS (FORMERR without OPT)
// is asked again without it (RFC 6891 §7). Each attempt is bounded by
// Config.Timeout; a timeout, an error code (SERVFAIL, REFUSED), a
// network error or a response that does not answer the question moves on
// to the next server, for Config.Attempts rounds. The query sets the AD
// bit (RFC 6840 §5.7), so a validating resolver says whether it
// validated the answer.
//
// Lookup returns an Answer: the records of the type asked, after the
// CNAME chain (followed with further queries when the server left it
// unfinished, up to 8 names), the response code (NOERROR or NXDOMAIN:
// "no such name" and "no data" are answers, not errors), the AD bit and
// the TTL. Errors are temporary failures (ErrTimeout, ErrNetwork,
// ErrServerFailure, ErrBadResponse), or ErrName for a name that is not
// one.
//
// # Cache
//
// Answers are kept for their TTL, within Config.MinTTL and MaxTTL (1
// minute and 1 hour by default, as Postfix's postscreen keeps DNSBL
// answers). "No such name" and "no data" are kept for the TTL their SOA
// gives (RFC 2308 §5), at most NegativeMaxTTL (10 minutes), and not at
// all without an SOA. Failures (SERVFAIL, timeouts) are never kept.
// Concurrent lookups of one question share one exchange. Exchange asks
// the servers without the cache, for health checks.
//
// # The AD bit
//
// Answer.AD is the resolver's word that it validated the answer with
// DNSSEC. It means something only when the servers are validating
// resolvers and the path to them cannot be tampered with: a resolver on
// this host (127.0.0.1, ::1) or one reached over a trusted network (RFC
// 4035 §4.9.3). Config.TrustAD is where a program says so, and
// Resolver.TrustAD where a consumer asks; DANE (RFC 7672) trusts the bit
// only then.
//
// # Adapters
//
// A *Resolver has the method set of *net.Resolver that auth.Resolver and
// blitiri.com.ar/go/spf's DNSResolver declare (LookupTXT, LookupMX,
// LookupIPAddr, LookupAddr, and LookupNetIP), with *net.DNSError errors,
// and TXTFunc gives go-msgauth's LookupTXT hook.
//
// Tests serve DNS with the dnstest package beside this one.
package resolver
