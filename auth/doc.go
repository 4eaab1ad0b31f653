// Package auth authenticates senders and submitters: forward-confirmed
// reverse DNS (RFC 8601 §3 "iprev"), SPF (RFC 7208), DKIM verification and
// signing (RFC 6376, RFC 8301, RFC 8463), DMARC (RFC 7489),
// Authentication-Results (RFC 8601), optional checks of the client's host
// and HELO names, a password file for SMTP AUTH, and the binding of
// authenticated users to the sender addresses they may use.
//
// Each part has a core API that knows nothing of filters, for a custom MTA,
// and a thin Postern filter on top of it.
//
// # DNS
//
// Every check resolves through a Resolver, the method set of *net.Resolver
// (nil: net.DefaultResolver). Give them all one route/resolver.Resolver,
// shared with dnsbl and route: it asks the servers you name (a local
// validating recursive resolver), falls back to TCP for large DKIM keys,
// and keeps answers (and "no such record") for their TTL, so mail from
// one domain does not ask the same SPF, DKIM key and DMARC names for
// every message; temporary failures are not kept. Each check has its own
// overall timeout; running out of time is a temperror, never a hang.
//
// # Reverse DNS (iprev)
//
// IPRev.LookupClientHost finds a client's verified host name: the PTR
// names of its address, then their A/AAAA records, the first name whose
// addresses hold the client's being the one. The outcome is a
// postern.ClientHost with the four results sendmail calls
// ${client_resolve} and RFC 8601 §3 reports as iprev:
//
//	OK      a name confirms            iprev=pass       Name and PTR set
//	FAIL    no PTR record              iprev=permerror
//	FORGED  PTR names, none confirms   iprev=fail       PTR set, no Name
//	TEMP    a query failed for now     iprev=temperror
//
// Only OK gives a name that policy may trust: a PTR record says whatever
// the holder of the reverse zone likes. Names under "localhost" confirm
// only loopback addresses and are never asked of DNS (RFC 6761 §6.3). At
// most 10 PTR names are tried; numeric "names" are none. Results are kept
// by outcome (a verified name 10 minutes, FAIL and FORGED one minute,
// TEMP not at all); concurrent lookups of one address share one query,
// and a caller whose context ends gets TEMP while the query finishes for
// the others. IPRev satisfies smtpserver.ReverseResolver: the server runs
// it before the connect stage and records the outcome in postern.Conn.
//
// # Host checks
//
// HostFilter refuses, when asked to (all are off unless named), a client
// without a PTR record (CheckClientPTR, sendmail's require_rdns) or without
// a verified name (CheckClientName, Postfix's
// reject_unknown_client_hostname) at connect with 554 5.7.25 (RFC 7372),
// 421 4.7.25 when DNS failed for now; and at HELO a name with no A, AAAA or
// MX record (CheckHELOResolves), a HELO naming this host or one of its
// addresses (CheckHELONotUs), an address literal that is not the client's
// (CheckHELOLiteral), with 550 5.7.1 (450 4.7.1 for a temporary DNS
// failure). RFC 5321 §4.1.4 says a server MUST NOT refuse mail because the
// HELO name does not match the client; sites that do anyway choose to.
// ParseHELO takes a HELO argument apart.
//
// # SPF
//
// SPFChecker.Check evaluates the MAIL FROM identity, or the HELO identity
// (as postmaster@HELO) for the null reverse path (RFC 7208 §2.3, §2.4),
// with blitiri.com.ar/go/spf behind the SPFEvaluator interface. The results
// are none, neutral, pass, fail, softfail, temperror and permerror; the
// limits of §4.6.4 (10 DNS-querying terms, 2 void lookups) apply. A domain
// that is not a multi-label DNS name is "none" without a query (§4.3).
// SPFResult.ReceivedSPF writes the Received-SPF field (§9.1).
//
// The library evaluates a record term by term and stops at the first
// match, so a syntax error after the deciding term goes unnoticed where
// §4.6 asks for permerror; testdata/spf/README.md and the conformance test
// list the cases of the RFC 7208 suite this affects.
//
// SPFFilter checks at MAIL and records the SPFResult in Txn.Values under
// SPFResultKey; by default it only records. Actions can refuse a result:
//
//	550 5.7.23 SPF fail
//	550 5.7.24 SPF permerror
//	451 4.7.24 SPF temperror
//
// At DATA it adds the Received-SPF field. Trusted and authenticated clients
// are not checked.
//
// # DKIM
//
// DKIMVerifier.Verify checks the DKIM-Signature fields of a message on the
// bytes as received (postern.Message.NewReader) with go-msgauth: one
// DKIMResult per signature with domain, selector and pass, fail, policy
// (a body length limit l=), neutral, temperror or permerror and a reason.
// It verifies at most MaxSignatures (5) signatures, skips absurdly large
// ones (permerror), and stops at its timeout.
//
// DKIMSigner.Sign signs the message as it will be rendered: the received
// fields minus deletions plus the fields added so far, then the body. The
// DKIM-Signature field is added as an edit, so it is rendered on top; a
// filter that edits the header after signing breaks the signature, so
// SignFilter goes last. Keys are chosen by the From domain (or its nearest
// parent with keys); RSA and Ed25519 keys of one domain give two
// signatures. The default is relaxed/relaxed over DefaultSignedHeaders,
// with From signed once more than it occurs (oversigning, RFC 6376 §8.15).
// ParsePrivateKey and LoadPrivateKey read PKCS #1 and PKCS #8 PEM keys;
// GenerateKey makes a key pair and the TXT record text to publish.
//
// # DMARC
//
// DMARCChecker.Check finds the policy at _dmarc.<From domain>, else at the
// organizational domain (publicsuffix eTLD+1), parses it with go-msgauth
// after dropping unknown tags and invalid values as RFC 7489 §6.3 asks,
// and evaluates identifier alignment (strict or relaxed) of the SPF domain
// and of each passing DKIM d=. sp= applies to subdomains that use the
// organizational record, pct= samples with an injected random source and
// falls back to the next milder policy (§6.6.4). A From field without a
// single author domain is a permerror (§6.6.1).
//
// # Authentication-Results
//
// VerifyFilter is the DATA-stage filter of inbound mail: it removes
// received Authentication-Results fields that claim our authserv-id (RFC
// 8601 §5), verifies DKIM, evaluates DMARC and adds one
// Authentication-Results field (written with go-msgauth's authres; iprev
// from the connection's reverse DNS, when the server looked it up) before
// applying the DMARC disposition: tag only (the default), enforce
// (p=reject is 550 5.7.1, p=quarantine a postern.Quarantine verdict), or
// quarantine only. A DMARC temperror (DNS failing) is only tagged unless
// OnTempError, a postern.ErrorPolicy, says tempfail (451 4.7.1) or reject
// (554 5.7.1). The results go to Txn.Values (DKIMResultsKey,
// DMARCResultKey) for later filters. A field is ours when its
// authserv-id names our host however it is spelled (SameAuthServID: as a
// domain name, after unquoting and IDNA mapping): a forged
// "mx.example.com." is removed like "mx.example.com". With RemoveOnly it
// checks nothing and only removes those fields, for a receiver that does
// no sender authentication and so has no result to claim.
//
// # Submission
//
// Credentials checks SMTP AUTH passwords against a file of "user:hash"
// lines with bcrypt or argon2id PHC hashes; it satisfies
// smtpserver.PasswordChecker. It reloads atomically (Reload, Run), and
// an unknown user costs a hash as a known one does. HashPassword makes the hashes; Version tells a holder of a login
// (a web session) that the password changed or the user went.
// SenderMap binds users to addresses and domains ("alice: alice@example.com,
// @sales.example.com"), and a SenderDirectory (auth/directory: the mail
// attributes of the user's LDAP entry) can too, its failures answered as
// SenderFilterConfig.OnDirectoryError says (451 4.3.0 by default);
// auth/directory also checks passwords by binding as the user.
// SenderFilter refuses other senders of
// authenticated sessions with
//
//	553 5.7.1 Sender address rejected: not owned by user
//
// and, at DATA, other addresses in the From and Sender fields
// (CheckOriginator: exactly one From, every mailbox and group member, at
// most one Sender; a field that does not parse, or holds control
// characters, is refused too):
//
//	553 5.7.1 From header rejected: <boss@example.com> not owned by user
//
// Mail readers show the From field, not the envelope.
//
// Credentials and SenderMap watch their files as the rest of Postern
// does (the access map, the mailertable, the scan policy): Run looks
// every Interval, reads a change once the file has stayed the same for
// one more look, and swaps the new table in whole. A file that does not
// parse is logged once, with its line ("credentials not reloaded,
// previous version stays in force"), and the previous table stays until
// the file changes again; writing a new file and renaming it over the
// old one is safest. SignFilter signs an
// authenticated user's message only when CheckOriginator passes for them
// (SignFilterConfig.Senders), even where the binding is turned off: a
// signature vouches for the From domain.
//
// # Wiring
//
// An inbound relay (port 25):
//
//	res, _ := resolver.New(resolver.Config{Servers: []string{"127.0.0.1"}})
//	spfCk, _ := auth.NewSPFChecker(auth.SPFConfig{Resolver: res})
//	spf, _ := auth.NewSPFFilter(auth.SPFFilterConfig{Checker: spfCk, Receiver: host,
//		Actions: map[auth.Status]postern.Action{auth.Fail: postern.Reject}})
//	dkimV, _ := auth.NewDKIMVerifier(auth.DKIMVerifyConfig{Resolver: res})
//	dmarcCk, _ := auth.NewDMARCChecker(auth.DMARCConfig{Resolver: res})
//	verify, _ := auth.NewVerifyFilter(auth.VerifyFilterConfig{AuthServID: host,
//		DKIM: dkimV, DMARC: dmarcCk, Mode: auth.DMARCEnforce})
//	iprev, _ := auth.NewIPRev(auth.IPRevConfig{Resolver: res})
//	// smtpserver.Config{ReverseDNS: iprev, ...};
//	// MAIL chain: spf. DATA chain: spf (Received-SPF), verify, scanners.
//
// A submission port (587, 465):
//
//	creds, _ := auth.NewCredentials(auth.CredentialsConfig{Path: "/etc/postern/passwd"})
//	go creds.Run(ctx)
//	senders, _ := auth.NewSenderMap(auth.SenderMapConfig{Path: "/etc/postern/senders"})
//	go senders.Run(ctx)
//	bind, _ := auth.NewSenderFilter(auth.SenderFilterConfig{Map: senders})
//	key, _ := auth.LoadPrivateKey("/etc/postern/dkim/example.com.s2026.pem")
//	signer, _ := auth.NewDKIMSigner(auth.DKIMSignConfig{Keys: []auth.DKIMKey{
//		{Domain: "example.com", Selector: "s2026", Signer: key}}})
//	sign, _ := auth.NewSignFilter(auth.SignFilterConfig{Signer: signer, Senders: senders})
//	// smtpserver.Config{Auth: creds, RequireAuth: true, ...};
//	// MAIL chain: bind. DATA chain: bind (From, Sender), ..., verify
//	// (removes forged fields), sign last.
package auth
