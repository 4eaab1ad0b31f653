// Package spamd is a client of SpamAssassin's daemon, spamd, for
// Postern's content scanning: it implements scanner.Scanner
// (scan.Scanner is the same interface). It imports the standard library
// and Postern's scan/scanner only: no third-party module.
//
// # Protocol
//
// spamd speaks a line protocol modelled on HTTP (spamd's PROTOCOL file):
//
//	SYMBOLS SPAMC/1.5
//	Content-length: 1234
//	User: alice            (optional: whose preferences to use)
//
//	<the message>
//
// and answers
//
//	SPAMD/1.1 0 EX_OK
//	Content-length: 24
//	Spam: True ; 1003.3 / 5.0
//
//	GTUBE,MISSING_DATE,...
//
// Config.Command picks SYMBOLS (the default: verdict, score, threshold
// and rule names), REPORT (the same and the report, from whose table each
// rule's score and description are taken) or CHECK (verdict and score
// only). A non-zero response code (EX_USAGE, EX_TEMPFAIL, …) is an error
// wrapping ErrServer; anything that is not the protocol wraps
// ErrProtocol. Ping sends PING and wants PONG.
//
// # Servers, timeouts, sizes
//
// Config.Addrs lists servers, "host:port" or a Unix socket path, tried in
// order until one answers; the message is sent again to the next one.
// Each attempt is bounded by DialTimeout, Timeout and the context.
// Messages over MaxSize (512 KiB by default, as spamc) are not sent: Scan
// fails with scanner.ErrTooLarge, which the filter treats as "not scored"
// rather than as a failure. Every failure is a *scanner.Error
// (scanner.ErrScanner) naming the adapter and the server ("spamd:
// 127.0.0.1:783: server error: 75 EX_TEMPFAIL"); spam scoring fails
// open by default.
//
// # Rules offline
//
// Debian's spamassassin package ships its rules in
// /usr/share/spamassassin, so spamd works without sa-update (which needs
// the network); sa-update's rules, when present under
// /var/lib/spamassassin, take precedence. See scan/scantest for a spamd
// started that way.
package spamd
