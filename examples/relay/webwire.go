package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/examples/relay/webui"
	"github.com/postern/postern/queue"
)

// startWeb serves the quarantine page over HTTPS until ctx is done. It
// needs the relay's TLS certificate and credentials file (the users log
// in with their submission passwords); a user owns the recipient
// addresses the senders file lets them use (or, without one, the address
// that is their login name).
func startWeb(ctx context.Context, s *settings, q *queue.Queue, ap *authParts, days func(context.Context, time.Time, time.Time) ([]webui.Day, error), log *slog.Logger) (func(context.Context) error, error) {
	if s.webListen == "" {
		return func(context.Context) error { return nil }, nil
	}
	if ap.tls == nil || ap.creds == nil {
		return nil, errors.New("-web-listen needs -tls-cert, -tls-key and -credentials")
	}
	owns := func(user, addr string) bool {
		if ap.sendMap != nil {
			return ap.sendMap.Allowed(user, addr)
		}
		return equalFoldAddr(user, addr)
	}
	ui, err := webui.New(webui.Config{Queue: q, Owns: owns, Admins: slices.Clone(s.webAdmins), Days: days, Logger: log,
		Authenticate: func(ctx context.Context, user, password string) error {
			return ap.creds.CheckPassword(ctx, nil, user, password)
		}})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", s.webListen)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: ui, TLSConfig: ap.tls.Clone(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("quarantine page stopped", "error", err)
		}
	}()
	log.Info("quarantine page listening", "addr", l.Addr().String())
	return srv.Shutdown, nil
}

// equalFoldAddr compares two addresses ignoring case, as users type them
// either way.
func equalFoldAddr(a, b string) bool { return strings.EqualFold(a, b) }
