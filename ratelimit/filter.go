package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// FilterName is the default name of a Filter in chains and logs.
const FilterName = "ratelimit"

// FilterConfig configures a Filter. Messages or Recipients must be set.
type FilterConfig struct {
	// Name names the filter in chains and logs and prefixes its store
	// keys, so two filters with different limits never share buckets;
	// FilterName when empty.
	Name string
	// Store holds the buckets; nil means a new MemoryStore on Now. A
	// shared store (ratelimit/redisstore) makes the limit apply across
	// relay instances.
	Store Store
	// Key picks what is counted; nil means ByUserOrClient(Class{}):
	// authenticated sessions per user, others per client address (/64 for
	// IPv6).
	Key KeyFunc
	// Messages limits MAIL commands per key (Postfix's
	// smtpd_client_message_rate_limit); zero is unlimited.
	Messages Rate
	// Recipients limits RCPT commands per key (Postfix's
	// smtpd_client_recipient_rate_limit); zero is unlimited.
	Recipients Rate
	// LimitTrusted counts trusted clients (Conn.Trusted: own networks, the
	// mail store) too; by default they are exempt.
	LimitTrusted bool
	// OnError applies when the store cannot be asked. The default,
	// postern.OnErrorAccept, fails open: the mail flows, unlimited, and
	// the error is logged and counted. postern.OnErrorTempFail answers
	// 451 4.3.0, postern.OnErrorReject 550 5.3.0.
	OnError postern.ErrorPolicy
	// Logger receives store errors (Warn, at most one line per 10 s) and
	// decisions (Debug); nil discards.
	Logger *slog.Logger
	// Now is the clock of the default store and of the error log; time.Now
	// when nil.
	Now func() time.Time
}

// FilterStats are a Filter's counters.
type FilterStats struct {
	// MessagesLimited and RecipientsLimited count commands answered 450.
	MessagesLimited   uint64
	RecipientsLimited uint64
	// StoreErrors counts calls the store could not answer.
	StoreErrors uint64
}

// Filter limits messages (at MAIL) and recipients (at RCPT) per key. Over
// the limit it answers, as Postfix does, "450 4.7.1 Error: too much mail
// from <ip>" or "450 4.7.1 Error: too many recipients from <ip>": a
// temporary failure, so legitimate mail is only delayed. Refused commands
// take no token. It is safe for concurrent use.
type Filter struct {
	name       string
	store      Store
	key        KeyFunc
	msgs, rcpt Rate
	trusted    bool
	onError    postern.ErrorPolicy // resolved
	log        *slog.Logger
	fails      failures

	msgLimited, rcptLimited atomic.Uint64
}

var (
	_ postern.MailChecker = (*Filter)(nil)
	_ postern.RcptChecker = (*Filter)(nil)
)

// NewFilter validates cfg and returns the filter.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	if err := cfg.Messages.validate("Messages"); err != nil {
		return nil, err
	}
	if err := cfg.Recipients.validate("Recipients"); err != nil {
		return nil, err
	}
	if err := checkOnError("filter", cfg.OnError); err != nil {
		return nil, err
	}
	if cfg.Messages.Unlimited() && cfg.Recipients.Unlimited() {
		return nil, fmt.Errorf("%w: filter limits nothing: set Messages or Recipients", ErrConfig)
	}
	f := &Filter{name: cfg.Name, store: cfg.Store, key: cfg.Key, msgs: cfg.Messages, rcpt: cfg.Recipients,
		trusted: cfg.LimitTrusted, onError: cfg.OnError.Or(defaultOnError), log: cmp.Or(cfg.Logger, postern.DiscardLogger())}
	if f.name == "" {
		f.name = FilterName
	}
	if f.key == nil {
		f.key = ByUserOrClient(Class{})
	}
	now := orNow(cfg.Now)
	if f.store == nil {
		f.store = newDefaultStore(now)
	}
	f.fails = failures{now: now, log: f.log}
	return f, nil
}

// Name returns the configured name.
func (f *Filter) Name() string { return f.name }

// Stats returns the counters.
func (f *Filter) Stats() FilterStats {
	return FilterStats{MessagesLimited: f.msgLimited.Load(), RecipientsLimited: f.rcptLimited.Load(),
		StoreErrors: f.fails.count.Load()}
}

// CheckMail takes a message token for the transaction's key.
func (f *Filter) CheckMail(ctx context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	return f.check(ctx, c, t, postern.StageMail, f.msgs, ":msg:", "Error: too much mail from ", "message", &f.msgLimited), nil
}

// CheckRcpt takes a recipient token for the transaction's key.
func (f *Filter) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, _ *postern.Rcpt) (postern.Verdict, error) {
	return f.check(ctx, c, t, postern.StageRcpt, f.rcpt, ":rcpt:", "Error: too many recipients from ", "recipient", &f.rcptLimited), nil
}

func (f *Filter) check(ctx context.Context, c *postern.Conn, t *postern.Txn, st postern.Stage, r Rate,
	kind, text, what string, limited *atomic.Uint64) postern.Verdict {
	if r.Unlimited() || (c.Trusted && !f.trusted) {
		return postern.Pass
	}
	key := f.key(c, t)
	if key == "" {
		return postern.Pass
	}
	res, err := f.store.Take(ctx, f.name+kind+key, r, 1)
	if err != nil {
		v := failVerdict(st, f.onError, fmt.Sprintf("%s: store failed counting %ss for %s", f.name, what, key))
		attrs := append(connAttrs(c, c.RemoteAddr(), st, f.name), slog.String("action", v.Action.String()),
			slog.String("on_error", f.onError.String()))
		f.fails.record(ctx, err, attrs...)
		return v
	}
	if res.Allowed {
		return postern.Pass
	}
	limited.Add(1)
	// Postfix names the client address whatever is counted; the key (a
	// user or sender) goes to the log only. The reason puts the key in
	// parentheses, so a report that counts refusals by reason counts
	// one class per limit, not one per source.
	v := postern.TempFailed(450, postern.ESC(4, 7, 1), text+ipString(c.RemoteAddr()),
		fmt.Sprintf("%s: %s rate %s exceeded (%s); next in %s", f.name, what, r, key, res.RetryAfter.Round(time.Millisecond)))
	logVerdict(ctx, f.log, c, st, f.name, v)
	return v
}
