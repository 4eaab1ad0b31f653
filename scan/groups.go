package scan

import (
	"bytes"
	"cmp"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"

	"github.com/postern/postern"
)

// decideSpam makes the per-recipient decisions from the spam answer (if
// any) and returns the message's verdict. When every recipient gets the
// same copy its edits go onto m; otherwise the report is marked Split.
func (f *Filter) decideSpam(t *postern.Txn, m *postern.Message, rps []RcptPolicy, rep *Report) postern.Verdict {
	res := rep.Spam
	var subject string
	if rep.Content != nil {
		subject = rep.Content.Subject
	} else {
		subject = enmime.DecodeRFC2047(m.Header().Get("Subject"))
	}
	rep.Rcpts = make([]RcptDecision, len(t.Rcpts))
	edits := &spamEditCache{f: f, m: m, subject: subject, res: res}
	drops, rejected := 0, 0
	for i, r := range t.Rcpts {
		d := RcptDecision{Rcpt: r.Addr, Policy: rps[i]}
		f.decideRcpt(&d, t.From, res, edits)
		if d.Decision.drops() {
			drops++
		}
		if d.Decision == SpamRejected {
			rejected++
		}
		rep.Rcpts[i] = d
	}
	score := ""
	if res != nil {
		score = "scan: " + res.String()
	}
	if drops > 0 && drops == len(rep.Rcpts) {
		if rejected == 0 {
			return postern.Rejected(550, postern.ESC(5, 7, 1), "Message rejected: sender denied by recipient's policy",
				"scan: sender on the deny list of every recipient")
		}
		return actVerdict(f.cfg.OnSpamReject.or(ActReject), postern.NewReply(550, postern.ESC(5, 7, 1), "Message rejected as spam"), score)
	}
	variants := map[string]bool{}
	for _, d := range rep.Rcpts {
		if !d.Decision.drops() {
			variants[editsKey(d.Edits)] = true
		}
	}
	if len(variants) <= 1 && drops == 0 {
		if len(rep.Rcpts) > 0 {
			applyEdits(m, rep.Rcpts[0].Edits)
		}
	} else {
		rep.Split = true
	}
	return postern.Verdict{Reason: score}
}

// decideRcpt decides what the spam verdict res means for one recipient,
// by its policy: its decision, scores and header edits.
func (f *Filter) decideRcpt(d *RcptDecision, from string, res *Result, edits *spamEditCache) {
	rp := d.Policy
	sender := rp.Sender(from)
	switch {
	case sender == SenderDenied:
		d.Decision = SpamDenied
		return
	case !rp.SpamFiltering():
		d.Decision = SpamFilterOff
		return
	case sender == SenderAllowed:
		d.Decision = SpamAllowed
		return
	case res == nil:
		d.Decision = SpamNotScored
		return
	}
	d.TagScore = cmp.Or(rp.TagScore, f.cfg.TagScore)
	if !rp.NeverReject {
		d.RejectScore = cmp.Or(rp.RejectScore, f.cfg.RejectScore)
	}
	isTagged := res.Spam
	if d.TagScore != 0 {
		isTagged = res.Score >= d.TagScore
	}
	switch {
	case d.RejectScore != 0 && res.Score >= d.RejectScore:
		d.Decision = SpamRejected
	case isTagged:
		d.Decision = SpamTagged
		d.Edits = edits.get(d.TagScore, true)
	default:
		d.Decision = SpamClean
		if f.cfg.AlwaysAddStatus {
			d.Edits = edits.get(d.TagScore, false)
		}
	}
}

// spamEditCache builds the header edits of a message's recipients; those
// at the filter's own tag score share one set, built once.
type spamEditCache struct {
	f             *Filter
	m             *postern.Message
	subject       string
	res           *Result
	tagged, plain []postern.HeaderEdit
}

func (c *spamEditCache) get(tag float64, tagged bool) []postern.HeaderEdit {
	shared := &c.plain
	if tagged {
		shared = &c.tagged
	}
	if tag == c.f.cfg.TagScore && *shared != nil {
		return *shared
	}
	e := c.f.spamEdits(c.m, c.subject, c.res, tag, tagged)
	if tag == c.f.cfg.TagScore {
		*shared = e
	}
	return e
}

// spamEdits builds the header edits of a scored copy: X-Spam-Status and
// X-Spam-Score, and for a tagged one X-Spam-Flag and the Subject prefix.
func (f *Filter) spamEdits(m *postern.Message, subject string, res *Result, tag float64, tagged bool) []postern.HeaderEdit {
	required := tag
	if required == 0 {
		required = res.Threshold
	}
	yes := "No"
	if tagged {
		yes = "Yes"
	}
	status := yes + ", score=" + FormatScore(res.Score) + " required=" + FormatScore(required) +
		" scanner=" + res.Scanner + foldList(" tests=", res.SymbolNames())
	edits := []postern.HeaderEdit{
		{Kind: postern.EditAdd, Name: "X-Spam-Status", Value: status},
		{Kind: postern.EditAdd, Name: "X-Spam-Score", Value: FormatScore(res.Score)},
	}
	if tagged {
		edits = append(edits, postern.HeaderEdit{Kind: postern.EditAdd, Name: "X-Spam-Flag", Value: "YES"})
		if f.cfg.SubjectPrefix != "" {
			edits = append(edits, subjectEdits(m, subject, f.cfg.SubjectPrefix)...)
		} else if res.Action == "rewrite subject" {
			edits = append(edits, rewrittenSubject(m, res.Subject)...)
		}
	}
	return edits
}

// foldList writes "label" and a comma list, folded (RFC 5322 §2.2.3) so
// no line grows much past 78 characters.
func foldList(label, list string) string {
	if list == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString(label)
	col := 40 // the field name and the status before it
	for i, item := range strings.Split(list, ",") {
		if i > 0 {
			b.WriteByte(',')
			col++
		}
		if col+len(item) > 76 && i > 0 {
			b.WriteString("\r\n\t")
			col = 8
		}
		b.WriteString(item)
		col += len(item)
	}
	return b.String()
}

// subjectEdits put prefix before the Subject, keeping the received value
// byte for byte after it: encoded words (RFC 2047) and folding stay as
// they were. A prefix that is not ASCII is itself encoded.
func subjectEdits(m *postern.Message, decoded, prefix string) []postern.HeaderEdit {
	if strings.HasPrefix(strings.TrimSpace(decoded), prefix) {
		return nil // tagged already, by us or upstream
	}
	encode := func(followedByEncodedWord bool) string {
		if isASCII(prefix) {
			return prefix
		}
		if followedByEncodedWord {
			// The space goes inside: white space between two encoded
			// words is dropped when they are decoded (RFC 2047 §6.2).
			return mime.QEncoding.Encode("utf-8", prefix+" ")
		}
		return mime.QEncoding.Encode("utf-8", prefix)
	}
	for _, fl := range m.Fields() {
		if !strings.EqualFold(fl.Name, "Subject") {
			continue
		}
		_, v, _ := bytes.Cut(fl.Raw, []byte{':'})
		val := strings.TrimRight(string(v), "\r\n")
		enc := encode(strings.HasPrefix(strings.TrimLeft(val, " \t\r\n"), "=?"))
		switch {
		case strings.TrimSpace(val) == "":
			val = enc
		case strings.HasPrefix(val, "\r\n"), strings.HasPrefix(val, "\n"):
			val = enc + val // the value starts on a continuation line
		default:
			val = enc + " " + strings.TrimPrefix(val, " ")
		}
		return []postern.HeaderEdit{
			{Kind: postern.EditDelete, Name: "Subject", Index: 0},
			{Kind: postern.EditAdd, Name: "Subject", Value: val},
		}
	}
	return []postern.HeaderEdit{{Kind: postern.EditAdd, Name: "Subject", Value: encode(false)}}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func editsKey(edits []postern.HeaderEdit) string {
	var b strings.Builder
	for _, e := range edits {
		b.WriteByte(byte('0' + e.Kind))
		b.WriteString(e.Name)
		b.WriteByte(0)
		b.WriteString(e.Value)
		b.WriteByte(0)
		b.WriteByte(byte('0' + e.Index%10))
		b.WriteByte(0)
	}
	return b.String()
}

// applyEdits records edits on m.
func applyEdits(m *postern.Message, edits []postern.HeaderEdit) {
	for _, e := range edits {
		switch e.Kind {
		case postern.EditAdd:
			m.AddHeader(e.Name, e.Value)
		case postern.EditDelete:
			m.DeleteHeader(e.Name, e.Index)
		}
	}
}

// Group is recipients that get the same copy of a message.
type Group struct {
	Rcpts []*postern.Rcpt
	// Tagged: the copy is marked as spam.
	Tagged bool
	// Drop: these recipients are not to get the message (spam over their
	// reject score, or a sender on their deny list). The relay discards
	// the copy or returns it to the sender (a DSN), as its policy says.
	Drop bool
	// Edits are the header edits of this copy, on top of the message's.
	Edits []postern.HeaderEdit

	msg *postern.Message
}

// Groups splits the recipients of t by the copy they get, from the
// Report of the DATA stage (rep, or the one under ReportKey when rep is
// nil). Without a report, or when the report is not Split, there is one
// group: every recipient, no edits (they are on m already). Otherwise
// each group's copy is m with the group's Edits (Message, Render), and
// recipients to drop come last in a group of their own.
func Groups(t *postern.Txn, m *postern.Message, rep *Report) []Group {
	if rep == nil {
		rep, _ = postern.GetValue(&t.Values, ReportKey)
	}
	if rep == nil || !rep.Split {
		g := Group{Rcpts: append([]*postern.Rcpt(nil), t.Rcpts...), msg: m}
		if rep != nil && len(rep.Rcpts) > 0 {
			g.Tagged = rep.Rcpts[0].Decision == SpamTagged
		}
		return []Group{g}
	}
	decisions := matchDecisions(t, rep)
	var groups []Group
	index := map[string]int{}
	var drop *Group
	for i, r := range t.Rcpts {
		d := decisions[i]
		if d != nil && d.Decision.drops() {
			if drop == nil {
				drop = &Group{Drop: true, msg: m}
			}
			drop.Rcpts = append(drop.Rcpts, r)
			continue
		}
		var edits []postern.HeaderEdit
		if d != nil {
			edits = d.Edits
		}
		k := editsKey(edits)
		gi, ok := index[k]
		if !ok {
			gi = len(groups)
			index[k] = gi
			groups = append(groups, Group{Edits: edits, Tagged: d != nil && d.Decision == SpamTagged, msg: m})
		}
		groups[gi].Rcpts = append(groups[gi].Rcpts, r)
	}
	if drop != nil {
		groups = append(groups, *drop)
	}
	return groups
}

// matchDecisions pairs each recipient with its decision: by position when
// the recipients are those the filter saw, else by address.
func matchDecisions(t *postern.Txn, rep *Report) []*RcptDecision {
	out := make([]*RcptDecision, len(t.Rcpts))
	used := make([]bool, len(rep.Rcpts))
	for i, r := range t.Rcpts {
		if i < len(rep.Rcpts) && rep.Rcpts[i].Rcpt == r.Addr && !used[i] {
			out[i], used[i] = &rep.Rcpts[i], true
			continue
		}
		for j := range rep.Rcpts {
			if !used[j] && rep.Rcpts[j].Rcpt == r.Addr {
				out[i], used[j] = &rep.Rcpts[j], true
				break
			}
		}
	}
	return out
}

// Message returns the group's copy: a new Message over the same received
// bytes, with the edits of the original and then the group's.
func (g Group) Message() (*postern.Message, error) {
	m := g.msg
	c, err := postern.NewMessage(m.ReaderAt(), m.Size(), int(m.BodyOffset())+1)
	if err != nil {
		return nil, err
	}
	applyEdits(c, m.Edits())
	applyEdits(c, g.Edits)
	return c, nil
}

// Render writes the group's copy.
func (g Group) Render(w io.Writer) error {
	if len(g.Edits) == 0 {
		return g.msg.Render(w)
	}
	c, err := g.Message()
	if err != nil {
		return err
	}
	return c.Render(w)
}
