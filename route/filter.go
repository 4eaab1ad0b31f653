package route

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/postern/postern"
)

// FilterName is the recipient verification filter's name in chains and
// logs.
const FilterName = "verify"

// VerifyResultKey holds the VerifyResult of a recipient in Rcpt.Values.
var VerifyResultKey = postern.NewKey[VerifyResult]("route.verify")

// FilterConfig configures a Filter.
type FilterConfig struct {
	// Verifier does the checks. Required.
	Verifier *Verifier
	// Domains are the local domains whose recipients are verified
	// ("example.com", or ".example.com" for its subdomains); recipients
	// elsewhere pass untouched. Required.
	Domains []string
	// Logger receives refusals; nil discards.
	Logger *slog.Logger
}

// Filter refuses unknown recipients of the local domains at RCPT: 550
// 5.1.1 for an address the list or the next hop does not know, and when
// the next hop could not answer what the Verifier's OnError says (4xx by
// default). It is safe for concurrent use.
type Filter struct {
	v       *Verifier
	domains domainSet
	log     *slog.Logger
}

var _ postern.RcptChecker = (*Filter)(nil)

// NewFilter validates cfg and returns the filter.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	if cfg.Verifier == nil {
		return nil, fmt.Errorf("%w: filter needs a Verifier", ErrConfig)
	}
	if len(cfg.Domains) == 0 {
		return nil, fmt.Errorf("%w: filter needs local Domains", ErrConfig)
	}
	ds, err := newDomainSet(cfg.Domains)
	if err != nil {
		return nil, fmt.Errorf("%w: Domains: %w", ErrConfig, err)
	}
	f := &Filter{v: cfg.Verifier, domains: ds, log: cfg.Logger}
	if f.log == nil {
		f.log = postern.DiscardLogger()
	}
	return f, nil
}

// Name returns FilterName.
func (f *Filter) Name() string { return FilterName }

// CheckRcpt verifies r.Addr when its domain is local and records the
// result under VerifyResultKey. A valid or unverifiable recipient passes
// (Continue), so later filters still run.
func (f *Filter) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	if !f.domains.match(r.Domain()) {
		return postern.Pass, nil
	}
	res, err := f.v.Verify(ctx, r.Addr)
	if err != nil {
		return postern.Pass, err
	}
	postern.SetValue(&r.Values, VerifyResultKey, res)
	var v postern.Verdict
	switch res.Status {
	case StatusInvalid:
		v = postern.Verdict{Action: postern.Reject, Reply: res.Reply}
	case StatusTempFail:
		v = postern.Verdict{Action: postern.TempFail, Reply: res.Reply}
	default:
		return postern.Pass, nil
	}
	v.Reason = "verify: " + res.Source
	if !res.Remote.IsZero() {
		v.Reason += ": " + res.RemoteMTA + " said " + res.Remote.Error()
	}
	if res.Cached {
		v.Reason += " (cached)"
	}
	f.log.LogAttrs(ctx, slog.LevelInfo, "recipient verification",
		slog.String("conn_id", c.ID), slog.String("remote_ip", c.RemoteAddr().String()),
		slog.String("stage", postern.StageRcpt.String()), slog.String("filter", FilterName),
		slog.String("action", v.Action.String()), slog.Int("code", v.Reply.Code),
		slog.String("sender", t.From), slog.String("rcpt", r.Addr), slog.String("reason", v.Reason))
	return v, nil
}
