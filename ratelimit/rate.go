package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// ErrConfig is returned (wrapped) by the constructors for an invalid
// configuration.
var ErrConfig = errors.New("ratelimit: invalid config")

// ErrStoreUnavailable is wrapped by a Store that could not be reached
// (Redis down, timed out, or its circuit open). Filters never pass it on:
// they fail open or closed as configured.
var ErrStoreUnavailable = errors.New("ratelimit: store unavailable")

// Rate is Count events per Per: a token bucket that holds Count tokens and
// gets one back every Per/Count, so a quiet client may use Count at once
// and then Count per Per. The zero Rate means unlimited.
//
// A bucket admits at most 2×Count within any span of Per (a full bucket,
// then one bucket's worth of refill); a fixed-window counter such as
// sendmail's or Postfix anvil's has the same bound at its window edges.
type Rate struct {
	Count int
	Per   time.Duration
}

// Unlimited reports whether r imposes no limit.
func (r Rate) Unlimited() bool { return r.Count <= 0 || r.Per <= 0 }

// Interval is the time one token takes to come back (Per/Count); 0 when
// unlimited.
func (r Rate) Interval() time.Duration {
	if r.Unlimited() {
		return 0
	}
	return r.Per / time.Duration(r.Count)
}

// String returns "10/1m0s" or "unlimited".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	return fmt.Sprintf("%d/%s", r.Count, r.Per)
}

func (r Rate) limit() rate.Limit {
	return rate.Limit(float64(r.Count) / r.Per.Seconds())
}

func (r Rate) validate(what string) error {
	switch {
	case r.Count < 0:
		return fmt.Errorf("%w: %s: negative count %d", ErrConfig, what, r.Count)
	case r.Per < 0:
		return fmt.Errorf("%w: %s: negative period %v", ErrConfig, what, r.Per)
	case r.Count > 0 && r.Per == 0:
		return fmt.Errorf("%w: %s: %d per zero time", ErrConfig, what, r.Count)
	}
	return nil
}

// Result is the outcome of taking tokens from a bucket.
type Result struct {
	// Allowed is true when the tokens were taken.
	Allowed bool
	// Remaining is the number of whole tokens left after the call.
	Remaining int
	// RetryAfter is, when not Allowed, how long until enough tokens are
	// back (if nobody else takes them).
	RetryAfter time.Duration
}

// secondsToDuration rounds up, so a client told to come back after
// RetryAfter finds its token there.
func secondsToDuration(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	if s > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(math.Ceil(s * float64(time.Second)))
}

func checkPositive(what string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: negative %s %v", ErrConfig, what, d)
	}
	return nil
}
