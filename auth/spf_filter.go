package auth

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/postern/postern"
)

// SPFFilterName is the SPF filter's name in chains and logs.
const SPFFilterName = "spf"

// SPFFilterConfig configures an SPFFilter. The zero value of every field but
// Checker is its default: every result is only recorded (Received-SPF and
// Authentication-Results), nothing is refused.
type SPFFilterConfig struct {
	// Checker runs the checks. Required.
	Checker *SPFChecker
	// Actions says what to do at MAIL for a result: postern.Reject or
	// postern.TempFail. A result not in the map, or mapped to
	// postern.Continue, is only recorded. Pass cannot be refused.
	//
	// Replies (RFC 7372 §3.2): Reject of fail, softfail, neutral or none is
	// "550 5.7.23 SPF fail" (the result name in the text), of permerror
	// "550 5.7.24 SPF permerror"; TempFail is "451 4.7.24 SPF temperror"
	// (the result name in the text; RFC 7208 §8.6 suggests a 4xx reply for
	// temperror).
	Actions map[Status]postern.Action
	// Receiver is our host name in Received-SPF; "" means "localhost".
	Receiver string
	// NoReceivedSPF leaves out the Received-SPF field; the result still
	// goes into Authentication-Results through VerifyFilter.
	NoReceivedSPF bool
	// Logger receives refusals (Info) and results (Debug); nil discards.
	Logger *slog.Logger
}

// SPFFilter checks SPF at MAIL and records the result in Txn.Values
// (SPFResultKey); at DATA it adds a Received-SPF field. Trusted
// (Conn.Trusted) and authenticated clients are not checked. It is safe for
// concurrent use.
type SPFFilter struct {
	ck       *SPFChecker
	actions  map[Status]postern.Action
	receiver string
	noHeader bool
	log      *slog.Logger
}

var (
	_ postern.MailChecker = (*SPFFilter)(nil)
	_ postern.DataChecker = (*SPFFilter)(nil)
)

// NewSPFFilter validates cfg and returns the filter.
func NewSPFFilter(cfg SPFFilterConfig) (*SPFFilter, error) {
	if cfg.Checker == nil {
		return nil, fmt.Errorf("%w: SPF filter needs a Checker", ErrConfig)
	}
	f := &SPFFilter{ck: cfg.Checker, actions: make(map[Status]postern.Action), receiver: cfg.Receiver,
		noHeader: cfg.NoReceivedSPF, log: orDiscard(cfg.Logger)}
	if f.receiver == "" {
		f.receiver = "localhost"
	}
	for st, a := range cfg.Actions {
		switch {
		case st == Policy || !validStatus(st):
			return nil, fmt.Errorf("%w: %q is not an SPF result", ErrConfig, st)
		case a == postern.Continue:
		case st == Pass:
			return nil, fmt.Errorf("%w: SPF pass cannot be refused", ErrConfig)
		case a == postern.Reject || a == postern.TempFail:
			f.actions[st] = a
		default:
			return nil, fmt.Errorf("%w: SPF action for %s must be reject or tempfail, not %v", ErrConfig, st, a)
		}
	}
	return f, nil
}

// Name returns "spf".
func (f *SPFFilter) Name() string { return SPFFilterName }

func exempt(c *postern.Conn) bool { return c.Trusted || c.Authenticated() }

// CheckMail checks the MAIL FROM identity (the HELO identity for <>),
// records the result under SPFResultKey and applies Actions.
func (f *SPFFilter) CheckMail(ctx context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	if exempt(c) {
		postern.DeleteValue(&t.Values, SPFResultKey)
		return postern.Pass, nil
	}
	ip := c.RemoteAddr()
	if !ip.IsValid() {
		return postern.Pass, nil // a local pipe: no address to check
	}
	r := f.ck.Check(ctx, ip, c.HELO, t.From)
	postern.SetValue(&t.Values, SPFResultKey, r)
	v := f.verdict(r)
	level := slog.LevelDebug
	if v.Final() {
		level = slog.LevelInfo
	}
	if f.log.Enabled(ctx, level) {
		attrs := []slog.Attr{
			slog.String("conn_id", c.ID),
			slog.String("remote_ip", ip.String()),
			slog.String("stage", postern.StageMail.String()),
			slog.String("filter", SPFFilterName),
			slog.String("action", v.Action.String()),
		}
		if v.Final() {
			attrs = append(attrs, slog.Int("code", v.Reply.Code))
		}
		attrs = append(attrs, slog.String("identity", r.Identity), slog.String("domain", r.Domain),
			slog.String("result", string(r.Status)), slog.String("problem", r.Problem))
		f.log.LogAttrs(ctx, level, "spf decision", attrs...)
	}
	return v, nil
}

func (f *SPFFilter) verdict(r SPFResult) postern.Verdict {
	reason := "spf: " + string(r.Status) + " for " + r.Identity + " " + r.Domain
	if r.Problem != "" {
		reason += ": " + r.Problem
	}
	switch f.actions[r.Status] {
	case postern.Reject:
		if r.Status == PermError || r.Status == TempError {
			return postern.Rejected(550, postern.ESC(5, 7, 24), "SPF "+string(r.Status), reason)
		}
		return postern.Rejected(550, postern.ESC(5, 7, 23), "SPF "+string(r.Status), reason)
	case postern.TempFail:
		return postern.TempFailed(451, postern.ESC(4, 7, 24), "SPF "+string(r.Status), reason)
	}
	return postern.Pass
}

// CheckData adds the Received-SPF field for the result recorded at MAIL,
// if any. It never refuses.
func (f *SPFFilter) CheckData(_ context.Context, _ *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	if f.noHeader {
		return postern.Pass, nil
	}
	if r, ok := postern.GetValue(&t.Values, SPFResultKey); ok {
		m.AddHeader("Received-SPF", r.ReceivedSPF(f.receiver))
	}
	return postern.Pass, nil
}
