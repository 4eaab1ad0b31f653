package route

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
)

// Defaults of TransportConfig, after Postfix's.
const (
	DefaultConnectTimeout = 30 * time.Second // smtp_connect_timeout
	DefaultCommandTimeout = 5 * time.Minute  // smtp_helo/mail/rcpt_timeout, RFC 5321 §4.5.3.2
	DefaultDataTimeout    = 10 * time.Minute // smtp_data_done_timeout
	DefaultMaxSessions    = 2                // smtp_mx_session_limit
	DefaultIdleTimeout    = 5 * time.Second
	DefaultMaxMessages    = 100
	DefaultMaxConnAge     = 5 * time.Minute // smtp_connection_reuse_time_limit
	DefaultMaxIdlePerHost = 4
	DefaultMaxIdle        = 64
	maxHeaderScan         = 1 << 20
)

// TransportConfig configures a Transport. Router is required; the rest
// has working defaults.
type TransportConfig struct {
	// Router chooses the next hop of each recipient. Required.
	Router *Router
	// Hostname is the name given in EHLO/LHLO; default os.Hostname().
	Hostname string
	// TLS is the STARTTLS policy (TLSMay by default).
	TLS TLSPolicy
	// TLSConfig is the base TLS configuration: RootCAs for TLSVerify,
	// client certificates, versions. ServerName is set per host.
	TLSConfig *tls.Config
	// ConnectTimeout bounds a TCP connect (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// CommandTimeout bounds the wait for each reply, the greeting
	// included (DefaultCommandTimeout).
	CommandTimeout time.Duration
	// DataTimeout bounds the whole message transfer and the reply to its
	// end (DefaultDataTimeout).
	DataTimeout time.Duration
	// MaxSessions bounds the sessions (connections that got as far as
	// EHLO) one delivery attempt makes before it gives up or turns to the
	// fallback relays (DefaultMaxSessions; Postfix smtp_mx_session_limit).
	MaxSessions int
	// DisableConnCache turns off connection reuse.
	DisableConnCache bool
	// IdleTimeout closes a cached idle connection (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxMessagesPerConn and MaxConnAge retire a cached connection
	// (DefaultMaxMessages, DefaultMaxConnAge).
	MaxMessagesPerConn int
	MaxConnAge         time.Duration
	// MaxIdlePerHost and MaxIdle bound the idle connections kept, per
	// host and in all (DefaultMaxIdlePerHost, DefaultMaxIdle).
	MaxIdlePerHost int
	MaxIdle        int
	// MaildirRoot is where "local:" delivers: <root>/<domain>/<local
	// part>/, or <root>/<user>/ for "local:user". Required for local
	// delivery; without it local recipients fail temporarily.
	MaildirRoot string
	// MaildirExistingOnly delivers only into mailboxes that exist (a
	// folder with new/ under the root); another recipient fails with
	// 550 5.1.1, and a Verifier with Mailboxes refuses it at RCPT. By
	// default a mailbox is made for each new recipient. Postmaster's is
	// always made (RFC 5321 §4.5.1).
	MaildirExistingOnly bool
	// Dialer makes connections; default net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives one debug record per recipient and attempt (a
	// queue logs the outcome itself) and warnings; nil discards.
	Logger *slog.Logger
}

// Transport delivers messages to their next hop: SMTP or LMTP with
// go-smtp's client, Maildir for "local:", a fixed reply for "error:". It
// implements queue.Deliverer and is safe for concurrent use.
type Transport struct {
	router         *Router
	hostname       string
	tls            TLSPolicy
	tlsBase        *tls.Config
	connectTimeout time.Duration
	cmdTimeout     time.Duration
	dataTimeout    time.Duration
	maxSessions    int
	maxMsgs        int
	maxAge         time.Duration
	maildir        string
	maildirExist   bool
	dialer         func(context.Context, string, string) (net.Conn, error)
	now            func() time.Time
	log            *slog.Logger
	pool           *pool
	seq            atomic.Uint64
	pid            int
	closed         atomic.Bool
}

var _ queue.Deliverer = (*Transport)(nil)

// NewTransport validates cfg and returns a Transport.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.Router == nil {
		return nil, fmt.Errorf("%w: Transport needs a Router", ErrConfig)
	}
	if cfg.TLS > TLSVerify {
		return nil, fmt.Errorf("%w: TLS policy %v", ErrConfig, cfg.TLS)
	}
	for _, d := range []time.Duration{cfg.ConnectTimeout, cfg.CommandTimeout, cfg.DataTimeout, cfg.IdleTimeout, cfg.MaxConnAge} {
		if d < 0 {
			return nil, fmt.Errorf("%w: negative timeout %v", ErrConfig, d)
		}
	}
	if cfg.MaxSessions < 0 || cfg.MaxMessagesPerConn < 0 || cfg.MaxIdle < 0 || cfg.MaxIdlePerHost < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	t := &Transport{
		router: cfg.Router, hostname: cfg.Hostname, tls: cfg.TLS, tlsBase: cfg.TLSConfig,
		connectTimeout: cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout),
		cmdTimeout:     cmp.Or(cfg.CommandTimeout, DefaultCommandTimeout),
		dataTimeout:    cmp.Or(cfg.DataTimeout, DefaultDataTimeout),
		maxSessions:    cmp.Or(cfg.MaxSessions, DefaultMaxSessions),
		maxMsgs:        cmp.Or(cfg.MaxMessagesPerConn, DefaultMaxMessages),
		maxAge:         cmp.Or(cfg.MaxConnAge, DefaultMaxConnAge),
		maildir:        cfg.MaildirRoot,
		maildirExist:   cfg.MaildirExistingOnly,
		dialer:         cfg.Dialer,
		now:            cfg.Now,
		log:            cfg.Logger,
		pid:            os.Getpid(),
	}
	if t.hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("%w: no Hostname and os.Hostname failed: %v", ErrConfig, err)
		}
		t.hostname = h
	}
	if strings.ContainsAny(t.hostname, " \t\r\n") {
		return nil, fmt.Errorf("%w: bad Hostname %q", ErrConfig, t.hostname)
	}
	if t.dialer == nil {
		d := &net.Dialer{}
		t.dialer = d.DialContext
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = postern.DiscardLogger()
	}
	if !cfg.DisableConnCache {
		t.pool = newPool(cmp.Or(cfg.MaxIdlePerHost, DefaultMaxIdlePerHost), cmp.Or(cfg.MaxIdle, DefaultMaxIdle),
			cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout), t.closeSession)
	}
	return t, nil
}

// Router returns the transport's router.
func (t *Transport) Router() *Router { return t.router }

// Close closes the cached connections (with QUIT) and makes later
// deliveries fail temporarily. Deliveries under way finish.
func (t *Transport) Close() error {
	t.closed.Store(true)
	if t.pool != nil {
		for _, s := range t.pool.drain() {
			t.closeSession(s)
		}
	}
	return nil
}

// IdleConns returns the number of cached idle connections.
func (t *Transport) IdleConns() int {
	if t.pool == nil {
		return 0
	}
	return t.pool.len()
}

// Destination returns the key of rcpt's next hop: the mailertable or
// smart host value in mailertable syntax ("esmtp:[192.168.1.1]"), or
// "mx:" and the domain. An address the Router cannot route gets
// "invalid:" and the address, so it is answered on its own.
func (t *Transport) Destination(rcpt string) string {
	rt, err := t.router.Route(rcpt)
	if err != nil {
		return "invalid:" + rcpt
	}
	return rt.Dest
}

// rcptJob is one RCPT address of an attempt and the recipients (result
// indices) it stands for: recipients that route to the same address are
// sent once.
type rcptJob struct {
	to   string // canonical, as routed
	wire string // as written in RCPT TO (postern.WireAddr)
	r    queue.Recipient
	idx  []int
}

// Deliver makes one attempt to deliver d to its recipients and returns
// one result per recipient, in order. Recipients are routed again (the
// mailertable may have changed since Destination); those that now differ
// are delivered one group after the other.
func (t *Transport) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	results := make([]queue.Result, len(d.Recipients))
	if d.Message == nil || d.Size < 0 {
		dd := *d
		dd.Message, dd.Size = strings.NewReader(""), 0
		d = &dd
	}
	if t.closed.Load() {
		for i := range results {
			results[i].Reply = postern.NewReply(451, postern.ESC(4, 3, 2), "delivery agent shutting down")
		}
		return results
	}
	type group struct {
		rt   Route
		jobs []*rcptJob
	}
	var groups []*group
	byDest := map[string]*group{}
	for i, rc := range d.Recipients {
		rt, err := t.router.Route(rc.Addr)
		if err == nil && !validAddr(rt.Rcpt) {
			err = ErrBadAddress
		}
		if err != nil {
			results[i].Reply = postern.NewReply(550, postern.ESC(5, 1, 3), "bad recipient address syntax: "+sanitize(rc.Addr))
			continue
		}
		g := byDest[rt.Dest]
		if g == nil {
			g = &group{rt: rt}
			byDest[rt.Dest] = g
			groups = append(groups, g)
		}
		found := false
		for _, j := range g.jobs {
			if j.to == rt.Rcpt {
				j.idx = append(j.idx, i)
				found = true
				break
			}
		}
		if !found {
			g.jobs = append(g.jobs, &rcptJob{to: rt.Rcpt, wire: postern.WireAddr(rt.Rcpt), r: rc, idx: []int{i}})
		}
	}
	for _, g := range groups {
		switch g.rt.Hop.Kind {
		case KindError:
			for _, j := range g.jobs {
				setResult(results, j, queue.Result{Reply: copyReply(g.rt.Hop.Reply)})
			}
		case KindLocal:
			t.deliverLocal(ctx, d, g.rt, g.jobs, results)
		default:
			t.deliverRemote(ctx, d, g.rt, g.jobs, results)
		}
	}
	t.logResults(ctx, d, results)
	return results
}

func copyReply(r postern.Reply) postern.Reply {
	r.Lines = append([]string(nil), r.Lines...)
	return r
}

func setResult(results []queue.Result, j *rcptJob, r queue.Result) {
	for _, i := range j.idx {
		rr := r
		rr.Reply = copyReply(r.Reply)
		results[i] = rr
	}
}

// validAddr accepts an address in canonical form whose wire form
// (postern.WireAddr) names the same mailbox in RCPT TO or MAIL FROM: one
// postern.SplitAddress takes, with a domain. The server session refuses
// others; this guards what reaches the queue another way.
func validAddr(a string) bool {
	ad, err := postern.SplitAddress(a)
	return err == nil && ad.Domain != ""
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}

func (t *Transport) logResults(ctx context.Context, d *queue.Delivery, results []queue.Result) {
	// The queue logs the outcome at info; this is the transport's view.
	if !t.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	for i, r := range results {
		action := "sent"
		switch {
		case r.Reply.Temporary():
			action = "deferred"
		case r.Reply.Permanent():
			action = "bounced"
		}
		t.log.LogAttrs(ctx, slog.LevelDebug, "delivery",
			slog.String("queue_id", d.ID), slog.String("rcpt", d.Recipients[i].Addr),
			slog.String("stage", "delivery"), slog.String("action", action),
			slog.String("relay", r.RemoteMTA), slog.Int("code", r.Reply.Code),
			slog.String("reply", r.Reply.Error()), slog.Int("attempt", d.Attempt))
	}
}

// deliverRemote delivers over SMTP or LMTP: the route's hosts in order,
// then the fallback relays for what failed temporarily at connection
// level everywhere.
func (t *Transport) deliverRemote(ctx context.Context, d *queue.Delivery, rt Route, jobs []*rcptJob, results []queue.Result) {
	env := d.Envelope
	if env == nil {
		env = &queue.Envelope{}
	}
	if strings.EqualFold(env.Body, "BINARYMIME") {
		for _, j := range jobs {
			setResult(results, j, queue.Result{Reply: postern.NewReply(554, postern.ESC(5, 6, 3),
				"BINARYMIME content needs BDAT, which this client does not send")})
		}
		return
	}
	if env.From != "" && !validAddr(env.From) {
		for _, j := range jobs {
			setResult(results, j, queue.Result{Reply: postern.NewReply(550, postern.ESC(5, 1, 7), "bad sender address syntax")})
		}
		return
	}
	pending := jobs
	var last queue.Result
	plan, err := t.router.Resolve(ctx, rt)
	if err != nil {
		var f *Failure
		if !errors.As(err, &f) {
			f = failure(451, postern.ESC(4, 4, 3), err.Error(), err)
		}
		if f.Reply.Permanent() {
			for _, j := range jobs {
				setResult(results, j, queue.Result{Reply: f.Reply})
			}
			return
		}
		last = queue.Result{Reply: f.Reply}
	} else {
		pending, last = t.tryTargets(ctx, d, env, rt.Hop.Kind, plan.Targets, pending, results)
	}
	if len(pending) > 0 && len(rt.Fallback) > 0 && !plan.SelfMX && ctx.Err() == nil {
		t.log.LogAttrs(ctx, slog.LevelInfo, "trying fallback relays",
			slog.String("queue_id", d.ID), slog.String("dest", rt.Dest), slog.String("reason", last.Reply.Error()))
		var flast queue.Result
		fplan, err := t.router.ResolveHosts(ctx, KindSMTP, rt.Fallback)
		if err == nil {
			pending, flast = t.tryTargets(ctx, d, env, KindSMTP, fplan.Targets, pending, results)
		} else {
			flast.Reply = postern.NewReply(451, postern.ESC(4, 4, 3), err.Error())
		}
		if len(pending) > 0 && last.Reply.Code != 0 {
			// Report the destination's own failure; the relay's is
			// second.
			last.Reply = postern.NewReply(last.Reply.Code, last.Reply.Enhanced,
				last.Reply.Text()+"; fallback relay: "+flast.Reply.Text())
		}
	}
	if last.Reply.IsZero() {
		last.Reply = postern.NewReply(451, postern.ESC(4, 4, 1), "no host of "+rt.Dest+" could be reached")
	}
	for _, j := range pending {
		setResult(results, j, last)
	}
}

// attemptOut is the outcome of one session with one host.
type attemptOut struct {
	pending []*rcptJob   // recipients still without an answer
	last    queue.Result // why, for those
	next    bool         // worth trying the next host for them
	session bool         // a session was established (counts against MaxSessions)
}

// tryTargets tries the targets in order until every recipient has an
// answer or the session limit is reached.
func (t *Transport) tryTargets(ctx context.Context, d *queue.Delivery, env *queue.Envelope, kind Kind, targets []Target,
	pending []*rcptJob, results []queue.Result) ([]*rcptJob, queue.Result) {
	var last queue.Result
	sessions := 0
	for _, tg := range targets {
		if ctx.Err() != nil {
			last = queue.Result{Reply: localFailure(ctx, tg.String(), stepConnect, ctx.Err())}
			break
		}
		if sessions >= t.maxSessions {
			break
		}
		out := t.attempt(ctx, d, env, kind, tg, pending, results)
		if out.session {
			sessions++
		}
		pending, last = out.pending, out.last
		if len(pending) == 0 {
			return nil, last
		}
		if !out.next {
			for _, j := range pending {
				setResult(results, j, last)
			}
			return nil, last
		}
	}
	return pending, last
}

// attempt delivers to one target: one session, one transaction.
func (t *Transport) attempt(ctx context.Context, d *queue.Delivery, env *queue.Envelope, kind Kind, tg Target,
	jobs []*rcptJob, results []queue.Result) attemptOut {
	pol := t.tls
	if env.RequireTLS {
		pol = TLSVerify // RFC 8689 §4.2.1
	}
	s, f := t.getSession(ctx, kind, tg, pol)
	if f != nil {
		out := attemptOut{pending: jobs, last: queue.Result{Reply: f.reply}, next: f.next}
		if f.remote {
			out.last.RemoteMTA = tg.Host
		}
		return out
	}
	out := t.transaction(ctx, s, d, env, jobs, results)
	out.session = true
	t.release(s)
	return out
}

// transaction runs MAIL, RCPT and DATA on s. Only a session that ends
// in a known state is released to the pool.
func (t *Transport) transaction(ctx context.Context, s *session, d *queue.Delivery, env *queue.Envelope,
	jobs []*rcptJob, results []queue.Result) attemptOut {
	x := &txn{t: t, ctx: ctx, s: s, d: d, env: env, results: results}
	x.hasDSN, _ = s.c.Extension("DSN")
	hasUTF8, _ := s.c.Extension("SMTPUTF8")
	needUTF8 := needsSMTPUTF8(env, jobs, d)
	if refusal := x.unfit(hasUTF8, needUTF8); !refusal.IsZero() {
		x.set(jobs, x.remote(refusal))
		return attemptOut{}
	}
	if out, done := x.mail(jobs, hasUTF8 && (env.SMTPUTF8 || needUTF8)); done {
		return out
	}
	accepted, out, done := x.rcpts(jobs)
	if done || len(accepted) == 0 {
		return out
	}
	return x.data(accepted)
}

// txn is one transaction on a session: what it delivers and where the
// results go.
type txn struct {
	t       *Transport
	ctx     context.Context
	s       *session
	d       *queue.Delivery
	env     *queue.Envelope
	results []queue.Result
	hasDSN  bool // the server offers DSN (RFC 3461)
}

// remote is a result the server gave.
func (x *txn) remote(r postern.Reply) queue.Result {
	return queue.Result{Reply: r, RemoteMTA: x.s.target.Host}
}

// set gives each of jobs the result r.
func (x *txn) set(jobs []*rcptJob, r queue.Result) {
	for _, j := range jobs {
		setResult(x.results, j, r)
	}
}

// lost ends the session on a failure that is not a server reply; before
// the final dot nothing was delivered, so the next host may have them.
func (x *txn) lost(st step, err error, pending []*rcptJob) attemptOut {
	x.s.broken = true
	return attemptOut{pending: pending, last: queue.Result{Reply: localFailure(x.ctx, x.s.target.String(), st, err)}, next: true}
}

// unfit returns the refusal for a message this server cannot take as it
// stands (zero if it can): one that needs SMTPUTF8, REQUIRETLS or a
// larger SIZE than the server offers.
func (x *txn) unfit(hasUTF8, needUTF8 bool) postern.Reply {
	name := x.s.target.String()
	if needUTF8 && !hasUTF8 {
		// RFC 6531 §3.2: no downgrade; the message cannot go this way.
		return postern.NewReply(550, postern.ESC(5, 6, 7), "SMTPUTF8 is required, but was not offered by host "+name)
	}
	if max, ok := x.s.c.MaxMessageSize(); ok && max > 0 && x.d.Size > int64(max) {
		return postern.NewReply(552, postern.ESC(5, 3, 4),
			fmt.Sprintf("message size %d exceeds size limit %d of server %s", x.d.Size, max, name))
	}
	if x.env.RequireTLS {
		if ok, _ := x.s.c.Extension("REQUIRETLS"); !ok || !x.s.verified {
			return postern.NewReply(550, postern.ESC(5, 7, 30), "REQUIRETLS support required, but not offered by host "+name)
		}
	}
	return postern.Reply{}
}

// mail sends MAIL FROM; done says the transaction ends there, with out.
func (x *txn) mail(jobs []*rcptJob, utf8 bool) (out attemptOut, done bool) {
	// go-smtp writes MAIL FROM:<%s> and RCPT TO:<%s> as given: the wire
	// form keeps a quoted local part one mailbox (RFC 5321 §4.1.2).
	err := x.s.c.Mail(postern.WireAddr(x.env.From), mailOptions(x.env, x.d.Size, utf8))
	if err == nil {
		return attemptOut{}, false
	}
	rep, isReply := serverReply(err)
	switch {
	case !isReply:
		return x.lost(stepMAIL, err, jobs), true
	case rep.Code == 421:
		// Closing down (RFC 5321 §3.8): like a refused greeting, the
		// next host may take the mail.
		x.s.broken = true
		return attemptOut{pending: jobs, last: x.remote(rep), next: true}, true
	case rep.Code/100 != 2:
		x.set(jobs, x.remote(rep))
		return attemptOut{}, true
	}
	return attemptOut{}, false
}

// rcpts sends RCPT TO for each job and returns those accepted; a refused
// one gets the server's reply as its result. done says the transaction
// ends there, with out.
func (x *txn) rcpts(jobs []*rcptJob) (accepted []*rcptJob, out attemptOut, done bool) {
	for k, j := range jobs {
		var opts *smtp.RcptOptions
		if x.hasDSN {
			opts = rcptOptions(j.r)
		}
		err := x.s.c.Rcpt(j.wire, opts)
		if err == nil {
			accepted = append(accepted, j)
			continue
		}
		rep, isReply := serverReply(err)
		if !isReply {
			return nil, x.lost(stepRCPT, err, append(accepted, jobs[k:]...)), true
		}
		if rep.Code/100 == 2 {
			accepted = append(accepted, j)
			continue
		}
		setResult(x.results, j, x.remote(rep))
		if rep.Code == 421 {
			// The server is closing the session (RFC 5321 §3.8).
			x.s.broken = true
			x.set(append(accepted, jobs[k+1:]...), x.remote(rep))
			return nil, attemptOut{}, true
		}
	}
	return accepted, attemptOut{}, false
}

// data sends DATA and the message to the accepted recipients and sets
// their results from the reply (replies, for LMTP) to its end.
func (x *txn) data(accepted []*rcptJob) attemptOut {
	w, err := x.s.c.Data()
	if err != nil {
		rep, isReply := serverReply(err)
		if !isReply || rep.Code/100 == 2 {
			return x.lost(stepDATA, err, accepted)
		}
		if rep.Code == 421 {
			x.s.broken = true
		}
		x.set(accepted, x.remote(rep))
		return attemptOut{}
	}
	x.s.conn.setPhase(time.Now().Add(x.t.dataTimeout))
	defer x.s.conn.setPhase(time.Time{})
	src := &readErrTracker{r: io.NewSectionReader(x.d.Message, 0, x.d.Size)}
	// io.Copy would allocate 32 KiB per message; most are a few KiB.
	buf := make([]byte, min(32<<10, max(512, x.d.Size)))
	if _, err := io.CopyBuffer(&bareCRWriter{w: w}, src, buf); err != nil {
		x.s.broken = true
		if src.err != nil {
			x.set(accepted, queue.Result{Reply: postern.NewReply(451, postern.ESC(4, 3, 0), "cannot read the queued message: "+src.err.Error())})
			return attemptOut{}
		}
		// The final dot was not sent: nothing was delivered.
		return x.lost(stepBody, err, accepted)
	}
	if x.s.kind == KindLMTP {
		x.t.lmtpReplies(x.ctx, x.s, w, accepted, x.results)
		x.s.msgs++
		x.s.clean = !x.s.broken
		return attemptOut{}
	}
	x.endOfData(w, accepted)
	return attemptOut{}
}

// endOfData sends the final dot and sets the accepted recipients' results
// from the one reply.
func (x *txn) endOfData(w *smtp.DataCommand, accepted []*rcptJob) {
	relayed := x.s.kind == KindSMTP && !x.hasDSN
	resp, err := w.CloseWithResponse()
	x.s.msgs++
	_, isReply := serverReply(err)
	x.s.clean = err == nil || isReply
	if err == nil {
		x.set(accepted, queue.Result{Reply: okReply(250, resp.StatusText), RemoteMTA: x.s.target.Host, Relayed: relayed})
		return
	}
	rep, _ := serverReply(err)
	if !isReply {
		// The message may have been delivered; another host would get it
		// twice, so this attempt ends here.
		x.s.broken = true
		x.set(accepted, queue.Result{Reply: localFailure(x.ctx, x.s.target.String(), stepDot, err)})
		return
	}
	if rep.Code == 421 {
		x.s.broken = true
	}
	x.set(accepted, queue.Result{Reply: rep, RemoteMTA: x.s.target.Host, Relayed: relayed && rep.Code/100 == 2})
}

// lmtpReplies reads one reply per accepted recipient after the end of
// data (RFC 2033 §4.2).
func (t *Transport) lmtpReplies(ctx context.Context, s *session, w *smtp.DataCommand, accepted []*rcptJob, results []queue.Result) {
	host := s.target.Host
	resp, err := w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	errors.As(err, &perRcpt)
	if _, onlyReplies := err.(smtp.LMTPDataError); err != nil && !onlyReplies {
		s.broken = true // a network error, possibly joined with replies so far
	}
	for _, j := range accepted {
		switch {
		case resp[j.wire] != nil: // go-smtp keys them by what it wrote
			setResult(results, j, queue.Result{Reply: okReply(250, resp[j.wire].StatusText), RemoteMTA: host})
		case perRcpt[j.wire] != nil:
			rep, ok := replyFromSMTPError(perRcpt[j.wire])
			if !ok {
				rep = localFailure(ctx, s.target.String(), stepDot, perRcpt[j.wire])
			}
			setResult(results, j, queue.Result{Reply: rep, RemoteMTA: host})
		default:
			e := err
			if e == nil {
				e = errors.New("no reply for this recipient")
			}
			setResult(results, j, queue.Result{Reply: localFailure(ctx, s.target.String(), stepDot, e)})
		}
	}
}

// readErrTracker remembers a read error of the message source, to tell
// it from a failure to write to the server.
type readErrTracker struct {
	r   io.Reader
	err error
}

func (r *readErrTracker) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// bareCRWriter writes through w with each bare CR made CRLF. go-smtp's
// DATA writer makes a bare LF CRLF and dot-stuffs the line after it, but
// passes a bare CR as it is: a next hop that takes a bare CR for a line end
// would then see "x\r.\r\n" as a line "." the writer did not stuff, an
// end of data that was not the end (SMTP smuggling). smtpserver stores
// CRLF only; this covers queue files from elsewhere or from before. A CR
// ending one Write is settled by the next (or by the DATA writer's Close,
// which ends a last CR with LF).
type bareCRWriter struct {
	w  io.Writer
	cr bool // the last byte written was a CR
}

func (b *bareCRWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.cr && p[0] != '\n' {
		if _, err := b.w.Write([]byte{'\n'}); err != nil {
			return 0, err
		}
	}
	start := 0 // of the bytes not yet written
	for from := 0; ; {
		i := bytes.IndexByte(p[from:], '\r')
		if i < 0 {
			break
		}
		i += from
		from = i + 1
		if i+1 == len(p) || p[i+1] == '\n' {
			continue
		}
		if _, err := b.w.Write(p[start : i+1]); err != nil {
			return start, err
		}
		if _, err := b.w.Write([]byte{'\n'}); err != nil {
			return i + 1, err
		}
		start = i + 1
	}
	if _, err := b.w.Write(p[start:]); err != nil {
		return start, err
	}
	b.cr = p[len(p)-1] == '\r'
	return len(p), nil
}

// serverReply returns the reply in a go-smtp error; isReply is false for
// anything else (network, garbage).
func serverReply(err error) (postern.Reply, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return postern.Reply{}, false
	}
	return replyFromSMTPError(se)
}

func mailOptions(env *queue.Envelope, size int64, utf8 bool) *smtp.MailOptions {
	// go-smtp sends SIZE (RFC 1870) only to a server that offers it, and
	// BODY=8BITMIME to every server that offers 8BITMIME.
	o := &smtp.MailOptions{Size: size, UTF8: utf8, RequireTLS: env.RequireTLS}
	switch strings.ToUpper(env.Ret) {
	case "FULL":
		o.Return = smtp.DSNReturnFull
	case "HDRS":
		o.Return = smtp.DSNReturnHeaders
	}
	if printableASCII(env.EnvID) && len(env.EnvID) <= 100 {
		o.EnvelopeID = env.EnvID // RFC 3461 §4.4: at most 100 characters
	}
	return o
}

func rcptOptions(r queue.Recipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	never := false
	for _, n := range r.Notify {
		switch strings.ToUpper(n) {
		case "NEVER":
			never = true
		case "SUCCESS":
			o.Notify = append(o.Notify, smtp.DSNNotifySuccess)
		case "FAILURE":
			o.Notify = append(o.Notify, smtp.DSNNotifyFailure)
		case "DELAY":
			o.Notify = append(o.Notify, smtp.DSNNotifyDelayed)
		}
	}
	if never {
		// RFC 3461 §4.1: NEVER stands alone.
		o.Notify = []smtp.DSNNotify{smtp.DSNNotifyNever}
	}
	if r.ORcpt != "" && !hasCtl(r.ORcpt) {
		switch strings.ToLower(r.ORcptType) {
		case "rfc822":
			if printableASCII(r.ORcpt) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, r.ORcpt
			} else {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, r.ORcpt
			}
		case "utf-8":
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, r.ORcpt
		}
	}
	return o
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// needsSMTPUTF8 reports whether the message cannot go without SMTPUTF8:
// a non-ASCII address in the envelope, or a client that asked for
// SMTPUTF8 and a header with 8-bit bytes (RFC 6532). An ASCII message
// whose client said SMTPUTF8 anyway goes to any server.
func needsSMTPUTF8(env *queue.Envelope, jobs []*rcptJob, d *queue.Delivery) bool {
	if !isASCII(env.From) {
		return true
	}
	for _, j := range jobs {
		if !isASCII(j.to) {
			return true
		}
	}
	if !env.SMTPUTF8 || d.Message == nil {
		return false
	}
	br := bufio.NewReader(io.NewSectionReader(d.Message, 0, min(d.Size, maxHeaderScan)))
	for {
		line, err := br.ReadSlice('\n')
		if len(line) == 0 || line[0] == '\r' || line[0] == '\n' {
			return false // end of header
		}
		if !isASCII(string(line)) {
			return true
		}
		if err != nil && err != bufio.ErrBufferFull {
			return false
		}
	}
}
