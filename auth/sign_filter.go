package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/postern/postern"
)

// SignFilterName is the signing filter's name in chains and logs.
const SignFilterName = "dkim-sign"

// SignFilterConfig configures a SignFilter.
type SignFilterConfig struct {
	// Signer signs. Required.
	Signer *DKIMSigner
	// Sign chooses the messages to sign; nil signs the mail of trusted
	// (Conn.Trusted) and authenticated clients.
	Sign func(c *postern.Conn, t *postern.Txn) bool
	// Senders says which addresses an authenticated user may use. The
	// mail of an authenticated session is signed only when its From and
	// Sender fields pass CheckOriginator against it, whatever Sign says:
	// a signature vouches for the From domain, and a user must not get
	// one for an address that is not theirs, even where the sender
	// binding does not refuse the message. nil: authenticated mail is
	// never signed.
	Senders SenderAllower
	// Logger receives one line per message considered; nil discards.
	Logger *slog.Logger
}

// SignFilter signs outbound mail at DATA. It signs the message as it will
// be rendered, so it must be the last filter of the DATA chain that edits
// the header. A message whose From domain has no key is passed unsigned,
// and so is the message of an authenticated user whose From they do not
// own (SignFilterConfig.Senders); a signing failure is returned as an
// error (the chain's error policy decides). It is safe for concurrent
// use.
type SignFilter struct {
	s       *DKIMSigner
	pred    func(*postern.Conn, *postern.Txn) bool
	senders SenderAllower
	log     *slog.Logger
}

var _ postern.DataChecker = (*SignFilter)(nil)

// NewSignFilter validates cfg and returns the filter.
func NewSignFilter(cfg SignFilterConfig) (*SignFilter, error) {
	if cfg.Signer == nil {
		return nil, fmt.Errorf("%w: sign filter needs a Signer", ErrConfig)
	}
	f := &SignFilter{s: cfg.Signer, pred: cfg.Sign, senders: cfg.Senders, log: orDiscard(cfg.Logger)}
	if f.pred == nil {
		f.pred = func(c *postern.Conn, _ *postern.Txn) bool { return exempt(c) }
	}
	return f, nil
}

// Name returns "dkim-sign".
func (f *SignFilter) Name() string { return SignFilterName }

// CheckData signs m when the predicate says so. It never refuses.
func (f *SignFilter) CheckData(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	if !f.pred(c, t) {
		return postern.Pass, nil
	}
	attrs := []slog.Attr{slog.String("conn_id", c.ID), slog.String("txn_id", t.ID),
		slog.String("stage", postern.StageData.String()), slog.String("filter", SignFilterName)}
	if c.Authenticated() {
		if why := f.notOwned(c, m); why != "" {
			f.log.LogAttrs(ctx, slog.LevelWarn, "dkim: not signed", append(attrs, slog.String("user", c.AuthUser),
				slog.String("reason", why))...)
			return postern.Pass, nil
		}
	}
	domain, err := f.s.Sign(ctx, m)
	switch {
	case errors.Is(err, ErrNoKey) || errors.Is(err, ErrFrom):
		f.log.LogAttrs(ctx, slog.LevelInfo, "dkim: not signed", append(attrs, slog.String("reason", err.Error()))...)
		return postern.Pass, nil
	case err != nil:
		f.log.LogAttrs(ctx, slog.LevelWarn, "dkim: signing failed", append(attrs, slog.String("error", err.Error()))...)
		return postern.Pass, err
	}
	f.log.LogAttrs(ctx, slog.LevelDebug, "dkim: signed", append(attrs, slog.String("domain", domain))...)
	return postern.Pass, nil
}

// notOwned says why the authenticated user's message must not be signed,
// or "" when its originator fields are theirs.
func (f *SignFilter) notOwned(c *postern.Conn, m *postern.Message) string {
	if f.senders == nil {
		return "no sender bindings to check the From field of authenticated mail against"
	}
	if err := CheckOriginator(m, func(addr string) bool { return f.senders.Allowed(c.AuthUser, addr) }); err != nil {
		return err.Error()
	}
	return ""
}
