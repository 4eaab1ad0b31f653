package postern

import "fmt"

// Action is what a policy decided. The zero value, Continue, means "no
// opinion, ask the next filter".
type Action uint8

const (
	// Continue passes the decision to the next filter.
	Continue Action = iota
	// Accept ends the stage in favour of the client: later filters of the
	// same stage are not asked (sendmail OK / RELAY).
	Accept
	// Reject refuses with a 5xx reply.
	Reject
	// TempFail refuses with a 4xx reply; the client retries later.
	TempFail
	// Discard claims success to the client and drops the message.
	Discard
	// Quarantine claims success and holds the message for review.
	Quarantine
)

var actionNames = [...]string{"continue", "accept", "reject", "tempfail", "discard", "quarantine"}

// String returns the lower-case name used in logs.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Verdict is a policy decision. Reply is what the client is told (the server
// fills in a default when it is zero); Reason goes to the logs only.
type Verdict struct {
	Action Action
	Reply  Reply
	Reason string
}

// Final reports whether the verdict ends the stage.
func (v Verdict) Final() bool { return v.Action != Continue }

// Pass is the Continue verdict.
var Pass = Verdict{}

// Accepted returns an Accept verdict.
func Accepted(reason string) Verdict { return Verdict{Action: Accept, Reason: reason} }

// Rejected returns a Reject verdict with a 5xx reply.
func Rejected(code int, esc EnhancedCode, text, reason string) Verdict {
	return Verdict{Action: Reject, Reply: NewReply(code, esc, text), Reason: reason}
}

// TempFailed returns a TempFail verdict with a 4xx reply.
func TempFailed(code int, esc EnhancedCode, text, reason string) Verdict {
	return Verdict{Action: TempFail, Reply: NewReply(code, esc, text), Reason: reason}
}

// Discarded returns a Discard verdict.
func Discarded(reason string) Verdict { return Verdict{Action: Discard, Reason: reason} }

// Quarantined returns a Quarantine verdict; reason is kept with the held
// message.
func Quarantined(reason string) Verdict { return Verdict{Action: Quarantine, Reason: reason} }

// Stage names a point of the SMTP dialogue where filters run.
type Stage uint8

// The stages, in dialogue order.
const (
	StageConnect Stage = iota + 1
	StageHelo
	StageMail
	StageRcpt
	StageData
)

var stageNames = [...]string{"", "connect", "helo", "mail", "rcpt", "data"}

func (s Stage) String() string {
	if int(s) < len(stageNames) && s != 0 {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// ReplyAt is the reply a server sends for v at stage s: v.Reply, or
// DefaultReply when that is zero or disagrees with the action (a Reject
// needs a 5xx reply, a TempFail a 4xx one; the action wins).
func (v Verdict) ReplyAt(s Stage) Reply {
	r := v.Reply
	switch {
	case r.IsZero(),
		v.Action == Reject && !r.Permanent(),
		v.Action == TempFail && !r.Temporary():
		return DefaultReply(s, v.Action)
	}
	return r
}

// DefaultReply is the reply used for a verdict whose Reply is zero.
func DefaultReply(s Stage, a Action) Reply {
	switch a {
	case Reject:
		switch s {
		case StageConnect:
			return NewReply(554, ESC(5, 7, 1), "Access denied")
		case StageRcpt:
			return NewReply(550, ESC(5, 7, 1), "Recipient address rejected: Access denied")
		case StageMail:
			return NewReply(550, ESC(5, 7, 1), "Sender address rejected: Access denied")
		case StageData:
			return NewReply(554, ESC(5, 7, 1), "Message rejected")
		default:
			return NewReply(550, ESC(5, 7, 1), "Access denied")
		}
	case TempFail:
		if s == StageConnect {
			return NewReply(421, ESC(4, 3, 2), "Service not available, try again later")
		}
		return NewReply(451, ESC(4, 3, 0), "Temporary failure, try again later")
	}
	return NewReply(250, ESC(2, 0, 0), "OK")
}
