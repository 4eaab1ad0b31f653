package access

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/postern/postern"
)

// ErrSyntax is wrapped by every parse error; errors.As finds a *ParseError
// with the file and line.
var ErrSyntax = errors.New("access: syntax error")

// ErrConfig is returned (wrapped) by the constructors for an invalid
// configuration.
var ErrConfig = errors.New("access: invalid configuration")

// ParseError is one error in an access file. Error() reads
// "file:line: message", the form editors and grep understand.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Unwrap returns ErrSyntax.
func (e *ParseError) Unwrap() error { return ErrSyntax }

// Warning is an entry that parses but probably does not do what its author
// meant, or that Postern ignores. Warnings never stop a load.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Action is what an entry's value says.
type Action uint8

const (
	// ActionNone is the zero value: no entry, or an entry under a tag Postern
	// does not interpret whose value is neither an action nor a number.
	ActionNone Action = iota
	// ActionOK accepts even if later checks of the same stage would refuse;
	// unlike RELAY it never permits relaying (cf/README).
	ActionOK
	// ActionRelay is OK plus permission to relay: to a To: domain, or for a
	// Connect: client.
	ActionRelay
	// ActionReject refuses with the stage's default 5xx reply.
	ActionReject
	// ActionDiscard accepts and silently drops the whole message.
	ActionDiscard
	// ActionSkip ends the current search as if nothing had matched.
	ActionSkip
	// ActionError refuses with Entry.Reply (ERROR:... or a legacy "550 text").
	ActionError
	// ActionQuarantine accepts and holds the message; Entry.Reason says why.
	ActionQuarantine
	// ActionValue is a number (GreetPause:, ClientRate:, ClientConn:) held in
	// Entry.Number.
	ActionValue
)

// String returns the keyword as written in access files.
func (a Action) String() string {
	switch a {
	case ActionNone:
		return "NONE"
	case ActionOK:
		return "OK"
	case ActionRelay:
		return "RELAY"
	case ActionReject:
		return "REJECT"
	case ActionDiscard:
		return "DISCARD"
	case ActionSkip:
		return "SKIP"
	case ActionError:
		return "ERROR"
	case ActionQuarantine:
		return "QUARANTINE"
	case ActionValue:
		return "VALUE"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// The tags Postern interprets, as written in sendmail's cf/README.
const (
	TagConnect    = "Connect"
	TagFrom       = "From"
	TagTo         = "To"
	TagGreetPause = "GreetPause"
	TagClientRate = "ClientRate"
	TagClientConn = "ClientConn"
	// TagAuthInfo entries are the credentials of the delivery side's
	// SMTP AUTH (sendmail's authinfo): kept as written, their value in
	// Entry.Raw, for route.ParseAuthInfo.
	TagAuthInfo = "AuthInfo"
)

// Entry is one line of an access file. Entries returned by a Map share
// memory with it (Reply.Lines): treat them as read-only.
type Entry struct {
	// Tag is the canonical tag without its colon ("Connect", "To", ...),
	// "" for an untagged key, or an unknown tag as written.
	Tag string
	// Key is the key as written, without the tag.
	Key    string
	Action Action
	// Reply is set for ActionError.
	Reply postern.Reply
	// Reason is set for ActionQuarantine.
	Reason string
	// Number is set for ActionValue (milliseconds for GreetPause:).
	Number int64
	File   string
	Line   int
	// Raw is the value as written (the right-hand side, trimmed).
	Raw string
}

// Source returns "file:line".
func (e Entry) Source() string { return e.File + ":" + strconv.Itoa(e.Line) }

// String returns the entry as written plus its source, e.g.
// "To:nix.co.jj RELAY (access:2)"; verdict reasons use it so a dry run can
// say which line decided.
func (e Entry) String() string {
	var b strings.Builder
	if e.Tag != "" {
		b.WriteString(e.Tag)
		b.WriteByte(':')
	}
	b.WriteString(e.Key)
	b.WriteByte(' ')
	b.WriteString(e.Raw)
	b.WriteString(" (")
	b.WriteString(e.Source())
	b.WriteByte(')')
	return b.String()
}

// keyKind says how a key is matched.
type keyKind uint8

const (
	kindName    keyKind = iota // host/domain name, address, user@, <>: exact string
	kindNet                    // bare IP network: 192.168.1, IPv6:2001:db8, 10.0.0.0/8
	kindLiteral                // bracketed: [192.168.1.1], [IPv6:::1], [10.1.2]
)

// netTable holds network keys; lens lists the prefix lengths present,
// longest first, so a lookup probes only lengths that exist.
type netTable struct {
	m     map[netip.Prefix]int32
	lens4 []int
	lens6 []int
}

func (n *netTable) add(p netip.Prefix, idx int32) bool {
	if n.m == nil {
		n.m = make(map[netip.Prefix]int32)
	}
	if _, dup := n.m[p]; dup {
		return false
	}
	n.m[p] = idx
	lens := &n.lens6
	if p.Addr().Is4() {
		lens = &n.lens4
	}
	for _, l := range *lens {
		if l == p.Bits() {
			return true
		}
	}
	*lens = append(*lens, p.Bits())
	// keep longest first
	for i := len(*lens) - 1; i > 0 && (*lens)[i] > (*lens)[i-1]; i-- {
		(*lens)[i], (*lens)[i-1] = (*lens)[i-1], (*lens)[i]
	}
	return true
}

// table holds the entries of one tag.
type table struct {
	names map[string]int32
	nets  netTable
	lits  netTable
}

// Map is a parsed access file. It is immutable and safe for concurrent use.
type Map struct {
	file    string
	entries []Entry
	tables  map[string]*table // by lower-case tag; "" is untagged
}

// Len returns the number of entries (duplicates excluded).
func (m *Map) Len() int {
	if m == nil {
		return 0
	}
	return len(m.entries)
}

// File returns the file name given to Parse or Load.
func (m *Map) File() string {
	if m == nil {
		return ""
	}
	return m.file
}

// Entries returns a copy of the entries in file order (duplicates excluded).
func (m *Map) Entries() []Entry {
	if m == nil {
		return nil
	}
	return append([]Entry(nil), m.entries...)
}

// Current returns m, so a *Map is a MapSource that never changes.
func (m *Map) Current() *Map { return m }

// MapSource supplies the map in force; *Map and *Watcher implement it.
type MapSource interface {
	Current() *Map
}
