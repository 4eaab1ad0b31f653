package milter

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/d--j/go-milter"

	"github.com/postern/postern"
)

// errClosed: a session used after it ended (a bug, or a chain that calls
// a stage twice).
var errClosed = errors.New("milter: session ended")

// clientSession is one transaction's connection to the milter. The
// stages of one transaction come one at a time; mu also keeps the idle
// timer off a session in use.
type clientSession struct {
	c   *Client
	log *slog.Logger
	mu  sync.Mutex

	raw net.Conn // the socket, for deadlines
	ms  *milter.ClientSession
	mac *milter.MacroBag
	// timeout of the event under way and the caller's deadline: a
	// progress report pushes the read deadline out by timeout, never
	// past the caller's deadline.
	timeout time.Duration
	until   time.Time

	done   bool  // the milter has decided for the transaction
	failed error // the milter failed: OnError answers every stage after
	ended  bool  // closed for good (end of DATA, a new transaction)
	idle   *time.Timer
}

func (c *Client) newSession(conn *postern.Conn) *clientSession {
	log := c.cfg.Logger
	if conn != nil && conn.Log != nil {
		log = conn.Log
	}
	return &clientSession{c: c, log: log.With("filter", c.name)}
}

// run runs one stage: a failed milter answers under OnError, a milter
// that has decided is not asked again.
func (s *clientSession) run(ctx context.Context, st postern.Stage, _ *postern.Conn, _ *postern.Txn,
	step func() (postern.Verdict, error)) (postern.Verdict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle != nil {
		s.idle.Stop()
	}
	switch {
	case s.failed != nil:
		return s.c.failVerdict(st, s.failed), nil
	case s.done:
		return postern.Pass, nil
	case s.ended:
		return s.fail(st, errClosed), nil
	}
	v, err := step()
	if err != nil {
		return s.fail(st, err), nil
	}
	refusedRcpt := st == postern.StageRcpt && (v.Action == postern.Reject || v.Action == postern.TempFail)
	if v.Final() && v.Action != postern.Accept && !refusedRcpt {
		s.done = true // refused, discarded or quarantined: this milter is through
	}
	if s.done {
		s.shut()
	} else if s.ms != nil {
		s.idle = time.AfterFunc(s.c.cfg.IdleTimeout, s.expire)
	}
	return v, nil
}

// fail records a failure of the milter and answers it under OnError.
func (s *clientSession) fail(st postern.Stage, err error) postern.Verdict {
	s.failed = err
	s.shut()
	s.log.Warn("milter failed", "stage", st.String(), "error", err, "on_error", s.c.cfg.OnError.Or(postern.OnErrorTempFail).String())
	return s.c.failVerdict(st, err)
}

// close ends the session for good (SMFIC_QUIT).
func (s *clientSession) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	s.shut()
}

// expire closes a session that went quiet; a later stage of the same
// transaction opens a new one.
func (s *clientSession) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shut()
}

// shut closes the connection, telling the milter (SMFIC_QUIT) when it
// still listens.
func (s *clientSession) shut() {
	if s.idle != nil {
		s.idle.Stop()
	}
	if s.ms == nil {
		return
	}
	_ = s.raw.SetDeadline(time.Now().Add(time.Second))
	_ = s.ms.Close()
	s.ms, s.raw = nil, nil
}

// arm bounds the next event by d and by ctx: the socket's deadline is
// the earlier, and ctx ending cuts it at once. The returned stop must be
// called after the event.
func (s *clientSession) arm(ctx context.Context, d time.Duration) (stop func() bool) {
	s.timeout, s.until = d, time.Time{}
	if dl, ok := ctx.Deadline(); ok {
		s.until = dl
	}
	_ = s.raw.SetDeadline(s.deadline())
	raw := s.raw
	return context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
}

func (s *clientSession) deadline() time.Time {
	d := time.Now().Add(s.timeout)
	if !s.until.IsZero() && s.until.Before(d) {
		return s.until
	}
	return d
}

// progress is the guard's hook: SMFIR_PROGRESS restarts the event's
// time.
func (s *clientSession) progress(code byte) {
	if code == 'p' && s.raw != nil {
		_ = s.raw.SetReadDeadline(s.deadline())
	}
}

// open connects, negotiates and sends the envelope so far: connect,
// HELO, MAIL, and the recipients already in t (a session opened after
// MAIL, or again after it went idle). A final verdict on the way stops
// it.
func (s *clientSession) open(ctx context.Context, conn *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	if s.ms != nil {
		return postern.Pass, nil
	}
	cfg := &s.c.cfg
	d := net.Dialer{Timeout: cfg.ConnectTimeout}
	nc, err := d.DialContext(ctx, s.c.network, s.c.addr)
	if err != nil {
		return postern.Pass, err
	}
	g := newGuardConn(nc, cfg.MaxPacketBytes, nil)
	g.onPacket = s.progress
	s.raw = nc
	s.mac = clientMacros(cfg, conn)
	stop := s.arm(ctx, cfg.ConnectTimeout)
	cl := milter.NewClient(s.c.network, s.c.addr, milter.WithDialer(connDialer{g}),
		milter.WithReadTimeout(0), milter.WithWriteTimeout(0),
		milter.WithActions(milter.AllClientSupportedActionMasks),
		milter.WithoutDefaultMacros(),
		milter.WithMacroRequest(milter.StageConnect, []string{"j", "v", "_", "{daemon_name}", "{daemon_addr}", "{daemon_port}",
			"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{client_resolve}"}),
		milter.WithMacroRequest(milter.StageHelo, []string{"{tls_version}", "{cipher}", "{cipher_bits}"}),
		milter.WithMacroRequest(milter.StageMail, []string{"i", "{auth_type}", "{auth_authen}", "{mail_addr}", "{mail_host}"}),
		milter.WithMacroRequest(milter.StageRcpt, []string{"{rcpt_addr}", "{rcpt_host}"}),
		milter.WithMacroRequest(milter.StageEOM, []string{"i"}))
	ms, err := cl.Session(s.mac)
	stop()
	if err != nil {
		nc.Close()
		s.raw = nil
		return postern.Pass, err
	}
	s.ms = ms
	return s.envelope(ctx, conn, t)
}

// connDialer hands go-milter the connection already made.
type connDialer struct{ c net.Conn }

func (d connDialer) Dial(string, string) (net.Conn, error) { return d.c, nil }

// envelope sends connect, HELO, MAIL and the recipients already taken.
func (s *clientSession) envelope(ctx context.Context, conn *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	if s.ms == nil {
		return s.open(ctx, conn, t)
	}
	host, fam, port, addr := clientAddress(conn)
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) { return s.ms.Conn(host, fam, port, addr) },
		func() (*milter.Action, error) { return s.ms.Helo(conn.HELO) },
		func() (*milter.Action, error) {
			setMailMacros(s.mac, conn, t)
			return s.ms.Mail(postern.WireAddr(t.From), mailArgs(t.Mail))
		},
	}
	for _, step := range steps {
		if v, stop, err := s.event(ctx, s.c.cfg.CommandTimeout, postern.StageMail, step); err != nil || stop {
			return v, err
		}
	}
	for _, r := range t.Rcpts {
		v, stop, err := s.event(ctx, s.c.cfg.CommandTimeout, postern.StageRcpt, func() (*milter.Action, error) {
			setRcptMacros(s.mac, r)
			return s.ms.Rcpt(postern.WireAddr(r.Addr), rcptArgs(r))
		})
		if err != nil {
			return v, err
		}
		if stop && v.Action != postern.Reject && v.Action != postern.TempFail {
			return v, nil
		}
		// A recipient taken already cannot be refused any more: the
		// milter's second opinion is logged.
		if stop {
			s.log.Info("milter refused a recipient already accepted; kept", "rcpt", r.Addr, "reason", v.Reason)
		}
	}
	return postern.Pass, nil
}

// event runs one go-milter call within d and turns its answer into a
// verdict; stop is true when the verdict ends the stage.
func (s *clientSession) event(ctx context.Context, d time.Duration, st postern.Stage, call func() (*milter.Action, error)) (postern.Verdict, bool, error) {
	if s.ms == nil {
		return postern.Pass, false, errClosed
	}
	stop := s.arm(ctx, d)
	act, err := call()
	stop()
	if err != nil {
		return postern.Pass, false, err
	}
	v, final := s.actionVerdict(st, act)
	return v, final, nil
}

// actionVerdict maps a milter's answer: accept ends this milter's part
// in the transaction (at RCPT it accepts the recipient); reject,
// tempfail and a reply code refuse with the milter's reply; discard
// drops the message.
func (s *clientSession) actionVerdict(st postern.Stage, act *milter.Action) (postern.Verdict, bool) {
	switch act.Type {
	case milter.ActionAccept:
		if st == postern.StageRcpt {
			return postern.Pass, false
		}
		s.done = true
		return postern.Verdict{Reason: s.c.name + ": accept"}, true
	case milter.ActionDiscard:
		return postern.Discarded(s.c.name + ": discard"), true
	case milter.ActionReject, milter.ActionTempFail, milter.ActionRejectWithCode:
		return s.refusal(act), true
	}
	return postern.Pass, false
}

// refusal is the milter's reply as a verdict: its code, enhanced code
// and text when they parse, else the protocol's defaults.
func (s *clientSession) refusal(act *milter.Action) postern.Verdict {
	rep, err := postern.ParseReplyString(act.SMTPReply)
	if err != nil || rep.Code != int(act.SMTPCode) || rep.Code < 400 {
		rep = postern.NewReply(550, postern.ESC(5, 7, 1), "Command rejected")
		if act.Type == milter.ActionTempFail || act.SMTPCode/100 == 4 {
			rep = postern.NewReply(451, postern.ESC(4, 7, 1), "Service unavailable, try again later")
		}
	}
	v := postern.Verdict{Action: postern.Reject, Reply: rep, Reason: s.c.name + ": " + rep.Error()}
	if rep.Temporary() {
		v.Action = postern.TempFail
	}
	return v
}

// rcpt sends one recipient.
func (s *clientSession) rcpt(ctx context.Context, conn *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	if v, err := s.open(ctx, conn, t); err != nil || v.Final() {
		return v, err
	}
	if s.done {
		return postern.Pass, nil
	}
	v, _, err := s.event(ctx, s.c.cfg.CommandTimeout, postern.StageRcpt, func() (*milter.Action, error) {
		setRcptMacros(s.mac, r)
		return s.ms.Rcpt(postern.WireAddr(r.Addr), rcptArgs(r))
	})
	return v, err
}

// clientAddress is the connect event's host name (the verified name, or
// "[ip]" as sendmail writes an unnamed client), family, port and
// address.
func clientAddress(conn *postern.Conn) (string, milter.ProtoFamily, uint16, string) {
	ip := conn.RemoteAddr()
	if !ip.IsValid() {
		return "localhost", milter.FamilyUnknown, 0, ""
	}
	host := conn.ClientName
	if host == "" {
		host = "[" + ip.String() + "]"
	}
	fam := milter.FamilyInet
	if ip.Is6() {
		fam = milter.FamilyInet6
	}
	return host, fam, conn.Remote.Port(), ip.String()
}

// clientMacros are the connection's macros, as sendmail would set them.
func clientMacros(cfg *ClientConfig, conn *postern.Conn) *milter.MacroBag {
	b := milter.NewMacroBag()
	set := func(name, v string) {
		if v != "" {
			b.Set(name, v)
		}
	}
	set("j", cfg.Hostname)
	set("v", "Postern")
	set("{daemon_name}", cfg.DaemonName)
	if l := conn.Local; l.IsValid() {
		set("{daemon_addr}", l.Addr().Unmap().String())
		set("{daemon_port}", strconv.Itoa(int(l.Port())))
	}
	if ip := conn.RemoteAddr(); ip.IsValid() {
		set("{client_addr}", ip.String())
		set("{client_port}", strconv.Itoa(int(conn.Remote.Port())))
		name := conn.ClientName
		if name == "" {
			name = "unknown"
		}
		set("{client_name}", name)
		under := conn.ClientPTR
		if under == "" {
			under = "[" + ip.String() + "]"
		} else {
			under += " [" + ip.String() + "]"
		}
		if conn.ClientResolve == postern.ResolveForged {
			under += " (may be forged)"
		}
		set("_", under)
	}
	set("{client_ptr}", conn.ClientPTR)
	if conn.ClientResolve != postern.ResolveNone {
		set("{client_resolve}", conn.ClientResolve.String())
	}
	if cs := conn.TLS; cs != nil {
		set("{tls_version}", strings.Replace(tls.VersionName(cs.Version), "TLS ", "TLSv", 1))
		set("{cipher}", tls.CipherSuiteName(cs.CipherSuite))
	}
	return b
}

// setMailMacros sets the transaction's macros; the authentication ones
// only for an authenticated client (milters read an empty one as set).
func setMailMacros(b *milter.MacroBag, conn *postern.Conn, t *postern.Txn) {
	b.Set("i", t.ID)
	if conn.AuthUser != "" {
		b.Set("{auth_authen}", conn.AuthUser)
		b.Set("{auth_type}", conn.AuthMech)
	}
	b.Set("{mail_addr}", postern.WireAddr(t.From))
	b.Set("{mail_host}", postern.AddrDomain(t.From))
}

func setRcptMacros(b *milter.MacroBag, r *postern.Rcpt) {
	b.Set("{rcpt_addr}", postern.WireAddr(r.Addr))
	b.Set("{rcpt_host}", r.Domain())
}
