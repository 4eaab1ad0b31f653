package scanner

import (
	"errors"
	"strings"

	"github.com/postern/postern"
)

// The per-recipient spam policy is part of this contract (not only of
// package scan) so that a policy source outside the scan package, such
// as a user directory, can build one without importing enmime. Package
// scan re-exports these names.

// SpamMode says whether spam filtering applies to a recipient.
type SpamMode uint8

// Spam modes.
const (
	SpamDefault SpamMode = iota // no entry says: filtering is on
	SpamOn
	SpamOff
)

func (m SpamMode) String() string {
	switch m {
	case SpamOn:
		return "on"
	case SpamOff:
		return "off"
	}
	return "default"
}

// SenderMatch is how a recipient's lists judge a sender.
type SenderMatch uint8

// Sender matches.
const (
	SenderUnlisted SenderMatch = iota
	SenderAllowed
	SenderDenied
)

func (s SenderMatch) String() string {
	switch s {
	case SenderAllowed:
		return "allowed"
	case SenderDenied:
		return "denied"
	}
	return "unlisted"
}

// RcptPolicy is the spam policy of one recipient: from a policy file's
// entry (scan.Policy) or a directory. The zero value is the policy of a
// recipient no source names: filtering on, the filter's scores, no lists.
type RcptPolicy struct {
	// Key is the entry that applied ("user@example.com", "@example.com",
	// "@.example.com", "*"; a directory's entry DN), "" when none did.
	Key string
	// Source is where the entry is: "file:line", "ldap".
	Source string
	Spam   SpamMode
	// TagScore and RejectScore override the filter's when not zero.
	TagScore    float64
	RejectScore float64
	// NeverReject ("reject=off") makes spam only tagged, never refused.
	NeverReject bool
	// Allow and Deny list senders: "user@domain", "@domain" (that domain),
	// "@.domain" (its subdomains), "<>" (the null sender). Lower case;
	// PolicyEntry makes an entry so.
	Allow, Deny []string
}

// SpamFiltering reports whether spam filtering is on for the recipient.
func (p RcptPolicy) SpamFiltering() bool { return p.Spam != SpamOff }

// Sender judges the envelope sender ("" for the null sender) against the
// lists. The more specific entry wins (an address over "@domain" over
// "@.domain"); between equally specific entries, Deny wins.
func (p RcptPolicy) Sender(from string) SenderMatch {
	from = PolicyAddr(from)
	allow, deny := bestMatch(p.Allow, from), bestMatch(p.Deny, from)
	switch {
	case deny > 0 && deny >= allow:
		return SenderDenied
	case allow > 0:
		return SenderAllowed
	}
	return SenderUnlisted
}

// bestMatch returns how specifically list names addr: 3 the address, 2
// its domain, 1 a parent domain, 0 not at all.
func bestMatch(list []string, addr string) int {
	best := 0
	dom := postern.AddrDomain(addr)
	for _, e := range list {
		switch {
		case e == "<>":
			if addr == "" {
				return 3
			}
		case strings.HasPrefix(e, "@."):
			if addr != "" && (dom == e[2:] || strings.HasSuffix(dom, e[1:])) {
				best = max(best, 1)
			}
		case strings.HasPrefix(e, "@"):
			if addr != "" && dom == e[1:] {
				best = max(best, 2)
			}
		case e == addr:
			return 3
		}
	}
	return best
}

// PolicyAddr is the form in which policy entries and the addresses
// looked up are compared: surrounding spaces, angle brackets and a
// trailing dot removed, lower case.
func PolicyAddr(a string) string {
	a = strings.TrimSpace(a)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	return strings.TrimSuffix(strings.ToLower(a), ".")
}

// PolicyEntry reads one entry of an allow or deny list ("user@domain",
// "@domain", "@.domain" or "<>"), or with sender false a recipient key
// (no "<>"), and returns it in the form Sender compares.
func PolicyEntry(e string, sender bool) (string, error) {
	if sender && strings.TrimSpace(e) == "<>" {
		return "<>", nil
	}
	e = PolicyAddr(e)
	if strings.ContainsAny(e, " \t,<>=\"") {
		return "", errors.New("contains a space, comma, quote, angle bracket or '='")
	}
	at := strings.LastIndexByte(e, '@')
	if at < 0 {
		return "", errors.New("want user@domain, @domain or @.domain")
	}
	dom := e[at+1:]
	if at == 0 && strings.HasPrefix(dom, ".") {
		dom = dom[1:]
	}
	if dom == "" || strings.HasPrefix(dom, ".") || strings.HasSuffix(dom, ".") || strings.Contains(dom, "..") {
		return "", errors.New("bad domain")
	}
	return e, nil
}
