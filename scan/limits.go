package scan

import (
	"cmp"
	"fmt"
	"time"
)

// Defaults of Limits.
const (
	DefaultMaxDepth        = 32
	DefaultMaxParts        = 1000
	DefaultMaxHeaderBytes  = 256 << 10
	DefaultMaxLineLength   = 64 << 10
	DefaultMaxSize         = 64 << 20
	DefaultMaxDecodedBytes = 128 << 20
	DefaultMaxTextBytes    = 1 << 20
	DefaultTimeout         = 10 * time.Second
	DefaultMaxURLs         = 1000
)

// maxBoundary bounds a multipart boundary. RFC 2046 §5.1.1 allows 70
// characters; enmime peeks a boundary's length through a 4 KiB buffer and
// stops making progress past it, so a longer one is refused.
const maxBoundary = 1000

// Limits bound the work of one walk. Each zero field means its default;
// a negative one is a configuration error.
type Limits struct {
	// MaxDepth bounds MIME nesting: the top-level entity is at depth 0, a
	// part of a multipart at its parent's depth plus one, and a
	// message/rfc822 attachment's message one deeper than the attachment.
	// Default 32.
	MaxDepth int
	// MaxParts bounds the number of entities, containers included.
	// Default 1000.
	MaxParts int
	// MaxHeaderBytes bounds one header block (of the message or of a
	// part). Default 256 KiB.
	MaxHeaderBytes int
	// MaxLineLength bounds one header line, and one line of a multipart
	// preamble (which the parser reads whole). Default 64 KiB.
	MaxLineLength int
	// MaxSize bounds the raw message. Default 64 MiB.
	MaxSize int64
	// MaxDecodedBytes bounds the decoded content of all parts together,
	// attached messages counted once more for their own walk. Default
	// 128 MiB.
	MaxDecodedBytes int64
	// MaxTextBytes bounds the text kept per text part for keyword rules
	// and URL extraction; the rest is hashed but not searched. Default
	// 1 MiB.
	MaxTextBytes int
	// MaxURLs bounds the distinct URLs collected per message. Default 1000.
	MaxURLs int
	// Timeout bounds the wall-clock time of one walk. Default 10 s.
	Timeout time.Duration
}

func (l Limits) withDefaults() (Limits, error) {
	if l.MaxDepth < 0 || l.MaxParts < 0 || l.MaxHeaderBytes < 0 || l.MaxLineLength < 0 ||
		l.MaxSize < 0 || l.MaxDecodedBytes < 0 || l.MaxTextBytes < 0 || l.MaxURLs < 0 || l.Timeout < 0 {
		return l, fmt.Errorf("%w: negative limit in %+v", ErrConfig, l)
	}
	l.MaxDepth = cmp.Or(l.MaxDepth, DefaultMaxDepth)
	l.MaxParts = cmp.Or(l.MaxParts, DefaultMaxParts)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	l.MaxLineLength = cmp.Or(l.MaxLineLength, DefaultMaxLineLength)
	l.MaxTextBytes = cmp.Or(l.MaxTextBytes, DefaultMaxTextBytes)
	l.MaxURLs = cmp.Or(l.MaxURLs, DefaultMaxURLs)
	l.MaxSize = cmp.Or(l.MaxSize, DefaultMaxSize)
	l.MaxDecodedBytes = cmp.Or(l.MaxDecodedBytes, DefaultMaxDecodedBytes)
	l.Timeout = cmp.Or(l.Timeout, DefaultTimeout)
	return l, nil
}
