// Package directory reads a site's users from an LDAP directory (OpenLDAP,
// Active Directory, 389 DS) on github.com/go-ldap/ldap/v3: which
// recipients exist, each recipient's spam policy, logins for SMTP AUTH
// and the quarantine page (search, then bind as the user), and which
// addresses a user may send as. Postfix's ldap_table, sendmail's ldap map
// and maddy do the same.
//
// A Directory serves each consumer through the interface that consumer
// declares, so a custom MTA can use it alone or with any of them:
//
//	route.VerifierConfig.Directory     RecipientExists, Covers
//	scan.FilterConfig.Lookup           LookupPolicy
//	smtpserver.Config.Auth             CheckPassword
//	auth.SenderFilterConfig.Directory  SenderAllowed
//	auth.SenderAllower                 Allowed (DKIM signing, ownership)
//
// # Lookups
//
// Every lookup is a search under Config.Base (subtree) as the service
// account (Config.BindDN, its password from a file), with a filter made
// from a template: RecipientFilter (default
// "(|(mail=%s)(mailAlternateAddress=%s))") for recipients, LoginFilter
// (default "(|(uid=%s)(mail=%s))") for logins; %s is the address or
// login, %u its local part, %d its domain. Every substituted value is
// escaped as RFC 4515 §3 says (ldap.EscapeFilter): an address such as
// "*)(uid=*" or one holding NUL or parentheses is looked up as itself,
// finds nothing, and is logged. A lookup reads at most MaxEntries
// entries; a search the server's own size limit stops short of that
// (Active Directory's MaxPageSize, slapd's sizelimit) is run again paged
// (RFC 2696, PageSize), so the limit cuts nothing. (A paged search costs
// slapd about twice an unpaged one, so it is not the first try.)
//
// Answers are cached: an entry found for CacheTTL (5 minutes), "no such
// entry" for NegativeTTL (1 minute); a directory that could not answer is
// never cached, and concurrent lookups of one address share one search.
// Passwords are never cached: each login is a bind.
//
// # Failures
//
// A lookup the directory could not answer (no server reachable, a
// timeout, a server error) is an *UnavailableError, which is never "does
// not exist": route answers 451 4.3.0 (never 550 5.1.1), scan 451 4.3.0,
// smtpserver 454 4.7.0 to AUTH without counting a failed login, each
// unless its error policy says otherwise.
//
// # Connections
//
// Config.URLs are tried in order; a server that cannot be reached is
// passed over for DownFor while another answers. ldaps:// is TLS from the
// first byte; ldap:// connections are upgraded with StartTLS (TLSAuto
// does so for every server not on loopback, so passwords never cross a
// network in clear). Certificates are checked against CAFile or the
// system roots. Two pools of at most MaxConns connections each serve
// searches (bound as the service account) and users' binds; idle
// connections are probed every HealthInterval and broken ones replaced,
// and a connection that breaks mid-search is replaced once, so a server
// restarted since costs no failure. Every operation is bounded by
// Timeout.
//
// Package ldaptest starts a real slapd for tests.
package directory
