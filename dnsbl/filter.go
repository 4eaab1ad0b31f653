package dnsbl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/postern/postern"
)

// FilterName is the filter's name in chains and logs.
const FilterName = "dnsbl"

// Where the filter records its results, for later filters and for the
// RCPT stage. A Result is stored whenever a check ran, listed or not.
var (
	// IPResultKey holds the client address check in Conn.Values.
	IPResultKey = postern.NewKey[Result]("dnsbl.ip")
	// HELOResultKey holds the HELO name check in Conn.Values; its Domain
	// is the name checked.
	HELOResultKey = postern.NewKey[Result]("dnsbl.helo")
	// SenderResultKey holds the sender domain check in Txn.Values.
	SenderResultKey = postern.NewKey[Result]("dnsbl.sender")
)

// Whitelisted reports whether the client address check of this connection
// found it on an allow list (Result.Whitelisted). Use it as a chain
// entry's Skip to spare DNSWL-listed clients later checks.
func Whitelisted(c *postern.Conn) bool {
	r, ok := postern.GetValue(&c.Values, IPResultKey)
	return ok && r.Whitelisted()
}

// FilterConfig configures a Filter.
type FilterConfig struct {
	// Checker does the lookups. Required.
	Checker *Checker
	// EnforceAt is postern.StageConnect (the default, also when 0) or
	// postern.StageRcpt.
	//
	// At StageConnect each check refuses at its own stage: the client
	// address before the banner (554, or 421 for a lookup failure, RFC
	// 5321 §3.1), the HELO name at HELO, the sender domain at MAIL.
	//
	// At StageRcpt the checks only record their results, and every RCPT
	// is refused (550, or 451) while one of them lists the client. The
	// refusal is logged with sender and recipient, and a client that
	// authenticates after connecting (a roaming user on a listed dynamic
	// address) is not refused.
	EnforceAt postern.Stage
	// CheckHELO checks the HELO/EHLO name against the domain zones.
	CheckHELO bool
	// CheckSender checks the envelope sender's domain against the domain
	// zones; the null sender is not checked.
	CheckSender bool
	// ClientResult, if set, is told the result of each check of a
	// client address (once per connection, at connect): what a pass
	// cache (ratelimit.PassCache) learns from, a client not listed
	// having passed the lists and a listed one failed them. It runs on
	// the session's goroutine. Trusted and authenticated clients are
	// not checked, so not reported.
	ClientResult func(ctx context.Context, c *postern.Conn, r Result)
	// Logger receives refusals (Info) and other results (Debug); nil
	// discards.
	Logger *slog.Logger
}

// Filter applies a Checker at the connect, HELO, MAIL and RCPT stages.
// Trusted (Conn.Trusted) and authenticated clients are never checked. It
// is safe for concurrent use.
type Filter struct {
	ck          *Checker
	atRcpt      bool
	checkHELO   bool
	checkSender bool
	onClient    func(context.Context, *postern.Conn, Result)
	log         *slog.Logger
}

var (
	_ postern.ConnectChecker = (*Filter)(nil)
	_ postern.HeloChecker    = (*Filter)(nil)
	_ postern.MailChecker    = (*Filter)(nil)
	_ postern.RcptChecker    = (*Filter)(nil)
)

// NewFilter validates cfg and returns the filter.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	if cfg.Checker == nil {
		return nil, fmt.Errorf("%w: filter needs a Checker", ErrConfig)
	}
	f := &Filter{ck: cfg.Checker, checkHELO: cfg.CheckHELO, checkSender: cfg.CheckSender, onClient: cfg.ClientResult,
		log: cmp.Or(cfg.Logger, postern.DiscardLogger())}
	switch cfg.EnforceAt {
	case 0, postern.StageConnect:
	case postern.StageRcpt:
		f.atRcpt = true
	default:
		return nil, fmt.Errorf("%w: EnforceAt %v (want connect or rcpt)", ErrConfig, cfg.EnforceAt)
	}
	if (cfg.CheckHELO || cfg.CheckSender) && len(cfg.Checker.domainZones) == 0 {
		return nil, fmt.Errorf("%w: CheckHELO or CheckSender without domain zones", ErrConfig)
	}
	return f, nil
}

// Name returns "dnsbl".
func (f *Filter) Name() string { return FilterName }

func exempt(c *postern.Conn) bool { return c.Trusted || c.Authenticated() }

// Replies. They are built per call: a Reply holds a slice that a later
// filter could change.
func listedReply(st postern.Stage, r Result) postern.Reply {
	text := "Service unavailable"
	if h, ok := r.Top(); ok {
		text += "; " + h.Text
	}
	if st == postern.StageConnect {
		return postern.NewReply(554, postern.ESC(5, 7, 1), text)
	}
	return postern.NewReply(550, postern.ESC(5, 7, 1), text)
}

// verdict turns a result into a refusal, or Continue with the result as
// reason when there is something to say.
func verdict(st postern.Stage, what string, r Result) postern.Verdict {
	switch {
	case r.Failed:
		// X.7.1, as sendmail's dnsbl FEATURE answers a lookup failure
		// with its "t" argument.
		return r.OnError.Verdict(st, postern.ESC(4, 7, 1), "DNSBL lookup failed", "dnsbl: "+what+" "+r.String())
	case r.Listed:
		return postern.Verdict{Action: postern.Reject, Reply: listedReply(st, r), Reason: "dnsbl: " + what + " " + r.String()}
	case len(r.Hits) > 0 || len(r.Errors) > 0:
		return postern.Verdict{Reason: "dnsbl: " + what + " " + r.String()}
	}
	return postern.Pass
}

// CheckConnect checks the client address and records the Result under
// IPResultKey. Enforcing at connect, a listed client gets 554 5.7.1
// "Service unavailable; Client host [192.0.2.1] blocked using zone; TXT",
// and a lookup failure of a zone whose OnError is tempfail "421 4.7.1
// DNSBL lookup failed, try again later" (reject: 554 5.7.1).
func (f *Filter) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	if exempt(c) || len(f.ck.ipZones) == 0 {
		return postern.Pass, nil
	}
	r, err := f.checkIP(ctx, c)
	if err != nil {
		return postern.Pass, err
	}
	if f.atRcpt {
		f.logResult(ctx, c, postern.StageConnect, "client", r, nil)
		return postern.Pass, nil
	}
	v := verdict(postern.StageConnect, "client", r)
	f.logDecision(ctx, c, postern.StageConnect, v, r)
	return v, nil
}

func (f *Filter) checkIP(ctx context.Context, c *postern.Conn) (Result, error) {
	r, err := f.ck.CheckIP(ctx, c.RemoteAddr())
	if errors.Is(err, ErrInvalidAddress) {
		return r, nil // no address (a local pipe): nothing to check
	}
	if err != nil {
		return r, err
	}
	postern.SetValue(&c.Values, IPResultKey, r)
	if f.onClient != nil {
		f.onClient(ctx, c, r)
	}
	return r, nil
}

// CheckHelo checks the HELO name when CheckHELO is set and records the
// Result under HELOResultKey. A name that is not a domain (an address
// literal) is not checked. Enforcing at connect, a listed name gets 550
// 5.7.1.
func (f *Filter) CheckHelo(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	if !f.checkHELO || exempt(c) {
		return postern.Pass, nil
	}
	r, ok, err := f.checkHELOName(ctx, c)
	if err != nil || !ok {
		return postern.Pass, err
	}
	if f.atRcpt {
		f.logResult(ctx, c, postern.StageHelo, "helo", r, nil)
		return postern.Pass, nil
	}
	v := verdict(postern.StageHelo, "helo", r)
	f.logDecision(ctx, c, postern.StageHelo, v, r, slog.String("helo", c.HELO))
	return v, nil
}

// checkHELOName returns the check of the current HELO name, from
// Conn.Values when it was checked already.
func (f *Filter) checkHELOName(ctx context.Context, c *postern.Conn) (Result, bool, error) {
	name, err := normalizeName(c.HELO)
	if err != nil {
		return Result{}, false, nil
	}
	if r, ok := postern.GetValue(&c.Values, HELOResultKey); ok && r.Domain == name {
		return r, true, nil
	}
	r, err := f.ck.CheckDomain(ctx, name)
	if err != nil {
		return r, false, err
	}
	postern.SetValue(&c.Values, HELOResultKey, r)
	return r, true, nil
}

// CheckMail checks the sender's domain when CheckSender is set and
// records the Result under SenderResultKey in t.Values. Enforcing at
// connect, a listed domain gets 550 5.7.1.
func (f *Filter) CheckMail(ctx context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	if !f.checkSender || exempt(c) {
		return postern.Pass, nil
	}
	r, ok, err := f.checkSenderDomain(ctx, t)
	if err != nil || !ok {
		return postern.Pass, err
	}
	if f.atRcpt {
		f.logResult(ctx, c, postern.StageMail, "sender", r, t)
		return postern.Pass, nil
	}
	v := verdict(postern.StageMail, "sender", r)
	f.logDecision(ctx, c, postern.StageMail, v, r, slog.String("sender", t.From))
	return v, nil
}

func (f *Filter) checkSenderDomain(ctx context.Context, t *postern.Txn) (Result, bool, error) {
	if t.From == "" {
		return Result{}, false, nil
	}
	name, err := normalizeName(postern.AddrDomain(t.From))
	if err != nil {
		return Result{}, false, nil
	}
	if r, ok := postern.GetValue(&t.Values, SenderResultKey); ok && r.Domain == name {
		return r, true, nil
	}
	r, err := f.ck.CheckDomain(ctx, name)
	if err != nil {
		return r, false, err
	}
	postern.SetValue(&t.Values, SenderResultKey, r)
	return r, true, nil
}

// CheckRcpt enforces when EnforceAt is StageRcpt: if the client address,
// the HELO name or the sender domain is listed, the recipient gets 550
// 5.7.1 with the listing's text; otherwise, if a lookup failed in a zone
// whose OnError is tempfail, 451 4.7.1 (reject: 550 5.7.1). A check the
// earlier stages did not record
// (the filter was not in their chains) is made here.
func (f *Filter) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	if !f.atRcpt || exempt(c) {
		return postern.Pass, nil
	}
	type check struct {
		what string
		res  Result
	}
	var checks [3]check
	n := 0
	if len(f.ck.ipZones) > 0 {
		res, ok := postern.GetValue(&c.Values, IPResultKey)
		if !ok {
			var err error
			if res, err = f.checkIP(ctx, c); err != nil {
				return postern.Pass, err
			}
		}
		checks[n] = check{"client", res}
		n++
	}
	if f.checkHELO {
		res, ok, err := f.checkHELOName(ctx, c)
		if err != nil {
			return postern.Pass, err
		}
		if ok {
			checks[n] = check{"helo", res}
			n++
		}
	}
	if f.checkSender {
		res, ok, err := f.checkSenderDomain(ctx, t)
		if err != nil {
			return postern.Pass, err
		}
		if ok {
			checks[n] = check{"sender", res}
			n++
		}
	}
	// A definite listing outranks a failed lookup elsewhere.
	pick := -1
	for i, ch := range checks[:n] {
		if ch.res.Listed && !ch.res.Failed {
			pick = i
			break
		}
	}
	if pick < 0 {
		for i, ch := range checks[:n] {
			if ch.res.Failed {
				pick = i
				break
			}
		}
	}
	if pick < 0 {
		return postern.Pass, nil
	}
	ch := checks[pick]
	v := verdict(postern.StageRcpt, ch.what, ch.res)
	f.logDecision(ctx, c, postern.StageRcpt, v, ch.res, slog.String("sender", t.From), slog.String("rcpt", r.Addr))
	return v, nil
}

func (f *Filter) logDecision(ctx context.Context, c *postern.Conn, st postern.Stage, v postern.Verdict, r Result, extra ...slog.Attr) {
	// The server logs refusals too, but without the zone, sender and
	// recipient; other outcomes are detail.
	level := slog.LevelDebug
	if v.Final() {
		level = slog.LevelInfo
	}
	if !f.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("conn_id", c.ID),
		slog.String("remote_ip", c.RemoteAddr().String()),
		slog.String("stage", st.String()),
		slog.String("filter", FilterName),
		slog.String("action", v.Action.String()),
	}
	if v.Reply.Code != 0 {
		attrs = append(attrs, slog.Int("code", v.Reply.Code))
	}
	if z := decisiveZone(r); z != "" {
		attrs = append(attrs, slog.String("zone", z))
	}
	attrs = append(attrs, extra...)
	attrs = append(attrs, slog.Float64("score", r.Score), slog.String("reason", v.Reason))
	f.log.LogAttrs(ctx, level, "dnsbl decision", attrs...)
}

// logResult logs a result recorded for enforcement at RCPT.
func (f *Filter) logResult(ctx context.Context, c *postern.Conn, st postern.Stage, what string, r Result, t *postern.Txn) {
	if len(r.Hits) == 0 && len(r.Errors) == 0 {
		return
	}
	extra := []slog.Attr{}
	if t != nil {
		extra = append(extra, slog.String("sender", t.From))
	}
	f.logDecision(ctx, c, st, postern.Verdict{Reason: "dnsbl: " + what + " " + r.String() + " (recorded for RCPT)"}, r, extra...)
}

// decisiveZone names the zone behind a result: for a failure the first
// zone that failed under the policy applied, else the top listing,
// else the first failed zone, else the first hit (an allow list).
func decisiveZone(r Result) string {
	if r.Failed {
		for _, e := range r.Errors {
			if e.Policy == r.OnError {
				return e.Zone
			}
		}
	}
	if h, ok := r.Top(); ok {
		return h.Zone
	}
	if len(r.Errors) > 0 {
		return r.Errors[0].Zone
	}
	if len(r.Hits) > 0 {
		return r.Hits[0].Zone
	}
	return ""
}
