package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// GuardName is the harvest guard's name in chains and logs.
const GuardName = "harvest-guard"

// Harvest guard defaults: 10 unknown recipients within 10 minutes hold the
// source for 30 minutes.
const (
	DefaultHarvestThreshold = 10
	DefaultHarvestWindow    = 10 * time.Minute
	DefaultHarvestHold      = 30 * time.Minute
)

// GuardConfig configures a Guard. The zero value holds a client network
// (IPv4 address, IPv6 /64) for 30 minutes after 10 unknown recipients in
// 10 minutes, counted in memory.
type GuardConfig struct {
	// Store holds the counters and holds; nil means a new MemoryStore on
	// Now. With a shared store (ratelimit/redisstore) unknown recipients
	// seen by one relay instance hold the source on all of them.
	Store Store
	// Class is the source counted; zero is IPv4 /32 and IPv6 /64.
	Class Class
	// Threshold is the number of unknown recipients within Window whose
	// last starts the hold; 0 means DefaultHarvestThreshold.
	Threshold int
	// Window is how long unknown recipients are counted from the first
	// one (a fixed window); 0 means DefaultHarvestWindow.
	Window time.Duration
	// HoldTime is how long a source is answered 451 after reaching the
	// threshold; 0 means DefaultHarvestHold. It ends by itself.
	HoldTime time.Duration
	// UnknownCodes are the enhanced status codes that Observe counts as
	// "unknown recipient" on a RCPT Reject with code 550, 551 or 553. nil
	// means just 5.1.1 (RFC 3463 "bad destination mailbox address": the
	// mailbox does not exist), which sendmail ("User unknown"), Postfix
	// ("User unknown in local recipient table") and Postern's recipient
	// verification use. 5.1.0, 5.1.2 (no such domain), 5.1.3 (bad syntax),
	// 5.2.1 (mailbox disabled) and 5.7.1 (relay denied) are not the
	// directory answering "no such user", so they are not counted unless
	// listed here.
	UnknownCodes []postern.EnhancedCode
	// AtMail also answers a held source at MAIL, and AtConnect at connect
	// (421, before the banner). The RCPT stage always checks.
	AtMail    bool
	AtConnect bool
	// OnError applies when the store cannot be asked. The default,
	// postern.OnErrorAccept, fails open and logs; postern.OnErrorTempFail
	// answers 451 4.3.0 (421 at connect), postern.OnErrorReject 550 5.3.0
	// (554 at connect).
	OnError postern.ErrorPolicy
	// Logger receives holds (Warn), store errors (Warn, at most one line
	// per 10 s) and decisions (Debug); nil discards.
	Logger *slog.Logger
	// Now is the clock of the default store and of the error log;
	// time.Now when nil.
	Now func() time.Time
}

// GuardStats are a Guard's counters.
type GuardStats struct {
	// Unknown counts unknown recipients recorded.
	Unknown uint64
	// Holds counts holds started (a source reaching the threshold).
	Holds uint64
	// Refused counts commands answered 451 (or 421) because the source was
	// held.
	Refused uint64
	// StoreErrors counts calls the store could not answer.
	StoreErrors uint64
}

// Guard is the directory-harvest guard. It counts "unknown recipient"
// answers per source across connections and, once a source reaches the
// threshold within the window, answers it "451 4.7.1" for the hold time,
// after which the source is served again without anyone's help. Trusted
// and authenticated sessions are neither counted nor held.
//
// It learns of unknown recipients through Observe (a postern.Observer on
// the chain that holds the recipient check) or RecordUnknown (for an MTA
// that decides without a Chain), and it is itself a filter: put it in the
// RCPT stage before the recipient check, so a held source learns nothing
// more. It is safe for concurrent use.
type Guard struct {
	store     Store
	class     Class
	threshold int64
	window    time.Duration
	hold      time.Duration
	codes     []postern.EnhancedCode
	atMail    bool
	atConnect bool
	onError   postern.ErrorPolicy // resolved
	log       *slog.Logger
	fails     failures

	unknown, holds, refused atomic.Uint64
}

var (
	_ postern.ConnectChecker = (*Guard)(nil)
	_ postern.MailChecker    = (*Guard)(nil)
	_ postern.RcptChecker    = (*Guard)(nil)
)

// NewGuard validates cfg and returns the guard.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if err := cfg.Class.validate("harvest guard"); err != nil {
		return nil, err
	}
	if cfg.Threshold < 0 {
		return nil, fmt.Errorf("%w: negative harvest threshold %d", ErrConfig, cfg.Threshold)
	}
	for _, d := range []struct {
		what string
		d    time.Duration
	}{{"harvest Window", cfg.Window}, {"harvest HoldTime", cfg.HoldTime}} {
		if err := checkPositive(d.what, d.d); err != nil {
			return nil, err
		}
	}
	if err := checkOnError("harvest guard", cfg.OnError); err != nil {
		return nil, err
	}
	for _, e := range cfg.UnknownCodes {
		if e[0] != 5 {
			return nil, fmt.Errorf("%w: unknown-recipient code %s is not permanent (5.x.x)", ErrConfig, e)
		}
	}
	g := &Guard{store: cfg.Store, class: cfg.Class, threshold: int64(cfg.Threshold), window: cfg.Window,
		hold: cfg.HoldTime, codes: slices.Clone(cfg.UnknownCodes), atMail: cfg.AtMail, atConnect: cfg.AtConnect,
		onError: cfg.OnError.Or(defaultOnError), log: cmp.Or(cfg.Logger, postern.DiscardLogger())}
	g.threshold = cmp.Or(g.threshold, DefaultHarvestThreshold)
	g.window = cmp.Or(g.window, DefaultHarvestWindow)
	g.hold = cmp.Or(g.hold, DefaultHarvestHold)
	if g.codes == nil {
		g.codes = []postern.EnhancedCode{postern.ESC(5, 1, 1)}
	}
	now := orNow(cfg.Now)
	if g.store == nil {
		g.store = newDefaultStore(now)
	}
	g.fails = failures{now: now, log: g.log}
	return g, nil
}

// Name returns GuardName.
func (g *Guard) Name() string { return GuardName }

// Stats returns the counters.
func (g *Guard) Stats() GuardStats {
	return GuardStats{Unknown: g.unknown.Load(), Holds: g.holds.Load(), Refused: g.refused.Load(),
		StoreErrors: g.fails.count.Load()}
}

// Store keys: holdPrefix and countPrefix, then the source's IPKey.
const (
	holdPrefix  = "harvest:hold:"
	countPrefix = "harvest:count:"
)

func countKey(src string) string { return countPrefix + src }
func holdKey(src string) string  { return holdPrefix + src }

// IsUnknownRecipient reports whether d is the directory saying "no such
// user": a Reject at the RCPT stage with code 550, 551 or 553 and one of
// the configured enhanced codes (5.1.1 by default).
func (g *Guard) IsUnknownRecipient(d postern.Decision) bool {
	if d.Stage != postern.StageRcpt || d.Verdict.Action != postern.Reject {
		return false
	}
	switch d.Verdict.Reply.Code {
	case 550, 551, 553:
	default:
		return false
	}
	return slices.Contains(g.codes, d.Verdict.Reply.Enhanced)
}

// Observe counts an unknown-recipient decision. It has the signature of a
// postern.Observer; call it from the Observer of the chain that holds the
// recipient check (one chain only, or nested chains count twice):
//
//	ChainConfig{..., Observer: guard.Observe}
//
// Decisions of trusted or authenticated sessions are ignored. A store
// error is counted and logged, not returned.
func (g *Guard) Observe(ctx context.Context, d postern.Decision) {
	if d.Conn == nil || exempt(d.Conn) || !g.IsUnknownRecipient(d) {
		return
	}
	_ = g.record(ctx, d.Conn.RemoteAddr(), d.Conn)
}

// RecordUnknown counts one unknown recipient for ip's network, for MTAs
// that decide recipients without a postern.Chain. The caller leaves out
// trusted and authenticated clients. It returns the store's error, after
// counting and logging it.
func (g *Guard) RecordUnknown(ctx context.Context, ip netip.Addr) error {
	return g.record(ctx, ip, nil)
}

func (g *Guard) record(ctx context.Context, ip netip.Addr, c *postern.Conn) error {
	src := IPKey(ip, g.class)
	if src == "" {
		return nil
	}
	n, err := g.store.Incr(ctx, countKey(src), g.window)
	if err != nil {
		return g.recordFailed(ctx, ip, c, src, err)
	}
	g.unknown.Add(1)
	if n < g.threshold {
		return nil
	}
	// Every unknown recipient at or past the threshold (seen by an MTA
	// that does not ask the guard first) restarts the hold.
	if err := g.store.Hold(ctx, holdKey(src), g.hold); err != nil {
		return g.recordFailed(ctx, ip, c, src, err)
	}
	if n == g.threshold {
		g.holds.Add(1)
		attrs := append(connAttrs(c, ip, postern.StageRcpt, GuardName), slog.String("source", src),
			slog.String("action", "hold"), slog.Int64("unknown", n),
			slog.Duration("window", g.window), slog.Duration("hold", g.hold))
		g.log.LogAttrs(ctx, slog.LevelWarn, "directory harvest suspected: holding source", attrs...)
	}
	return nil
}

func (g *Guard) recordFailed(ctx context.Context, ip netip.Addr, c *postern.Conn, src string, err error) error {
	attrs := append(connAttrs(c, ip, postern.StageRcpt, GuardName), slog.String("source", src),
		slog.String("action", "count"))
	g.fails.record(ctx, err, attrs...)
	return fmt.Errorf("ratelimit: harvest guard: recording unknown recipient for %s: %w", src, err)
}

// Held reports whether ip's network is held, and for how much longer.
func (g *Guard) Held(ctx context.Context, ip netip.Addr) (bool, time.Duration, error) {
	src := IPKey(ip, g.class)
	if src == "" {
		return false, 0, nil
	}
	return g.store.Held(ctx, holdKey(src))
}

// Release ends a hold on ip's network at once and forgets its count: for
// the postmaster who has found the "harvester" to be a customer's broken
// mailing list. Holds end by themselves; this is never needed.
func (g *Guard) Release(ctx context.Context, ip netip.Addr) error {
	src := IPKey(ip, g.class)
	if src == "" {
		return nil
	}
	if err := g.store.Delete(ctx, holdKey(src)); err != nil {
		return err
	}
	return g.store.Delete(ctx, countKey(src))
}

func exempt(c *postern.Conn) bool { return c.Trusted || c.Authenticated() }

// CheckConnect answers a held source 421 4.7.1 before the banner when
// AtConnect is set.
func (g *Guard) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	if !g.atConnect {
		return postern.Pass, nil
	}
	return g.check(ctx, c, postern.StageConnect), nil
}

// CheckMail answers a held source 451 4.7.1 when AtMail is set.
func (g *Guard) CheckMail(ctx context.Context, c *postern.Conn, _ *postern.Txn) (postern.Verdict, error) {
	if !g.atMail {
		return postern.Pass, nil
	}
	return g.check(ctx, c, postern.StageMail), nil
}

// CheckRcpt answers a held source 451 4.7.1.
func (g *Guard) CheckRcpt(ctx context.Context, c *postern.Conn, _ *postern.Txn, _ *postern.Rcpt) (postern.Verdict, error) {
	return g.check(ctx, c, postern.StageRcpt), nil
}

func (g *Guard) check(ctx context.Context, c *postern.Conn, st postern.Stage) postern.Verdict {
	if exempt(c) {
		return postern.Pass
	}
	ip := c.RemoteAddr()
	hk := prefixedIPKey(holdPrefix, ip, g.class)
	if hk == "" {
		return postern.Pass
	}
	src := hk[len(holdPrefix):]
	held, left, err := g.store.Held(ctx, hk)
	if err != nil {
		v := failVerdict(st, g.onError, "harvest guard: store failed checking "+src)
		attrs := append(connAttrs(c, ip, st, GuardName), slog.String("action", v.Action.String()),
			slog.String("on_error", g.onError.String()))
		g.fails.record(ctx, err, attrs...)
		return v
	}
	if !held {
		return postern.Pass
	}
	g.refused.Add(1)
	code := 451
	if st == postern.StageConnect {
		code = 421
	}
	v := postern.TempFailed(code, postern.ESC(4, 7, 1),
		"Too many unknown recipients from "+ip.String()+", try again later",
		fmt.Sprintf("harvest guard: %s held for %s more after %d unknown recipients within %s",
			src, left.Round(time.Second), g.threshold, g.window))
	logVerdict(ctx, g.log, c, st, GuardName, v)
	return v
}
