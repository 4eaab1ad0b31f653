// Package clamav is a client of ClamAV's daemon, clamd, for Postern's
// content scanning: it implements scan.Scanner.
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
// sent: Scan fails with scan.ErrTooLarge.
//
// Every failure wraps scan.ErrScanner; a garbled, truncated or endless
// answer wraps ErrProtocol as well, an "ERROR" answer ErrServer. What a
// failure means for the message is the filter's failure policy (virus
// scanning fails closed by default: 451 4.7.1).
//
// # Example
//
//	c, err := clamav.New(clamav.Config{Addrs: []string{"/run/clamav/clamd.ctl"}})
//	...
//	f, err := scan.NewFilter(scan.FilterConfig{
//		Virus: []scan.ScannerEntry{{Scanner: c}},
//	})
package clamav
