// Package clamav is a client of ClamAV's daemon, clamd, for Postern's
// content scanning: it implements scanner.Scanner
// (scan.Scanner is the same interface). It imports the standard library
// and Postern's scan/scanner only: no third-party module.
//
// # Protocol
//
// Scan sends the raw message with zINSTREAM (clamd(8)): the command
// "zINSTREAM\0", then chunks each preceded by its length in four bytes,
// network byte order, then a zero length. clamd answers one
// NUL-terminated line: "stream: OK", "stream: NAME FOUND", or an error
// such as "INSTREAM size limit exceeded. ERROR" (StreamMaxLength in
// clamd.conf). Ping sends zPING (answer PONG) and Version zVERSION.
// Nothing but the message travels: clamd needs no access to the spool.
//
// # Servers, timeouts, sizes
//
// Config.Addrs lists servers, "host:port" for a TCPSocket or a path for
// a LocalSocket, tried in order: a server that cannot be reached is
// skipped, and so is one that fails in the middle of a scan when the
// message reader can seek back (postern.Message.NewReader can). Each
// attempt is bounded by DialTimeout and Timeout and by the context.
// Messages over MaxSize (25 MiB, clamd's default StreamMaxLength) are not
// sent: Scan fails with scanner.ErrTooLarge.
//
// Every failure is a *scanner.Error (scanner.ErrScanner) whose text
// names the adapter and the server once:
//
//	clamav: 127.0.0.1:3310: server error: "Can't allocate memory"
//
// a garbled, truncated or endless answer wraps ErrProtocol as well, an
// "ERROR" answer ErrServer. What a failure means for the message is the
// filter's failure policy (virus scanning fails closed by default: 451
// 4.7.1).
//
// # Example
//
//	c, err := clamav.New(clamav.Config{Addrs: []string{"/run/clamav/clamd.ctl"}})
//	...
//	f, err := scan.NewFilter(scan.FilterConfig{
//		Virus: []scan.ScannerEntry{{Scanner: c}},
//	})
package clamav
