package smtpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/spool"
)

type backend struct{ srv *Server }

// NewSession runs when go-smtp sees the first HELO/EHLO (and never again:
// a later EHLO only resets, which the session notices by the greeting
// sequence number). The connection is always one of our edges.
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := b.srv
	e, ok := c.Conn().(*edgeConn)
	if !ok {
		// Server.Serve always puts the edge in front of go-smtp.
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error"}
	}
	st := e.st
	sess := &session{srv: s, st: st, conn: st.conn}
	if err := sess.checkHelo(); err != nil {
		return nil, err
	}
	return sess, nil
}

type session struct {
	srv  *Server
	st   *connState
	conn *postern.Conn

	heloSeq int // greeting sequence last checked

	mu  sync.Mutex // guards txn: go-smtp may Reset during BDAT's Data
	txn *postern.Txn
}

// checkHelo runs the HELO stage for the current greeting, once.
func (s *session) checkHelo() error {
	helo, esmtp, seq := s.st.greetingNow()
	if seq == s.heloSeq {
		return nil
	}
	s.heloSeq = seq
	s.conn.HELO, s.conn.ESMTP = helo, esmtp
	if cs := s.st.tlsState(); cs != nil {
		s.conn.TLS = cs
	}
	f, _ := s.srv.currentPolicy().(postern.HeloChecker)
	if f == nil {
		return nil
	}
	v, err := f.CheckHelo(context.Background(), s.conn)
	return s.apply(postern.StageHelo, v, err, nil)
}

// apply turns a verdict into go-smtp's answer: nil to go on, an unwrapped
// *smtp.SMTPError to refuse (go-smtp only sends those as they are).
func (s *session) apply(st postern.Stage, v postern.Verdict, err error, t *postern.Txn) error {
	if err != nil {
		v = postern.TempFailed(451, postern.ESC(4, 3, 0), "Temporary local problem, try again later", err.Error())
	}
	switch v.Action {
	case postern.Reject, postern.TempFail:
		rep := v.ReplyAt(st)
		s.conn.Logger().Info("refused", "stage", st.String(), "action", v.Action.String(),
			"code", rep.Code, "reason", v.Reason)
		return toSMTPError(rep)
	case postern.Discard:
		if t != nil {
			t.Discard = true
		}
	case postern.Quarantine:
		if t != nil && t.Quarantine == "" {
			t.Quarantine = v.Reason
			if t.Quarantine == "" {
				t.Quarantine = "quarantined by policy"
			}
		}
	}
	return nil
}

func toSMTPError(r postern.Reply) *smtp.SMTPError {
	esc := smtp.EnhancedCodeNotSet
	if !r.Enhanced.IsZero() {
		esc = smtp.EnhancedCode(r.Enhanced)
	}
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: esc, Message: strings.Join(r.Lines, "\n")}
}

var (
	errNeedTLS  = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	errNeedAuth = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errAuthTLS  = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
)

// maxMailbox is the longest address taken: a path is at most 256 octets
// with its angle brackets (RFC 5321 §4.5.3.1.3). It also keeps go-smtp's
// 250 reply to MAIL, which repeats the address, within the 512 octets of
// a reply line (§4.5.3.1.5).
const maxMailbox = 254

// envelopeAddr checks an address of MAIL FROM or RCPT TO, which go-smtp
// has parsed and unquoted, and returns it in canonical form; see
// postern.Address. It refuses what cannot reach the next hop as the same
// mailbox: 553 5.1.3 (5.1.7 for the sender, RFC 3463 §3.2) for bad syntax,
// for a local part that needs quoting when RefuseQuotedLocalParts is set,
// and 501 for an address too long; 553 5.6.7 for a non-ASCII address
// without SMTPUTF8 (RFC 6531 §3.5). The bare Postmaster (RFC 5321 §4.5.1),
// which go-smtp passes as given, is taken at RCPT only.
func (s *session) envelopeAddr(st postern.Stage, addr string, utf8 bool) (postern.Address, error) {
	who, esc := "Recipient", postern.ESC(5, 1, 3)
	if st == postern.StageMail {
		who, esc = "Sender", postern.ESC(5, 1, 7)
	}
	a, err := postern.SplitAddress(addr)
	var rep postern.Reply
	switch {
	case err != nil || a.Domain == "" && st == postern.StageMail:
		rep = postern.NewReply(553, esc, "Bad "+strings.ToLower(who)+" address syntax")
	case len(a.Wire()) > maxMailbox:
		rep = postern.NewReply(501, esc, who+" address too long")
	case !utf8 && !a.IsASCII():
		rep = postern.NewReply(553, postern.ESC(5, 6, 7), "Non-ASCII "+strings.ToLower(who)+" address needs SMTPUTF8")
	case s.srv.cfg.RefuseQuotedLocalParts && a.NeedsQuoting():
		rep = postern.NewReply(553, esc, who+" address rejected: quoted local parts are not accepted here")
	default:
		return a, nil
	}
	s.conn.Logger().Info("refused", "stage", st.String(), "action", "reject", "code", rep.Code,
		"reason", "address "+strconv.Quote(addr)+": "+rep.Text())
	return postern.Address{}, toSMTPError(rep)
}

// authParam puts the RFC 4954 AUTH= mailbox of MAIL FROM in canonical
// form; one that does not parse is taken as <> (§5: the authenticated
// identity is unknown).
func authParam(p *string) *string {
	if p == nil || *p == "" {
		return p
	}
	a, err := postern.SplitAddress(*p)
	v := ""
	if err == nil && a.Domain != "" {
		v = a.String()
	}
	return &v
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.checkHelo(); err != nil {
		return err
	}
	cfg := &s.srv.cfg
	if cfg.RequireTLS && s.conn.TLS == nil {
		return errNeedTLS
	}
	if cfg.RequireAuth && !s.conn.Authenticated() {
		return errNeedAuth // RFC 4954 §6
	}
	utf8 := opts != nil && opts.UTF8
	if from != "" {
		a, err := s.envelopeAddr(postern.StageMail, from, utf8)
		if err != nil {
			return err
		}
		from = a.String()
	}
	t := &postern.Txn{ID: cfg.NewID(), From: from}
	if opts != nil {
		t.Mail = postern.MailParams{Size: opts.Size, Body: string(opts.Body), SMTPUTF8: opts.UTF8,
			RequireTLS: opts.RequireTLS, Ret: string(opts.Return), EnvID: opts.EnvelopeID, Auth: authParam(opts.Auth)}
	}
	if cv := s.st.connectVerdict; cv.Action != postern.Continue {
		_ = s.apply(postern.StageConnect, cv, nil, t)
	}
	if f, _ := s.srv.currentPolicy().(postern.MailChecker); f != nil {
		v, err := f.CheckMail(context.Background(), s.conn, t)
		if err := s.apply(postern.StageMail, v, err, t); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.txn = t
	s.mu.Unlock()
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	t := s.txn
	s.mu.Unlock()
	if t == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: need MAIL command"}
	}
	a, err := s.envelopeAddr(postern.StageRcpt, to, t.Mail.SMTPUTF8)
	if err != nil {
		return err
	}
	r := &postern.Rcpt{Addr: a.String(), Original: a.String()}
	if opts != nil {
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, string(n))
		}
		r.ORcptType, r.ORcpt = string(opts.OriginalRecipientType), opts.OriginalRecipient
	}
	if f, _ := s.srv.currentPolicy().(postern.RcptChecker); f != nil {
		v, err := f.CheckRcpt(context.Background(), s.conn, t, r)
		if err := s.apply(postern.StageRcpt, v, err, t); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.txn == t {
		t.Rcpts = append(t.Rcpts, r)
	}
	s.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.txn = nil
	s.mu.Unlock()
}

func (s *session) Logout() error { return nil }

// Data spools the message, runs the DATA stage and hands the message off.
// The transaction is snapshotted first: with BDAT this runs on another
// goroutine and a RSET may reset the session meanwhile.
func (s *session) Data(r io.Reader) error {
	start := time.Now()
	s.mu.Lock()
	if s.txn == nil {
		s.mu.Unlock()
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: need RCPT command"}
	}
	t := s.txn.Clone()
	s.mu.Unlock()
	cfg := &s.srv.cfg
	log := s.conn.Logger()

	sp := spool.New(cfg.SpoolMemoryBytes, cfg.SpoolDir, t.Mail.Size, 0) // go-smtp enforces MaxMessageBytes
	defer sp.Release()
	if err := s.spoolData(sp, r, t, log); err != nil {
		return err
	}
	m, err := s.newMessage(sp, t, log, start)
	if err != nil {
		return err
	}
	if f, _ := s.srv.currentPolicy().(postern.DataChecker); f != nil {
		v, err := f.CheckData(context.Background(), s.conn, t, m)
		if err := s.apply(postern.StageData, v, err, t); err != nil {
			code := 0
			if se, ok := err.(*smtp.SMTPError); ok {
				code = se.Code
			}
			s.logTxn(log, t, m, "reject", code, "", start)
			return err
		}
	}
	s.st.mu.Lock()
	s.st.messages++
	s.st.mu.Unlock()
	if t.Discard {
		s.logTxn(log, t, m, "discard", 250, t.ID, start)
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + t.ID}
	}
	return s.handoff(t, m, log, start)
}

// spoolData reads the message text into sp, with its line ends made CRLF
// (or refused, as Config.BareNewline says).
func (s *session) spoolData(sp *spool.Spool, r io.Reader, t *postern.Txn, log *slog.Logger) error {
	// DATA text comes canonical from the edge; BDAT chunks come as sent,
	// and get the same line ends here.
	lr := newLineEndReader(r)
	_, err := sp.ReadFrom(lr)
	bare := s.st.takeBareNewline()
	if bare == 0 {
		bare = lr.d.bare
	}
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			log.Info("data refused", "txn_id", t.ID, "stage", "data", "action", "reject", "code", se.Code, "reason", se.Message)
			return se // 552 5.3.4 from go-smtp's size limit
		}
		if errors.Is(err, smtp.ErrDataReset) || errors.Is(err, io.ErrUnexpectedEOF) {
			return err // the client went away or reset; nobody reads a reply
		}
		log.Warn("spool failed", "txn_id", t.ID, "stage", "data", "error", err)
		if spool.IsNoSpace(err) {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage"}
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	}
	if bare == 0 {
		return nil
	}
	if s.srv.cfg.BareNewline == BareNewlineReject {
		reason := "Error: bare " + bareName(bare) + " received"
		log.Info("data refused", "txn_id", t.ID, "stage", "data", "action", "reject", "code", 550, "reason", reason)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: reason}
	}
	log.Debug("bare line ends made CRLF", "txn_id", t.ID, "stage", "data", "first", bareName(bare))
	return nil
}

// newMessage parses the spooled message's header, refuses a mail loop
// and adds this hop's Received field.
func (s *session) newMessage(sp *spool.Spool, t *postern.Txn, log *slog.Logger, start time.Time) (*postern.Message, error) {
	cfg := &s.srv.cfg
	m, err := postern.NewMessage(sp, sp.Size(), cfg.MaxHeaderBytes)
	if err != nil {
		log.Info("data refused", "txn_id", t.ID, "stage", "data", "action", "reject", "code", 552, "reason", err.Error())
		return nil, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message header size exceeds limit"}
	}
	if se := tooManyHops(hopCount(m), cfg.MaxHops); se != nil {
		log.Info("data refused", "txn_id", t.ID, "stage", "data", "action", "reject", "code", se.Code,
			"reason", "mail loop: "+strconv.Itoa(cfg.MaxHops)+" or more Received and Delivered-To fields")
		s.logTxn(log, t, m, "reject", se.Code, "", start)
		return nil, se
	}
	m.AddHeader("Received", s.received(t))
	return m, nil
}

// handoff hands the message to Config.Handoff; its ID goes in the 250.
func (s *session) handoff(t *postern.Txn, m *postern.Message, log *slog.Logger, start time.Time) error {
	id, err := s.srv.cfg.Handoff.Handoff(context.Background(), s.conn, t, m)
	if err != nil {
		var rep postern.Reply
		switch {
		case errors.As(err, &rep):
		case errors.Is(err, ErrNoSpace) || spool.IsNoSpace(err):
			rep = postern.NewReply(452, postern.ESC(4, 3, 1), "Insufficient system storage")
		default:
			rep = postern.NewReply(451, postern.ESC(4, 3, 0), "Temporary local problem, try again later")
		}
		log.Warn("handoff failed", "txn_id", t.ID, "stage", "handoff", "error", err, "code", rep.Code)
		s.logTxn(log, t, m, "tempfail", rep.Code, "", start)
		return toSMTPError(rep)
	}
	action := "queued"
	if t.Quarantine != "" {
		action = "quarantine"
	}
	s.logTxn(log, t, m, action, 250, id, start)
	// go-smtp sends a 250 SMTPError as the final reply.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// logTxn writes the one info line per transaction.
func (s *session) logTxn(log *slog.Logger, t *postern.Txn, m *postern.Message, action string, code int, id string, start time.Time) {
	if obs := s.srv.cfg.TxnObserver; obs != nil {
		obs(context.Background(), TxnResult{Conn: s.conn, Txn: t, Size: m.Size(), Outcome: action, Code: code,
			QueueID: id, Duration: time.Since(start)})
	}
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	rcpts := make([]string, len(t.Rcpts))
	for i, r := range t.Rcpts {
		rcpts[i] = r.Addr
	}
	args := []any{"txn_id", t.ID, "stage", "data", "action", action, "code", code, "from", t.From,
		"rcpts", rcpts, "size", m.Size(), "helo", s.conn.HELO, "tls", s.conn.TLS != nil}
	if id != "" {
		args = append(args, "queue_id", id)
	}
	if s.conn.AuthUser != "" {
		args = append(args, "auth_user", s.conn.AuthUser)
	}
	if t.Quarantine != "" {
		args = append(args, "quarantine", t.Quarantine)
	}
	args = append(args, "duration", time.Since(start).Round(time.Microsecond).String())
	log.Info("message", args...)
}

// authAllowed asks the AUTH limiter, if any, about this client (and user,
// once known).
func (s *session) authAllowed(ctx context.Context, user string) error {
	cfg := &s.srv.cfg
	if cfg.AuthLimit == nil {
		return nil
	}
	v := cfg.AuthLimit.CheckAuth(ctx, cfg.AuthKeys(s.conn, user)...)
	if v.Action == postern.Continue || v.Action == postern.Accept {
		return nil
	}
	rep := v.Reply
	if rep.IsZero() || rep.Code/100 == 2 {
		rep = postern.NewReply(454, postern.ESC(4, 7, 0), "Temporary authentication failure")
	}
	s.conn.Logger().Info("auth refused", "stage", "auth", "action", v.Action.String(), "code", rep.Code, "user", user, "reason", v.Reason)
	return toSMTPError(rep)
}

// temporary reports an error that says it is temporary (a 4xx
// postern.Reply, a directory's unavailable error, a net.Error timeout).
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// AuthMechanisms offers PLAIN and LOGIN when a checker is configured and
// the channel is encrypted (or insecure auth is allowed).
func (s *session) AuthMechanisms() []string {
	cfg := &s.srv.cfg
	if cfg.Auth == nil || s.conn.Authenticated() {
		return nil
	}
	if s.st.tlsState() == nil && !cfg.AllowInsecureAuth {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	cfg := &s.srv.cfg
	if cfg.Auth == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if s.st.tlsState() == nil && !cfg.AllowInsecureAuth {
		return nil, errAuthTLS // RFC 4954 §4
	}
	ctx := context.Background()
	if err := s.authAllowed(ctx, ""); err != nil {
		return nil, err
	}
	check := func(identity, user, pass string) error {
		if identity != "" && identity != user {
			return smtp.ErrAuthFailed // no proxy authorization
		}
		if err := s.authAllowed(ctx, user); err != nil {
			return err
		}
		if err := cfg.Auth.CheckPassword(ctx, s.conn, user, pass); err != nil {
			if temporary(err) {
				// The checker could not tell (its directory is down): not
				// a wrong password, so not counted (RFC 4954 §6: 454).
				s.conn.Logger().Warn("auth unavailable", "stage", "auth", "action", "tempfail", "code", 454, "user", user, "error", err)
				return toSMTPError(postern.NewReply(454, postern.ESC(4, 7, 0), "Temporary authentication failure"))
			}
			s.conn.Logger().Info("auth failed", "stage", "auth", "action", "reject", "code", 535, "user", user)
			if cfg.AuthLimit != nil {
				if lerr := cfg.AuthLimit.RecordAuthFailure(ctx, cfg.AuthKeys(s.conn, user)...); lerr != nil {
					s.conn.Logger().Warn("auth failure not recorded", "stage", "auth", "error", lerr)
				}
			}
			return smtp.ErrAuthFailed
		}
		s.conn.AuthUser, s.conn.AuthMech = user, mech
		s.conn.Logger().Info("auth", "stage", "auth", "action", "accept", "user", user, "mech", mech)
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return newLoginServer(func(u, p string) error { return check("", u, p) }), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}
