package scanner

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// Sentinel errors. Package scan re-exports them under the same names.
var (
	// ErrScanner is what every *Error is (errors.Is): a scanner could not
	// give an answer. It was unreachable, timed out, closed the
	// connection, answered with an error or with something that is not
	// its protocol.
	ErrScanner = errors.New("scan: scanner failed")
	// ErrTooLarge is wrapped by adapters for a message larger than their
	// size cap (or the server's); the message was not scanned.
	ErrTooLarge = errors.New("message too large for the scanner")
	// ErrConfig is wrapped by SplitAddr for an address it cannot read.
	ErrConfig = errors.New("scan: invalid configuration")
)

// Error is a scanner's failure to answer. Its text names the adapter
// (Scanner) and the server (Server) once, then says what went wrong:
//
//	clamav: 127.0.0.1:3310: server error: "Can't allocate memory"
//
// When several servers were tried, Server is empty and Err holds one
// *Error per server, in the order tried:
//
//	clamav: 127.0.0.1:3310: dial: connect: connection refused; /run/clamav/clamd.ctl: read: i/o timeout
//
// errors.Is(err, ErrScanner) holds for every *Error; errors.Is and
// errors.As see the causes too (ErrTooLarge, an adapter's ErrProtocol, a
// *net.OpError).
type Error struct {
	// Scanner is the adapter's Name ("clamav"); empty for the failure of
	// one server inside a list.
	Scanner string
	// Server is the address of the server that failed, as configured;
	// empty when the failure is no one server's (the message was too
	// large or could not be read) or several servers failed.
	Server string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	for _, s := range []string{e.Scanner, e.Server} {
		if s != "" {
			b.WriteString(s)
			b.WriteString(": ")
		}
	}
	if e.Err == nil {
		b.WriteString("failed")
		return b.String()
	}
	if e.Server == "" {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(withoutAddress(e.Err))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is ErrScanner.
func (e *Error) Is(target error) bool { return target == ErrScanner }

// ServerError is the failure err of the server at addr, an element of
// the list Failed takes.
func ServerError(addr string, err error) error { return &Error{Server: addr, Err: err} }

// Failed is the error of the scanner name that gave no answer: errs are
// the failures in the order tried, each a ServerError, or a failure that
// is no server's (the message could not be read, or is too large). nil
// elements are skipped.
func Failed(name string, errs ...error) error {
	var list failures
	for _, err := range errs {
		if err != nil {
			list = append(list, err)
		}
	}
	switch len(list) {
	case 0:
		return &Error{Scanner: name}
	case 1:
		var e *Error
		if errors.As(list[0], &e) && e == list[0] {
			switch e.Scanner {
			case "":
				return &Error{Scanner: name, Server: e.Server, Err: e.Err}
			case name:
				return e // already says it all
			}
		}
		return &Error{Scanner: name, Err: list[0]}
	}
	return &Error{Scanner: name, Err: list}
}

// failures is the list of servers' failures of one scan.
type failures []error

func (f failures) Error() string {
	parts := make([]string, len(f))
	for i, err := range f {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (f failures) Unwrap() []error { return f }

// withoutAddress is err's text without what the Error already says: the
// request a URL error repeats, and the addresses of a network error
// ("dial tcp 127.0.0.1:3310: connect: connection refused" reads "dial:
// connect: connection refused").
func withoutAddress(err error) string {
	s := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		s = strings.Replace(s, ue.Error(), ue.Err.Error(), 1)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		s = strings.Replace(s, oe.Error(), oe.Op+": "+oe.Err.Error(), 1)
	}
	return s
}
