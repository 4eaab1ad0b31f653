package ratelimit

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// GreylistName is the greylist filter's name in chains and logs.
const GreylistName = "greylist"

// Greylisting defaults, postgrey's: a retry is accepted 5 minutes after
// the first attempt, within 2 days of it (postgrey's --retry-window); a
// triplet that passed is kept 36 days after it was last seen
// (--max-age 35 plus a day's grace); a client network whose triplets
// passed 5 times is let through whoever it mails (--auto-whitelist-clients).
const (
	DefaultGreyMinDelay    = 5 * time.Minute
	DefaultGreyRetryWindow = 48 * time.Hour
	DefaultGreyPassTTL     = 36 * 24 * time.Hour
	DefaultGreyAutoAllow   = 5
)

// GreylistConfig configures a Greylist. The zero value greylists at RCPT,
// in memory, with the defaults above, by client network /24 (IPv4) or
// /64 (IPv6).
type GreylistConfig struct {
	// Store holds the triplets; nil means a new MemoryStore on Now. With
	// a shared store (ratelimit/redisstore) relays behind one MX name
	// share them: a client that retries at another relay passes there.
	// A MemoryStore's key bound (MaxKeys) bounds the triplets kept; past
	// it the least recently used go, and their clients are greylisted
	// again.
	Store Store
	// Class is the client part of the triplet. The zero value here means
	// Class{V4: 24, V6: 64}: a sender's outbound servers often share a
	// /24 and retry from another of its addresses.
	Class Class
	// At is postern.StageRcpt (the default, also when 0): each recipient
	// is answered 451 on its own; or postern.StageData: every triplet of
	// the message is checked at the end of DATA and the message is
	// answered 451 if one is new, so a sender with many recipients gets
	// one answer (it sends the message's bytes each time).
	At postern.Stage
	// MinDelay is how long after the first attempt a retry is accepted;
	// 0 means DefaultGreyMinDelay. RetryWindow is how long after the
	// first attempt a retry counts; 0 means DefaultGreyRetryWindow. A
	// retry after it starts again.
	MinDelay    time.Duration
	RetryWindow time.Duration
	// PassTTL is how long a triplet that passed is remembered after it
	// was last seen, and a client network is allowlisted; 0 means
	// DefaultGreyPassTTL.
	PassTTL time.Duration
	// AutoAllow: a client network whose triplets passed this many times
	// within PassTTL is let through for any sender and recipient; 0
	// means DefaultGreyAutoAllow, negative never.
	AutoAllow int
	// Exempt, if set, is asked after the built-in exemptions (trusted
	// and authenticated clients); a non-empty answer exempts the
	// transaction and is the reason logged. Wire DNSWL listings
	// (dnsbl.Whitelisted) and SPF passes of listed domains here.
	Exempt func(c *postern.Conn, t *postern.Txn) string
	// PassCache, if set, exempts the clients it knows (they passed the
	// front door's tests recently).
	PassCache *PassCache
	// OnError applies when the store cannot be asked. The default,
	// postern.OnErrorAccept, lets the mail through ungreylisted (and
	// logs); postern.OnErrorTempFail answers 451 4.3.0.
	OnError postern.ErrorPolicy
	// Observer, if set, is told of every decision (metrics). It runs on
	// the session's goroutine and must be quick.
	Observer func(GreyEvent)
	// Logger receives store errors (Warn, at most one line per 10 s) and
	// decisions (Debug); nil discards.
	Logger *slog.Logger
	// Now is the clock of the default store, of the day statistics and
	// of the error log; time.Now when nil.
	Now func() time.Time
}

// GreyOutcome is what greylisting did with one triplet.
type GreyOutcome uint8

// Outcomes.
const (
	// GreyNew: first attempt of the triplet; answered 451.
	GreyNew GreyOutcome = iota
	// GreyEarly: retried before MinDelay; answered 451 again.
	GreyEarly
	// GreyPassed: retried after MinDelay, within RetryWindow; accepted,
	// and the triplet is remembered.
	GreyPassed
	// GreyKnown: the triplet passed before; accepted.
	GreyKnown
	// GreyAllowed: the client network is auto-allowlisted; accepted.
	GreyAllowed
	// GreyExempt: the transaction is exempt; accepted.
	GreyExempt
	// GreyError: the store could not be asked; OnError decided.
	GreyError

	numGreyOutcomes
)

var greyOutcomeNames = [numGreyOutcomes]string{"greylisted", "early", "passed", "known", "allowed", "exempt", "error"}

// String returns the outcome's name: "greylisted", "early", "passed",
// "known", "allowed", "exempt", "error".
func (o GreyOutcome) String() string {
	if o < numGreyOutcomes {
		return greyOutcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// GreyEvent is one greylisting decision.
type GreyEvent struct {
	Outcome GreyOutcome
	Conn    *postern.Conn
	// Client is the client network of the triplet, Sender and Rcpt the
	// addresses (canonical, as in the Txn).
	Client       netip.Prefix
	Sender, Rcpt string
	// Waited is, for GreyPassed and GreyEarly, the time since the first
	// attempt.
	Waited time.Duration
	// Reason says why an exempt transaction was exempt.
	Reason string
}

// GreylistStats are a Greylist's counters since it was made, by outcome
// (indexed by GreyOutcome), and store errors.
type GreylistStats struct {
	Outcomes    [numGreyOutcomes]uint64
	StoreErrors uint64
}

// Greylist is triplet greylisting (client network, sender, recipient), as
// postgrey and milter-greylist do it: the first attempt of a triplet is
// answered "451 4.7.1 Greylisted, try again in N seconds"; a retry after
// MinDelay and within RetryWindow passes, and the triplet is remembered
// for PassTTL after it was last seen. Real MTAs retry; much spamware does
// not. Trusted and authenticated clients are never greylisted. It is a
// filter for the RCPT (or DATA) stage and safe for concurrent use.
type Greylist struct {
	store     Store
	class     Class
	atData    bool
	minDelay  time.Duration
	window    time.Duration
	passTTL   time.Duration
	autoAllow int64
	exempt    func(*postern.Conn, *postern.Txn) string
	pc        *PassCache
	onError   postern.ErrorPolicy
	observer  func(GreyEvent)
	log       *slog.Logger
	now       func() time.Time
	fails     failures
	outcomes  [numGreyOutcomes]atomic.Uint64
}

var (
	_ postern.RcptChecker = (*Greylist)(nil)
	_ postern.DataChecker = (*Greylist)(nil)
)

// NewGreylist validates cfg and returns the filter.
func NewGreylist(cfg GreylistConfig) (*Greylist, error) {
	if err := cfg.Class.validate("greylist"); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		what string
		d    time.Duration
	}{{"greylist MinDelay", cfg.MinDelay}, {"greylist RetryWindow", cfg.RetryWindow}, {"greylist PassTTL", cfg.PassTTL}} {
		if err := checkPositive(d.what, d.d); err != nil {
			return nil, err
		}
	}
	if err := checkOnError("greylist", cfg.OnError); err != nil {
		return nil, err
	}
	g := &Greylist{store: cfg.Store, class: cfg.Class, minDelay: cmp.Or(cfg.MinDelay, DefaultGreyMinDelay),
		window: cmp.Or(cfg.RetryWindow, DefaultGreyRetryWindow), passTTL: cmp.Or(cfg.PassTTL, DefaultGreyPassTTL),
		autoAllow: int64(cfg.AutoAllow), exempt: cfg.Exempt, pc: cfg.PassCache, onError: cfg.OnError.Or(defaultOnError),
		observer: cfg.Observer, log: cmp.Or(cfg.Logger, postern.DiscardLogger()), now: orNow(cfg.Now)}
	if g.class == (Class{}) {
		g.class = Class{V4: 24, V6: 64}
	}
	switch cfg.At {
	case 0, postern.StageRcpt:
	case postern.StageData:
		g.atData = true
	default:
		return nil, fmt.Errorf("%w: greylist At %v (want rcpt or data)", ErrConfig, cfg.At)
	}
	if g.minDelay >= g.window {
		return nil, fmt.Errorf("%w: greylist MinDelay %v is not shorter than RetryWindow %v", ErrConfig, g.minDelay, g.window)
	}
	if g.autoAllow == 0 {
		g.autoAllow = DefaultGreyAutoAllow
	}
	if g.store == nil {
		g.store = newDefaultStore(g.now)
	}
	g.fails = failures{now: g.now, log: g.log}
	return g, nil
}

// Name returns GreylistName.
func (g *Greylist) Name() string { return GreylistName }

// Stats returns the counters.
func (g *Greylist) Stats() GreylistStats {
	var s GreylistStats
	for i := range s.Outcomes {
		s.Outcomes[i] = g.outcomes[i].Load()
	}
	s.StoreErrors = g.fails.count.Load()
	return s
}

// CheckRcpt greylists the recipient's triplet when At is the RCPT stage.
func (g *Greylist) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	if g.atData {
		return postern.Pass, nil
	}
	return g.check(ctx, c, t, []string{r.Addr}, postern.StageRcpt), nil
}

// CheckData greylists every triplet of the message when At is the DATA
// stage: one new or early triplet defers the whole message.
func (g *Greylist) CheckData(ctx context.Context, c *postern.Conn, t *postern.Txn, _ *postern.Message) (postern.Verdict, error) {
	if !g.atData {
		return postern.Pass, nil
	}
	return g.CheckMessage(ctx, c, t), nil
}

// CheckMessage greylists every triplet of t at the DATA stage, whatever
// At says: for a caller that decides when to greylist, such as scan's
// SoftGreylist when rspamd's answer is "greylist". The exemptions apply
// as at the stages.
func (g *Greylist) CheckMessage(ctx context.Context, c *postern.Conn, t *postern.Txn) postern.Verdict {
	rcpts := make([]string, len(t.Rcpts))
	for i, r := range t.Rcpts {
		rcpts[i] = r.Addr
	}
	return g.check(ctx, c, t, rcpts, postern.StageData)
}

// check decides for the triplets of rcpts; the verdict defers when one of
// them must wait, with the longest wait as the hint.
func (g *Greylist) check(ctx context.Context, c *postern.Conn, t *postern.Txn, rcpts []string, st postern.Stage) postern.Verdict {
	client := g.class.Prefix(c.RemoteAddr())
	if reason := g.exemption(ctx, c, t); reason != "" || !client.IsValid() {
		for _, r := range rcpts {
			g.emit(GreyEvent{Outcome: GreyExempt, Conn: c, Client: client, Sender: t.From, Rcpt: r, Reason: reason})
		}
		return postern.Pass
	}
	var wait time.Duration
	deferred := 0
	for _, r := range rcpts {
		ev, err := g.triplet(ctx, client, t.From, r)
		ev.Conn = c
		if err != nil {
			ev.Outcome = GreyError
			g.emit(ev)
			v := failVerdict(st, g.onError, fmt.Sprintf("greylist: store failed for %s", client))
			attrs := append(connAttrs(c, c.RemoteAddr(), st, GreylistName), slog.String("action", v.Action.String()),
				slog.String("on_error", g.onError.String()))
			g.fails.record(ctx, err, attrs...)
			if v.Final() {
				return v
			}
			continue
		}
		g.emit(ev)
		if ev.Outcome == GreyNew || ev.Outcome == GreyEarly {
			deferred++
			wait = max(wait, g.minDelay-ev.Waited)
		}
	}
	if deferred == 0 {
		return postern.Pass
	}
	secs := int64((wait + time.Second - 1) / time.Second)
	v := postern.TempFailed(451, postern.ESC(4, 7, 1), fmt.Sprintf("Greylisted, please try again in %d seconds", secs),
		fmt.Sprintf("greylist: %d of %d triplets (%s) must wait; retry in %ds", deferred, len(rcpts), client, secs))
	logVerdict(ctx, g.log, c, st, GreylistName, v)
	return v
}

// passKnownKey caches, per connection, whether the pass cache knows the
// client: asked once, not at every RCPT.
var passKnownKey = postern.NewKey[bool]("ratelimit.greylist.passknown")

// exemption returns why the transaction is not greylisted, "" if it is.
func (g *Greylist) exemption(ctx context.Context, c *postern.Conn, t *postern.Txn) string {
	switch {
	case c.Trusted:
		return "trusted"
	case c.Authenticated():
		return "authenticated"
	}
	if g.exempt != nil {
		if r := g.exempt(c, t); r != "" {
			return r
		}
	}
	if g.pc != nil {
		known, ok := postern.GetValue(&c.Values, passKnownKey)
		if !ok {
			known, _ = g.pc.Known(ctx, c.RemoteAddr()) // an error: not known
			postern.SetValue(&c.Values, passKnownKey, known)
		}
		if known {
			return "pass cache"
		}
	}
	return ""
}

func (g *Greylist) emit(ev GreyEvent) {
	g.outcomes[ev.Outcome].Add(1)
	if g.observer != nil {
		g.observer(ev)
	}
}

// Store keys, each followed by a client's IPKey or a triplet's hash.
const (
	greyPendingPrefix = "grey:pending:" // first attempt seen, for RetryWindow
	greyPassPrefix    = "grey:pass:"    // the triplet passed, for PassTTL
	greyCountPrefix   = "grey:count:"   // passes of a client network
	greyAllowPrefix   = "grey:allow:"   // the client network is allowlisted
	greyDayPrefix     = "grey:day:"     // day statistics: greyDayPrefix + new|passed + ":" + YYYY-MM-DD
)

// triplet decides for one triplet.
func (g *Greylist) triplet(ctx context.Context, client netip.Prefix, from, rcpt string) (GreyEvent, error) {
	ev := GreyEvent{Client: client, Sender: from, Rcpt: rcpt}
	src := "ip:" + client.String()
	allowed, left, err := g.store.Held(ctx, greyAllowPrefix+src)
	if err != nil {
		return ev, err
	}
	if allowed {
		ev.Outcome = GreyAllowed
		return ev, g.refresh(ctx, greyAllowPrefix+src, left)
	}
	h := tripletHash(client, from, rcpt)
	passed, left, err := g.store.Held(ctx, greyPassPrefix+h)
	if err != nil {
		return ev, err
	}
	if passed {
		ev.Outcome = GreyKnown
		return ev, g.refresh(ctx, greyPassPrefix+h, left)
	}
	pending, left, err := g.store.Held(ctx, greyPendingPrefix+h)
	if err != nil {
		return ev, err
	}
	now := g.now()
	if !pending {
		ev.Outcome = GreyNew
		if err := g.store.Hold(ctx, greyPendingPrefix+h, g.window); err != nil {
			return ev, err
		}
		g.countDay(ctx, "new", now)
		return ev, nil
	}
	ev.Waited = max(g.window-left, 0)
	if ev.Waited < g.minDelay {
		ev.Outcome = GreyEarly
		return ev, nil
	}
	ev.Outcome = GreyPassed
	if err := g.store.Hold(ctx, greyPassPrefix+h, g.passTTL); err != nil {
		return ev, err
	}
	_ = g.store.Delete(ctx, greyPendingPrefix+h) // it expires anyway
	g.countDay(ctx, "passed", now.Add(-ev.Waited))
	if g.autoAllow > 0 {
		n, err := g.store.Incr(ctx, greyCountPrefix+src, g.passTTL)
		if err == nil && n >= g.autoAllow {
			err = g.store.Hold(ctx, greyAllowPrefix+src, g.passTTL)
		}
		if err != nil {
			return ev, err
		}
	}
	return ev, nil
}

// refresh extends a pass or allowlisting that was just used, once a day
// at most: PassTTL counts from when the triplet was last seen.
func (g *Greylist) refresh(ctx context.Context, key string, left time.Duration) error {
	if left > g.passTTL-min(24*time.Hour, g.passTTL/2) {
		return nil
	}
	return g.store.Hold(ctx, key, g.passTTL)
}

// countDay counts a new or passed triplet under its (first attempt's)
// UTC day; a failure only loses a statistic.
func (g *Greylist) countDay(ctx context.Context, what string, day time.Time) {
	_, _ = g.store.Incr(ctx, greyDayPrefix+what+":"+day.UTC().Format(time.DateOnly), g.window+greyDayKeep)
}

// greyDayKeep is how long day statistics outlive the retry window.
const greyDayKeep = 8 * 24 * time.Hour

// GreylistDay are greylisting's figures for the triplets first seen on one
// UTC day, in the store (so, with a shared store, for every relay that
// shares it).
type GreylistDay struct {
	// Day is the UTC day.
	Day time.Time
	// Greylisted are the new triplets answered 451; Passed those of them
	// that retried in time and passed.
	Greylisted, Passed int64
	// NeverRetried = Greylisted - Passed, once Final: the retry window
	// of the day's last triplet has closed.
	NeverRetried int64
	Final        bool
}

// Day returns the figures of the UTC day holding day. They are kept for
// RetryWindow plus 8 days.
func (g *Greylist) Day(ctx context.Context, day time.Time) (GreylistDay, error) {
	d := day.UTC()
	d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	out := GreylistDay{Day: d}
	var err error
	if out.Greylisted, err = g.store.Count(ctx, greyDayPrefix+"new:"+d.Format(time.DateOnly)); err != nil {
		return out, fmt.Errorf("ratelimit: greylist: %w", err)
	}
	if out.Passed, err = g.store.Count(ctx, greyDayPrefix+"passed:"+d.Format(time.DateOnly)); err != nil {
		return out, fmt.Errorf("ratelimit: greylist: %w", err)
	}
	out.Final = !g.now().Before(d.Add(24*time.Hour + g.window))
	if out.Final {
		out.NeverRetried = max(out.Greylisted-out.Passed, 0)
	}
	return out, nil
}

// RetryWindow returns the retry window in force.
func (g *Greylist) RetryWindow() time.Duration { return g.window }

// tripletHash names a triplet in the store: fixed length whatever the
// addresses, and nothing a client chose in the key.
func tripletHash(client netip.Prefix, from, rcpt string) string {
	h := sha256.New()
	h.Write([]byte(client.String()))
	h.Write([]byte{0})
	h.Write([]byte(GreySender(from)))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(rcpt)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// GreySender is the sender as greylisting compares it, as postgrey does:
// lower case, a BATV tag removed ("prvs=1234abcd=user@example.org" and
// "btv1==123==user@example.org" are user@example.org) and every number
// standing alone in the local part written "#" (VERP and bounce
// addresses: "list-bounces-4711@example.org" is
// "list-bounces-#@example.org"), so the retry of a message whose sender
// changes with each attempt is recognised. The null sender is "".
func GreySender(addr string) string {
	addr = strings.ToLower(addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local, domain := addr[:at], addr[at:]
	switch {
	case strings.HasPrefix(local, "prvs="), strings.HasPrefix(local, "msprvs1="):
		// prvs=tag-val=loc-core (draft-levine-smtp-batv §4.1).
		if _, rest, ok := strings.Cut(local[strings.IndexByte(local, '=')+1:], "="); ok && rest != "" {
			local = rest
		}
	case strings.HasPrefix(local, "btv1=="):
		if _, rest, ok := strings.Cut(local[len("btv1=="):], "=="); ok && rest != "" {
			local = rest
		}
	}
	return hashDigits(local) + domain
}

// hashDigits writes each run of digits between word boundaries as "#"
// (Perl's s/\b\d+\b/#/g: "a1" stays, "a-1" becomes "a-#").
func hashDigits(s string) string {
	word := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	var b strings.Builder
	for i := 0; i < len(s); {
		if !digit(s[i]) || i > 0 && word(s[i-1]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && digit(s[j]) {
			j++
		}
		if j < len(s) && word(s[j]) {
			b.WriteString(s[i:j])
		} else {
			b.WriteByte('#')
		}
		i = j
	}
	return b.String()
}
