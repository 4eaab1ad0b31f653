package milter

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/d--j/go-milter"

	"github.com/postern/postern"
)

// sentField is a header field as the milter was sent it.
type sentField struct {
	name string
	// value follows the colon, folds as LF, without the line end.
	value string
	// recv is the field's occurrence among the received fields of its
	// name (what Message.DeleteHeader counts); -1 for a field a filter
	// added.
	recv int
}

// headerForMilter lists the header as Message.Render would write it: the
// fields filters added (last added first), then the received fields not
// deleted.
func headerForMilter(m *postern.Message) []sentField {
	edits, fields := m.Edits(), m.Fields()
	deleted := map[int]bool{}
	for _, e := range edits {
		if e.Kind != postern.EditDelete {
			continue
		}
		n := 0
		for i, f := range fields {
			if strings.EqualFold(f.Name, e.Name) {
				if n == e.Index {
					deleted[i] = true
					break
				}
				n++
			}
		}
	}
	var out []sentField
	for i := len(edits) - 1; i >= 0; i-- {
		if e := edits[i]; e.Kind == postern.EditAdd {
			out = append(out, sentField{name: e.Name, value: " " + lfFolds(strings.TrimRight(e.Value, "\r\n")), recv: -1})
		}
	}
	seen := map[string]int{}
	for i, f := range fields {
		k := strings.ToLower(f.Name)
		idx := seen[k]
		seen[k]++
		if deleted[i] {
			continue
		}
		_, v, _ := bytes.Cut(f.Raw, []byte{':'})
		out = append(out, sentField{name: f.Name, value: lfFolds(strings.TrimRight(string(v), "\r\n")), recv: idx})
	}
	return out
}

// lfFolds writes the folds of a field value as bare LF, as sendmail and
// Postfix pass them to milters.
func lfFolds(v string) string { return strings.ReplaceAll(v, "\r\n", "\n") }

// data sends DATA, the header, the body and the end of the message, and
// applies the milter's answer.
func (s *clientSession) data(ctx context.Context, conn *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	if v, err := s.open(ctx, conn, t); err != nil || v.Final() || s.done {
		return v, err
	}
	cfg := &s.c.cfg
	if v, stop, err := s.event(ctx, cfg.CommandTimeout, postern.StageData, s.ms.DataStart); err != nil || stop {
		return v, err
	}
	fields := headerForMilter(m)
	leadSpace := s.ms.ProtocolOption(milter.OptHeaderLeadingSpace)
	for _, f := range fields {
		value := f.value
		if !leadSpace {
			value = strings.TrimPrefix(value, " ") // sendmail eats one space
		}
		v, stop, err := s.event(ctx, cfg.ContentTimeout, postern.StageData, func() (*milter.Action, error) {
			return s.ms.HeaderField(f.name, value, nil)
		})
		if err != nil || stop {
			return v, err
		}
	}
	if v, stop, err := s.event(ctx, cfg.ContentTimeout, postern.StageData, s.ms.HeaderEnd); err != nil || stop {
		return v, err
	}
	var mods []milter.ModifyAction
	v, stop, err := s.event(ctx, cfg.ContentTimeout, postern.StageData, func() (*milter.Action, error) {
		var act *milter.Action
		var err error
		mods, act, err = s.ms.BodyReadFrom(m.NewBodyReader())
		return act, err
	})
	if err != nil || (stop && v.Action != postern.Continue) {
		return v, err
	}
	s.done = true
	return s.apply(t, m, fields, leadSpace, mods)
}

// apply records the milter's modifications as Postern edits and
// envelope changes; a quarantine becomes the verdict.
func (s *clientSession) apply(t *postern.Txn, m *postern.Message, sent []sentField, leadSpace bool, mods []milter.ModifyAction) (postern.Verdict, error) {
	v := postern.Verdict{Reason: s.c.name + ": accept"}
	value := func(x string) string {
		x = strings.ReplaceAll(x, "\n", "\r\n")
		if leadSpace {
			x = strings.TrimPrefix(x, " ") // Message writes ": " itself
		}
		return x
	}
	for _, a := range mods {
		switch a.Type {
		case milter.ActionAddHeader, milter.ActionInsertHeader:
			// Added at the top, where Postern adds every field.
			m.AddHeader(a.HeaderName, value(a.HeaderValue))
		case milter.ActionChangeHeader:
			s.changeHeader(m, sent, a, value(a.HeaderValue))
		case milter.ActionQuarantine:
			reason := strings.TrimSpace(a.Reason)
			if reason == "" {
				reason = "held by " + s.c.name
			}
			v = postern.Quarantined(s.c.name + ": " + reason)
		case milter.ActionAddRcpt:
			s.addRcpt(t, a.Rcpt)
		case milter.ActionDelRcpt:
			s.delRcpt(t, a.Rcpt)
		case milter.ActionChangeFrom:
			if err := s.changeFrom(t, a.From); err != nil {
				return postern.Pass, err
			}
		case milter.ActionReplaceBody:
			return postern.Pass, ErrReplaceBody
		}
	}
	if len(t.Rcpts) == 0 {
		return postern.Discarded(s.c.name + ": every recipient removed"), nil
	}
	return v, nil
}

// changeHeader applies SMFIR_CHGHEADER: the index-th field of the name
// among those the milter was sent (from 1) is replaced, or removed for
// an empty value; past the last one the field is added (libmilter's
// rule). A field an earlier filter added cannot be taken back: the
// change is logged and left out.
func (s *clientSession) changeHeader(m *postern.Message, sent []sentField, a milter.ModifyAction, value string) {
	n := 0
	for _, f := range sent {
		if !strings.EqualFold(f.name, a.HeaderName) {
			continue
		}
		if n++; n != int(a.HeaderIndex) {
			continue
		}
		if f.recv < 0 {
			s.log.Warn("milter changed a header field an earlier filter added; left as it is", "field", f.name)
			return
		}
		m.DeleteHeader(f.name, f.recv)
		if strings.TrimSpace(value) != "" {
			m.AddHeader(f.name, value)
		}
		return
	}
	if strings.TrimSpace(value) != "" {
		m.AddHeader(a.HeaderName, value)
	}
}

// addRcpt adds a recipient the milter asks for, in canonical form, once,
// and no more than MaxAddedRecipients per message. It does not pass the
// RCPT stage of the other filters: the milter is the site's own choice
// (Postfix does the same).
func (s *clientSession) addRcpt(t *postern.Txn, raw string) {
	a, err := postern.ParseMailbox(milter.RemoveAngle(strings.TrimSpace(raw)))
	if err != nil || a.Domain == "" {
		s.log.Warn("milter added a recipient that does not parse; left out", "rcpt", raw)
		return
	}
	addr := a.String()
	added := 0
	for _, r := range t.Rcpts {
		if r.Addr == addr {
			return
		}
		if mark, _ := postern.GetValue(&r.Values, addedKey); mark {
			added++
		}
	}
	if added >= s.c.cfg.MaxAddedRecipients {
		s.log.Warn("milter added too many recipients; left out", "rcpt", addr, "max", s.c.cfg.MaxAddedRecipients)
		return
	}
	r := &postern.Rcpt{Addr: addr, Original: addr}
	postern.SetValue(&r.Values, addedKey, true)
	t.Rcpts = append(t.Rcpts, r)
}

// addedKey marks a recipient a milter added.
var addedKey = postern.NewKey[bool]("milter.added")

// delRcpt removes a recipient the milter names.
func (s *clientSession) delRcpt(t *postern.Txn, raw string) {
	a, err := postern.ParseMailbox(milter.RemoveAngle(strings.TrimSpace(raw)))
	if err != nil {
		if pm, perr := postern.SplitAddress(milter.RemoveAngle(strings.TrimSpace(raw))); perr == nil {
			a, err = pm, nil
		}
	}
	if err != nil {
		s.log.Warn("milter removed a recipient that does not parse; kept", "rcpt", raw)
		return
	}
	kept := t.Rcpts[:0]
	for _, r := range t.Rcpts {
		if r.Addr != a.String() {
			kept = append(kept, r)
		}
	}
	t.Rcpts = kept
}

// changeFrom applies SMFIR_CHGFROM; "<>" is the null sender. A sender
// that does not parse is a failure of the milter.
func (s *clientSession) changeFrom(t *postern.Txn, raw string) error {
	v := milter.RemoveAngle(strings.TrimSpace(raw))
	if v == "" {
		t.From = ""
		return nil
	}
	a, err := postern.ParseMailbox(v)
	if err != nil || a.Domain == "" {
		return fmt.Errorf("milter: changed the sender to %q, which does not parse", raw)
	}
	t.From = a.String()
	return nil
}
