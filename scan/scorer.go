package scan

import (
	"context"
	"fmt"
	"log/slog"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// HeaderField and HeaderRemoval are what a scorer asks to change in the
// header (aliases of scan/scanner's).
type (
	HeaderField   = scanner.HeaderField
	HeaderRemoval = scanner.HeaderRemoval
)

// SoftAction is what the filter does when a spam scorer answers one of
// rspamd's "soft" actions, "greylist" or "soft reject": they are about
// the sender's behaviour (a first contact, a rate over a limit), not the
// content, and ask for a delay rather than a refusal.
type SoftAction uint8

// Soft actions.
const (
	// SoftTempFail (the default) answers 451 4.7.1 with the scorer's
	// message (rspamd's smtp_message), sanitised; the scorer keeps
	// track of the retry (rspamd's greylist module does, in Redis).
	SoftTempFail SoftAction = iota
	// SoftGreylist asks FilterConfig.Greylist, Postern's greylisting
	// (ratelimit.Greylist.CheckMessage): the message waits until its
	// triplets are retried after the minimum delay.
	SoftGreylist
	// SoftAccept logs the action and goes on as for "no action".
	SoftAccept
)

var softNames = [...]string{"tempfail", "greylist", "accept"}

// String returns "tempfail", "greylist" or "accept".
func (a SoftAction) String() string {
	if int(a) < len(softNames) {
		return softNames[a]
	}
	return fmt.Sprintf("soft(%d)", uint8(a))
}

// ParseSoftAction parses the String form.
func ParseSoftAction(s string) (SoftAction, error) {
	for i, n := range softNames {
		if n == s {
			return SoftAction(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown soft action %q (tempfail, greylist, accept)", ErrConfig, s)
}

// softVerdict acts on a scorer's "greylist" or "soft reject"; ok is false
// when the message goes on. The site's own senders are never delayed.
func (f *Filter) softVerdict(ctx context.Context, c *postern.Conn, t *postern.Txn, res *Result) (postern.Verdict, bool) {
	var act SoftAction
	var text string
	switch res.Action {
	case "greylist":
		act, text = f.cfg.OnGreylist, "Greylisted, please try again later"
	case "soft reject":
		act, text = f.cfg.OnSoftReject, "Try again later"
	default:
		return postern.Pass, false
	}
	reason := "scan: " + res.Scanner + " action " + res.Action
	if c.Trusted || c.Authenticated() {
		f.logDecision(ctx, c, t, postern.StageData, postern.Verdict{Reason: reason + " ignored for the site's own sender"})
		return postern.Pass, false
	}
	switch act {
	case SoftAccept:
		f.logDecision(ctx, c, t, postern.StageData, postern.Verdict{Reason: reason + " accepted (soft action accept)"})
		return postern.Pass, false
	case SoftGreylist:
		v := f.cfg.Greylist(ctx, c, t)
		if !v.Final() {
			f.logDecision(ctx, c, t, postern.StageData, postern.Verdict{Reason: reason + ": greylisting passed it"})
			return postern.Pass, false
		}
		v.Reason = reason + ": " + v.Reason
		return v, true
	}
	if msg := replyText(res.Message); msg != "" {
		text = msg
	}
	return postern.TempFailed(451, postern.ESC(4, 7, 1), text, reason), true
}

// replyText makes a scorer's message fit for an SMTP reply: printable
// ASCII (RFC 5321 §4.2), one line, at most 120 characters.
func replyText(s string) string {
	return strings.TrimSpace(replySafe(strings.Join(strings.Fields(s), " ")))
}

// protectedFields are received fields a scorer may not remove: the trace
// (RFC 5321 §4.4) is what loop detection and every later reader rely on.
var protectedFields = []string{"Received", "Return-Path"}

// applyScorerHeaders records the scorer's header changes on m, checked
// field by field: a name that is not an RFC 5322 field name, a value
// with a NUL or invalid UTF-8, a removal of a trace field, is skipped
// and logged. The fields are added at the top, in the scorer's order.
func (f *Filter) applyScorerHeaders(ctx context.Context, t *postern.Txn, m *postern.Message, res *Result) {
	var skipped []string
	for _, r := range res.RemoveHeaders {
		if !fieldName(r.Name) || containsFold(protectedFields, r.Name) {
			skipped = append(skipped, "remove "+r.Name)
			continue
		}
		removeFields(m, r)
	}
	// The last field added is rendered first: add bottom up.
	for i := len(res.AddHeaders) - 1; i >= 0; i-- {
		h := res.AddHeaders[i]
		if !fieldName(h.Name) || !fieldValue(h.Value) {
			skipped = append(skipped, "add "+h.Name)
			continue
		}
		m.AddHeader(h.Name, h.Value)
	}
	if len(skipped) > 0 {
		f.log.LogAttrs(ctx, slog.LevelWarn, "scorer header changes skipped", slog.String("filter", FilterName),
			slog.String("queue_id", t.ID), slog.String("scanner", res.Scanner),
			slog.String("skipped", replySafe(strings.Join(skipped, ", "))))
	}
}

// removeFields deletes the fields r names: all (0), the n-th (n > 0) or
// the -n-th from the end (n < 0).
func removeFields(m *postern.Message, r HeaderRemoval) {
	n := 0
	for _, fl := range m.Fields() {
		if strings.EqualFold(fl.Name, r.Name) {
			n++
		}
	}
	switch {
	case r.Index == 0:
		for i := range n {
			m.DeleteHeader(r.Name, i)
		}
	case r.Index > 0 && r.Index <= n:
		m.DeleteHeader(r.Name, r.Index-1)
	case r.Index < 0 && -r.Index <= n:
		m.DeleteHeader(r.Name, n+r.Index)
	}
}

// fieldName: 1 to 76 printable ASCII characters but colon (RFC 5322
// §2.2 ftext; 76 keeps the name on one line).
func fieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// fieldValue: valid UTF-8 with no control character but tab and the
// CRLF of a fold (AddHeader keeps folds and flattens other line breaks).
func fieldValue(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c == 0x7f {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// rewrittenSubject replaces the Subject with the one the scorer wrote
// ("rewrite subject"), encoded (RFC 2047) when it is not ASCII.
func rewrittenSubject(m *postern.Message, subject string) []postern.HeaderEdit {
	subject = strings.Join(strings.Fields(subject), " ")
	if subject == "" || !fieldValue(subject) {
		return nil
	}
	if !isASCII(subject) {
		subject = mime.QEncoding.Encode("utf-8", subject)
	}
	var edits []postern.HeaderEdit
	n := 0
	for _, fl := range m.Fields() {
		if strings.EqualFold(fl.Name, "Subject") {
			edits = append(edits, postern.HeaderEdit{Kind: postern.EditDelete, Name: "Subject", Index: n})
			n++
		}
	}
	return append(edits, postern.HeaderEdit{Kind: postern.EditAdd, Name: "Subject", Value: subject})
}
