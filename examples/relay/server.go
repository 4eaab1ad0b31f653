package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/examples/relay/internal/stats"
	"github.com/postern/postern/examples/relay/internal/webui"
	"github.com/postern/postern/internal/filewatch"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/access"
	"github.com/postern/postern/smtpserver/greetpause"
)

// generation is everything built from one configuration. A reload builds
// a new one beside the running one and swaps it in whole; the listeners,
// the queue and the counters outlive generations.
type generation struct {
	s       *settings
	pol     *policy
	sub     *postern.Chain // nil without submission listeners
	routing *delivery
	ap      *authParts
	sc      *scanning
	stop    context.CancelFunc
	// done is closed when the generation is replaced (its context).
	done <-chan struct{}
}

// replaced is closed when a reload replaces the generation (never for
// one that was not started).
func (g *generation) replaced() <-chan struct{} { return g.done }

// relayServer is a running relay.
type relayServer struct {
	args  []string // the command line, read again with the file on reload
	path  string   // the configuration file, "" for none
	log   *slog.Logger
	cur   atomic.Pointer[generation]
	store ratelimit.Store
	q     *queue.Queue
	met   *metrics
	ctx   context.Context // lives as long as the server
	// reloadMu makes reloads one at a time.
	reloadMu sync.Mutex
	// authLim counts AUTH failures across reloads.
	authLim *ratelimit.AuthLimiter
	// journal keeps the statistics records; nil when it could not be
	// opened (the relay runs without them).
	journal *stats.Journal
	// page is the quarantine page, nil when off.
	page *webui.Server
	// self are the sockets the relay listens on: delivery to one of
	// them is a mail loop.
	self []netip.AddrPort
}

func serve(args []string, stderr io.Writer) int {
	s, path, ok := commandSettings("relay serve", args, stderr, nil)
	if !ok {
		return 2
	}
	log := s.logger(stderr)
	if err := runServer(s, path, args, log); err != nil {
		log.Error("relay stopped", "error", err)
		return 1
	}
	return 0
}

// buildGeneration builds the policy, routing, authentication and scanning
// of one configuration. Nothing is started.
func (r *relayServer) buildGeneration(s *settings) (*generation, error) {
	g := &generation{s: s}
	var err error
	if g.routing, err = buildRouting(s, r.log, r.self); err != nil {
		return nil, err
	}
	fail := func(err error) (*generation, error) {
		g.routing.transport.Close()
		return nil, err
	}
	if g.ap, err = buildAuth(s, r.log); err != nil {
		return fail(err)
	}
	if g.sc, err = buildScan(s, r.log); err != nil {
		return fail(err)
	}
	if g.pol, err = buildPolicy(s, r.log, r.observe, g.routing.verifier, g.ap, g.sc, r.store); err != nil {
		return fail(err)
	}
	if s.submission != "" || s.submissions != "" {
		if g.sub, err = submissionChain(s, g.ap, g.sc, g.pol, r.log, r.observe); err != nil {
			return fail(err)
		}
	}
	return g, nil
}

// start runs the generation's file watchers.
func (g *generation) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	g.stop, g.done = cancel, ctx.Done()
	if g.pol.watcher != nil {
		go g.pol.watcher.Run(ctx)
	}
	g.routing.watch(ctx)
	g.ap.watch(ctx)
	g.sc.watch(ctx)
}

// retire stops a replaced generation. Its transport is closed a minute
// later: deliveries that picked it just before the swap finish with it.
func (g *generation) retire() {
	g.stop()
	time.AfterFunc(time.Minute, func() { g.routing.transport.Close() })
}

func runServer(s *settings, path string, args []string, log *slog.Logger) error {
	r := &relayServer{args: args, path: path, log: log, met: newMetrics()}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r.ctx = ctx
	var err error
	if r.store, err = openStore(s); err != nil {
		return err
	}
	defer closeStore(r.store)
	// Every listener is opened before anything is built or served: a
	// port in use stops the relay at once with the address named, and
	// delivery knows which sockets are its own.
	lns, err := r.listenAll(s)
	if err != nil {
		return err
	}
	defer lns.close()
	g, err := r.buildGeneration(s)
	if err != nil {
		return err
	}
	g.start(ctx)
	r.cur.Store(g)
	defer func() { r.cur.Load().retire() }()
	if r.authLim, err = newAuthLimiter(s, r.store, log); err != nil {
		return err
	}

	r.q, err = queue.Open(queue.Config{Dir: s.spoolDir, Hostname: s.hostname, Deliverer: swapDeliverer{r}, Logger: log,
		Observer: r.observeQueue, WarnAfter: s.queueWarn, ReturnAfter: s.queueReturn,
		MinBackoff: s.minBackoff, MaxBackoff: s.maxBackoff, Postmaster: s.postmaster})
	if err != nil {
		return fmt.Errorf("spool %s: %w", s.spoolDir, err)
	}
	defer r.q.Close()
	r.met.watchQueue(r.q, time.Now)
	if r.journal, err = stats.Open(stats.JournalConfig{Dir: s.statsDir, Logger: log, Retain: s.statsRetain}); err != nil {
		log.Error("statistics records cannot be kept", "stats_dir", s.statsDir, "error", err)
		r.journal = nil
	} else {
		defer r.journal.Close()
	}

	inner := lns.smtp
	handoff := newQueueHandoff(r.q, log, r.met, func() bool { return r.cur.Load().s.notifyUnverified },
		func() string { return r.cur.Load().s.sitePostmaster() })
	for _, w := range recipientWarnings(s, g.routing) {
		log.Warn("backscatter: " + w)
	}
	// One global connection limit over all listeners, first on each
	// socket: connections in a greet pause or refused per client hold a
	// descriptor too.
	connLimit := smtpserver.NewConnLimit(smtpserver.ConnLimitConfig{Max: s.maxConns, Hostname: s.hostname, Logger: log})
	defer connLimit.Close()
	warnConnLimit(connLimit.Max(), log)
	var tlsCfg *tls.Config
	if g.ap.tls != nil {
		// The certificate in force is the current generation's, so a
		// reload picks up a renewed certificate.
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if t := r.cur.Load().ap.tls; t != nil {
				return t, nil
			}
			return g.ap.tls, nil
		}}
	}
	// Client names are looked up by the generation in force (smtp.reverse_dns
	// and its timeout reload); the server's own bound is the ceiling.
	rdns := swapRDNS{r}
	srv, err := smtpserver.New(smtpserver.Config{Hostname: s.hostname, Policy: swapPolicy{r, false}, Handoff: handoff,
		TLSConfig: tlsCfg, Logger: log, MaxMessageBytes: s.maxSize, MaxHops: s.maxHops, TxnObserver: r.observeTxn,
		RefuseQuotedLocalParts: s.refuseQuoted, BareNewline: s.bareNewline, MaxConnections: -1, MaxRecipients: s.maxRcpts,
		ReverseDNS: rdns, ReverseDNSTimeout: maxReverseDNSTimeout, SkipReverseDNS: rdns.skip})
	if err != nil {
		return err
	}
	type listener struct {
		srv *smtpserver.Server
		l   net.Listener
	}
	var subs []listener
	for _, sub := range []struct {
		key, addr string
		implicit  bool
	}{{"submission.listen", s.submission, false}, {"submission.listen_tls", s.submissions, true}} {
		if sub.addr == "" {
			continue
		}
		// RFC 6409 and RFC 8314: TLS first (implicit, or STARTTLS before
		// MAIL and AUTH), then AUTH before MAIL.
		ssrv, err := smtpserver.New(smtpserver.Config{Hostname: s.hostname, Policy: swapPolicy{r, true}, Handoff: handoff,
			Logger: log, MaxMessageBytes: s.maxSize, MaxHops: s.maxHops, TLSConfig: tlsCfg, ImplicitTLS: sub.implicit, RequireTLS: true,
			RequireAuth: true, Auth: swapAuth{r}, AuthLimit: r.authLim, TxnObserver: r.observeTxn,
			AuthKeys:               func(c *postern.Conn, user string) []string { return r.authLim.LoginKeys(c.RemoteAddr(), user) },
			RefuseQuotedLocalParts: s.refuseQuoted, BareNewline: s.bareNewline, MaxConnections: -1, MaxRecipients: s.maxRcpts,
			ReverseDNS: rdns, ReverseDNSTimeout: maxReverseDNSTimeout, SkipReverseDNS: rdns.skip})
		if err != nil {
			return err
		}
		l := lns.sub[sub.key]
		subs = append(subs, listener{ssrv, r.met.countConns(connLimit.Listener(l), sub.key)})
		log.Info("submission listening", "addr", l.Addr().String(), "implicit_tls", sub.implicit)
	}
	ctl, err := r.listenControl(s.controlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if s.metricsListen != "" {
		addr, err := r.met.serve(ctx, s.metricsListen, r.healthy, log)
		if err != nil {
			return fmt.Errorf("metrics.listen %s: %w", s.metricsListen, err)
		}
		log.Info("metrics listening", "addr", addr.String())
	}
	// TCP → connection limits → greet pause → connect stage → go-smtp: the
	// cheapest refusal comes first. Limits and pauses are read from the
	// generation in force at each connection.
	rlCfg := ratelimit.ListenerConfig{Hostname: s.hostname, Logger: log,
		ClientRate: func(ip netip.Addr) (int, bool) {
			g := r.cur.Load()
			return g.pol.clientLimit(ip, g.s.clientRate, access.TagClientRate)
		},
		ClientConn: func(ip netip.Addr) (int, bool) {
			g := r.cur.Load()
			return g.pol.clientLimit(ip, g.s.clientConn, access.TagClientConn)
		},
	}
	limited, err := ratelimit.NewListener(r.met.countConns(connLimit.Listener(inner), "smtp.listen"), rlCfg)
	if err != nil {
		return err
	}
	r.met.limited.listener.Store(limited)
	gl, err := greetpause.New(limited, greetpause.Config{Logger: log,
		LogOnly: s.greetLogOnly,
		Pause:   func(ip netip.Addr) time.Duration { d, _ := r.cur.Load().pol.pause(ip); return d }})
	if err != nil {
		return err
	}
	var webTLS *tls.Config
	if tlsCfg != nil {
		webTLS = tlsCfg.Clone()
	}
	page, stopWeb, err := startWeb(s, r.q, func() *authParts { return r.cur.Load().ap }, r.authLim, webTLS, r.days, log)
	if err != nil {
		return err
	}
	r.page = page
	defer stopWeb(context.Background())
	r.watchReloads(ctx)
	// The daily mail and digests follow reloads of stats.daily_to,
	// stats.daily_at and web.digests.
	if r.journal != nil {
		go r.mailDaily(ctx, time.Now)
	}
	if r.page != nil {
		go r.digestDaily(ctx, time.Now)
	}

	// The queue runner gets its own context: it stops after the server,
	// so deliveries under way at shutdown finish recording their results.
	qctx, qstop := context.WithCancel(context.Background())
	qdone := make(chan struct{})
	go func() {
		if err := r.q.Run(qctx); err != nil {
			log.Error("queue runner stopped", "error", err)
		}
		close(qdone)
	}()
	defer func() { qstop(); <-qdone }()
	log.Info("relay listening", "addr", inner.Addr().String(), "domains", s.domains, "spool", s.spoolDir,
		"config", cmp.Or(path, "built-in defaults"),
		"mailertable", cmp.Or(s.mailertable, "none"), "local_delivery", s.localHop,
		"greet_pause", s.greetPause.String(), "control", s.controlSocket, "max_connections", connLimit.Max())
	done := make(chan error, 1+len(subs))
	go func() { done <- srv.Serve(gl) }()
	for _, sub := range subs {
		go func() { done <- sub.srv.Serve(sub.l) }()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sub := range subs {
		go sub.srv.Shutdown(sctx)
	}
	err = srv.Shutdown(sctx)
	gl.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timed out; open connections closed")
		return nil
	}
	return err
}

// listeners are the relay's SMTP sockets.
type listeners struct {
	smtp net.Listener
	sub  map[string]net.Listener // by key: submission.listen, submission.listen_tls
}

func (l *listeners) close() {
	if l.smtp != nil {
		l.smtp.Close()
	}
	for _, s := range l.sub {
		s.Close()
	}
}

// listenAll opens the SMTP and submission sockets and records them in
// r.self, for the router's loop check.
func (r *relayServer) listenAll(s *settings) (*listeners, error) {
	lns := &listeners{sub: map[string]net.Listener{}}
	listen := func(key, addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			lns.close()
			return nil, fmt.Errorf("%s %s: %w", key, addr, err)
		}
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
			r.self = append(r.self, ap)
		}
		return l, nil
	}
	var err error
	if lns.smtp, err = listen("smtp.listen", s.listen); err != nil {
		return nil, err
	}
	for key, addr := range map[string]string{"submission.listen": s.submission, "submission.listen_tls": s.submissions} {
		if addr == "" {
			continue
		}
		if lns.sub[key], err = listen(key, addr); err != nil {
			return nil, err
		}
	}
	return lns, nil
}

// warnConnLimit warns when smtp.max_connections is above what the file
// descriptor limit allows: clients past it are then answered 421 4.3.2
// from the reserve descriptor, not 421 4.7.0, and the queue may find no
// descriptor for its files.
func warnConnLimit(limit int, log *slog.Logger) {
	if auto := smtpserver.AutoMaxConnections(); limit > auto {
		log.Warn("smtp.max_connections is above what RLIMIT_NOFILE allows; raise the limit (systemd LimitNOFILE=)",
			"max_connections", limit, "allowed", auto)
	}
}

// healthy is the health endpoint's answer: the queue takes mail.
func (r *relayServer) healthy() error {
	if r.q == nil {
		return errors.New("queue not open")
	}
	// Mail is refused (452) when the spool's disk is full: unhealthy.
	var fs syscall.Statfs_t
	g := r.cur.Load()
	if err := syscall.Statfs(g.s.spoolDir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); free < g.s.maxSize {
		return fmt.Errorf("spool %s has %d bytes free, less than one message", g.s.spoolDir, free)
	}
	return nil
}

// watchReloads reloads on SIGHUP and when the configuration file changes
// (the files it names are watched by their own watchers, each of which
// swaps its table atomically).
func (r *relayServer) watchReloads(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.reload("SIGHUP")
			}
		}
	}()
	if r.path == "" {
		return
	}
	var started atomic.Bool
	w, err := filewatch.New(filewatch.Config[struct{}]{Path: r.path, What: "configuration file", Logger: r.log,
		Parse: func(io.Reader, string) (struct{}, error) { return struct{}{}, nil },
		OnReload: func(struct{}, error) {
			if started.Load() {
				r.reload("configuration file changed")
			}
		}})
	if err != nil {
		r.log.Warn("cannot watch the configuration file; reload with SIGHUP", "file", r.path, "error", err)
		return
	}
	started.Store(true)
	go w.Run(ctx)
}

// reload reads the configuration again (file and command line), builds a
// new generation and swaps it in. An invalid configuration leaves the
// running one in force. Connections are not touched: each picks up the
// new policy at its next command.
func (r *relayServer) reload(why string) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := r.cur.Load()
	err := func() error {
		cfg, _, _, err := loadWithFlags("relay serve", r.args, io.Discard, nil)
		if err != nil {
			return err
		}
		s, err := cfg.settings()
		if err != nil {
			return err
		}
		for _, key := range keepFixed(old.s, s) {
			r.log.Warn("configuration key changed but needs a restart; the running value stays", "key", key)
		}
		g, err := r.buildGeneration(s)
		if err != nil {
			return err
		}
		g.start(r.ctx)
		r.cur.Store(g)
		old.retire()
		return nil
	}()
	if err != nil {
		r.met.reloads.WithLabelValues("failed").Inc()
		r.log.Error("reload refused, the running configuration stays in force", "reason", why, "error", err)
		return err
	}
	r.met.reloads.WithLabelValues("ok").Inc()
	r.log.Info("configuration reloaded", "reason", why)
	return nil
}

// fixedKeys are the settings a running relay cannot change: its sockets,
// its spool and what the queue and servers were built with. field points
// at the setting, so one list serves both to compare and to keep.
var fixedKeys = []struct {
	key   string
	field func(*settings) any
}{
	{"smtp.listen", func(s *settings) any { return &s.listen }},
	{"smtp.quoted_local_parts", func(s *settings) any { return &s.refuseQuoted }},
	{"submission.listen", func(s *settings) any { return &s.submission }},
	{"submission.listen_tls", func(s *settings) any { return &s.submissions }},
	{"spool", func(s *settings) any { return &s.spoolDir }},
	{"hostname", func(s *settings) any { return &s.hostname }},
	{"max_message_size", func(s *settings) any { return &s.maxSize }},
	{"smtp.max_hops", func(s *settings) any { return &s.maxHops }},
	{"smtp.bare_newline", func(s *settings) any { return &s.bareNewline }},
	{"smtp.max_connections", func(s *settings) any { return &s.maxConns }},
	{"smtp.max_recipients", func(s *settings) any { return &s.maxRcpts }},
	{"queue.warn", func(s *settings) any { return &s.queueWarn }},
	{"queue.return", func(s *settings) any { return &s.queueReturn }},
	{"queue.min_backoff", func(s *settings) any { return &s.minBackoff }},
	{"queue.max_backoff", func(s *settings) any { return &s.maxBackoff }},
	{"delivery.postmaster", func(s *settings) any { return &s.postmaster }},
	{"redis.addr", func(s *settings) any { return &s.redisAddr }},
	{"metrics.listen", func(s *settings) any { return &s.metricsListen }},
	{"control.socket", func(s *settings) any { return &s.controlSocket }},
	{"stats.dir", func(s *settings) any { return &s.statsDir }},
	{"web.listen", func(s *settings) any { return &s.webListen }},
	{"log.level", func(s *settings) any { return &s.logLevel }},
	{"log.format", func(s *settings) any { return &s.logJSON }},
}

// keepFixed gives s the fixed settings of the running generation and
// returns the keys whose new value it overrode.
func keepFixed(old, s *settings) []string {
	var changed []string
	for _, f := range fixedKeys {
		was, now := reflect.ValueOf(f.field(old)).Elem(), reflect.ValueOf(f.field(s)).Elem()
		if !reflect.DeepEqual(was.Interface(), now.Interface()) {
			changed = append(changed, f.key)
			now.Set(was)
		}
	}
	return changed
}

// observe sees every policy decision (metrics, statistics).
func (r *relayServer) observe(_ context.Context, d postern.Decision) {
	r.met.observe(d)
	r.recordDecision(d)
}

// observeQueue sees every queue event.
func (r *relayServer) observeQueue(e queue.Event) {
	r.met.observeQueue(e)
	r.recordQueue(e)
}

// swapPolicy runs the policy of the generation in force.
type swapPolicy struct {
	r          *relayServer
	submission bool
}

func (p swapPolicy) chain() *postern.Chain {
	g := p.r.cur.Load()
	if p.submission && g.sub != nil {
		return g.sub
	}
	return g.pol.chain
}

func (p swapPolicy) Name() string { return p.chain().Name() }
func (p swapPolicy) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	return p.chain().CheckConnect(ctx, c)
}
func (p swapPolicy) CheckHelo(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	return p.chain().CheckHelo(ctx, c)
}
func (p swapPolicy) CheckMail(ctx context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	return p.chain().CheckMail(ctx, c, t)
}
func (p swapPolicy) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, rc *postern.Rcpt) (postern.Verdict, error) {
	return p.chain().CheckRcpt(ctx, c, t, rc)
}
func (p swapPolicy) CheckData(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	return p.chain().CheckData(ctx, c, t, m)
}

// swapAuth checks passwords against the credentials in force.
type swapAuth struct{ r *relayServer }

func (a swapAuth) CheckPassword(ctx context.Context, c *postern.Conn, user, password string) error {
	creds := a.r.cur.Load().ap.creds
	if creds == nil {
		return errors.New("no credentials file")
	}
	return creds.CheckPassword(ctx, c, user, password)
}

// swapDeliverer delivers with the routing in force.
type swapDeliverer struct{ r *relayServer }

func (d swapDeliverer) Destination(rcpt string) string {
	return d.r.cur.Load().routing.transport.Destination(rcpt)
}

func (d swapDeliverer) Deliver(ctx context.Context, dl *queue.Delivery) []queue.Result {
	return d.r.cur.Load().routing.transport.Deliver(ctx, dl)
}
