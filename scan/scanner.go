package scan

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// The scanner contract lives in package scan/scanner, which needs no
// third-party module, so that the adapters (scan/clamav, scan/spamd,
// scan/rspamd) do not bring enmime along. These aliases keep it usable
// under the names of this package.

// Scanner is a content scanner: a virus scanner (clamd) or a spam scorer
// (spamd, rspamd); see scanner.Scanner.
type Scanner = scanner.Scanner

// Envelope is what a scanner may be told besides the message; see
// scanner.Envelope.
type Envelope = scanner.Envelope

// Symbol is one rule a spam scorer matched.
type Symbol = scanner.Symbol

// Result is a scanner's answer; see scanner.Result.
type Result = scanner.Result

// DialFunc dials a server; net.Dialer.DialContext is one.
type DialFunc = scanner.DialFunc

// EnvelopeOf builds an Envelope from a session. c and t may be nil.
func EnvelopeOf(c *postern.Conn, t *postern.Txn) *Envelope { return scanner.EnvelopeOf(c, t) }

// FormatScore formats a score with one decimal, as SpamAssassin does.
func FormatScore(f float64) string { return scanner.FormatScore(f) }

// ScannerFunc makes a Scanner of a function: for a scanner of one's own,
// or a canned answer in a test.
func ScannerFunc(name string, f func(ctx context.Context, msg io.Reader, env *Envelope) (Result, error)) Scanner {
	return scanner.Func(name, f)
}

// SplitAddr tells the network of a scanner address; see
// scanner.SplitAddr.
func SplitAddr(addr string) (network, address string, err error) { return scanner.SplitAddr(addr) }

// Dial connects to a scanner with one deadline for the whole exchange;
// see scanner.Dial.
func Dial(ctx context.Context, dial DialFunc, network, address string, dialTimeout, timeout time.Duration) (conn net.Conn, close func(), err error) {
	return scanner.Dial(ctx, dial, network, address, dialTimeout, timeout)
}

// SizedBody returns msg as a re-readable body and its size; see
// scanner.SizedBody.
func SizedBody(msg io.Reader, max int64) (io.ReadSeeker, int64, error) {
	return scanner.SizedBody(msg, max)
}

// Failover asks the servers in order until one answers; see
// scanner.Failover.
func Failover(ctx context.Context, log *slog.Logger, name string, addrs []string, body io.Seeker,
	try func(i int) (Result, error)) (Result, error) {
	return scanner.Failover(ctx, log, name, addrs, body, try)
}

// describe says what failed for a verdict's reason. An adapter's error
// names the scanner already (scanner.Error); any other gets the name put
// before it.
func (e ScannerError) describe() string {
	var se *scanner.Error
	if errors.As(e.Err, &se) && se.Scanner != "" {
		return e.Err.Error()
	}
	return e.Scanner + ": " + e.Err.Error()
}
