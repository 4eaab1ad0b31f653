// Package scanner is the contract between Postern's content filter and
// the programs that look at a message for it: virus scanners (clamd) and
// spam scorers (spamd, rspamd). It holds the Scanner interface, the
// Envelope a scanner may be told, the Result it answers, the errors of a
// scanner that gave no answer, and the helpers the adapters share
// (SplitAddr, Dial, SizedBody, Failover).
//
// It imports only the standard library and the root package, so an
// adapter built on it (scan/clamav, scan/spamd, scan/rspamd, or one of
// your own) brings no third-party module to a program that uses it: not
// enmime, which the scan package's MIME walker needs. Package scan
// re-exports these names as aliases (scan.Scanner is scanner.Scanner), so
// a filter configuration written against scan keeps working.
//
// # Errors
//
// A scan that got no answer returns an *Error, which errors.Is reports as
// ErrScanner. Its text names the adapter and the server once, followed by
// what went wrong there:
//
//	clamav: 127.0.0.1:3310: server error: "Can't allocate memory"
//	spamd: /run/spamd.sock: dial: connect: no such file or directory; 10.0.0.2:783: read: i/o timeout
//	rspamd: message too large: 25165824 bytes, over 20971520
//
// (the address a network error repeats is left out). A message over an
// adapter's size cap wraps ErrTooLarge as well.
//
// # Writing an adapter
//
// An adapter takes its server addresses as SplitAddr reads them, connects
// with Dial (one deadline for the whole exchange, a cancelled context
// unblocks it), and tries its servers in order with Failover, which
// rewinds the message between tries; for a protocol that sends the length
// first, SizedBody gives a re-readable body and its size. Its own errors
// (a protocol error, a server's error answer) are plain sentinels without
// the adapter's name: Failover and Failed add it, with the server.
package scanner
