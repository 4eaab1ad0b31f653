package scan

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/postern/postern/scan/scanner"
)

// Sentinel errors. Every error of the package wraps one of them.
var (
	// ErrLimit is wrapped by every *LimitError: the message exceeds one of
	// the walker's limits and was not (fully) parsed.
	ErrLimit = errors.New("scan: limit exceeded")
	// ErrMalformed is wrapped when a message cannot be parsed at all.
	ErrMalformed = errors.New("scan: malformed message")
	// ErrConfig is wrapped by constructors for an invalid configuration
	// (it is scanner.ErrConfig).
	ErrConfig = scanner.ErrConfig
	// ErrScanner is what a scanner's failure is (errors.Is): the scanner
	// could not give an answer (it is scanner.ErrScanner; see
	// scanner.Error).
	ErrScanner = scanner.ErrScanner
	// ErrTooLarge is wrapped by scanner adapters for a message larger than
	// their size cap; the message was not scanned (it is
	// scanner.ErrTooLarge).
	ErrTooLarge = scanner.ErrTooLarge
	// ErrSyntax is wrapped by every *ParseError of a policy file.
	ErrSyntax = errors.New("scan: syntax error")
)

// Limit names one of the walker's limits.
type Limit string

// The limits, as named in LimitError and in logs.
const (
	LimitDepth          Limit = "depth"           // MIME nesting depth
	LimitParts          Limit = "parts"           // number of MIME parts
	LimitHeaderSize     Limit = "header-size"     // bytes of one header block
	LimitLineLength     Limit = "line-length"     // one header (or preamble) line
	LimitBoundaryLength Limit = "boundary-length" // a multipart boundary
	LimitSize           Limit = "size"            // the raw message
	LimitDecodedSize    Limit = "decoded-size"    // all decoded content together
	LimitTime           Limit = "time"            // wall-clock time of one walk
)

var limitText = map[Limit]string{
	LimitDepth:          "MIME nesting too deep",
	LimitParts:          "too many MIME parts",
	LimitHeaderSize:     "MIME header too large",
	LimitLineLength:     "MIME header line too long",
	LimitBoundaryLength: "MIME boundary too long",
	LimitSize:           "message too large to scan",
	LimitDecodedSize:    "decoded content too large to scan",
	LimitTime:           "message too complex to scan in time",
}

// Describe returns a short English description, as used in SMTP replies.
func (l Limit) Describe() string {
	if t, ok := limitText[l]; ok {
		return t
	}
	return string(l) + " limit exceeded"
}

// LimitError says which limit a message exceeded. errors.Is(err, ErrLimit)
// holds for it.
type LimitError struct {
	Limit Limit
	// Max is the limit in force: a count, bytes, or milliseconds for
	// LimitTime.
	Max int64
	// Part is the ID of the part where the limit was noticed, "" when it
	// concerns the whole message.
	Part string
}

func (e *LimitError) Error() string {
	s := "scan: limit exceeded: " + e.Limit.Describe() + " (" + string(e.Limit) + " limit " + strconv.FormatInt(e.Max, 10)
	if e.Limit == LimitTime {
		s += " ms"
	}
	s += ")"
	if e.Part != "" {
		s += " at part " + e.Part
	}
	return s
}

// Is reports whether target is ErrLimit.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// ParseError is an error in a policy file. Error() reads "file:line: msg".
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Unwrap returns ErrSyntax.
func (e *ParseError) Unwrap() error { return ErrSyntax }
