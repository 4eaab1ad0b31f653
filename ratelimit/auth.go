package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// AuthFilterName is the AuthLimiter's name in logs.
const AuthFilterName = "auth-limit"

// AUTH limiter defaults: 5 failures within 10 minutes block AUTH for 10
// minutes.
const (
	DefaultAuthMaxFailures = 5
	DefaultAuthWindow      = 10 * time.Minute
	DefaultAuthBlock       = 10 * time.Minute
)

// AuthConfig configures an AuthLimiter. The zero value blocks a key for
// 10 minutes after 5 failures in 10 minutes, counted in memory.
type AuthConfig struct {
	// Store holds the counters and blocks; nil means a new MemoryStore on
	// Now. A shared store makes a password guesser blocked on one relay
	// instance blocked on all.
	Store Store
	// MaxFailures is the number of failures within Window whose last
	// starts the block; 0 means DefaultAuthMaxFailures.
	MaxFailures int
	// Window is how long failures are counted from the first one; 0 means
	// DefaultAuthWindow.
	Window time.Duration
	// Block is how long AUTH is refused after MaxFailures; 0 means
	// DefaultAuthBlock.
	Block time.Duration
	// FailClosed refuses AUTH (454 4.3.0) when the store cannot be asked;
	// by default AUTH goes ahead (fail open) and the error is logged.
	FailClosed bool
	// Logger receives blocks (Warn), store errors (Warn, at most one line
	// per 10 s) and refusals (Debug); nil discards.
	Logger *slog.Logger
	// Now is the clock of the default store and of the error log;
	// time.Now when nil.
	Now func() time.Time
}

// AuthStats are an AuthLimiter's counters.
type AuthStats struct {
	// Failures counts failures recorded (per key).
	Failures uint64
	// Blocks counts blocks started.
	Blocks uint64
	// Refused counts AUTH attempts refused by CheckAuth.
	Refused uint64
	// StoreErrors counts calls the store could not answer.
	StoreErrors uint64
}

// AuthLimiter slows password guessing: the server records each failed
// SMTP AUTH under one or more keys (the client's network, the user name
// tried), and before each AUTH asks CheckAuth, which refuses with
// "454 4.7.0" (RFC 4954's temporary authentication failure) once a key had
// MaxFailures failures within Window, for Block. AUTH is not a stage of
// postern.Chain, so this is an API for the server, not a filter. It is
// safe for concurrent use.
//
// Keys are the caller's: IPKey(ip, Class{}) stops one client trying many
// users; UserKey(name) stops many clients trying one user, but lets anyone
// lock a user out of AUTH for Block (the refusal is temporary, and
// sessions already authenticated are not affected).
type AuthLimiter struct {
	store      Store
	max        int64
	window     time.Duration
	block      time.Duration
	failClosed bool
	log        *slog.Logger
	fails      failures

	failures, blocks, refused atomic.Uint64
}

// NewAuthLimiter validates cfg and returns the limiter.
func NewAuthLimiter(cfg AuthConfig) (*AuthLimiter, error) {
	if cfg.MaxFailures < 0 {
		return nil, fmt.Errorf("%w: negative MaxFailures %d", ErrConfig, cfg.MaxFailures)
	}
	if err := errors.Join(checkPositive("auth Window", cfg.Window), checkPositive("auth Block", cfg.Block)); err != nil {
		return nil, err
	}
	a := &AuthLimiter{store: cfg.Store, max: int64(cfg.MaxFailures), window: cfg.Window, block: cfg.Block,
		failClosed: cfg.FailClosed, log: orDiscard(cfg.Logger)}
	if a.max == 0 {
		a.max = DefaultAuthMaxFailures
	}
	if a.window == 0 {
		a.window = DefaultAuthWindow
	}
	if a.block == 0 {
		a.block = DefaultAuthBlock
	}
	now := orNow(cfg.Now)
	if a.store == nil {
		a.store = newDefaultStore(now)
	}
	a.fails = failures{now: now, log: a.log}
	return a, nil
}

// Stats returns the counters.
func (a *AuthLimiter) Stats() AuthStats {
	return AuthStats{Failures: a.failures.Load(), Blocks: a.blocks.Load(), Refused: a.refused.Load(),
		StoreErrors: a.fails.count.Load()}
}

func authCountKey(key string) string { return "auth:count:" + key }
func authBlockKey(key string) string { return "auth:block:" + key }

// RecordAuthFailure counts one failed AUTH under each key ("" keys are
// skipped) and starts a block for every key that reached MaxFailures. A
// store error is counted and logged, and the first one returned.
func (a *AuthLimiter) RecordAuthFailure(ctx context.Context, keys ...string) error {
	var first error
	for _, key := range keys {
		if key == "" {
			continue
		}
		if err := a.recordOne(ctx, key); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (a *AuthLimiter) recordOne(ctx context.Context, key string) error {
	n, err := a.store.Incr(ctx, authCountKey(key), a.window)
	if err != nil {
		return a.recordFailed(ctx, key, err)
	}
	a.failures.Add(1)
	if n < a.max {
		return nil
	}
	if err := a.store.Hold(ctx, authBlockKey(key), a.block); err != nil {
		return a.recordFailed(ctx, key, err)
	}
	if n == a.max {
		a.blocks.Add(1)
		a.log.LogAttrs(ctx, slog.LevelWarn, "too many AUTH failures: blocking AUTH",
			slog.String("stage", "auth"), slog.String("filter", AuthFilterName), slog.String("action", "block"),
			slog.String("key", key), slog.Int64("failures", n), slog.Duration("window", a.window),
			slog.Duration("block", a.block))
	}
	return nil
}

func (a *AuthLimiter) recordFailed(ctx context.Context, key string, err error) error {
	a.fails.record(ctx, err, slog.String("stage", "auth"), slog.String("filter", AuthFilterName),
		slog.String("action", "count"), slog.String("key", key))
	return fmt.Errorf("ratelimit: recording AUTH failure for %s: %w", key, err)
}

// Blocked reports whether AUTH is blocked for key, and for how much longer.
func (a *AuthLimiter) Blocked(ctx context.Context, key string) (bool, time.Duration, error) {
	if key == "" {
		return false, 0, nil
	}
	return a.store.Held(ctx, authBlockKey(key))
}

// CheckAuth is asked before an AUTH attempt. It returns a TempFail verdict
// with "454 4.7.0 Too many failed authentication attempts, try again
// later" when any key is blocked, and postern.Pass otherwise. When the
// store cannot be asked it passes (fail open) or answers
// "454 4.3.0 Temporary authentication failure" (FailClosed): AUTH has no
// 451 in RFC 4954.
func (a *AuthLimiter) CheckAuth(ctx context.Context, keys ...string) postern.Verdict {
	for _, key := range keys {
		blocked, left, err := a.Blocked(ctx, key)
		if err != nil {
			a.fails.record(ctx, err, slog.String("stage", "auth"), slog.String("filter", AuthFilterName),
				slog.String("action", policyName(a.failClosed)), slog.String("key", key))
			reason := "auth limit: store failed checking " + key
			if !a.failClosed {
				return postern.Verdict{Reason: reason + "; failing open"}
			}
			return postern.TempFailed(454, postern.ESC(4, 3, 0), "Temporary authentication failure", reason+"; failing closed")
		}
		if blocked {
			a.refused.Add(1)
			v := postern.TempFailed(454, postern.ESC(4, 7, 0), "Too many failed authentication attempts, try again later",
				fmt.Sprintf("auth limit: %s blocked for %s more after %d failures within %s",
					key, left.Round(time.Second), a.max, a.window))
			if a.log.Enabled(ctx, slog.LevelDebug) {
				a.log.LogAttrs(ctx, slog.LevelDebug, "rate-limit decision", slog.String("stage", "auth"),
					slog.String("filter", AuthFilterName), slog.String("action", v.Action.String()),
					slog.Int("code", v.Reply.Code), slog.String("key", key), slog.String("reason", v.Reason))
			}
			return v
		}
	}
	return postern.Pass
}

// Release ends a block on each key and forgets its failures (after a
// password reset, say).
func (a *AuthLimiter) Release(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if key == "" {
			continue
		}
		if err := errors.Join(a.store.Delete(ctx, authBlockKey(key)), a.store.Delete(ctx, authCountKey(key))); err != nil {
			return err
		}
	}
	return nil
}
