package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/d--j/go-milter"

	"github.com/postern/postern"
)

// errCannotModify: the policy changed the message in a way the MTA did
// not agree to at negotiation (it did not offer the action).
var errCannotModify = errors.New("milter: the MTA does not allow this modification")

// endOfMessage runs the DATA stage on the spooled message and answers
// the MTA: a refusal with Postern's reply, a discard, or an accept
// preceded by the modifications the filters recorded.
func (s *session) endOfMessage(st *msgState, m milter.Modifier) (*milter.Response, error) {
	t := st.t
	if !st.refused.IsZero() {
		return s.finishRefused(st, 0, st.refused), nil
	}
	msg, err := postern.NewMessage(st.sp, st.sp.Size(), s.srv.cfg.MaxHeaderBytes)
	if err != nil {
		return s.finishRefused(st, st.sp.Size(), postern.NewReply(552, postern.ESC(5, 3, 4), "Message header size exceeds limit")), nil
	}
	v := postern.Pass
	if f, _ := s.srv.cfg.Policy.(postern.DataChecker); f != nil {
		v, err = f.CheckData(context.Background(), s.conn, t, msg)
		v = s.errVerdict(v, err)
	}
	switch v.Action {
	case postern.Reject, postern.TempFail:
		rep := v.ReplyAt(postern.StageData)
		s.conn.Logger().Info("data refused", "txn_id", t.ID, "stage", "data", "action", v.Action.String(),
			"code", rep.Code, "reason", v.Reason)
		return s.finishRefused(st, msg.Size(), rep), nil
	case postern.Discard:
		t.Discard = true
	case postern.Quarantine:
		if t.Quarantine == "" {
			t.Quarantine = v.Reason
			if t.Quarantine == "" {
				t.Quarantine = "quarantined by policy"
			}
		}
	}
	if t.Discard {
		s.logTxn(st, msg.Size(), "discard", 250)
		return milter.RespDiscard, nil
	}
	if err := s.modify(st, msg, m); err != nil {
		if !errors.Is(err, errCannotModify) {
			return nil, err // the connection broke
		}
		s.conn.Logger().Error("message modification not possible", "txn_id", t.ID, "stage", "data", "error", err)
		return s.finishRefused(st, msg.Size(), postern.NewReply(451, postern.ESC(4, 3, 0), "Temporary local problem, try again later")), nil
	}
	outcome := "queued"
	if t.Quarantine != "" {
		outcome = "quarantine"
	}
	s.logTxn(st, msg.Size(), outcome, 250)
	return milter.RespAccept, nil
}

// finishRefused logs and answers a refused message.
func (s *session) finishRefused(st *msgState, size int64, rep postern.Reply) *milter.Response {
	outcome, a := "reject", postern.Reject
	if rep.Temporary() {
		outcome, a = "tempfail", postern.TempFail
	}
	s.logTxn(st, size, outcome, rep.Code)
	return replyResponse(rep, a)
}

// logTxn writes the one line per message and tells the observer.
func (s *session) logTxn(st *msgState, size int64, outcome string, code int) {
	s.observe(st, size, outcome, code)
	log := s.conn.Logger()
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	t := st.t
	rcpts := make([]string, len(t.Rcpts))
	for i, r := range t.Rcpts {
		rcpts[i] = r.Addr
	}
	args := []any{"txn_id", t.ID, "stage", "data", "action", outcome, "code", code, "from", t.From,
		"rcpts", rcpts, "size", size, "helo", s.conn.HELO}
	if st.qid != "" {
		args = append(args, "queue_id", st.qid)
	}
	if s.conn.AuthUser != "" {
		args = append(args, "auth_user", s.conn.AuthUser)
	}
	if t.Quarantine != "" {
		args = append(args, "quarantine", t.Quarantine)
	}
	args = append(args, "duration", time.Since(st.start).Round(time.Microsecond).String())
	log.Info("message", args...)
}

// headerOp is one header modification for the MTA.
type headerOp struct {
	// index: for a change, the occurrence of name among the fields the
	// MTA sent, from 1 (SMFIR_CHGHEADER); 0 for an insertion at the top
	// (SMFIR_INSHEADER at 0).
	index       int
	name, value string
}

// headerOps turns the edits the filters recorded into milter
// modifications. A deletion paired with an addition of the same field
// (a rewritten Subject, a replaced X-Spam-Flag) becomes one change in
// place; other deletions are changes to "" (removal), last occurrence
// first (Postfix renumbers after a removal, sendmail does not); other
// additions are inserted at the top, where Message.Render puts them, the
// last added first.
func headerOps(edits []postern.HeaderEdit) (changes, inserts []headerOp) {
	var adds []postern.HeaderEdit
	for _, e := range edits {
		if e.Kind == postern.EditAdd {
			adds = append(adds, e)
		}
	}
	used := make([]bool, len(adds))
	for _, e := range edits {
		if e.Kind != postern.EditDelete {
			continue
		}
		op := headerOp{index: e.Index + 1, name: e.Name}
		for j, a := range adds {
			if !used[j] && a.Value != "" && strings.EqualFold(a.Name, e.Name) {
				used[j], op.value = true, a.Value
				break
			}
		}
		op.value = noNUL(op.value)
		changes = append(changes, op)
	}
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].index > changes[j].index })
	for j, a := range adds {
		if !used[j] {
			inserts = append(inserts, headerOp{name: a.Name, value: noNUL(a.Value)})
		}
	}
	return changes, inserts
}

// envelopeOps compares the envelope the filters left with the MTA's.
func envelopeOps(st *msgState) (delRcpts, addRcpts []string, from *string) {
	want := map[string]bool{}
	for _, r := range st.t.Rcpts {
		want[r.Addr] = true
	}
	have := map[string]bool{}
	for _, a := range st.rcpts {
		have[a] = true
		if !want[a] {
			delRcpts = append(delRcpts, a)
		}
	}
	for _, r := range st.t.Rcpts {
		if !have[r.Addr] {
			addRcpts = append(addRcpts, r.Addr)
			have[r.Addr] = true
		}
	}
	if st.t.From != st.from {
		f := st.t.From
		from = &f
	}
	return delRcpts, addRcpts, from
}

// modify sends the modifications: header edits, envelope changes, the
// quarantine. It checks first that the MTA agreed to each kind needed,
// so none is sent when one is missing.
func (s *session) modify(st *msgState, msg *postern.Message, m milter.Modifier) error {
	changes, inserts := headerOps(msg.Edits())
	delRcpts, addRcpts, from := envelopeOps(st)
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("%w: %s", errCannotModify, what)
		}
		return nil
	}
	if err := errors.Join(
		need(len(changes) == 0 || s.actions&milter.OptChangeHeader != 0, "change or remove a header field (SMFIF_CHGHDRS)"),
		need(len(inserts) == 0 || s.actions&milter.OptAddHeader != 0, "add a header field (SMFIF_ADDHDRS)"),
		need(len(delRcpts) == 0 || s.actions&milter.OptRemoveRcpt != 0, "remove a recipient (SMFIF_DELRCPT)"),
		need(len(addRcpts) == 0 || s.actions&milter.OptAddRcpt != 0, "add a recipient (SMFIF_ADDRCPT)"),
		need(from == nil || s.actions&milter.OptChangeFrom != 0 && s.version >= 6, "change the sender (SMFIF_CHGFROM)"),
		need(st.t.Quarantine == "" || s.actions&milter.OptQuarantine != 0, "quarantine (SMFIF_QUARANTINE)"),
	); err != nil {
		return err
	}
	lead := s.protocol&milter.OptHeaderLeadingSpace != 0
	for _, c := range changes {
		if err := m.ChangeHeader(c.index, c.name, wireValue(c.value, lead)); err != nil {
			return err
		}
	}
	for _, in := range inserts {
		if err := m.InsertHeader(0, in.name, wireValue(in.value, lead)); err != nil {
			return err
		}
	}
	for _, a := range delRcpts {
		if err := m.DeleteRecipient(postern.WireAddr(a)); err != nil {
			return err
		}
	}
	for _, a := range addRcpts {
		if err := m.AddRecipient(postern.WireAddr(a), ""); err != nil {
			return err
		}
	}
	if from != nil {
		if err := m.ChangeFrom(postern.WireAddr(*from), ""); err != nil {
			return err
		}
	}
	if st.t.Quarantine != "" {
		return m.Quarantine(st.t.Quarantine)
	}
	return nil
}

// wireValue is a header value as the MTA takes it. With
// SMFIP_HDR_LEADSPC negotiated the MTA writes "name:" and the value as
// sent (Postfix's cleanup, sendmail), so the space after the colon is
// ours to send; "" (a removal) stays "".
func wireValue(v string, leadSpace bool) string {
	if !leadSpace || v == "" || v[0] == ' ' || v[0] == '\t' {
		return v
	}
	return " " + v
}

// noNUL replaces NUL bytes, which would end a milter C string early.
func noNUL(s string) string { return strings.ReplaceAll(s, "\x00", " ") }
