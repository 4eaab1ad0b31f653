// Package route decides where mail goes and carries it there: sendmail's
// mailertable, a smart host, MX resolution with fallback relays, the
// SMTP and LMTP delivery client, local Maildir delivery, and recipient
// verification for the RCPT stage.
//
// # Where: Router
//
// A Router answers, for a recipient, with a Route: its mailertable entry
// if there is one, else the smart host, else the MX records of its
// domain. The mailertable is sendmail's text format, so existing files
// work unchanged:
//
//	nix.co.jj        esmtp:[192.168.1.1]
//	.nix.co.jj       esmtp:[192.168.1.1]
//	partner.example  smtp:mx.partner.example:2525
//	store.example    lmtp:/run/dovecot/lmtp
//	local.example    local:
//	old.example      error:5.1.6:550 This domain has moved
//	.                relay:[smarthost.isp.example]
//
// "host.domain" matches itself; ".domain" matches hosts under domain
// (not domain itself), the most specific key winning; "." matches the
// rest. A bracketed host is used as is, without MX lookup; a host list
// "esmtp:[a]:[b]" is tried in order; a number after a host is its port.
// "smtp:user@host" sends every recipient to user@host, as sendmail does.
// sendmail's "%1" substitution and mailers other than esmtp, smtp,
// smtp8, dsmtp, relay, lmtp, local and error are refused with an error.
// Watcher reloads the file when it changes and keeps the previous table
// while a new one has errors; errors name the file and line
// ("mailertable:12: ...").
//
// Resolve turns a route into addresses (RFC 5321 §5.1), asking
// RouterConfig.Resolver, a route/resolver.Resolver whose cache the
// program's other DNS users share:
// MX records in preference order, equal preferences shuffled; no MX
// means the domain's own A/AAAA records (implicit MX); a null MX (RFC
// 7505) fails with 556 5.1.10, a domain that does not exist with 550
// 5.1.2, a DNS failure temporarily with 451 4.4.3. An MX naming an alias
// is followed, with a warning; an MX naming an IP address is ignored, as
// Postfix does, unless AllowNumericMX. If this host (LocalNames,
// LocalAddrs) is an exchanger, only more preferred ones are used, and
// mail whose best exchanger is this host fails with 554 5.4.6 ("mail
// loops back to myself"). At most MXAddressLimit addresses are tried per
// attempt (Postfix smtp_mx_address_limit, 5).
//
// # How: Transport
//
// Transport implements queue.Deliverer. Destination groups recipients by
// next hop ("esmtp:[192.168.1.1]", "mx:example.net"). Deliver makes one
// attempt: the hosts in order, moving on after a connection failure, a
// timeout, a lost connection before DATA or a refused greeting (a 5xx
// greeting too, as Postfix's smtp_skip_5xx_greeting; it is reported as
// 4xx); after at most MaxSessions sessions, and when every host failed
// that way or DNS failed temporarily, the fallback relays (Postfix
// smtp_fallback_relay, sendmail FallbackSmartHost), never for a domain
// this host is an exchanger for (RelayDomains, or found in its MX). A
// server's own 4xx or 5xx reply to MAIL, RCPT or DATA is that
// recipient's result and the attempt does not move on, except for 421
// (the server closing down) to MAIL.
//
// The SMTP client is go-smtp's. It says EHLO with Hostname, uses STARTTLS
// as TLSPolicy says (TLSMay by default: opportunistic, certificate not
// checked, RFC 7435), and passes SIZE, SMTPUTF8 (RFC 6531; a message
// that needs it fails with 550 5.6.7 where it is not offered) and the
// DSN parameters RET, ENVID, NOTIFY and ORCPT when the server offers DSN
// (RFC 3461); otherwise an accepted recipient's Result says Relayed. Each
// recipient gets the server's RCPT reply, or the reply to the end of
// DATA; over LMTP (RFC 2033) one reply per recipient. Anything that is
// not a server reply — a timeout, a lost connection, garbage — becomes a
// 4xx result naming the host and the step ("451 4.4.2 lost connection
// with mx.example.net[192.0.2.1]:25 while sending RCPT TO"). Every read
// and write is bounded by the attempt's context and by ConnectTimeout,
// CommandTimeout (each reply) and DataTimeout (the whole transfer).
//
// go-smtp's client starts TLS only on connections it greets as
// "localhost", so the Transport sends STARTTLS itself and hands the TLS
// connection to a new go-smtp client, which says EHLO with Hostname
// again. go-smtp adds BODY=8BITMIME for every server that offers
// 8BITMIME, and cannot send BDAT: a BINARYMIME message fails with 554
// 5.6.3. A message with REQUIRETLS (RFC 8689) goes only over a verified
// TLS session to a server that offers REQUIRETLS, else fails with 550
// 5.7.30.
//
// Addresses come from the queue in canonical form (postern.Address: the
// local part unquoted, as the server session sees it) and go into MAIL
// FROM and RCPT TO in wire form (postern.WireAddr): a local part that is
// not a Dot-string is quoted again, so `"ceo(x)"@example.net` reaches the
// next hop as that mailbox and not as ceo@example.net with a comment. An
// address that no wire form carries as the same mailbox (a malformed
// domain, a control character) fails with 550 5.1.3 (5.1.7 for the
// sender) and is never written. The call-ahead probe writes the same wire
// form, and Maildir's Return-Path and Delivered-To use it too.
//
// Connections are cached per host and TLS policy: a cached connection is
// reset with RSET before its next message, closed after IdleTimeout,
// MaxMessagesPerConn or MaxConnAge, and replaced by a new one when RSET
// fails.
//
// "local:" writes into Maildir folders (<MaildirRoot>/<domain>/<local
// part>/, or <MaildirRoot>/<user>/ for "local:user") with Return-Path and
// Delivered-To added, file and directory synced; "error:" answers every
// recipient with its reply.
//
// # Recipient verification
//
// A Verifier tells whether a recipient exists: from a Recipients list
// (addresses, in wire form when a local part needs quotes, and "@domain"
// catch-alls) for the domains it covers, else by
// asking the next hop (call-ahead: MAIL FROM:<>, RCPT TO, QUIT), caching
// answers (positive and negative TTLs). Filter applies it at RCPT to the
// local domains: 550 5.1.1 for an unknown user, 450 4.1.1 or 451 4.4.1
// when the next hop could not answer. That last answer is
// VerifierConfig.OnError's, a postern.ErrorPolicy: tempfail by default
// (the client retries), accept (the recipient passes unverified) or
// reject (the same reply as 550 5.x.x).
//
// VerifierConfig.Directory is a user directory (RecipientDirectory;
// auth/directory implements it with LDAP): for the domains it covers and
// the list does not, it decides alone, 550 5.1.1 "User unknown in the
// directory" for an address without an entry. A directory that cannot
// answer is never "unknown": 451 4.3.0 by default, or the recipient
// passes unverified (DirectoryOnError accept); reject is refused.
//
// # Example
//
//	mt, err := route.NewMailertableWatcher("/etc/mail/mailertable", route.WatcherConfig{Logger: log})
//	if err != nil {
//		return err
//	}
//	go mt.Run(ctx)
//	rt, err := route.NewRouter(route.RouterConfig{
//		Mailertable:    mt,
//		FallbackRelays: []string{"[relay2.nix.co.jj]"},
//		RelayDomains:   []string{"nix.co.jj", ".nix.co.jj"},
//		LocalNames:     []string{"relay1.nix.co.jj"},
//		LocalAddrs:     []string{"198.51.100.25"},
//	})
//	if err != nil {
//		return err
//	}
//	tr, err := route.NewTransport(route.TransportConfig{Router: rt, Hostname: "relay1.nix.co.jj"})
//	if err != nil {
//		return err
//	}
//	defer tr.Close()
//	// hand tr to the queue as its queue.Deliverer
package route
