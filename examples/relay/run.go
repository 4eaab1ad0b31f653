package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/signal"
	"syscall"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/internal/stats"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/access"
	"github.com/postern/postern/smtpserver/greetpause"
	"github.com/postern/postern/smtpserver/milter"
)

// runServer runs the relay until SIGINT or SIGTERM: it opens the state
// that outlives reloads (counters, sockets, queue, records), builds the
// first generation, puts the SMTP servers in front, starts the services
// beside them (control socket, metrics, web page, reloads, daily mail) and
// the queue runner, and serves until told to stop.
func runServer(s *Config, path string, args []string, milterOnly bool, log *slog.Logger) error {
	r := &relayServer{args: args, milterOnly: milterOnly, path: path, log: log, met: newMetrics()}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r.ctx = ctx
	defer r.closeAll()
	lns, g, err := r.open(s)
	if err != nil {
		return err
	}
	front, err := r.frontDoors(s, g, lns)
	if err != nil {
		return err
	}
	if err := r.startServices(ctx, s, front.tls); err != nil {
		return err
	}
	r.runQueue()
	addr := lns.milter
	if lns.smtp != nil {
		addr = lns.smtp
	}
	log.Info("relay listening", "addr", addr.Addr().String(), "milter_only", milterOnly, "domains", s.domains, "spool", s.Spool,
		"config", cmp.Or(path, "built-in defaults"),
		"mailertable", cmp.Or(s.Delivery.Mailertable, "none"), "local_delivery", s.Delivery.Local,
		"greet_pause", s.SMTP.GreetPause.Duration.String(), "control", s.Control.Socket, "max_connections", front.maxConns)
	return front.serve(ctx, log)
}

// onClose registers f to run when runServer ends, after what was
// registered later.
func (r *relayServer) onClose(f func()) { r.closers = append(r.closers, f) }

func (r *relayServer) closeAll() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// open opens what outlives generations and builds the first one. Every
// listener is opened before anything is built or served: a port in use
// stops the relay at once with the address named, and delivery knows
// which sockets are its own.
func (r *relayServer) open(s *Config) (*listeners, *generation, error) {
	log := r.log
	var err error
	if r.store, err = openStore(s); err != nil {
		return nil, nil, err
	}
	r.onClose(func() { closeStore(r.store) })
	lns, err := r.listenAll(s)
	if err != nil {
		return nil, nil, err
	}
	r.onClose(lns.close)
	if s.TLSRPT.Enabled {
		if r.rpt, err = r.newTLSReporter(s); err != nil {
			return nil, nil, fmt.Errorf("tlsrpt: %w", err)
		}
	}
	g, err := r.buildGeneration(s)
	if err != nil {
		return nil, nil, err
	}
	g.start(r.ctx)
	r.cur.Store(g)
	r.onClose(func() { r.cur.Load().retire() })
	if r.authLim, err = newAuthLimiter(s, r.store, log); err != nil {
		return nil, nil, err
	}
	r.q, err = queue.Open(queue.Config{Dir: s.Spool, Hostname: s.Hostname, Deliverer: swapDeliverer{r}, Logger: log,
		Observer: r.observeQueue, WarnAfter: s.queueWarn, ReturnAfter: s.Queue.Return.Duration,
		MinBackoff: s.Queue.MinBackoff.Duration, MaxBackoff: s.Queue.MaxBackoff.Duration, Postmaster: s.Delivery.Postmaster})
	if err != nil {
		return nil, nil, fmt.Errorf("spool %s: %w", s.Spool, err)
	}
	r.onClose(func() { r.q.Close() })
	r.met.watchQueue(r.q, time.Now)
	r.met.watchGreylist(r.greylistNeverRetried)
	if r.journal, err = stats.Open(stats.JournalConfig{Dir: s.Stats.Dir, Logger: log, Retain: s.Stats.Retain.Duration}); err != nil {
		log.Error("statistics records cannot be kept", "stats_dir", s.Stats.Dir, "error", err)
		r.journal = nil
	} else {
		r.onClose(func() { r.journal.Close() })
	}
	for _, w := range s.warnings {
		log.Warn("configuration: " + w)
	}
	for _, w := range recipientWarnings(s, g.routing) {
		log.Warn("backscatter: " + w)
	}
	return lns, g, nil
}

// frontDoor is an SMTP server with the listener it serves.
type frontDoor struct {
	srv *smtpserver.Server
	l   net.Listener
}

// frontDoors are the relay's SMTP servers: port 25 behind its connection
// limits and greet pause, and the submission ports.
type frontDoors struct {
	mx       frontDoor
	subs     []frontDoor
	tls      *tls.Config // nil without a certificate
	maxConns int
	// milter serves port 25's chain to an MTA; nil without
	// milter_server.listen.
	milter  *milter.Server
	milterL net.Listener
}

// frontDoors builds the SMTP servers. TCP → global connection limit →
// per-client limits → greet pause → connect stage → go-smtp: the cheapest
// refusal comes first. Limits, pauses, policy and certificate are read
// from the generation in force at each connection.
func (r *relayServer) frontDoors(s *Config, g *generation, lns *listeners) (*frontDoors, error) {
	log := r.log
	f := &frontDoors{tls: r.tlsConfig(g)}
	// One global connection limit over all listeners, first on each
	// socket: connections in a greet pause or refused per client hold a
	// descriptor too.
	connLimit := smtpserver.NewConnLimit(smtpserver.ConnLimitConfig{Max: s.SMTP.MaxConnections, Hostname: s.Hostname, Logger: log})
	r.onClose(func() { connLimit.Close() })
	f.maxConns = connLimit.Max()
	warnConnLimit(f.maxConns, log)
	handoff := newQueueHandoff(r.q, log, r.met, func() bool { return r.cur.Load().s.Delivery.NotifyUnverifiedSenders },
		func() string { return r.cur.Load().s.sitePostmaster() })
	if r.milterOnly {
		return f, r.milterDoor(s, f, lns)
	}
	base := r.serverConfig(s, handoff, f.tls)
	mx := base
	mx.ProtocolTests = r.protocolTests() // port 25 only
	var err error
	if f.mx.srv, err = smtpserver.New(mx); err != nil {
		return nil, err
	}
	if f.mx.l, err = r.mxListener(s, connLimit.Listener(lns.smtp)); err != nil {
		return nil, err
	}
	for _, sub := range []struct {
		key, addr string
		implicit  bool
	}{{"submission.listen", s.Submission.Listen, false}, {"submission.listen_tls", s.Submission.ListenTLS, true}} {
		if sub.addr == "" {
			continue
		}
		// RFC 6409 and RFC 8314: TLS first (implicit, or STARTTLS before
		// MAIL and AUTH), then AUTH before MAIL.
		cfg := base
		cfg.Policy, cfg.ImplicitTLS, cfg.RequireTLS, cfg.RequireAuth = swapPolicy{r, true}, sub.implicit, true, true
		cfg.Auth, cfg.AuthLimit = swapAuth{r}, r.authLim
		cfg.AuthKeys = func(c *postern.Conn, user string) []string { return r.authLim.LoginKeys(c.RemoteAddr(), user) }
		srv, err := smtpserver.New(cfg)
		if err != nil {
			return nil, err
		}
		l := lns.sub[sub.key]
		f.subs = append(f.subs, frontDoor{srv, r.met.countConns(connLimit.Listener(l), sub.key)})
		log.Info("submission listening", "addr", l.Addr().String(), "implicit_tls", sub.implicit)
	}
	return f, r.milterDoor(s, f, lns)
}

// milterDoor adds the milter server when milter_server.listen is set.
func (r *relayServer) milterDoor(s *Config, f *frontDoors, lns *listeners) error {
	if lns.milter == nil {
		return nil
	}
	var err error
	if f.milter, err = r.milterServer(s); err != nil {
		return err
	}
	f.milterL = lns.milter
	r.log.Info("milter server listening", "addr", s.MilterServer.Listen)
	return nil
}

// milterServer serves port 25's chain, of the generation in force, to an
// MTA. The MTA answers its clients and keeps its queue, so the relay's
// connection limits, greet pause and queue are not in the way; its
// outcomes are counted and recorded as port 25's are.
func (r *relayServer) milterServer(s *Config) (*milter.Server, error) {
	return milter.New(milter.Config{Policy: swapPolicy{r, false}, Logger: r.log, MaxMessageBytes: s.maxSize,
		TxnObserver: func(ctx context.Context, res milter.TxnResult) {
			r.observeTxn(ctx, smtpserver.TxnResult{Conn: res.Conn, Txn: res.Txn, Size: res.Size,
				Outcome: res.Outcome, Code: res.Code, QueueID: res.QueueID, Duration: res.Duration})
		}})
}

// tlsConfig serves the certificate of the generation in force, so a
// reload picks up a renewed one; nil without a certificate.
func (r *relayServer) tlsConfig(g *generation) *tls.Config {
	if g.ap.tls == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if t := r.cur.Load().ap.tls; t != nil {
			return t, nil
		}
		return g.ap.tls, nil
	}}
}

// serverConfig is what every SMTP server of the relay shares. Client
// names are looked up by the generation in force (smtp.reverse_dns and
// its timeout reload); the server's own bound is the ceiling. The global
// connection limit is the relay's ConnLimit, not each server's.
func (r *relayServer) serverConfig(s *Config, h *queueHandoff, tlsCfg *tls.Config) smtpserver.Config {
	rdns := swapRDNS{r}
	return smtpserver.Config{Hostname: s.Hostname, Policy: swapPolicy{r, false}, Handoff: h,
		TLSConfig: tlsCfg, Logger: r.log, MaxMessageBytes: s.maxSize, MaxHops: s.SMTP.MaxHops, TxnObserver: r.observeTxn,
		RefuseQuotedLocalParts: s.refuseQuoted, BareNewline: s.bareNewline, MaxConnections: -1, MaxRecipients: s.SMTP.MaxRecipients,
		ReverseDNS: rdns, ReverseDNSTimeout: maxReverseDNSTimeout, SkipReverseDNS: rdns.skip}
}

// mxListener puts the PROXY protocol reader (the client's address for
// everything after it), the per-client limits and the greet pause (with
// the pass cache) in front of port 25.
func (r *relayServer) mxListener(s *Config, inner net.Listener) (net.Listener, error) {
	proxied, err := r.proxyListener(s, r.met.countConns(inner, "smtp.listen"))
	if err != nil {
		return nil, err
	}
	r.onClose(func() { proxied.Close() })
	rlCfg := ratelimit.ListenerConfig{Hostname: s.Hostname, Logger: r.log,
		ClientRate: func(ip netip.Addr) (int, bool) {
			g := r.cur.Load()
			return g.pol.clientLimit(ip, g.s.Limits.ClientRate, access.TagClientRate)
		},
		ClientConn: func(ip netip.Addr) (int, bool) {
			g := r.cur.Load()
			return g.pol.clientLimit(ip, g.s.Limits.ClientConn, access.TagClientConn)
		},
	}
	limited, err := ratelimit.NewListener(proxied, rlCfg)
	if err != nil {
		return nil, err
	}
	r.met.limited.listener.Store(limited)
	gl, err := greetpause.New(limited, greetpause.Config{Logger: r.log, LogOnly: s.SMTP.GreetPauseLogOnly,
		Pause: func(ip netip.Addr) time.Duration { d, _ := r.cur.Load().pol.pause(ip); return d },
		Known: r.knownClient, Observer: r.greetEvent})
	if err != nil {
		return nil, err
	}
	r.onClose(func() { gl.Close() })
	return gl, nil
}

// startServices starts what runs beside the SMTP servers: the control
// socket, metrics, the quarantine page, the reload watcher, the daily
// mail and digests (which follow reloads of their keys).
func (r *relayServer) startServices(ctx context.Context, s *Config, tlsCfg *tls.Config) error {
	ctl, err := r.listenControl(s.Control.Socket)
	if err != nil {
		return err
	}
	r.onClose(func() { ctl.Close() })
	if s.Metrics.Listen != "" {
		addr, err := r.met.serve(ctx, s.Metrics.Listen, s.Metrics.Pprof, r.healthy, r.log)
		if err != nil {
			return fmt.Errorf("metrics.listen %s: %w", s.Metrics.Listen, err)
		}
		r.log.Info("metrics listening", "addr", addr.String())
	}
	var webTLS *tls.Config
	if tlsCfg != nil {
		webTLS = tlsCfg.Clone()
	}
	page, stopWeb, err := startWeb(s, r.q, func() *authParts { return r.cur.Load().ap }, r.authLim, webTLS, r.days, r.log)
	if err != nil {
		return err
	}
	r.page = page
	r.onClose(func() { stopWeb(context.Background()) })
	r.watchReloads(ctx)
	if r.journal != nil {
		go r.mailDaily(ctx, time.Now)
	}
	if r.page != nil {
		go r.digestDaily(ctx, time.Now)
	}
	if r.rpt != nil {
		go r.rpt.Run(ctx)
	}
	return nil
}

// runQueue starts the queue runner with a context of its own: it stops
// after the servers, so deliveries under way at shutdown finish recording
// their results.
func (r *relayServer) runQueue() {
	qctx, qstop := context.WithCancel(context.Background())
	qdone := make(chan struct{})
	go func() {
		if err := r.q.Run(qctx); err != nil {
			r.log.Error("queue runner stopped", "error", err)
		}
		close(qdone)
	}()
	r.onClose(func() { qstop(); <-qdone })
}

// serve serves until a server fails or ctx ends, then shuts the servers
// down gracefully (30 s for transactions under way).
func (f *frontDoors) serve(ctx context.Context, log *slog.Logger) error {
	done := make(chan error, 2+len(f.subs))
	doors := f.subs
	if f.mx.srv != nil {
		doors = append([]frontDoor{f.mx}, doors...)
	}
	for _, d := range doors {
		go func() { done <- d.srv.Serve(d.l) }()
	}
	if f.milter != nil {
		go func() { done <- f.milter.Serve(f.milterL) }()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, d := range f.subs {
		go d.srv.Shutdown(sctx)
	}
	if f.milter != nil && f.mx.srv == nil {
		return f.milter.Shutdown(sctx)
	}
	if f.milter != nil {
		go f.milter.Shutdown(sctx)
	}
	err := f.mx.srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timed out; open connections closed")
		return nil
	}
	return err
}
