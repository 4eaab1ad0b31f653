// Package rspamd is a client of rspamd's HTTP protocol for Postern's
// content scanning: it implements scanner.Scanner
// (scan.Scanner is the same interface). It imports the standard library
// and Postern's scan/scanner only: no third-party module.
//
// # Protocol
//
// Scan posts the raw message to /checkv2 of a normal (or proxy) worker,
// with what is known of the transaction in request headers: From, Rcpt
// (one per recipient), IP, Helo, Hostname, Queue-Id, User, and Password
// when configured (the controller worker wants it). Text from the client
// has its control characters removed first. rspamd answers JSON:
//
//	{"is_skipped":false,"score":7.2,"required_score":15.0,
//	 "action":"add header","symbols":{"BAYES_SPAM":{"name":"BAYES_SPAM","score":5.1}}}
//
// The Result carries score, required_score (as Threshold), action and the
// symbols sorted by name; Spam is set for the actions "reject", "add
// header" and "rewrite subject" (greylist and soft reject are about the
// sender's behaviour). GTUBE is built into rspamd: it answers "reject"
// with the GTUBE symbol. Ping asks GET /ping.
//
// The rest of rspamd's answer comes along: messages.smtp_message as
// Result.Message (the text for a "greylist" or "soft reject"), the
// rewritten "subject", and the milter block's add_headers (a string,
// {"value", "order"} or a list of these per name; fields with an order
// first, by it, then the others as given, the object's order kept) and
// remove_headers (0 for all, n for the n-th, -n from the end), with a
// "dkim-signature" given outside the block added as DKIM-Signature.
// They are bounded: 32 fields to add of at most 16 KiB each and 64 KiB
// together, 32 removals, 512 bytes of message and subject; the rest is
// dropped. scan's filter checks each field before it applies it.
//
// # Servers, timeouts, sizes
//
// Config.Addrs lists workers, "host:port" or a Unix socket path, tried
// in order until one answers; the message is sent again to the next.
// Each attempt is bounded by DialTimeout, Timeout and the context, and
// connections are kept alive per server. Messages over MaxSize (20 MiB)
// are not sent: Scan fails with scanner.ErrTooLarge. Every failure is a
// *scanner.Error (scanner.ErrScanner) naming the adapter and the server
// ("rspamd: 127.0.0.1:11333: server error: HTTP 500 ..."); an HTTP error
// or an "error" member wraps ErrServer, a reply that is not /checkv2
// JSON ErrProtocol.
package rspamd
