package scan

import "fmt"

// Action is what the filter does with a message a check flagged. The
// zero value, ActDefault, stands for the check's documented default.
type Action uint8

// The actions.
const (
	ActDefault    Action = iota
	ActReject            // refuse with a 5xx reply
	ActQuarantine        // accept and hold (postern.Quarantine)
	ActDiscard           // accept and drop
	ActLog               // record and log, deliver as usual
)

var actNames = [...]string{"default", "reject", "quarantine", "discard", "log"}

func (a Action) String() string {
	if int(a) < len(actNames) {
		return actNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction parses the String form.
func ParseAction(s string) (Action, error) {
	for i, n := range actNames {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown action %q", ErrConfig, s)
}

func (a Action) or(def Action) Action {
	if a == ActDefault {
		return def
	}
	return a
}

func (a Action) valid() bool { return a <= ActLog }
