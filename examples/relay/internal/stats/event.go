package stats

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

var (
	// ErrConfig reports an invalid JournalConfig or SummaryOptions.
	ErrConfig = errors.New("stats: invalid configuration")
	// ErrClosed is returned by Flush after Close.
	ErrClosed = errors.New("stats: journal closed")
	// ErrPeriod reports a period whose end is not after its start.
	ErrPeriod = errors.New("stats: empty period")
	// ErrMessage reports a report mail that cannot be built safely: an
	// address that does not parse, or a header value with a line break.
	ErrMessage = errors.New("stats: bad report message")
)

// Kind says what an Event records.
type Kind string

// The kinds of events. Received, quarantined and discarded count
// messages; delivered, deferred, bounced and expired count recipients
// (one event per recipient per attempt outcome, from the queue); rejected
// counts refused commands or transactions; virus counts virus names found;
// spam and ham count scored messages.
const (
	// Received is one accepted message copy (one queue ID).
	Received Kind = "received"
	// Rejected is a command or transaction refused with a 5xx or 4xx
	// verdict; Stage, Filter, Reason and Code say where and why.
	Rejected Kind = "rejected"
	// Quarantined is a message accepted and held for review.
	Quarantined Kind = "quarantined"
	// Discarded is a message accepted and dropped.
	Discarded Kind = "discarded"
	// Delivered is one recipient delivered (or relayed) for good.
	Delivered Kind = "delivered"
	// Deferred is one recipient that failed temporarily on an attempt.
	Deferred Kind = "deferred"
	// Bounced is one recipient that failed permanently.
	Bounced Kind = "bounced"
	// Expired is one recipient given up after the queue's return time.
	Expired Kind = "expired"
	// Virus is one virus name found in a message (Virus is the name).
	Virus Kind = "virus"
	// Spam is a message scored at or above the tag score (Score).
	Spam Kind = "spam"
	// Ham is a message scored below the tag score (Score).
	Ham Kind = "ham"
)

// Event is one record of the journal, written as one JSON object per
// line. Only Time and Kind are required; the other fields are what the
// kind has to say (see the Kind constants). For a Received event an
// empty Sender is the null sender (<>).
type Event struct {
	// Time is when it happened; Record sets it from the journal's clock
	// when it is zero.
	Time     time.Time  `json:"time"`
	Kind     Kind       `json:"kind"`
	QueueID  string     `json:"queue_id,omitempty"`
	ConnID   string     `json:"conn_id,omitempty"`
	ClientIP netip.Addr `json:"client_ip,omitzero"`
	Sender   string     `json:"sender,omitempty"`
	Rcpt     string     `json:"rcpt,omitempty"`
	// Stage is the SMTP stage of a rejection ("connect", "rcpt", …:
	// postern.Stage.String()).
	Stage  string `json:"stage,omitempty"`
	Filter string `json:"filter,omitempty"`
	// Reason is the verdict's reason or the delivery error, as logged.
	Reason string `json:"reason,omitempty"`
	// Code is the SMTP reply code (550, 451, …), 0 if none.
	Code  int     `json:"code,omitempty"`
	Virus string  `json:"virus,omitempty"`
	Score float64 `json:"score,omitempty"`
	// Size is the message size in bytes.
	Size int64 `json:"size,omitempty"`
}

// Limits of a reason class: enough words for "client listed
// zen.spamhaus.org", few enough that variable tails fall off.
const (
	classWords = 6
	classRunes = 60
)

// RejectKey is the key a rejection is counted under in
// Summary.RejectedBy: "<filter>: <code> <class>", for example
// "dnsbl: 554 client listed zen.spamhaus.org" or
// "recipients: 550 no such user @example.org". The filter is the Stage
// when Filter is empty ("smtp" when both are); the class is
// ReasonClass(e.Filter, e.Reason).
func RejectKey(e Event) string {
	name := e.Filter
	if name == "" {
		name = e.Stage
	}
	if name == "" {
		name = "smtp"
	}
	var b strings.Builder
	b.Grow(len(name) + 6 + len(e.Reason))
	b.WriteString(name)
	b.WriteByte(':')
	if e.Code != 0 {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(e.Code))
	}
	if c := ReasonClass(e.Filter, e.Reason); c != "" {
		b.WriteByte(' ')
		b.WriteString(c)
	} else if e.Code == 0 {
		b.WriteString(" (no reason)")
	}
	return b.String()
}

// ReasonClass shortens a verdict's reason to a class that many
// rejections share, so that a report can count them together. Reasons
// are log text and carry the client's address, the recipient, scores and
// sources; the class keeps the words and drops what varies:
//
//   - only the text before the first ';' (later parts are details or
//     appended errors), without a leading "<filter>:" that repeats the
//     filter's name, and without parenthesised parts;
//   - IP addresses, networks, address:port pairs and tokens with no
//     letter (numbers, scores, codes) are dropped;
//   - a mail address keeps only its domain ("@example.org"), and a
//     "name=value" token only its name (a DNSBL zone without the
//     answer);
//   - at most 6 words and 60 characters are kept.
func ReasonClass(filter, reason string) string {
	r, _, _ := strings.Cut(reason, ";")
	r = strings.TrimSpace(r)
	if filter != "" && len(r) > len(filter) && strings.EqualFold(r[:len(filter)], filter) && r[len(filter)] == ':' {
		r = r[len(filter)+1:]
	}
	r = dropParens(r)
	var b strings.Builder
	b.Grow(len(r))
	words := 0
	for _, tok := range strings.Fields(r) {
		tok = classToken(tok)
		if tok == "" {
			continue
		}
		if words == classWords {
			break
		}
		if words > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(tok)
		words++
	}
	return truncateRunes(b.String(), classRunes)
}

// dropParens removes parenthesised parts, nested or not; an unbalanced
// '(' drops the rest.
func dropParens(s string) string {
	if !strings.ContainsAny(s, "()") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')':
			if depth > 0 {
				depth--
				b.WriteByte(' ')
			}
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// classToken is what a reason word contributes to its class, "" for
// nothing.
func classToken(tok string) string {
	tok = strings.Trim(tok, ",:;.!?\"'`")
	if len(tok) >= 2 && (tok[0] == '<' && tok[len(tok)-1] == '>' || tok[0] == '[' && tok[len(tok)-1] == ']') {
		tok = tok[1 : len(tok)-1]
	}
	if name, _, ok := strings.Cut(tok, "="); ok {
		tok = strings.Trim(name, ",:;.\"'")
	}
	if tok == "" {
		return ""
	}
	if at := strings.LastIndexByte(tok, '@'); at >= 0 {
		// Keep a tag such as "From:" and the domain.
		tag := ""
		if i := strings.IndexByte(tok, ':'); i > 0 && i < at && isWord(tok[:i]) {
			tag = tok[:i+1]
		}
		dom := strings.ToLower(strings.Trim(tok[at+1:], "<>[]"))
		if dom == "" {
			return ""
		}
		return tag + "@" + dom
	}
	if !strings.ContainsFunc(tok, unicode.IsLetter) || isAddr(tok) {
		return ""
	}
	return tok
}

func isWord(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && r != '-' {
			return false
		}
	}
	return s != ""
}

// isAddr reports whether tok is an IP address, network or address:port,
// as reasons write them ("192.0.2.1", "IPv6:2001:db8::1", "10.0.0.0/8",
// "127.0.0.1:783").
func isAddr(tok string) bool {
	tok = strings.TrimPrefix(tok, "IPv6:")
	if !strings.ContainsAny(tok, "0123456789") || !strings.ContainsAny(tok, ".:") {
		return false // every form has a digit and a separator: skip the parsers
	}
	if _, err := netip.ParseAddr(tok); err == nil {
		return true
	}
	if _, err := netip.ParsePrefix(tok); err == nil {
		return true
	}
	_, err := netip.ParseAddrPort(tok)
	return err == nil
}

// truncateRunes cuts s to at most n runes, at a word boundary when there
// is one.
func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			cut := s[:pos]
			if sp := strings.LastIndexByte(cut, ' '); sp > 0 {
				cut = cut[:sp]
			}
			return cut
		}
		i++
	}
	return s
}
