// Package postern is the shared vocabulary of the Postern mail-filtering
// toolkit: SMTP replies, policy verdicts, the connection and transaction a
// filter looks at, the spooled message, the stage interfaces and the Chain
// that runs filters in order.
//
// It imports only the standard library, so a custom MTA can use any Postern
// component (access maps, DNSBL, rate limits, scanners) without the SMTP
// server in package smtpserver.
//
// # Replies (RFC 5321 §4.2, RFC 3463, RFC 2034)
//
// A Reply is a code, an enhanced status code and text lines. It implements
// error; ParseReply reads multi-line replies from a remote server. Only the
// server edge turns replies into bytes on the wire.
//
// # Addresses (RFC 5321 §4.1.2)
//
// An envelope address has a canonical form, what Txn.From and Rcpt.Addr
// hold and every lookup is given: the local part unquoted (as go-smtp hands
// it over), "@", the domain in lower case without a trailing dot. It has a
// wire form, what every client writes in MAIL FROM, RCPT TO and a DSN: the
// local part quoted when it is not a Dot-string. SplitAddress reads the
// first, ParseMailbox the second, into an Address whose String and Wire
// give them back; WireAddr turns a canonical string into its wire form.
// With one spelling for lookups and one for the wire, `"ceo(x)"@example.org`
// is judged and delivered as the mailbox ceo(x), never as ceo.
//
// # Verdicts and filters
//
// A filter is any value with a Name that implements one or more of
// ConnectChecker, HeloChecker, MailChecker, RcptChecker and DataChecker.
// Each returns a Verdict (Continue, Accept, Reject, TempFail, Discard,
// Quarantine) or an error meaning "could not decide". Filters are shared by
// all sessions; they keep no per-session state except through the Conn,
// Txn and Rcpt they are given, whose Values bags carry typed results from one
// filter to the next.
//
// A Chain runs its entries in order; the first verdict that is not Continue
// ends the stage. Per entry, an ErrorPolicy decides what a filter's error
// means (a temporary failure by default, see below), a Timeout bounds the
// call and a Skip predicate leaves it out. Panics are recovered and treated
// as errors. An Observer sees every decision.
//
//	chain, err := postern.NewChain(postern.ChainConfig{
//		Name: "inbound",
//		Entries: []postern.Entry{
//			{Filter: relayControl},
//			{Filter: dnsblFilter, OnError: postern.OnErrorAccept, Timeout: 5 * time.Second},
//		},
//	})
//
// # When a dependency fails
//
// ErrorPolicy is the one answer, in every component, to "what if the thing
// I ask cannot answer": a DNS list, a virus scanner, the rate-limit store,
// the next hop of a call-ahead, a filter of a Chain. Its words are those of
// Postfix's milter_default_action:
//
//	tempfail  451 (421 at connect): the client retries; fail closed
//	accept    log it and go on as if nothing was found; fail open
//	reject    550 (554 at connect and DATA): the client gives up
//
// The zero value, OnErrorDefault, is each component's documented default:
//
//	Entry.OnError (a Chain)              tempfail  451 4.3.0
//	scan.ScannerEntry.OnError, virus     tempfail  451 4.7.1
//	route.VerifierConfig.OnError         tempfail  the next hop's 4xx
//	dnsbl.Zone.OnError                   accept    (tempfail: 451 4.7.1)
//	scan.ScannerEntry.OnError, spam      accept    (tempfail: 451 4.7.1)
//	ratelimit's OnError (filter, guard,  accept    (tempfail: 451 4.3.0,
//	AUTH limiter)                                  454 4.3.0 for AUTH)
//	auth.VerifyFilterConfig.OnTempError  accept    (tempfail: 451 4.7.1)
//
// ErrorPolicy.Verdict builds the answer, so the replies of every component
// have one shape; MarshalText and UnmarshalText read and write the words,
// so a configuration can hold an ErrorPolicy directly.
//
// # Clients
//
// A Conn describes the client. Its host name comes from forward-confirmed
// reverse DNS, made before the connect stage by the server (smtpserver with
// auth.IPRev): ClientResolve is the outcome in sendmail's terms (OK, FAIL,
// FORGED, TEMP; ResolveNone when no lookup was made), ClientName the
// verified name (OK only: the one policy may match), ClientPTR the name
// the PTR record claimed, for logs. SetClientHost records a ClientHost.
//
// # Messages
//
// A Message wraps the spooled bytes (an io.ReaderAt, so DKIM can verify what
// arrived byte for byte). Filters record header additions and deletions;
// Render writes the final message once.
package postern
