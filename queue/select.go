package queue

import (
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
)

// Phase is where a queued message stands, as mailq shows it: being
// delivered (mailq's '*'), held ('!'), waiting for a retry after a
// temporary failure, or not tried yet.
type Phase string

// The phases of a message.
const (
	// PhaseNew: queued and not tried yet (Postfix's incoming queue).
	PhaseNew Phase = "new"
	// PhaseActive: a delivery attempt (or an administrator's change) is
	// under way.
	PhaseActive Phase = "active"
	// PhaseDeferred: tried, and waiting for the next attempt.
	PhaseDeferred Phase = "deferred"
	// PhaseHeld: in the hold area until released.
	PhaseHeld Phase = "held"
)

// ParsePhase reads a phase name as the admin commands take it ("hold"
// and "incoming" are accepted for held and new, as Postfix names them).
func ParsePhase(s string) (Phase, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "new", "incoming":
		return PhaseNew, true
	case "active":
		return PhaseActive, true
	case "deferred":
		return PhaseDeferred, true
	case "held", "hold":
		return PhaseHeld, true
	}
	return "", false
}

// Phase returns where the message stands.
func (i *Info) Phase() Phase {
	return phaseOf(i.Active, &i.State)
}

func phaseOf(busy bool, st *State) Phase {
	switch {
	case st.Hold != "":
		return PhaseHeld
	case busy:
		return PhaseActive
	case st.Attempts > 0:
		return PhaseDeferred
	}
	return PhaseNew
}

// Deleted is the status of a recipient an administrator removed from a
// message (DeleteRecipients): it gets no delivery and no notice. The
// envelope keeps the address; the state says it is gone.
const Deleted RcptStatus = "deleted"

// ReplyPattern matches the last reply a recipient got, as an
// administrator selects stuck mail: by reply code ("450", or "4xx" with
// x for any digit), by enhanced status code ("5.1.1", "4.2.x"), or by a
// piece of the reply ("User unknown"), matched case-insensitively
// against the whole reply as logged ("450 4.1.1 <bob@example.org>: User
// unknown"). The zero value matches nothing.
type ReplyPattern struct {
	kind replyKind
	// code and esc hold digits, or -1 for a wildcard position.
	code [3]int
	esc  [3]int
	text string
}

type replyKind uint8

const (
	replyNone replyKind = iota
	replyCode
	replyESC
	replyText
)

// ParseReplyPattern reads a pattern. Anything that is not a reply code
// or an enhanced status code (with x wildcards) is text; surrounding
// spaces are ignored, and an empty pattern matches nothing.
func ParseReplyPattern(s string) ReplyPattern {
	s = strings.TrimSpace(s)
	if s == "" {
		return ReplyPattern{}
	}
	if p, ok := parseCodePattern(s); ok {
		return p
	}
	if p, ok := parseESCPattern(s); ok {
		return p
	}
	return ReplyPattern{kind: replyText, text: strings.ToLower(s)}
}

// parseCodePattern reads "450", "45x", "4xx" (RFC 5321 §4.2: the first
// digit 2 to 5).
func parseCodePattern(s string) (ReplyPattern, bool) {
	if len(s) != 3 || s[0] < '2' || s[0] > '5' {
		return ReplyPattern{}, false
	}
	p := ReplyPattern{kind: replyCode}
	for i := range 3 {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			p.code[i] = int(c - '0')
		case c == 'x' || c == 'X':
			p.code[i] = -1
		default:
			return ReplyPattern{}, false
		}
	}
	if p.code[0] < 0 {
		return ReplyPattern{}, false
	}
	return p, true
}

// parseESCPattern reads "5.1.1" or "4.7.x" (RFC 3463: class 2, 4 or 5,
// subject and detail of 1 to 3 digits).
func parseESCPattern(s string) (ReplyPattern, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ReplyPattern{}, false
	}
	p := ReplyPattern{kind: replyESC}
	for i, part := range parts {
		if part == "x" || part == "X" {
			if i == 0 {
				return ReplyPattern{}, false
			}
			p.esc[i] = -1
			continue
		}
		if len(part) == 0 || len(part) > 3 || strings.Trim(part, "0123456789") != "" {
			return ReplyPattern{}, false
		}
		p.esc[i], _ = strconv.Atoi(part)
	}
	if c := p.esc[0]; c != 2 && c != 4 && c != 5 {
		return ReplyPattern{}, false
	}
	return p, true
}

// IsZero reports whether p is the empty pattern.
func (p ReplyPattern) IsZero() bool { return p.kind == replyNone }

// Match reports whether r matches. A recipient never tried has no reply
// (code 0) and matches no pattern.
func (p ReplyPattern) Match(r postern.Reply) bool {
	if r.Code == 0 {
		return false
	}
	switch p.kind {
	case replyCode:
		digits := [3]int{r.Code / 100, r.Code / 10 % 10, r.Code % 10}
		return r.Code >= 100 && r.Code < 1000 && wildEqual(p.code, digits)
	case replyESC:
		return !r.Enhanced.IsZero() && wildEqual(p.esc, [3]int(r.Enhanced))
	case replyText:
		return strings.Contains(strings.ToLower(r.Error()), p.text)
	}
	return false
}

func wildEqual(pat, v [3]int) bool {
	for i := range 3 {
		if pat[i] >= 0 && pat[i] != v[i] {
			return false
		}
	}
	return true
}

// String says what p matches, for a dry run's heading.
func (p ReplyPattern) String() string {
	wild := func(v [3]int, sep string) string {
		parts := make([]string, 3)
		for i, n := range v {
			parts[i] = "x"
			if n >= 0 {
				parts[i] = strconv.Itoa(n)
			}
		}
		return strings.Join(parts, sep)
	}
	switch p.kind {
	case replyCode:
		return "reply code " + wild(p.code, "")
	case replyESC:
		return "enhanced status code " + wild(p.esc, ".")
	case replyText:
		return "reply containing " + strconv.Quote(p.text)
	}
	return "no reply"
}

// RcptFunc chooses recipients of a message for DeleteRecipients and
// BounceRecipients. It is called for each pending recipient with the
// recipient and its delivery state.
type RcptFunc func(r Recipient, st RcptState) bool

// hasRcptCriteria reports whether f selects recipients, not only
// messages.
func (f *ListFilter) hasRcptCriteria() bool {
	return f.Recipient != "" || f.RcptDomain != "" || f.Destination != "" || strings.TrimSpace(f.Reply) != ""
}

// HasRecipientCriteria reports whether f selects recipients within
// messages (Recipient, RcptDomain, Destination or Reply), so that an
// operation on what it selects acts on those recipients only.
func (f ListFilter) HasRecipientCriteria() bool { return f.hasRcptCriteria() }

// SelectRecipients returns the RcptFunc that picks the pending
// recipients f's recipient criteria select (Recipient, RcptDomain,
// Destination and Reply, all of those given); with none given, every
// pending recipient. The message criteria of f play no part.
func (q *Queue) SelectRecipients(f ListFilter) RcptFunc {
	sel := q.compile(f)
	return func(r Recipient, st RcptState) bool {
		return st.Status == Pending && sel.rcpt(r, st)
	}
}

// selector is a ListFilter made ready to match.
type selector struct {
	f     ListFilter
	reply ReplyPattern
	dest  func(string) string // nil: no Deliverer
	// domain is RcptDomain lower-cased; sub is set for ".example.org"
	// (its subdomains, as in a mailertable).
	domain string
	sub    bool
	null   bool // Sender "<>": the null sender only
}

func (q *Queue) compile(f ListFilter) *selector {
	s := &selector{f: f, reply: ParseReplyPattern(f.Reply)}
	if q.cfg.Deliverer != nil {
		s.dest = q.cfg.Deliverer.Destination
	}
	d := strings.ToLower(strings.TrimSpace(f.RcptDomain))
	d = strings.TrimPrefix(d, "@")
	s.domain, s.sub = strings.TrimPrefix(d, "."), strings.HasPrefix(d, ".")
	s.null = strings.TrimSpace(f.Sender) == "<>"
	return s
}

// message reports whether the message-level criteria hold.
func (s *selector) message(it *item, now time.Time) bool {
	f := &s.f
	switch f.Held {
	case "only":
		if it.st.Hold == "" {
			return false
		}
	case "none":
		if it.st.Hold != "" {
			return false
		}
	}
	if f.Phase != "" && phaseOf(it.busy, &it.st) != f.Phase {
		return false
	}
	switch {
	case s.null:
		if it.env.From != "" {
			return false
		}
	case f.Sender != "" && !containsFold(it.env.From, f.Sender):
		return false
	}
	age := now.Sub(it.env.Received)
	if f.OlderThan > 0 && age < f.OlderThan {
		return false
	}
	if f.YoungerThan > 0 && age >= f.YoungerThan {
		return false
	}
	return true
}

// rcpt reports whether the recipient criteria hold for one recipient.
func (s *selector) rcpt(r Recipient, st RcptState) bool {
	f := &s.f
	if f.Recipient != "" && !containsFold(r.Addr, f.Recipient) {
		return false
	}
	if s.domain != "" {
		d := strings.ToLower(postern.AddrDomain(r.Addr))
		if s.sub {
			if !strings.HasSuffix(d, "."+s.domain) {
				return false
			}
		} else if d != s.domain {
			return false
		}
	}
	if f.Destination != "" && (s.dest == nil || s.dest(r.Addr) != f.Destination) {
		return false
	}
	if strings.TrimSpace(f.Reply) != "" && !s.reply.Match(st.Reply) {
		return false
	}
	return true
}

// match reports whether a message is selected: its message criteria
// hold and, when recipient criteria are given, one of its pending
// recipients meets them all.
func (s *selector) match(it *item, now time.Time) bool {
	if !s.message(it, now) {
		return false
	}
	if !s.f.hasRcptCriteria() {
		return true
	}
	for i, r := range it.env.Recipients {
		if it.st.Rcpts[i].Status == Pending && s.rcpt(r, it.st.Rcpts[i]) {
			return true
		}
	}
	return false
}
