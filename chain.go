package postern

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrFilterPanic wraps the value of a panic recovered from a filter.
var ErrFilterPanic = errors.New("postern: filter panicked")

// ErrChainConfig is returned by NewChain for an invalid configuration.
var ErrChainConfig = errors.New("postern: invalid chain")

// Entry is one filter of a chain with its policy.
type Entry struct {
	Filter Filter
	// OnError is applied when the filter returns an error or panics. The
	// default is OnErrorTempFail: 451 4.3.0 (421 at connect), so no mail
	// is accepted unchecked; OnErrorAccept asks the next filter,
	// OnErrorReject answers 550 5.3.0 (554 at connect and DATA).
	OnError ErrorPolicy
	// Timeout bounds one call through its context; 0 means only the
	// caller's deadline applies.
	Timeout time.Duration
	// Skip, if set and true, leaves the filter out for this call; t is nil
	// at the connect and HELO stages.
	Skip func(c *Conn, t *Txn) bool
}

// Decision is what an Observer sees for every filter call.
type Decision struct {
	Chain   string
	Stage   Stage
	Filter  string
	Verdict Verdict
	// Err is the filter's error, also when the policy let it pass.
	Err     error
	Elapsed time.Duration
	Conn    *Conn
	Txn     *Txn  // nil at connect and HELO
	Rcpt    *Rcpt // set at the RCPT stage
}

// Observer receives every decision of a chain (logs, metrics, traces). It
// runs on the session's goroutine and must be quick.
type Observer func(ctx context.Context, d Decision)

// ChainConfig configures a Chain.
type ChainConfig struct {
	// Name appears in logs; "chain" when empty.
	Name    string
	Entries []Entry
	// Observer, if set, sees every decision.
	Observer Observer
	// Now is the clock used for Elapsed; time.Now when nil.
	Now func() time.Time
}

// Chain runs filters in order at each stage. The first verdict other than
// Continue ends the stage. A Chain is itself a filter of every stage, so
// chains nest. It is immutable and safe for concurrent use.
type Chain struct {
	name    string
	entries []Entry
	obs     Observer
	now     func() time.Time
}

// NewChain validates cfg and builds the chain.
func NewChain(cfg ChainConfig) (*Chain, error) {
	c := &Chain{name: cfg.Name, obs: cfg.Observer, now: cfg.Now}
	if c.name == "" {
		c.name = "chain"
	}
	if c.now == nil {
		c.now = time.Now
	}
	for i, e := range cfg.Entries {
		if e.Filter == nil {
			return nil, fmt.Errorf("%w: entry %d has no filter", ErrChainConfig, i)
		}
		if !implementsAnyStage(e.Filter) {
			return nil, fmt.Errorf("%w: filter %q implements no stage", ErrChainConfig, e.Filter.Name())
		}
		if e.Timeout < 0 {
			return nil, fmt.Errorf("%w: filter %q has a negative timeout", ErrChainConfig, e.Filter.Name())
		}
		if !e.OnError.Valid() {
			return nil, fmt.Errorf("%w: filter %q has an unknown error policy %v", ErrChainConfig, e.Filter.Name(), e.OnError)
		}
	}
	c.entries = append([]Entry(nil), cfg.Entries...)
	return c, nil
}

func implementsAnyStage(f Filter) bool {
	switch f.(type) {
	case ConnectChecker, HeloChecker, MailChecker, RcptChecker, DataChecker:
		return true
	}
	return false
}

// Name returns the chain's name.
func (c *Chain) Name() string { return c.name }

// Len returns the number of entries.
func (c *Chain) Len() int { return len(c.entries) }

// CheckConnect runs the connect stage.
func (c *Chain) CheckConnect(ctx context.Context, conn *Conn) (Verdict, error) {
	return c.run(ctx, StageConnect, conn, nil, nil, func(ctx context.Context, f Filter) (Verdict, bool, error) {
		x, ok := f.(ConnectChecker)
		if !ok {
			return Pass, false, nil
		}
		v, err := x.CheckConnect(ctx, conn)
		return v, true, err
	})
}

// CheckHelo runs the HELO stage.
func (c *Chain) CheckHelo(ctx context.Context, conn *Conn) (Verdict, error) {
	return c.run(ctx, StageHelo, conn, nil, nil, func(ctx context.Context, f Filter) (Verdict, bool, error) {
		x, ok := f.(HeloChecker)
		if !ok {
			return Pass, false, nil
		}
		v, err := x.CheckHelo(ctx, conn)
		return v, true, err
	})
}

// CheckMail runs the MAIL stage.
func (c *Chain) CheckMail(ctx context.Context, conn *Conn, t *Txn) (Verdict, error) {
	return c.run(ctx, StageMail, conn, t, nil, func(ctx context.Context, f Filter) (Verdict, bool, error) {
		x, ok := f.(MailChecker)
		if !ok {
			return Pass, false, nil
		}
		v, err := x.CheckMail(ctx, conn, t)
		return v, true, err
	})
}

// CheckRcpt runs the RCPT stage.
func (c *Chain) CheckRcpt(ctx context.Context, conn *Conn, t *Txn, r *Rcpt) (Verdict, error) {
	return c.run(ctx, StageRcpt, conn, t, r, func(ctx context.Context, f Filter) (Verdict, bool, error) {
		x, ok := f.(RcptChecker)
		if !ok {
			return Pass, false, nil
		}
		v, err := x.CheckRcpt(ctx, conn, t, r)
		return v, true, err
	})
}

// CheckData runs the DATA stage.
func (c *Chain) CheckData(ctx context.Context, conn *Conn, t *Txn, m *Message) (Verdict, error) {
	return c.run(ctx, StageData, conn, t, nil, func(ctx context.Context, f Filter) (Verdict, bool, error) {
		x, ok := f.(DataChecker)
		if !ok {
			return Pass, false, nil
		}
		v, err := x.CheckData(ctx, conn, t, m)
		return v, true, err
	})
}

// run never returns an error itself: a filter error becomes a verdict
// through the entry's policy, so a nested chain's policy is decided inside
// it. The error return is kept for the stage interfaces.
func (c *Chain) run(ctx context.Context, st Stage, conn *Conn, t *Txn, r *Rcpt,
	call func(context.Context, Filter) (Verdict, bool, error)) (Verdict, error) {
	for i := range c.entries {
		e := &c.entries[i]
		if e.Skip != nil && e.Skip(conn, t) {
			continue
		}
		start := c.now()
		v, called, err := c.callOne(ctx, e, call)
		if !called {
			continue
		}
		if err != nil {
			v = errorVerdict(st, e, err)
		}
		if c.obs != nil {
			c.obs(ctx, Decision{Chain: c.name, Stage: st, Filter: e.Filter.Name(), Verdict: v,
				Err: err, Elapsed: c.now().Sub(start), Conn: conn, Txn: t, Rcpt: r})
		}
		if v.Final() {
			return v, nil
		}
	}
	return Pass, nil
}

func (c *Chain) callOne(ctx context.Context, e *Entry, call func(context.Context, Filter) (Verdict, bool, error)) (v Verdict, called bool, err error) {
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.Timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			v, called, err = Pass, true, fmt.Errorf("%w: %s: %v", ErrFilterPanic, e.Filter.Name(), p)
		}
	}()
	v, called, err = call(ctx, e.Filter)
	if err == nil && called && ctx.Err() != nil && !v.Final() {
		// The filter gave up without saying so; its silence is not a pass.
		err = ctx.Err()
	}
	return v, called, err
}

// errorVerdict answers a filter's error under the entry's policy; a chain
// fails closed by default.
func errorVerdict(st Stage, e *Entry, err error) Verdict {
	return e.OnError.Or(OnErrorTempFail).Verdict(st, ESC(4, 3, 0), "", fmt.Sprintf("filter %s failed: %v", e.Filter.Name(), err))
}
