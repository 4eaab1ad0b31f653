package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// AuthFilterName is the AuthLimiter's name in logs.
const AuthFilterName = "auth-limit"

// AUTH limiter defaults: 5 failures of one client network, or 10 of one
// account, within 10 minutes block AUTH for that key for 10 minutes.
const (
	DefaultAuthMaxFailures     = 5
	DefaultAuthMaxUserFailures = 10
	DefaultAuthWindow          = 10 * time.Minute
	DefaultAuthBlock           = 10 * time.Minute
)

// AuthConfig configures an AuthLimiter. The zero value blocks a client
// network (/32, /64) after 5 failures and an account after 10 failures
// within 10 minutes, for 10 minutes, counted in memory.
type AuthConfig struct {
	// Store holds the counters and blocks; nil means a new MemoryStore on
	// Now. A shared store (ratelimit/redisstore) makes a password guesser
	// or a locked account blocked on every relay instance that shares it.
	Store Store
	// MaxFailures is the number of failures of one key within Window
	// whose last starts the block; 0 means DefaultAuthMaxFailures. It
	// applies to every key but account keys (UserKey).
	MaxFailures int
	// MaxUserFailures is MaxFailures for account keys (UserKey): many
	// clients guessing one account's password are stopped after this
	// many failures in all. 0 means DefaultAuthMaxUserFailures; negative
	// turns account counting off. Keep it above MaxFailures: anyone can
	// lock an account by failing on purpose, so one client alone should
	// be blocked before the account is.
	MaxUserFailures int
	// Class is the client network LoginKeys counts: one IPv4 host and one
	// IPv6 /64 by default (a host may use any address of its /64).
	Class Class
	// Window is how long failures are counted from the first one; 0 means
	// DefaultAuthWindow.
	Window time.Duration
	// Block is how long AUTH is refused after MaxFailures; 0 means
	// DefaultAuthBlock.
	Block time.Duration
	// OnError applies when the store cannot be asked. The default,
	// postern.OnErrorAccept, fails open: AUTH goes ahead and the error is
	// logged. postern.OnErrorTempFail refuses the attempt with 454 4.3.0,
	// postern.OnErrorReject with 554 5.3.0.
	OnError postern.ErrorPolicy
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
// SMTP AUTH (or web login) under its keys, LoginKeys: the client's network
// and the account tried. Before each attempt it asks CheckAuth, which
// refuses with "454 4.7.0" (RFC 4954's temporary authentication failure)
// once a key had MaxFailures failures (MaxUserFailures for an account)
// within Window, for Block. A locked account is refused even with the
// right password, and an unknown account is counted and locked like a
// known one, so the answers never tell which accounts exist. AUTH is not
// a stage of postern.Chain, so this is an API for the server, not a
// filter. It is safe for concurrent use.
//
// The network key stops one client trying many accounts; the account key
// stops many clients (a botnet) trying one account, but lets anyone lock
// a user out of AUTH for Block (the refusal is temporary, and sessions
// already authenticated are not affected). Callers may pass keys of their
// own; only UserKey keys count against MaxUserFailures.
type AuthLimiter struct {
	store   Store
	max     int64
	maxUser int64 // 0: account keys are not counted
	class   Class
	window  time.Duration
	block   time.Duration
	onError postern.ErrorPolicy // resolved
	log     *slog.Logger
	fails   failures

	failures, blocks, refused atomic.Uint64
}

// NewAuthLimiter validates cfg and returns the limiter.
func NewAuthLimiter(cfg AuthConfig) (*AuthLimiter, error) {
	if cfg.MaxFailures < 0 {
		return nil, fmt.Errorf("%w: negative MaxFailures %d", ErrConfig, cfg.MaxFailures)
	}
	if err := errors.Join(checkPositive("auth Window", cfg.Window), checkPositive("auth Block", cfg.Block),
		cfg.Class.validate("auth Class"), checkOnError("auth limiter", cfg.OnError)); err != nil {
		return nil, err
	}
	a := &AuthLimiter{store: cfg.Store, max: int64(cfg.MaxFailures), maxUser: int64(cfg.MaxUserFailures),
		class: cfg.Class, window: cfg.Window, block: cfg.Block, onError: cfg.OnError.Or(defaultOnError), log: cmp.Or(cfg.Logger, postern.DiscardLogger())}
	if a.max == 0 {
		a.max = DefaultAuthMaxFailures
	}
	switch {
	case a.maxUser == 0:
		a.maxUser = DefaultAuthMaxUserFailures
	case a.maxUser < 0:
		a.maxUser = 0
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

// LoginKeys returns the keys a login attempt from ip for user counts
// against: the client's network in the limiter's Class (IPKey) and the
// account (UserKey). An invalid ip (a Unix socket) or an empty user
// leaves its key out. SMTP AUTH and the quarantine page's login use the
// same keys, so failures on either count for both.
func (a *AuthLimiter) LoginKeys(ip netip.Addr, user string) []string {
	keys := make([]string, 0, 2)
	if k := IPKey(ip, a.class); k != "" {
		keys = append(keys, k)
	}
	if k := UserKey(user); k != "" && a.maxUser > 0 {
		keys = append(keys, k)
	}
	return keys
}

// limitFor is the number of failures that blocks key; 0: key is not
// counted.
func (a *AuthLimiter) limitFor(key string) int64 {
	if strings.HasPrefix(key, userKeyPrefix) {
		return a.maxUser
	}
	return a.max
}

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
	limit := a.limitFor(key)
	if limit == 0 {
		return nil
	}
	n, err := a.store.Incr(ctx, authCountKey(key), a.window)
	if err != nil {
		return a.recordFailed(ctx, key, err)
	}
	a.failures.Add(1)
	if n < limit {
		return nil
	}
	if err := a.store.Hold(ctx, authBlockKey(key), a.block); err != nil {
		return a.recordFailed(ctx, key, err)
	}
	if n == limit {
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
// store cannot be asked, OnError decides: pass (the default), "454 4.3.0
// Temporary authentication failure" (tempfail: AUTH has no 451 in RFC
// 4954 §6) or "554 5.3.0 Authentication unavailable" (reject).
func (a *AuthLimiter) CheckAuth(ctx context.Context, keys ...string) postern.Verdict {
	v, _ := a.Check(ctx, keys...)
	return v
}

// Check is CheckAuth that also says, for a refusal, how long until the
// block ends (an HTTP Retry-After); 0 for a refusal because the store
// failed.
func (a *AuthLimiter) Check(ctx context.Context, keys ...string) (postern.Verdict, time.Duration) {
	for _, key := range keys {
		blocked, left, err := a.Blocked(ctx, key)
		if err != nil {
			v := a.onError.Verdict(0, postern.ESC(4, 3, 0), "Authentication unavailable",
				"auth limit: store failed checking "+key)
			if v.Action == postern.TempFail {
				// RFC 4954 §6: AUTH's temporary failure is 454; it has no 451.
				v.Reply = postern.NewReply(454, postern.ESC(4, 3, 0), "Temporary authentication failure")
			}
			a.fails.record(ctx, err, slog.String("stage", "auth"), slog.String("filter", AuthFilterName),
				slog.String("action", v.Action.String()), slog.String("on_error", a.onError.String()), slog.String("key", key))
			return v, 0
		}
		if blocked {
			a.refused.Add(1)
			v := postern.TempFailed(454, postern.ESC(4, 7, 0), "Too many failed authentication attempts, try again later",
				fmt.Sprintf("auth limit: %s blocked for %s more after %d failures within %s",
					key, left.Round(time.Second), a.limitFor(key), a.window))
			if a.log.Enabled(ctx, slog.LevelDebug) {
				a.log.LogAttrs(ctx, slog.LevelDebug, "rate-limit decision", slog.String("stage", "auth"),
					slog.String("filter", AuthFilterName), slog.String("action", v.Action.String()),
					slog.Int("code", v.Reply.Code), slog.String("key", key), slog.String("reason", v.Reason))
			}
			return v, left
		}
	}
	return postern.Pass, 0
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
