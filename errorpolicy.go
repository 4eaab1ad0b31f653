package postern

import (
	"errors"
	"fmt"
	"strings"
)

// ErrErrorPolicy is returned by ErrorPolicy.UnmarshalText for a word it does
// not know.
var ErrErrorPolicy = errors.New("postern: unknown error policy")

// ErrorPolicy says what a component does when something it depends on
// fails and it cannot decide: a DNS list that does not answer, a scanner
// that is down, a rate-limit store that cannot be asked, a next hop that
// cannot be reached for a call-ahead, a filter of a Chain that returns an
// error or panics. It is the one spelling of that choice in Postern:
// Chain entries, dnsbl zones, scan scanners, route's call-ahead,
// ratelimit's filters and auth's DMARC temperror all take one.
//
// The zero value, OnErrorDefault, means "this component's documented
// default", which differs where there is a reason to: a Chain entry, a
// virus scanner and a call-ahead fail closed (OnErrorTempFail: mail must
// not pass unchecked, and the client will retry), a DNS list, a spam
// scorer, a rate-limit store and a DMARC temperror fail open
// (OnErrorAccept: mail must not stop because an extra opinion is
// missing). Each component states its default beside its field. The
// words are those of Postfix's milter_default_action: tempfail, accept,
// reject.
type ErrorPolicy uint8

const (
	// OnErrorDefault is the component's own default. The zero value.
	OnErrorDefault ErrorPolicy = iota
	// OnErrorTempFail answers a temporary failure (451; 421 at connect):
	// the client retries later and nothing is accepted unchecked (fail
	// closed).
	OnErrorTempFail
	// OnErrorAccept logs the failure and goes on as if the check had
	// found nothing (fail open): mail flows unchecked while the dependency
	// is down.
	OnErrorAccept
	// OnErrorReject answers a permanent failure (550; 554 at connect and
	// DATA): the client gives up and the sender gets a bounce. For checks
	// that must never be passed, at the price of losing mail while the
	// dependency is down.
	OnErrorReject
)

var errorPolicyNames = [...]string{"default", "tempfail", "accept", "reject"}

// String returns "default", "tempfail", "accept" or "reject".
func (p ErrorPolicy) String() string {
	if int(p) < len(errorPolicyNames) {
		return errorPolicyNames[p]
	}
	return fmt.Sprintf("error-policy(%d)", uint8(p))
}

// Valid reports whether p is one of the named policies (OnErrorDefault
// included).
func (p ErrorPolicy) Valid() bool { return int(p) < len(errorPolicyNames) }

// MarshalText returns the policy's word (String); it fails for an unknown
// value, so a configuration written out can be read back.
func (p ErrorPolicy) MarshalText() ([]byte, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrErrorPolicy, uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads "tempfail", "accept" or "reject", in any case;
// "default" and the empty string give OnErrorDefault. Other words are an
// error wrapping ErrErrorPolicy and leave p unchanged.
func (p *ErrorPolicy) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" {
		*p = OnErrorDefault
		return nil
	}
	for i, name := range errorPolicyNames {
		if strings.EqualFold(s, name) {
			*p = ErrorPolicy(i)
			return nil
		}
	}
	const maxShown = 40 // a hostile config must not fill the log
	if len(s) > maxShown {
		s = s[:maxShown] + "..."
	}
	return fmt.Errorf("%w %q (want tempfail, accept or reject)", ErrErrorPolicy, s)
}

// Or returns p, or def when p is OnErrorDefault: how a component turns its
// configured policy into the one it applies.
func (p ErrorPolicy) Or(def ErrorPolicy) ErrorPolicy {
	if p == OnErrorDefault {
		return def
	}
	return p
}

// Stricter returns the stricter of p and q, for a component that saw
// several failures: reject over tempfail over accept over OnErrorDefault
// (nothing failed).
func (p ErrorPolicy) Stricter(q ErrorPolicy) ErrorPolicy {
	rank := func(x ErrorPolicy) int {
		switch x {
		case OnErrorAccept:
			return 1
		case OnErrorTempFail:
			return 2
		case OnErrorReject:
			return 3
		}
		return 0
	}
	if rank(q) > rank(p) {
		return q
	}
	return p
}

// Verdict is the answer of a component that could not decide because a
// dependency failed, under policy p (resolved with Or; OnErrorDefault and
// unknown values are answered as OnErrorTempFail, so a component that
// forgot to resolve its default fails closed):
//
//	OnErrorAccept    Continue; reason goes to the logs
//	OnErrorTempFail  TempFail: 451 4.s.d "<text>, try again later"
//	                 (421 at the connect stage, the only code that may
//	                 close a connection before the banner, RFC 5321 §3.8)
//	OnErrorReject    Reject: 550 5.s.d "<text>" at HELO, MAIL and RCPT,
//	                 554 5.s.d at connect (RFC 5321 §3.1), DATA and
//	                 elsewhere (the zero Stage: a command outside the
//	                 filter stages, such as AUTH)
//
// esc gives the subject and detail of the enhanced status code (RFC 3463
// §3); its class is set from the reply, so ESC(4, 7, 1) and ESC(5, 7, 1)
// are the same here. A zero esc means X.3.0 ("other or undefined mail
// system status"). text says what failed, e.g. "DNSBL lookup failed";
// empty, it is "Temporary local problem, try again later" for a temporary
// failure and "Local problem, mail refused" for a rejection. The reason
// gets the policy appended ("; on error: tempfail"), so a log line says
// why the failure was answered as it was.
func (p ErrorPolicy) Verdict(st Stage, esc EnhancedCode, text, reason string) Verdict {
	subject, detail := esc[1], esc[2]
	if esc.IsZero() {
		subject, detail = 3, 0
	}
	switch p {
	case OnErrorAccept:
		return Verdict{Reason: reason + "; on error: " + p.String()}
	case OnErrorReject:
		code := 554
		if st == StageHelo || st == StageMail || st == StageRcpt {
			code = 550
		}
		if text == "" {
			text = "Local problem, mail refused"
		}
		return Rejected(code, ESC(5, subject, detail), text, reason+"; on error: "+p.String())
	}
	code := 451
	if st == StageConnect {
		code = 421
	}
	if text == "" {
		text = "Temporary local problem"
	}
	return TempFailed(code, ESC(4, subject, detail), text+", try again later", reason+"; on error: "+OnErrorTempFail.String())
}
