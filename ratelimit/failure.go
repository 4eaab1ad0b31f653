package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern"
)

// storeErrorLogInterval is the least time between two log lines about
// store errors from one component: a dead Redis fails every SMTP command,
// and the log must not grow with the traffic.
const storeErrorLogInterval = 10 * time.Second

// failures counts store errors and logs them, at most once per
// storeErrorLogInterval with the number of errors left unlogged.
type failures struct {
	now   func() time.Time
	log   *slog.Logger
	count atomic.Uint64

	mu     sync.Mutex
	last   time.Time
	logged bool
	quiet  uint64
}

func (f *failures) record(ctx context.Context, err error, attrs ...slog.Attr) {
	f.count.Add(1)
	now := f.now()
	f.mu.Lock()
	if f.logged && now.Sub(f.last) < storeErrorLogInterval && now.Sub(f.last) >= 0 {
		f.quiet++
		f.mu.Unlock()
		return
	}
	quiet := f.quiet
	f.quiet, f.last, f.logged = 0, now, true
	f.mu.Unlock()
	attrs = append(attrs, slog.Any("error", err), slog.Uint64("suppressed", quiet))
	f.log.LogAttrs(ctx, slog.LevelWarn, "rate-limit store failed", attrs...)
}

// defaultOnError is the store-failure policy of every limiter: fail open,
// so a Redis outage does not stop the mail.
const defaultOnError = postern.OnErrorAccept

// checkOnError validates a Config's OnError.
func checkOnError(what string, p postern.ErrorPolicy) error {
	if !p.Valid() {
		return fmt.Errorf("%w: %s: unknown OnError %v", ErrConfig, what, p)
	}
	return nil
}

// failVerdict is the answer when the store could not be asked, under the
// resolved policy p: a pass, 451 4.3.0 (421 at the connect stage, where
// only 421 closes the connection cleanly) or 550/554 5.3.0.
func failVerdict(st postern.Stage, p postern.ErrorPolicy, reason string) postern.Verdict {
	return p.Verdict(st, postern.ESC(4, 3, 0), "", reason)
}

// connAttrs are the standard keys for a decision about a session (c may
// be nil when only the address is known).
func connAttrs(c *postern.Conn, ip netip.Addr, st postern.Stage, filter string) []slog.Attr {
	attrs := make([]slog.Attr, 0, 10)
	if c != nil {
		attrs = append(attrs, slog.String("conn_id", c.ID))
	}
	return append(attrs, slog.String("remote_ip", ipString(ip.Unmap())), slog.String("stage", st.String()),
		slog.String("filter", filter))
}

// logVerdict logs a refusal at Debug: the server that answers the client
// logs it at Info with the verdict's reason, so this is only detail.
func logVerdict(ctx context.Context, l *slog.Logger, c *postern.Conn, st postern.Stage, filter string, v postern.Verdict, extra ...slog.Attr) {
	if !l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := connAttrs(c, c.RemoteAddr(), st, filter)
	attrs = append(attrs, slog.String("action", v.Action.String()))
	if v.Reply.Code != 0 {
		attrs = append(attrs, slog.Int("code", v.Reply.Code))
	}
	attrs = append(attrs, extra...)
	attrs = append(attrs, slog.String("reason", v.Reason))
	l.LogAttrs(ctx, slog.LevelDebug, "rate-limit decision", attrs...)
}

// ipString is "" rather than "invalid IP" for a client not on IP.
func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
