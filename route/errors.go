package route

import (
	"errors"
	"fmt"

	"github.com/postern/postern"
)

// Sentinel errors. Errors returned by the package wrap one of them.
var (
	// ErrSyntax is wrapped by every *ParseError of a mailertable or a
	// recipients file, and by a next-hop value that does not parse.
	ErrSyntax = errors.New("route: syntax error")
	// ErrConfig reports an invalid configuration.
	ErrConfig = errors.New("route: invalid configuration")
	// ErrBadAddress reports a recipient without a usable domain.
	ErrBadAddress = errors.New("route: bad recipient address")
	// ErrNoDomain reports a domain that does not exist (NXDOMAIN).
	ErrNoDomain = errors.New("route: no such domain")
	// ErrNullMX reports a domain that publishes a null MX (RFC 7505): it
	// accepts no mail.
	ErrNullMX = errors.New("route: domain accepts no mail (null MX)")
	// ErrNoAddress reports a destination with no usable address.
	ErrNoAddress = errors.New("route: no address for destination")
	// ErrDNS reports a DNS lookup that failed temporarily (SERVFAIL,
	// timeout, refused, garbled answer).
	ErrDNS = errors.New("route: DNS lookup failed")
	// ErrMailLoop reports a destination whose best mail exchanger is this
	// host (RFC 5321 §5.1).
	ErrMailLoop = errors.New("route: mail loops back to myself")
	// ErrClosed is returned by a Transport after Close.
	ErrClosed = errors.New("route: transport closed")
)

// ParseError is one bad line of a mailertable or recipients file. Its
// message names the file and line as compilers do: "mailertable:12: ...".
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Unwrap returns ErrSyntax.
func (e *ParseError) Unwrap() error { return ErrSyntax }

// Failure is a routing or delivery failure that carries the reply a
// delivery attempt reports for it: permanent (5xx) for a domain that does
// not exist or accepts no mail, temporary (4xx) for a DNS failure.
type Failure struct {
	Reply postern.Reply
	Err   error
}

func (f *Failure) Error() string { return f.Err.Error() }

// Unwrap returns the underlying error, which wraps one of the sentinels.
func (f *Failure) Unwrap() error { return f.Err }

// Temporary reports a 4xx failure.
func (f *Failure) Temporary() bool { return f.Reply.Temporary() }

func failure(code int, esc postern.EnhancedCode, text string, err error) *Failure {
	return &Failure{Reply: postern.NewReply(code, esc, text), Err: err}
}
