package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/examples/relay/internal/webui"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
)

// startWeb serves the quarantine page over HTTPS until ctx is done. It
// needs the relay's TLS certificate and credentials file (the users log
// in with their submission passwords); a user owns the recipient
// addresses the senders file lets them use (or, without one, the address
// that is their login name). apNow returns the authentication parts in
// force, so a reload reaches the page too.
func startWeb(s *Config, q *queue.Queue, apNow func() *authParts, lim *ratelimit.AuthLimiter, tlsCfg *tls.Config,
	days func(context.Context, time.Time, time.Time) ([]webui.Day, error), log *slog.Logger) (*webui.Server, func(context.Context) error, error) {
	if s.Web.Listen == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	ap := apNow()
	if tlsCfg == nil || ap.creds == nil && ap.dir == nil {
		return nil, nil, errors.New("web.listen (-web-listen) needs tls.cert, tls.key and submission.credentials or ldap.uses = [\"auth\"]")
	}
	owns := func(user, addr string) bool {
		if all := apNow().allowers(); len(all) > 0 {
			return all.Allowed(user, addr)
		}
		return strings.EqualFold(user, addr) // as users type them either way
	}
	// The SMTP AUTH limiter is shared: a password guesser is slowed, and a
	// locked account refused, on the submission ports and on the page
	// alike.
	ui, err := webui.New(webui.Config{Queue: q, Owns: owns, Admins: slices.Clone(s.Web.Admins), Days: days, Logger: log,
		Limiter: lim,
		Authenticate: func(ctx context.Context, user, password string) error {
			ap := apNow()
			if ap.creds == nil && ap.dir == nil {
				return errors.New("no credentials file or directory")
			}
			return ap.login().CheckPassword(ctx, nil, user, password)
		},
		// Sessions follow the credentials file: a user removed from it,
		// or given a new password, is logged out at the next request.
		Credential: func(user string) (string, bool) { return apNow().login().version(user) }})
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", s.Web.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("web.listen %s: %w", s.Web.Listen, err)
	}
	srv := &http.Server{Handler: ui, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("quarantine page stopped", "error", err)
		}
	}()
	log.Info("quarantine page listening", "addr", l.Addr().String())
	return ui, srv.Shutdown, nil
}

// pageURL is the page's public base URL: web.url, or https://<hostname>
// with the listener's port.
func (s *Config) pageURL() string {
	if s.Web.URL != "" {
		return strings.TrimRight(s.Web.URL, "/")
	}
	_, port, _ := netSplit(s.Web.Listen)
	return fmt.Sprintf("https://%s:%d", s.hostnameOrDefault(), port)
}
