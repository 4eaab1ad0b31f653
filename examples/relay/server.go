package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/examples/relay/internal/stats"
	"github.com/postern/postern/examples/relay/internal/webui"
	"github.com/postern/postern/internal/filewatch"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/tlsrpt"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/milter"
)

// generation is everything built from one configuration. A reload builds
// a new one beside the running one and swaps it in whole; the listeners,
// the queue and the counters outlive generations.
type generation struct {
	s       *Config
	pol     *policy
	sub     *postern.Chain // nil without submission listeners
	routing *delivery
	ap      *authParts
	sc      *scanning
	front   *frontParts          // pass cache and greylist
	dir     *directory.Directory // nil without ldap.urls
	stop    context.CancelFunc
	// done is closed when the generation is replaced (its context).
	done <-chan struct{}
}

// replaced is closed when a reload replaces the generation (never for
// one that was not started).
func (g *generation) replaced() <-chan struct{} { return g.done }

// relayServer is a running relay.
type relayServer struct {
	args []string // the command line, read again with the file on reload
	// milterOnly: `relay milter` — the milter server without the SMTP
	// and submission listeners.
	milterOnly bool
	path       string // the configuration file, "" for none
	log        *slog.Logger
	cur        atomic.Pointer[generation]
	store      ratelimit.Store
	q          *queue.Queue
	met        *metrics
	ctx        context.Context // lives as long as the server
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
	// rpt records the TLS outcome of deliveries and sends the daily
	// reports (tlsrpt.enabled); nil when off.
	rpt *tlsrpt.Reporter
	// closers undo what runServer set up, last first.
	closers []func()
}

func serve(args []string, stderr io.Writer) int {
	s, path, ok := commandSettings("relay serve", args, stderr, nil)
	if !ok {
		return 2
	}
	log := s.logger(stderr)
	if err := runServer(s, path, args, false, log); err != nil {
		log.Error("relay stopped", "error", err)
		return 1
	}
	return 0
}

// buildGeneration builds the policy, routing, authentication and scanning
// of one configuration. Nothing is started.
func (r *relayServer) buildGeneration(s *Config) (*generation, error) {
	g := &generation{s: s}
	res, err := newResolver(s, r.log)
	if err != nil {
		return nil, err
	}
	var rpt route.TLSReporter
	if r.rpt != nil {
		rpt = r.rpt
	}
	if g.dir, err = buildDirectory(s, res, r.log); err != nil {
		return nil, err
	}
	if g.routing, err = buildRouting(s, res, r.log, r.self, rpt, g.dir); err != nil {
		closeDirectory(g.dir, 0)
		return nil, err
	}
	fail := func(err error) (*generation, error) {
		g.routing.transport.Close()
		closeDirectory(g.dir, 0)
		return nil, err
	}
	if g.ap, err = buildAuth(s, res, r.log, g.dir); err != nil {
		return fail(err)
	}
	if g.front, err = buildFront(s, r.store, r.log, r.observeGrey); err != nil {
		return fail(err)
	}
	if g.sc, err = buildScan(s, r.log, g.dir, g.front); err != nil {
		return fail(err)
	}
	if g.pol, err = buildPolicy(s, r.log, r.observe, g.routing.verifier, g.ap, g.sc, r.store, g.front); err != nil {
		return fail(err)
	}
	if s.Submission.Listen != "" || s.Submission.ListenTLS != "" {
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
	closeDirectory(g.dir, time.Minute)
}

// listeners are the relay's SMTP sockets.
type listeners struct {
	smtp net.Listener
	sub  map[string]net.Listener // by key: submission.listen, submission.listen_tls
	// milter is milter_server.listen's socket, nil when off.
	milter net.Listener
}

func (l *listeners) close() {
	if l.smtp != nil {
		l.smtp.Close()
	}
	for _, s := range l.sub {
		s.Close()
	}
	if l.milter != nil {
		l.milter.Close()
	}
}

// listenAll opens the SMTP and submission sockets and records them in
// r.self, for the router's loop check.
func (r *relayServer) listenAll(s *Config) (*listeners, error) {
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
	if !r.milterOnly {
		if lns.smtp, err = listen("smtp.listen", s.SMTP.Listen); err != nil {
			return nil, err
		}
	}
	for key, addr := range map[string]string{"submission.listen": s.Submission.Listen, "submission.listen_tls": s.Submission.ListenTLS} {
		if addr == "" || r.milterOnly {
			continue
		}
		if lns.sub[key], err = listen(key, addr); err != nil {
			return nil, err
		}
	}
	if a := s.MilterServer.Listen; a != "" {
		if lns.milter, err = milter.Listen(a); err != nil {
			lns.close()
			return nil, fmt.Errorf("milter_server.listen %s: %w", a, err)
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
	if err := syscall.Statfs(g.s.Spool, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); free < g.s.maxSize {
		return fmt.Errorf("spool %s has %d bytes free, less than one message", g.s.Spool, free)
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
		// Resolved before the comparison (the keys whose defaults depend
		// on others, such as control.socket, are filled in) and again
		// after, for what derives from the running values kept.
		if err := cfg.resolve(); err != nil {
			return err
		}
		for _, key := range keepFixed(old.s, cfg) {
			r.log.Warn("configuration key changed but needs a restart; the running value stays", "key", key)
		}
		s, err := cfg.resolved()
		if err != nil {
			return err
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

// observe sees every policy decision (metrics, statistics).
func (r *relayServer) observe(_ context.Context, d postern.Decision) {
	r.met.observe(d)
	r.recordDecision(d)
}

// observeGrey sees every greylisting decision (metrics).
func (r *relayServer) observeGrey(e ratelimit.GreyEvent) {
	r.met.greylist.WithLabelValues(e.Outcome.String()).Inc()
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

// swapAuth checks passwords against the credentials in force (the
// credentials file, then the directory).
type swapAuth struct{ r *relayServer }

func (a swapAuth) CheckPassword(ctx context.Context, c *postern.Conn, user, password string) error {
	ap := a.r.cur.Load().ap
	if ap.creds == nil && ap.dir == nil {
		return errors.New("no credentials file or directory")
	}
	return ap.login().CheckPassword(ctx, c, user, password)
}

// swapDeliverer delivers with the routing in force.
type swapDeliverer struct{ r *relayServer }

func (d swapDeliverer) Destination(rcpt string) string {
	return d.r.cur.Load().routing.transport.Destination(rcpt)
}

func (d swapDeliverer) Deliver(ctx context.Context, dl *queue.Delivery) []queue.Result {
	return d.r.cur.Load().routing.transport.Deliver(ctx, dl)
}
