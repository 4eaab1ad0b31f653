package scanner

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/postern/postern"
)

// Scanner is a content scanner: a virus scanner (clamd) or a spam scorer
// (spamd, rspamd). Implementations are safe for concurrent use.
//
// Scan reads the raw message from msg. If msg is also an io.Seeker, an
// implementation may seek back to the start to try another server after
// a failure. An error (wrapping ErrScanner, or ErrTooLarge) means no
// answer; a Result means the scanner answered.
type Scanner interface {
	Name() string
	Scan(ctx context.Context, msg io.Reader, env *Envelope) (Result, error)
}

// Envelope is what a scanner may be told besides the message: rspamd
// uses all of it, spamd only User. A nil *Envelope means nothing is known.
type Envelope struct {
	From     string // reverse path, "" for <>
	Rcpts    []string
	IP       netip.Addr // the client
	Helo     string
	Hostname string // the client's verified host name
	QueueID  string
	// User is the authenticated user, or the user whose preferences
	// spamd should load.
	User string
}

// EnvelopeOf builds an Envelope from a session. c and t may be nil.
func EnvelopeOf(c *postern.Conn, t *postern.Txn) *Envelope {
	env := &Envelope{}
	if c != nil {
		env.IP, env.Helo, env.Hostname, env.User = c.RemoteAddr(), c.HELO, c.ClientName, c.AuthUser
	}
	if t != nil {
		env.From, env.QueueID = t.From, t.ID
		for _, r := range t.Rcpts {
			env.Rcpts = append(env.Rcpts, r.Addr)
		}
	}
	return env
}

// Symbol is one rule a spam scorer matched.
type Symbol struct {
	Name        string
	Score       float64
	Description string
}

// Result is a scanner's answer. Results are values; do not modify their
// slices.
type Result struct {
	// Scanner is the Name of the scanner that answered.
	Scanner string
	// Server is the address of the server that answered.
	Server string

	// Infected and Viruses: a virus scanner found something.
	Infected bool
	Viruses  []string

	// Scored: a spam scorer answered; Score and Threshold are then set
	// (Threshold is the scorer's own spam threshold: spamd's required
	// score, rspamd's required_score).
	Scored    bool
	Spam      bool // the scorer's own verdict
	Score     float64
	Threshold float64
	// Action is rspamd's recommended action ("no action", "add header",
	// "rewrite subject", "greylist", "soft reject", "reject"); "" for
	// others.
	Action  string
	Symbols []Symbol

	// Message is the scorer's text for the client, if it gave one
	// (rspamd's messages.smtp_message): what a "greylist" or "soft
	// reject" is answered with. It is the scorer's words, not yet fit
	// for a reply: the filter sanitises it.
	Message string
	// Subject is the Subject the scorer wrote for the action "rewrite
	// subject" (rspamd's "subject"), "" otherwise.
	Subject string
	// AddHeaders are header fields the scorer asks to add (rspamd's
	// milter.add_headers: its DKIM signature, ARC set, X-Spamd-Result
	// ...), in the order it gave them; RemoveHeaders fields to remove
	// (milter.remove_headers). The adapter bounds their number and size;
	// the filter checks names and values before it applies them.
	AddHeaders    []HeaderField
	RemoveHeaders []HeaderRemoval
}

// HeaderField is a header field a scorer asks to add.
type HeaderField struct {
	Name, Value string
}

// HeaderRemoval names received header fields to remove: Index 0 means
// every field of the name, n > 0 the n-th (from 1), n < 0 the -n-th from
// the end (rspamd's and the milter protocol's counting).
type HeaderRemoval struct {
	Name  string
	Index int
}

// String describes the result for logs: "clamd: infected: Eicar-Test",
// "spamd: score 6.3/5 spam", "clamd: clean". The zero Result, which a
// failed scan returns beside its error, is "no result".
func (r Result) String() string {
	if r.Scanner == "" && !r.Infected && !r.Scored {
		return "no result"
	}
	var b strings.Builder
	b.WriteString(r.Scanner)
	switch {
	case r.Infected:
		b.WriteString(": infected: ")
		b.WriteString(strings.Join(r.Viruses, ", "))
	case r.Scored:
		fmt.Fprintf(&b, ": score %s/%s", FormatScore(r.Score), FormatScore(r.Threshold))
		if r.Spam {
			b.WriteString(" spam")
		}
		if r.Action != "" {
			b.WriteString(" action=" + r.Action)
		}
		if len(r.Symbols) > 0 {
			b.WriteString(" symbols=")
			b.WriteString(r.SymbolNames())
		}
	default:
		b.WriteString(": clean")
	}
	return b.String()
}

// SymbolNames joins the symbol names with commas.
func (r Result) SymbolNames() string {
	names := make([]string, len(r.Symbols))
	for i, s := range r.Symbols {
		names[i] = s.Name
	}
	return strings.Join(names, ",")
}

// FormatScore formats a score with one decimal, as SpamAssassin does.
func FormatScore(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// Func makes a Scanner of a function: for a scanner of one's own, or a
// canned answer in a test.
func Func(name string, f func(ctx context.Context, msg io.Reader, env *Envelope) (Result, error)) Scanner {
	return scannerFunc{name, f}
}

type scannerFunc struct {
	name string
	f    func(context.Context, io.Reader, *Envelope) (Result, error)
}

func (s scannerFunc) Name() string { return s.name }

func (s scannerFunc) Scan(ctx context.Context, msg io.Reader, env *Envelope) (Result, error) {
	return s.f(ctx, msg, env)
}
