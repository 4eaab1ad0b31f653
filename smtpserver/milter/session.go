package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/d--j/go-milter"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/spool"
)

// errOrder is a session's error for an event the protocol does not allow
// where it came (a header before MAIL, say): the connection is closed
// and the MTA applies its milter_default_action.
var errOrder = errors.New("milter: event out of order")

// session is the server side of one MTA connection: one SMTP connection
// of the MTA (or several in turn, after SMFIC_QUIT_NC). go-milter calls
// its methods one at a time, in the order the packets come.
type session struct {
	srv      *Server
	version  uint32
	actions  milter.OptAction
	protocol milter.OptProtocol

	conn *postern.Conn
	// connectVerdict is a Discard or Quarantine at connect, applied to
	// every transaction (smtpserver does the same).
	connectVerdict postern.Verdict
	txn            *msgState
}

// msgState is one transaction, MAIL to the end of the message.
type msgState struct {
	t     *postern.Txn
	start time.Time
	// qid is the MTA's queue ID (macro i), "" when it sent none.
	qid string
	// from and rcpts are the envelope as the MTA has it, to tell what
	// filters changed.
	from  string
	rcpts []string
	sp    *spool.Spool
	// hdr counts header bytes; body is set after SMFIC_EOH.
	hdr  int
	body bool
	// refused is a refusal found while the message came (too large,
	// spool failure), answered at its end.
	refused postern.Reply
}

func (s *Server) newSession(version uint32, actions milter.OptAction, protocol milter.OptProtocol) milter.Milter {
	return &session{srv: s, version: version, actions: actions, protocol: protocol}
}

// guard turns a panic in a filter or in the session into an error: the
// connection ends, the process goes on.
func (s *session) guard(err *error) {
	if p := recover(); p != nil {
		s.logger().Error("milter session panicked", "panic", fmt.Sprint(p))
		*err = fmt.Errorf("%w: %v", postern.ErrFilterPanic, p)
	}
}

func (s *session) logger() *slog.Logger {
	if s.conn != nil {
		return s.conn.Logger()
	}
	return s.srv.cfg.Logger
}

func (s *session) NewConnection(milter.Modifier) error {
	s.endTxn()
	id := s.srv.cfg.NewID()
	s.conn = &postern.Conn{ID: id, Started: time.Now(), Log: s.srv.cfg.Logger.With("conn_id", id)}
	s.connectVerdict = postern.Pass
	return nil
}

func (s *session) Connect(host, family string, port uint16, addr string, m milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	if s.conn == nil {
		_ = s.NewConnection(m)
	}
	connFromMTA(s.conn, host, family, port, addr, m)
	if ip := s.conn.RemoteAddr(); ip.IsValid() {
		s.conn.Log = s.conn.Log.With("remote_ip", ip.String())
	}
	s.conn.Logger().Info("connect", "stage", "connect", "client_resolve", s.conn.ClientResolve.String(),
		"client_name", s.conn.ClientName, "mta", mtaName(s.conn))
	f, _ := s.srv.cfg.Policy.(postern.ConnectChecker)
	if f == nil {
		return milter.RespContinue, nil
	}
	v, err := f.CheckConnect(context.Background(), s.conn)
	if err != nil {
		v = postern.TempFailed(421, postern.ESC(4, 3, 0), "Temporary local problem, try again later", err.Error())
	}
	if v.Action == postern.Discard || v.Action == postern.Quarantine {
		s.connectVerdict = v
		return milter.RespContinue, nil
	}
	return s.respond(postern.StageConnect, v)
}

func mtaName(c *postern.Conn) string {
	m, _ := postern.GetValue(&c.Values, MTAKey)
	return m.Hostname
}

func (s *session) Helo(name string, m milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	if s.conn == nil {
		return nil, fmt.Errorf("%w: HELO before connect", errOrder)
	}
	s.endTxn()
	s.conn.HELO = name
	if cs := tlsFromMTA(m); cs != nil {
		s.conn.TLS = cs
	}
	f, _ := s.srv.cfg.Policy.(postern.HeloChecker)
	if f == nil {
		return milter.RespContinue, nil
	}
	v, err := f.CheckHelo(context.Background(), s.conn)
	return s.respond(postern.StageHelo, s.errVerdict(v, err))
}

func (s *session) MailFrom(from, esmtpArgs string, m milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	if s.conn == nil {
		return nil, fmt.Errorf("%w: MAIL before connect", errOrder)
	}
	s.endTxn()
	authFromMTA(s.conn, m)
	if cs := tlsFromMTA(m); cs != nil {
		s.conn.TLS = cs
	}
	if from != "" {
		a, err := postern.ParseMailbox(from)
		if err != nil || a.Domain == "" {
			s.conn.Logger().Info("refused", "stage", "mail", "action", "reject", "code", 553, "reason", "sender "+fmt.Sprintf("%q", from)+" does not parse")
			return s.respond(postern.StageMail, postern.Rejected(553, postern.ESC(5, 1, 7), "Bad sender address syntax", "sender does not parse"))
		}
		from = a.String()
	}
	qid := m.Get("i")
	id := qid
	if id == "" {
		id = s.srv.cfg.NewID()
	}
	t := &postern.Txn{ID: id, From: from, Mail: mailParams(esmtpArgs)}
	st := &msgState{t: t, start: time.Now(), from: from, qid: qid}
	if cv := s.connectVerdict; cv.Action != postern.Continue {
		if r, _ := s.decide(postern.StageConnect, cv, t); r != nil {
			return r, nil
		}
	}
	if f, _ := s.srv.cfg.Policy.(postern.MailChecker); f != nil {
		v, err := f.CheckMail(context.Background(), s.conn, t)
		if r, final := s.decide(postern.StageMail, s.errVerdict(v, err), t); final {
			return r, nil
		}
	}
	s.txn = st
	return milter.RespContinue, nil
}

func (s *session) RcptTo(rcpt, esmtpArgs string, _ milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	if s.txn == nil || s.txn.sp != nil {
		return nil, fmt.Errorf("%w: RCPT outside a transaction", errOrder)
	}
	a, err := postern.ParseMailbox(rcpt)
	if err != nil {
		if pm, perr := postern.SplitAddress(rcpt); perr == nil && pm.Domain == "" {
			a, err = pm, nil // the bare Postmaster, RFC 5321 §4.5.1
		}
	}
	if err != nil {
		return s.respond(postern.StageRcpt, postern.Rejected(553, postern.ESC(5, 1, 3), "Bad recipient address syntax", "recipient does not parse"))
	}
	t := s.txn.t
	r := &postern.Rcpt{Addr: a.String(), Original: a.String()}
	rcptParams(r, esmtpArgs)
	if f, _ := s.srv.cfg.Policy.(postern.RcptChecker); f != nil {
		v, err := f.CheckRcpt(context.Background(), s.conn, t, r)
		if resp, final := s.decide(postern.StageRcpt, s.errVerdict(v, err), t); final {
			return resp, nil
		}
	}
	t.Rcpts = append(t.Rcpts, r)
	s.txn.rcpts = append(s.txn.rcpts, r.Addr)
	return milter.RespContinue, nil
}

func (s *session) Data(milter.Modifier) (*milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *session) Header(name, value string, _ milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	st := s.txn
	if st == nil || len(st.t.Rcpts) == 0 || st.body {
		return nil, fmt.Errorf("%w: header outside a message", errOrder)
	}
	if !st.refused.IsZero() {
		return milter.RespContinue, nil
	}
	s.spoolStart(st)
	line := headerLine(name, value, s.protocol&milter.OptHeaderLeadingSpace != 0)
	st.hdr += len(line)
	if st.hdr > s.srv.cfg.MaxHeaderBytes {
		s.refuse(st, postern.NewReply(552, postern.ESC(5, 3, 4), "Message header size exceeds limit"))
		return milter.RespContinue, nil
	}
	s.spoolWrite(st, []byte(line))
	return milter.RespContinue, nil
}

func (s *session) Headers(milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	st := s.txn
	if st == nil || len(st.t.Rcpts) == 0 || st.body {
		return nil, fmt.Errorf("%w: end of header outside a message", errOrder)
	}
	st.body = true
	if st.refused.IsZero() {
		s.spoolStart(st)
		s.spoolWrite(st, []byte("\r\n"))
	}
	return milter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, _ milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	st := s.txn
	if st == nil || !st.body {
		return nil, fmt.Errorf("%w: body outside a message", errOrder)
	}
	if st.refused.IsZero() {
		s.spoolWrite(st, chunk)
	}
	return milter.RespContinue, nil
}

func (s *session) EndOfMessage(m milter.Modifier) (_ *milter.Response, err error) {
	defer s.guard(&err)
	st := s.txn
	if st == nil || len(st.t.Rcpts) == 0 {
		return nil, fmt.Errorf("%w: end of message outside a message", errOrder)
	}
	defer s.endTxn()
	if qid := m.Get("i"); qid != "" {
		st.t.ID, st.qid = qid, qid
	}
	if !st.body && st.refused.IsZero() {
		s.spoolStart(st) // an MTA that skipped the header events
		s.spoolWrite(st, []byte("\r\n"))
	}
	return s.endOfMessage(st, m)
}

func (s *session) Abort(milter.Modifier) error {
	s.endTxn()
	return nil
}

func (s *session) Unknown(string, milter.Modifier) (*milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *session) Cleanup(milter.Modifier) { s.endTxn() }

// endTxn forgets the transaction and frees its spool.
func (s *session) endTxn() {
	if s.txn != nil && s.txn.sp != nil {
		s.txn.sp.Release()
	}
	s.txn = nil
}

func (s *session) spoolStart(st *msgState) {
	if st.sp == nil {
		cfg := &s.srv.cfg
		st.sp = spool.New(cfg.SpoolMemoryBytes, cfg.SpoolDir, st.t.Mail.Size, cfg.MaxMessageBytes)
	}
}

// spoolWrite appends to the spool; a message too large, or a spool that
// cannot be written, is refused at its end.
func (s *session) spoolWrite(st *msgState, b []byte) {
	if st.sp == nil {
		s.spoolStart(st)
	}
	_, err := st.sp.Write(b)
	switch {
	case err == nil:
	case errors.Is(err, spool.ErrTooLarge):
		s.refuse(st, postern.NewReply(552, postern.ESC(5, 3, 4), "Message size exceeds fixed maximum message size"))
	case spool.IsNoSpace(err):
		s.conn.Logger().Warn("spool failed", "txn_id", st.t.ID, "stage", "data", "error", err)
		s.refuse(st, postern.NewReply(452, postern.ESC(4, 3, 1), "Insufficient system storage"))
	default:
		s.conn.Logger().Warn("spool failed", "txn_id", st.t.ID, "stage", "data", "error", err)
		s.refuse(st, postern.NewReply(451, postern.ESC(4, 3, 0), "Temporary local problem, try again later"))
	}
}

func (s *session) refuse(st *msgState, r postern.Reply) {
	if st.refused.IsZero() {
		st.refused = r
	}
	if st.sp != nil {
		st.sp.Release()
	}
}

// headerLine rebuilds a header field from the MTA's name and value: the
// MTA passes folds as bare LF, and, unless SMFIP_HDR_LEADSPC was agreed,
// has eaten the one space after the colon. A line break the MTA passes
// without white space after it (which would end the field) becomes a
// space, so a value can never add a field or end the header.
func headerLine(name, value string, leadSpace bool) string {
	var b strings.Builder
	b.Grow(len(name) + len(value) + 4)
	b.WriteString(name)
	b.WriteByte(':')
	if !leadSpace {
		b.WriteByte(' ')
	}
	value = strings.TrimRight(value, "\r\n")
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '\r' && i+1 < len(value) && value[i+1] == '\n':
			continue // the LF that follows writes the line end
		case c == '\r' || c == '\n':
			if i+1 < len(value) && (value[i+1] == ' ' || value[i+1] == '\t') {
				b.WriteString("\r\n")
			} else {
				b.WriteByte(' ')
			}
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// errVerdict answers a filter's error as smtpserver does: 451 4.3.0.
func (s *session) errVerdict(v postern.Verdict, err error) postern.Verdict {
	if err != nil {
		return postern.TempFailed(451, postern.ESC(4, 3, 0), "Temporary local problem, try again later", err.Error())
	}
	return v
}

// decide applies a verdict at MAIL or RCPT: a refusal or a discard is
// answered now (final); a quarantine is kept for the end of the message.
func (s *session) decide(st postern.Stage, v postern.Verdict, t *postern.Txn) (*milter.Response, bool) {
	switch v.Action {
	case postern.Reject, postern.TempFail:
		r, _ := s.respond(st, v)
		return r, true
	case postern.Discard:
		t.Discard = true
		s.conn.Logger().Info("discard", "txn_id", t.ID, "stage", st.String(), "action", "discard", "reason", v.Reason)
		s.observe(&msgState{t: t, start: time.Now(), qid: t.ID}, 0, "discard", 250)
		return milter.RespDiscard, true
	case postern.Quarantine:
		if t.Quarantine == "" {
			t.Quarantine = v.Reason
			if t.Quarantine == "" {
				t.Quarantine = "quarantined by policy"
			}
		}
	}
	return nil, false
}

// respond turns a verdict before the end of the message into a milter
// reply: a refusal carries Postern's code, enhanced code and text
// (SMFIR_REPLYCODE); anything else lets the MTA go on.
func (s *session) respond(st postern.Stage, v postern.Verdict) (*milter.Response, error) {
	if v.Action != postern.Reject && v.Action != postern.TempFail {
		return milter.RespContinue, nil
	}
	rep := v.ReplyAt(st)
	s.conn.Logger().Info("refused", "stage", st.String(), "action", v.Action.String(), "code", rep.Code, "reason", v.Reason)
	return replyResponse(rep, v.Action), nil
}

// replyResponse is SMFIR_REPLYCODE with rep; should go-milter refuse to
// format it, the bare SMFIR_REJECT or SMFIR_TEMPFAIL, so the refusal
// stands.
func replyResponse(rep postern.Reply, a postern.Action) *milter.Response {
	lines := make([]string, len(rep.Lines))
	for i, l := range rep.Lines {
		lines[i] = strings.NewReplacer("\r", " ", "\n", " ").Replace(l)
	}
	text := strings.Join(lines, "\n")
	if !rep.Enhanced.IsZero() {
		text = rep.Enhanced.String() + " " + text
	}
	r, err := milter.RejectWithCodeAndReason(uint16(rep.Code), text)
	if err == nil {
		return r
	}
	if a == postern.TempFail {
		return milter.RespTempFail
	}
	return milter.RespReject
}

// observe reports one message's outcome.
func (s *session) observe(st *msgState, size int64, outcome string, code int) {
	obs := s.srv.cfg.TxnObserver
	if obs == nil {
		return
	}
	obs(context.Background(), TxnResult{Conn: s.conn, Txn: st.t, Size: size, Outcome: outcome, Code: code,
		QueueID: st.qid, Duration: time.Since(st.start)})
}
