package auth

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/postern/postern"
)

// VerifyFilterName is the verify filter's name in chains and logs.
const VerifyFilterName = "auth-verify"

// DMARCMode says what VerifyFilter does with a DMARC failure.
type DMARCMode uint8

const (
	// DMARCTagOnly records the result in Authentication-Results and
	// Txn.Values and refuses nothing. The zero value.
	DMARCTagOnly DMARCMode = iota
	// DMARCEnforce honours the domain's disposition: reject is answered
	// 550 5.7.1, quarantine gives a postern.Quarantine verdict.
	DMARCEnforce
	// DMARCQuarantineOnly quarantines messages the domain asks to reject or
	// quarantine, and rejects none.
	DMARCQuarantineOnly
)

// VerifyFilterConfig configures a VerifyFilter. AuthServID is required; the
// zero value of every other field is its default: no DKIM, no DMARC (only
// the SPF result and the removal of forged fields), tag only.
type VerifyFilterConfig struct {
	// AuthServID names us in Authentication-Results (RFC 8601 §2.5),
	// usually the host name. Required.
	AuthServID string
	// RemoveIDs are more authserv-ids whose received Authentication-Results
	// fields are removed, for the other hosts of our site.
	RemoveIDs []string
	// DKIM verifies signatures; nil leaves DKIM out.
	DKIM *DKIMVerifier
	// DMARC evaluates DMARC; nil leaves DMARC out. It needs the SPF result
	// (SPFFilter earlier in the chain) and DKIM to be of any use.
	DMARC *DMARCChecker
	// Mode applies DMARC failures.
	Mode DMARCMode
	// OnTempError applies when DMARC could not be evaluated now (a DNS
	// failure: temperror). The default, postern.OnErrorAccept, only tags
	// (dmarc=temperror); postern.OnErrorTempFail answers 451 4.7.1, so
	// the sender retries when DNS answers again; postern.OnErrorReject
	// answers 554 5.7.1.
	OnTempError postern.ErrorPolicy
	// OnPermError is postern.Continue (the default) or postern.Reject,
	// which answers 550 5.7.1 for a message whose From field has no single
	// author domain or whose domain publishes an unusable record (RFC 7489
	// §6.6.1).
	OnPermError postern.Action
	// RemoveOnly makes a filter that checks nothing: it removes received
	// Authentication-Results fields that claim our authserv-id and adds
	// none of its own (a field saying "none" for every message tells the
	// reader nothing). DKIM and DMARC must be nil.
	RemoveOnly bool
	// Logger receives refusals (Info) and results (Debug); nil discards.
	Logger *slog.Logger
}

// VerifyFilter is the DATA-stage filter of inbound mail. It removes
// received Authentication-Results fields that claim our authserv-id,
// verifies DKIM on the received bytes, evaluates DMARC, adds one
// Authentication-Results field (iprev from the connection's reverse DNS
// when the server looked it up, SPF from the MAIL stage, DKIM, DMARC), and
// then applies the DMARC disposition. The field is added before the
// verdict, so a quarantined message carries it too. The SPF result comes
// from Txn.Values, where SPFFilter put it at MAIL. Results go to
// Txn.Values (DKIMResultsKey, DMARCResultKey) for later filters.
//
// Trusted and authenticated clients are not checked and get no
// Authentication-Results field, but forged fields are removed from their
// messages too; with RemoveOnly nobody's mail gets one. It is safe for
// concurrent use.
type VerifyFilter struct {
	id     string
	ids    []string
	dkim   *DKIMVerifier
	dmarc  *DMARCChecker
	mode   DMARCMode
	onTemp postern.ErrorPolicy // resolved
	onPerm postern.Action
	// removeOnly: no checks, no field of our own.
	removeOnly bool
	log        *slog.Logger
}

var _ postern.DataChecker = (*VerifyFilter)(nil)

// NewVerifyFilter validates cfg and returns the filter.
func NewVerifyFilter(cfg VerifyFilterConfig) (*VerifyFilter, error) {
	if cfg.AuthServID == "" || AuthServID(cfg.AuthServID) != cfg.AuthServID {
		return nil, fmt.Errorf("%w: AuthServID %q must be one token (a host name)", ErrConfig, cfg.AuthServID)
	}
	if cfg.Mode > DMARCQuarantineOnly {
		return nil, fmt.Errorf("%w: unknown DMARC mode %d", ErrConfig, cfg.Mode)
	}
	if !cfg.OnTempError.Valid() {
		return nil, fmt.Errorf("%w: unknown OnTempError %v", ErrConfig, cfg.OnTempError)
	}
	if cfg.OnPermError != postern.Continue && cfg.OnPermError != postern.Reject {
		return nil, fmt.Errorf("%w: OnPermError must be continue or reject", ErrConfig)
	}
	if cfg.RemoveOnly && (cfg.DKIM != nil || cfg.DMARC != nil) {
		return nil, fmt.Errorf("%w: RemoveOnly checks nothing: DKIM and DMARC must be nil", ErrConfig)
	}
	return &VerifyFilter{id: cfg.AuthServID, ids: append([]string{cfg.AuthServID}, cfg.RemoveIDs...),
		dkim: cfg.DKIM, dmarc: cfg.DMARC, mode: cfg.Mode, onTemp: cfg.OnTempError.Or(postern.OnErrorAccept), onPerm: cfg.OnPermError,
		removeOnly: cfg.RemoveOnly, log: orDiscard(cfg.Logger)}, nil
}

// Name returns "auth-verify".
func (f *VerifyFilter) Name() string { return VerifyFilterName }

// CheckData verifies m; see VerifyFilter.
func (f *VerifyFilter) CheckData(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	removed := RemoveAuthResults(m, f.ids...)
	if exempt(c) || f.removeOnly {
		if removed > 0 {
			f.log.LogAttrs(ctx, slog.LevelInfo, "auth: forged Authentication-Results removed",
				slog.String("conn_id", c.ID), slog.Int("fields", removed))
		}
		return postern.Pass, nil
	}
	ar := AuthResults{DKIMChecked: f.dkim != nil, IPRev: IPRevResultOf(c)}
	if r, ok := postern.GetValue(&t.Values, SPFResultKey); ok {
		ar.SPF = &r
	}
	if f.dkim != nil {
		ar.DKIM = f.dkim.Verify(ctx, m)
		postern.SetValue(&t.Values, DKIMResultsKey, ar.DKIM)
	}
	if f.dmarc != nil {
		var spf SPFResult
		if ar.SPF != nil {
			spf = *ar.SPF
		}
		var r DMARCResult
		if from, err := FromDomain(m); err != nil {
			r = DMARCResult{Status: PermError, Reason: err.Error()}
		} else {
			r = f.dmarc.Check(ctx, from, spf, ar.DKIM)
		}
		ar.DMARC = &r
		postern.SetValue(&t.Values, DMARCResultKey, r)
	}
	m.AddHeader("Authentication-Results", FormatAuthResults(f.id, ar))
	v := f.verdict(ar.DMARC)
	f.logDecision(ctx, c, t, v, ar, removed)
	return v, nil
}

func (f *VerifyFilter) verdict(r *DMARCResult) postern.Verdict {
	if r == nil {
		return postern.Pass
	}
	reason := "dmarc: " + string(r.Status) + " for " + r.FromDomain + ": " + r.Reason
	switch r.Status {
	case TempError:
		if f.onTemp != postern.OnErrorAccept {
			return f.onTemp.Verdict(postern.StageData, postern.ESC(4, 7, 1), "DMARC temporary error", reason)
		}
	case PermError:
		if f.onPerm == postern.Reject {
			return postern.Rejected(550, postern.ESC(5, 7, 1), "Message rejected: no single author domain or unusable DMARC policy", reason)
		}
	case Fail:
		switch {
		case f.mode == DMARCEnforce && r.Disposition == DMARCReject:
			return postern.Rejected(550, postern.ESC(5, 7, 1), "Email rejected per DMARC policy for "+r.FromDomain, reason)
		case f.mode != DMARCTagOnly && (r.Disposition == DMARCReject || r.Disposition == DMARCQuarantine):
			return postern.Quarantined(reason)
		}
	}
	return postern.Pass
}

func (f *VerifyFilter) logDecision(ctx context.Context, c *postern.Conn, t *postern.Txn, v postern.Verdict, ar AuthResults, removed int) {
	level := slog.LevelDebug
	if v.Final() || removed > 0 {
		level = slog.LevelInfo
	}
	if !f.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("conn_id", c.ID),
		slog.String("txn_id", t.ID),
		slog.String("remote_ip", c.RemoteAddr().String()),
		slog.String("stage", postern.StageData.String()),
		slog.String("filter", VerifyFilterName),
		slog.String("action", v.Action.String()),
	}
	if v.Reply.Code != 0 {
		attrs = append(attrs, slog.Int("code", v.Reply.Code))
	}
	if ar.IPRev != nil {
		attrs = append(attrs, slog.String("iprev", string(ar.IPRev.Status)))
	}
	if ar.SPF != nil {
		attrs = append(attrs, slog.String("spf", string(ar.SPF.Status)))
	}
	for _, d := range ar.DKIM {
		attrs = append(attrs, slog.String("dkim", d.Domain+"="+string(d.Status)))
	}
	if ar.DMARC != nil {
		attrs = append(attrs, slog.String("dmarc", string(ar.DMARC.Status)), slog.String("from_domain", ar.DMARC.FromDomain),
			slog.String("disposition", string(ar.DMARC.Disposition)))
	}
	if removed > 0 {
		attrs = append(attrs, slog.Int("removed_auth_results", removed))
	}
	if v.Reason != "" {
		attrs = append(attrs, slog.String("reason", v.Reason))
	}
	f.log.LogAttrs(ctx, level, "auth decision", attrs...)
}
