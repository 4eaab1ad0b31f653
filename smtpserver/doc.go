// Package smtpserver is an SMTP server for Postern filters, built on
// github.com/emersion/go-smtp. It runs a policy (usually a *postern.Chain)
// at each stage of the dialogue and hands accepted messages to a Handoff,
// whose queue ID goes into the final "250 2.0.0 Ok: queued as <id>".
//
// # What it adds to go-smtp
//
// go-smtp writes its 220 banner as soon as it accepts a connection and
// calls the backend only at HELO. Server.Listen therefore runs the connect
// stage (access Connect: entries, DNSBL, connection limits) in a
// net.Listener wrapper before go-smtp sees the connection, concurrently for
// all new connections; Accept never returns a per-connection error. It
// also holds the global connection limit (Config.MaxConnections, by default
// from RLIMIT_NOFILE: (limit - 100) / 2): a client over it gets
// "421 4.7.0 … too many connections" before anything is read. When the
// process is out of file descriptors anyway (EMFILE, ENFILE), the listener
// frees a descriptor it keeps in reserve, answers the waiting client
// "421 4.3.2", takes the reserve back and goes on accepting: it never stops
// serving for it. ConnLimit does the same as a wrapper of its own, to put
// first in front of other listener wrappers (a greet pause, per-client
// limits) and share between servers.
//
// Before the connect stage, with Config.ReverseDNS (auth.IPRev), the
// server looks up the client's host name, forward-confirmed, within
// Config.ReverseDNSTimeout (10 s; clients SkipReverseDNS names, such as
// trusted networks, are not looked up), and records the outcome in
// postern.Conn: ClientName only for a verified name, ClientPTR, and
// ClientResolve (OK, FAIL, FORGED, TEMP). So access entries by host name
// apply as in sendmail, and the Received field names the client as
// sendmail writes it: "from helo (name [ip])", "(name [ip] (may be
// forged))" for a PTR name that does not resolve back, "([ip])" without
// a name.
//
// Between the socket and go-smtp sits a protocol edge that reads one command
// at a time, so it knows the exact state of the dialogue. It provides:
//
//   - replies with RFC 3463 enhanced status codes for unknown commands
//     (500 5.5.2), over-long lines (500 5.5.2), NUL bytes (500 5.5.2);
//   - Postfix-style soft and hard error limits (10 and 20 by default):
//     past the soft limit each error reply is delayed, at the hard limit the
//     client gets 421 4.7.0 and is disconnected; a delivered message resets
//     the count;
//   - command (5 min), DATA block (3 min) and whole-session (1 h) timeouts,
//     answered 421 4.4.2 (RFC 5321 §4.5.3.2);
//   - STARTTLS (RFC 3207) with TLS session tickets off by default, the
//     plaintext pipelined after STARTTLS dropped (CVE-2011-0411), and a new
//     EHLO required; implicit TLS for port 465 (RFC 8314);
//   - one rule for the end of DATA: the edge alone decides it (only
//     CRLF "." CRLF, the CRLF after 354 counting as the first) and hands
//     go-smtp canonical, dot-stuffed text, so the two cannot disagree and
//     each DATA gets exactly one reply (SMTP smuggling, RFC 5321 §4.1.1.4,
//     §4.5.2);
//   - bare CR and bare LF in a message (DATA or BDAT) made CRLF, or with
//     Config.BareNewline = BareNewlineReject the message refused with
//     "550 5.5.2 Error: bare <LF> received" (<CR>) after its end, and a
//     command line ending in a bare LF refused the same way (Postfix
//     smtpd_forbid_bare_newline); a stored message has CRLF line ends only;
//   - recipients past MaxRecipients answered 452 4.5.3 without counting as
//     errors, up to RecipientOvershootLimit (1000, Postfix
//     smtpd_recipient_overshoot_limit) per transaction;
//   - graceful Shutdown: idle sessions are told 421 4.3.2, sessions in a
//     transaction finish it.
//
// The edge follows go-smtp by the replies it writes (one reply line per
// write, 354 before DATA, 334 before a SASL line, one final reply to the
// end of a message, BDAT arguments read as go-smtp reads them, ...).
// Each of these assumptions is a subtest of TestGoSMTPContract, which
// drives go-smtp alone as New configures it, so an upgrade of go-smtp
// that changes one fails there first. One of them bounds
// MaxCommandLine at MaxCommandLineLimit (4000): go-smtp echoes the EHLO
// name and writes a longer reply line in two pieces.
//
// DATA is spooled in memory up to SpoolMemoryBytes, then to an unlinked
// temporary file; the message reaches the DATA stage as a *postern.Message
// over the exact bytes received, with our Received header (RFC 5321 §4.4,
// RFC 3848 protocol keywords, TLS cipher) recorded as an edit. Size limits
// answer 552 5.3.4, too many recipients 452 4.5.3, a full disk at hand-off
// 452 4.3.1, a message that arrives with MaxHops (50) Received and
// Delivered-To fields, having gone round a mail loop, 554 5.4.6 (RFC 5321
// §6.3). SMTP AUTH PLAIN and LOGIN are offered over TLS when Config.Auth
// is set; RequireAuth answers MAIL with 530 5.7.0 (RFC 4954 §6), and
// AuthLimit (ratelimit.AuthLimiter fits) answers 454 4.7.0 to a client or
// user past its allowance of failures. A PasswordChecker error that says
// it is temporary (a directory that is down) is 454 4.7.0 too, and not
// counted as a failure.
// SMTPUTF8, 8BITMIME, PIPELINING, CHUNKING and DSN (RFC 3461) are advertised;
// DSN parameters reach the policy in postern.Txn and postern.Rcpt.
//
// # Deep protocol tests
//
// Config.ProtocolTests runs postscreen's "deep protocol" tests on the
// sessions its Select chooses (not the trusted ones, not those a pass
// cache says passed recently): a command sent together with HELO or
// EHLO, before the reply (RFC 2920 §3.1); a line that is no SMTP (an
// HTTP or proxy request, a header field, a TLS handshake on the plain
// port); a command ending in a bare LF. The edge sees each command
// line as it arrives, so the tests cost one check per command. A client
// that fails one is told "421 4.7.0 <host> Error: <what>, try again
// later" and disconnected; its Result callback hears the failure, or the
// pass at the client's first MAIL (ratelimit.PassCache records both).
// They are off by default.
//
// The smtpserver/proxyproto listener reads the PROXY protocol header a
// load balancer sends, so the real client's address drives all of the
// above.
//
// # Addresses
//
// go-smtp parses MAIL FROM and RCPT TO and hands over the local part
// unquoted: `"ceo(x)"@example.org` arrives as ceo(x)@example.org. The
// session takes that as the canonical form of the address (see
// postern.Address): the domain's ASCII letters in lower case, one trailing
// dot dropped, address literals in netip's form. Txn.From and Rcpt.Addr
// hold it, so every lookup sees one spelling of a mailbox: `"ceo"@…` and
// ceo@… are one. Whatever writes an address to another server must write
// postern.WireAddr of it, which quotes the local part again when it is not
// an RFC 5321 Dot-string; route and queue/dsn do.
//
// Addresses that cannot reach the next hop as the same mailbox are refused
// 553 5.1.3 (5.1.7 for the sender, RFC 3463 §3.2): control characters,
// invalid UTF-8, a malformed domain or address literal ("ceo@example.org(x)",
// which a next hop would read as ceo@example.org). A non-ASCII address
// without SMTPUTF8 gets 553 5.6.7 (RFC 6531), and one whose wire form is
// longer than RFC 5321 §4.5.3.1.3 allows 501. "RCPT TO:<Postmaster>"
// without a domain (RFC 5321 §4.5.1) reaches the policy as given.
//
// Local parts that must be quoted ("a b"@…, "ceo(x)"@…, ".x"@…) are
// accepted by default: RFC 5321 §4.1.2 requires a server to take a
// Quoted-string local part, Postfix and sendmail do, and since the canonical
// form feeds every lookup and the wire form every client, they are judged
// and delivered as the same mailbox. Config.RefuseQuotedLocalParts refuses
// them instead (553 5.1.3, "quoted local parts are not accepted here") for
// sites whose mail store cannot take them; an address quoted needlessly
// (`"ceo"@…`) is still the plain mailbox and passes.
//
// The server enforces no relay policy of its own. An empty policy accepts
// every recipient: put access.RelayControl (or your own) first.
//
// # Hand-off and shutdown
//
// A transaction that passed the DATA stage goes to Config.Handoff, which
// must make it durable before the client hears 250 (see Handoff for what
// it must do with quarantined mail and which ID the client is told);
// queue.Handoff puts it in a queue.Queue. A Discard verdict is answered
// 250 and never handed off. Shutdown stops accepting, tells idle clients
// 421 and lets transactions under way finish; when its context ends, the
// sessions left (a client stalled inside DATA) are closed, and Serve
// returns ErrServerClosed. A message is acknowledged only after the
// Handoff returned, so a session closed this way loses nothing that was
// acknowledged; a client that did not hear 250 sends the message again
// (if it was closed while its message was being queued, the message may
// arrive twice, never not at all).
//
// Example_queue shows a server handing mail to the queue; the program in
// examples/minimal is a whole MTA (greet pause, access map, DNSBL, relay
// control, queue, route) in a page.
package smtpserver
