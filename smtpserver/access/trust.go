package access

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/postern/postern"
)

// TrustFilterName is the Trust filter's name in chains and logs.
const TrustFilterName = "trust"

// TrustConfig configures a Trust. The zero value trusts nobody.
type TrustConfig struct {
	// Map, if set, supplies Connect: (or untagged) RELAY entries: a client
	// with one is trusted, as Filter.CheckConnect decides.
	Map MapSource
	// TrustedNets are trusted networks (Postfix mynetworks).
	TrustedNets []netip.Prefix
	// Logger receives trust withdrawn from an open connection (Info);
	// nil discards.
	Logger *slog.Logger
}

// Trust sets Conn.Trusted at every stage from the configuration in force
// then: the client is trusted when its address is in TrustedNets or the
// map in force has a Connect: RELAY entry for it. Trust granted at connect
// would otherwise outlive a reload that withdrew it, for as long as the
// client keeps the connection open (and Conn.Trusted lets a client relay,
// skip DNS lists and rate limits, and get its mail DKIM-signed).
//
// Put it first in every stage of a chain, so the filters after it read
// the current answer; a chain rebuilt on reload (a Trust built from the
// new TrustedNets) and a map reloaded in place (a Watcher) are both
// followed. It is safe for concurrent use.
type Trust struct {
	src     MapSource
	trusted []netip.Prefix
	log     *slog.Logger
}

var (
	_ postern.ConnectChecker = (*Trust)(nil)
	_ postern.HeloChecker    = (*Trust)(nil)
	_ postern.MailChecker    = (*Trust)(nil)
	_ postern.RcptChecker    = (*Trust)(nil)
	_ postern.DataChecker    = (*Trust)(nil)
)

// NewTrust validates cfg and returns the filter.
func NewTrust(cfg TrustConfig) (*Trust, error) {
	t := &Trust{src: cfg.Map, log: cmp.Or(cfg.Logger, postern.DiscardLogger())}
	for _, p := range cfg.TrustedNets {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid trusted network %v", ErrConfig, p)
		}
		t.trusted = append(t.trusted, unmapPrefix(p.Masked()))
	}
	return t, nil
}

// Name returns "trust".
func (t *Trust) Name() string { return TrustFilterName }

// Trusted reports whether the configuration in force trusts c's client,
// and why.
func (t *Trust) Trusted(c *postern.Conn) (string, bool) {
	ip := c.RemoteAddr()
	for _, p := range t.trusted {
		if p.Contains(ip) {
			return "trusted network " + p.String(), true
		}
	}
	if t.src == nil {
		return "", false
	}
	if e, ok := t.src.Current().LookupClient(TagConnect, ip, c.ClientName); ok && e.Action == ActionRelay {
		return e.String(), true
	}
	return "", false
}

// apply sets c.Trusted to the current answer; it logs trust withdrawn
// from an open connection.
func (t *Trust) apply(ctx context.Context, c *postern.Conn, st postern.Stage) postern.Verdict {
	why, ok := t.Trusted(c)
	if c.Trusted && !ok && st != postern.StageConnect {
		t.log.LogAttrs(ctx, slog.LevelInfo, "trust withdrawn: the configuration in force no longer trusts the client",
			slog.String("conn_id", c.ID), slog.String("remote_ip", c.RemoteAddr().String()),
			slog.String("stage", st.String()), slog.String("filter", TrustFilterName))
	}
	c.Trusted = ok
	if !ok {
		return postern.Pass
	}
	return postern.Verdict{Reason: "trusted: " + why}
}

// CheckConnect sets c.Trusted; it never decides.
func (t *Trust) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	return t.apply(ctx, c, postern.StageConnect), nil
}

// CheckHelo sets c.Trusted; it never decides.
func (t *Trust) CheckHelo(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	return t.apply(ctx, c, postern.StageHelo), nil
}

// CheckMail sets c.Trusted; it never decides.
func (t *Trust) CheckMail(ctx context.Context, c *postern.Conn, _ *postern.Txn) (postern.Verdict, error) {
	return t.apply(ctx, c, postern.StageMail), nil
}

// CheckRcpt sets c.Trusted; it never decides.
func (t *Trust) CheckRcpt(ctx context.Context, c *postern.Conn, _ *postern.Txn, _ *postern.Rcpt) (postern.Verdict, error) {
	return t.apply(ctx, c, postern.StageRcpt), nil
}

// CheckData sets c.Trusted; it never decides.
func (t *Trust) CheckData(ctx context.Context, c *postern.Conn, _ *postern.Txn, _ *postern.Message) (postern.Verdict, error) {
	return t.apply(ctx, c, postern.StageData), nil
}
