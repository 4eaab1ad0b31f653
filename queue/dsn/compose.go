package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
)

// Subjects of the DSNs, by the most serious action reported.
const (
	SubjectFailed    = "Undelivered Mail Returned to Sender"
	SubjectDelayed   = "Delayed Mail (still being retried)"
	SubjectDelivered = "Successful Mail Delivery Report"
)

// QueueIDField is the extension field (RFC 3464 §2.4) naming the queue ID
// of the message in the per-message block.
const QueueIDField = "X-Postern-Queue-ID"

// maxDiagnostic bounds the diagnostic text kept of a reply: a remote
// server's reply of hundreds of lines must not make a DSN that nobody
// (our own Parse included) accepts.
const maxDiagnostic = 4096

// textWidth is where the human-readable text is wrapped.
const textWidth = 72

// dateLayout is the RFC 5322 §3.3 date-time used in every date field.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

func formatDate(t time.Time) string { return t.Format(dateLayout) }

// Compose writes the DSN for r to w: a multipart/report (RFC 6522) of a
// human-readable text, a message/delivery-status part (RFC 3464) and,
// when r has a Message, the original message or its header. It writes
// CRLF line ends throughout. Compose reads r.Message but does not
// change r.
func (c *Composer) Compose(w io.Writer, r *Report) (Info, error) {
	if err := checkReport(r); err != nil {
		return Info{}, err
	}
	d := &draft{c: c, r: r, global: r.global()}
	for i := range r.Recipients {
		d.count[actionRank(r.Recipients[i].Action)]++
	}
	failed := d.count[0] > 0
	ret := Ret(strings.ToUpper(string(r.Ret)))
	wantFull := failed && ret != RetHdrs
	var err error
	if d.orig, err = c.loadOriginal(r, wantFull, d.global); err != nil {
		return Info{}, err
	}
	msgID, err := c.newMessageID()
	if err != nil {
		return Info{}, err
	}

	text := d.humanText()
	status := d.statusFields()
	boundary, err := c.pickBoundary(text, status, d.orig.content)
	if err != nil {
		return Info{}, err
	}

	info := Info{
		MessageID: msgID,
		Subject:   d.subject(),
		Global:    d.global,
		SMTPUTF8:  !isASCII(r.Sender) || !isASCII(c.from),
		Returned:  d.orig.kind,
		Truncated: d.orig.truncated,
	}
	text8, status8, content8 := !isASCII(text), !isASCII(status), has8bit(d.orig.content)
	info.EightBit = text8 || status8 || content8

	var h strings.Builder
	d.writeHeader(&h, &info, boundary)
	h.WriteString("\r\nThis is a delivery status notification in MIME format (RFC 3464).\r\n")

	// Part 1: the text for people.
	part(&h, boundary, "Notification", d.textType(), text8)
	h.WriteString(text)

	// Part 2: the delivery report for programs.
	statusType := "message/delivery-status"
	if d.global {
		statusType = "message/global-delivery-status" // RFC 6533 §6.2
	}
	part(&h, boundary, "Delivery report", statusType, status8)
	h.WriteString(status)

	n, err := d.writeRest(w, &h, boundary, content8)
	if err != nil {
		return Info{}, err
	}
	info.Size = n
	return info, nil
}

// writeHeader writes the DSN's header fields into h; a Message-ID it
// answers may make info need SMTPUTF8.
func (d *draft) writeHeader(h *strings.Builder, info *Info, boundary string) {
	writeField(h, "From", d.c.from)
	sender := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(d.r.Sender), "<"), ">")
	writeField(h, "To", "<"+addrField(sender, d.global)+">")
	writeField(h, "Subject", info.Subject)
	writeField(h, "Date", formatDate(d.c.now()))
	writeField(h, "Message-ID", info.MessageID)
	if id := d.orig.messageID; id != "" {
		// RFC 5322 §3.6.4: a reply names what it answers.
		writeField(h, "In-Reply-To", id)
		writeField(h, "References", id)
		info.SMTPUTF8 = info.SMTPUTF8 || !isASCII(id)
	}
	writeField(h, "Auto-Submitted", "auto-replied") // RFC 3834 §5
	writeField(h, "MIME-Version", "1.0")
	reportType := "delivery-status"
	if d.global {
		reportType = "global-delivery-status" // RFC 6522 §3: the second part's subtype
	}
	writeField(h, "Content-Type", "multipart/report; report-type="+reportType+"; boundary=\""+boundary+"\"")
	if info.EightBit {
		writeField(h, "Content-Transfer-Encoding", "8bit")
	}
}

// writeRest writes h, the returned message or header if any and the
// close delimiter to w, and returns the DSN's size.
func (d *draft) writeRest(w io.Writer, h *strings.Builder, boundary string, content8 bool) (int64, error) {
	cw := &countWriter{w: w}
	if d.orig.kind != ReturnNone {
		part(h, boundary, d.returnedDescription(), d.returnedType(), content8)
		if _, err := io.WriteString(cw, h.String()); err != nil {
			return 0, err
		}
		if _, err := cw.Write(d.orig.content); err != nil {
			return 0, err
		}
		h.Reset()
	}
	h.WriteString("\r\n--" + boundary + "--\r\n")
	if _, err := io.WriteString(cw, h.String()); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// part starts a body part: the delimiter (whose CRLF ends the previous
// part, RFC 2046 §5.1.1) and the part's header.
func part(b *strings.Builder, boundary, desc, ctype string, eightBit bool) {
	b.WriteString("\r\n--" + boundary + "\r\n")
	writeField(b, "Content-Description", desc)
	writeField(b, "Content-Type", ctype)
	if eightBit {
		writeField(b, "Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\n")
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func checkReport(r *Report) error {
	if r == nil {
		return fmt.Errorf("%w: nil report", ErrInvalid)
	}
	if NullSender(r.Sender) {
		return fmt.Errorf("%w: the null sender never gets a DSN", ErrInvalid)
	}
	if len(r.Recipients) == 0 {
		return fmt.Errorf("%w: no recipient", ErrInvalid)
	}
	if r.Size < 0 {
		return fmt.Errorf("%w: negative message size %d", ErrInvalid, r.Size)
	}
	for i := range r.Recipients {
		rs := &r.Recipients[i]
		if addrField(rs.FinalRecipient, true) == "" {
			return fmt.Errorf("%w: recipient %d has no FinalRecipient", ErrInvalid, i)
		}
		if !rs.Action.Valid() {
			return fmt.Errorf("%w: recipient %s: unknown action %q", ErrInvalid, rs.FinalRecipient, rs.Action)
		}
		if !rs.Status.IsZero() && !validESC(rs.Status) {
			return fmt.Errorf("%w: recipient %s: status %v", ErrInvalid, rs.FinalRecipient, rs.Status)
		}
		if t := rs.OriginalType; t != "" && !isAtom(t) {
			return fmt.Errorf("%w: recipient %s: address type %q", ErrInvalid, rs.FinalRecipient, t)
		}
	}
	return nil
}

// isAtom accepts an RFC 3464 address-type or diagnostic-type: letters,
// digits and '-'.
func isAtom(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

// global reports whether the DSN needs the RFC 6533 types: the message
// came with SMTPUTF8, or an address it reports is not ASCII.
func (r *Report) global() bool {
	if r.SMTPUTF8 || !isASCII(r.Sender) {
		return true
	}
	for i := range r.Recipients {
		if !isASCII(r.Recipients[i].FinalRecipient) || !isASCII(r.Recipients[i].OriginalRecipient) {
			return true
		}
	}
	return false
}

// actionOrder is the order in which the text lists recipients, most
// serious first.
var actionOrder = [...]Action{Failed, Delayed, Delivered, Relayed, Expanded}

func actionRank(a Action) int {
	for i, x := range actionOrder {
		if x == a {
			return i
		}
	}
	return len(actionOrder) - 1
}

func (c *Composer) newMessageID() (string, error) {
	id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(c.messageID()), "<"), ">")
	if id == "" || len(id) > 900 || strings.ContainsAny(id, "<> \t\r\n") || cleanHeader(id, true) != id {
		return "", fmt.Errorf("%w: Message-ID %q", ErrConfig, id)
	}
	return "<" + id + ">", nil
}

// pickBoundary takes the configured boundary and, should any part contain
// it, adds "=1", "=2" ... until none does.
func (c *Composer) pickBoundary(text, status string, content []byte) (string, error) {
	base := c.boundary()
	if !validBoundary(base) {
		return "", fmt.Errorf("%w: MIME boundary %q", ErrConfig, base)
	}
	b := base
	for i := 1; strings.Contains(text, "--"+b) || strings.Contains(status, "--"+b) || bytes.Contains(content, []byte("--"+b)); i++ {
		suffix := "=" + strconv.Itoa(i)
		b = base[:min(len(base), 70-len(suffix))] + suffix
	}
	return b, nil
}

// validBoundary: RFC 2046 §5.1.1 bchars, 1 to 70 of them; no space, so
// folding never touches it.
func validBoundary(b string) bool {
	if b == "" || len(b) > 70 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("'()+_,-./:=?", c) >= 0) {
			return false
		}
	}
	return true
}

// draft holds what one Compose call works out.
type draft struct {
	c      *Composer
	r      *Report
	global bool
	count  [len(actionOrder)]int
	orig   original
}

func (d *draft) subject() string {
	switch {
	case d.count[0] > 0:
		return SubjectFailed
	case d.count[1] > 0:
		return SubjectDelayed
	}
	return SubjectDelivered
}

func (d *draft) clean(s string) string { return cleanHeader(s, d.global) }

func (d *draft) textType() string {
	if d.global {
		return "text/plain; charset=utf-8"
	}
	return "text/plain; charset=us-ascii"
}

func (d *draft) returnedType() string {
	switch {
	case d.orig.kind == ReturnFull && d.global:
		return "message/global" // RFC 6532 §3.7
	case d.orig.kind == ReturnFull:
		return "message/rfc822"
	case d.global:
		return "message/global-headers" // RFC 6533 §6.3
	}
	return "text/rfc822-headers" // RFC 6522 §4
}

func (d *draft) returnedDescription() string {
	what := "Original message"
	if d.count[0] > 0 {
		what = "Undelivered message"
	}
	if d.orig.kind == ReturnHeaders {
		what += " header"
	}
	return what
}

// addrType is the address type of an address in the delivery report:
// rfc822, or utf-8 (RFC 6533 §3) for one that is not ASCII.
func addrType(typ, addr string) string {
	typ = strings.ToLower(typ)
	if typ == "" || (typ == "rfc822" && !isASCII(addr)) {
		if isASCII(addr) {
			return "rfc822"
		}
		return "utf-8"
	}
	return typ
}

// addrField writes an address held in canonical form (postern.Address)
// for the DSN's To field, its Final-Recipient and its text: in wire form,
// the local part quoted when it is not a Dot-string, so that it names the
// same mailbox (RFC 3464 §2.3.2 takes an RFC 822 addr-spec, RFC 6533 §3 an
// RFC 6531 Mailbox). The spaces of a quoted local part are escaped
// (quoted-pair, RFC 5321 §4.1.2, RFC 5322 §3.2.1), so that folding, which
// works on spaces, can neither merge nor split them. Text that is not a
// valid address is cleaned like any other header text.
func addrField(addr string, global bool) string {
	if a, err := postern.SplitAddress(addr); err == nil && (global || a.IsASCII()) {
		return strings.ReplaceAll(a.Wire(), " ", `\ `) // only a quoted local part has spaces
	}
	return cleanHeader(addr, global)
}

// diagnostic returns the SMTP reply on one clean line, at most
// maxDiagnostic bytes.
func (d *draft) diagnostic(rep postern.Reply) string {
	if rep.IsZero() {
		return ""
	}
	return cutUTF8(d.clean(rep.Error()), maxDiagnostic)
}

// statusFields is the body of the delivery-status part (RFC 3464 §2.1):
// the per-message block, then one block per recipient, separated by
// blank lines, fields in the order of the §2.2 and §2.3 grammar.
func (d *draft) statusFields() string {
	var b strings.Builder
	r := d.r
	if id := d.clean(r.EnvID); id != "" {
		writeField(&b, "Original-Envelope-Id", id) // §2.2.1
	}
	writeField(&b, "Reporting-MTA", "dns; "+d.c.host) // §2.2.2
	if !r.ArrivalDate.IsZero() {
		writeField(&b, "Arrival-Date", formatDate(r.ArrivalDate)) // §2.2.5
	}
	if id := d.clean(r.QueueID); id != "" {
		writeField(&b, QueueIDField, id) // §2.4 extension field
	}
	for i := range r.Recipients {
		rs := &r.Recipients[i]
		b.WriteString("\r\n")
		if orig := d.clean(rs.OriginalRecipient); orig != "" {
			writeField(&b, "Original-Recipient", addrType(rs.OriginalType, orig)+"; "+orig) // §2.3.1
		}
		final := addrField(rs.FinalRecipient, d.global)
		writeField(&b, "Final-Recipient", addrType("", final)+"; "+final) // §2.3.2
		writeField(&b, "Action", string(rs.Action))                       // §2.3.3
		writeField(&b, "Status", rs.status().String())                    // §2.3.4
		if host := d.clean(rs.RemoteMTA); host != "" {
			writeField(&b, "Remote-MTA", "dns; "+host) // §2.3.5
		}
		if diag := d.diagnostic(rs.Reply); diag != "" {
			writeField(&b, "Diagnostic-Code", "smtp; "+diag) // §2.3.6
		}
		if !rs.LastAttemptDate.IsZero() {
			writeField(&b, "Last-Attempt-Date", formatDate(rs.LastAttemptDate)) // §2.3.7
		}
		if rs.Action == Delayed && !rs.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", formatDate(rs.WillRetryUntil)) // §2.3.9
		}
	}
	return b.String()
}

// humanText is the first part: what happened, in plain words, recipient
// by recipient (RFC 6522 §3: the part a person reads).
func (d *draft) humanText() string {
	var b strings.Builder
	para := func(s string) {
		wrap(&b, s, textWidth, 0)
		b.WriteString("\r\n")
	}
	host := d.c.host
	para("This is the mail delivery system at " + host + ".")
	switch {
	case d.count[0] > 0:
		para("Your message could not be delivered to one or more of its recipients. " +
			"They are listed below with the reason; no further attempt will be made to deliver to them.")
		if d.count[1] > 0 {
			para("Delivery to the recipients listed as not delivered yet is still being tried. " +
				"You will hear again only if it fails for good.")
		}
	case d.count[1] > 0:
		para("Your message has not been delivered yet to one or more of its recipients. " +
			"This is only a warning: the mail system keeps trying, and you need not send the message again. " +
			"You will hear again if delivery fails for good.")
	default:
		para("Your message was delivered to the recipients listed below. " +
			"You receive this report because you asked for one on successful delivery.")
	}
	var attach string
	switch d.orig.kind {
	case ReturnFull:
		attach = "The delivery report and your message are attached."
	case ReturnHeaders:
		if d.orig.truncated {
			attach = "Your message was larger than " + sizeText(d.c.maxReturn) +
				", so only its header is attached, with the delivery report."
		} else {
			attach = "The delivery report and the header of your message are attached."
		}
		if d.orig.headerCut {
			attach += " The header itself was cut after " + sizeText(d.c.maxReturn) + "."
		}
	default:
		attach = "The delivery report is attached."
	}
	if id := d.clean(d.r.QueueID); id != "" {
		attach += " Your message had the queue ID " + id + " here."
	}
	para(attach)
	para("If you need help, write to the postmaster of " + host + " and include this report.")

	for rank, a := range actionOrder {
		if d.count[rank] == 0 {
			continue
		}
		b.WriteString(sectionTitle[a] + "\r\n\r\n")
		for i := range d.r.Recipients {
			if rs := &d.r.Recipients[i]; actionRank(rs.Action) == rank {
				wrap(&b, d.recipientLine(rs), textWidth, 4)
				b.WriteString("\r\n")
			}
		}
	}
	return strings.TrimSuffix(b.String(), "\r\n") // one CRLF after the last line
}

var sectionTitle = map[Action]string{
	Failed:    "Could not be delivered:",
	Delayed:   "Not delivered yet, still trying:",
	Delivered: "Delivered:",
	Relayed:   "Relayed to a system that sends no further reports:",
	Expanded:  "Delivered to a list or alias, which passes it on:",
}

func (d *draft) recipientLine(rs *RecipientStatus) string {
	line := "<" + addrField(rs.FinalRecipient, d.global) + ">: "
	reply, host := d.diagnostic(rs.Reply), d.clean(rs.RemoteMTA)
	var why string
	switch {
	case host != "" && reply != "":
		why = "host " + host + " said: " + reply
	case reply != "":
		why = reply
	case host != "":
		why = "host " + host + ", status " + rs.status().String()
	default:
		why = "status " + rs.status().String()
	}
	switch rs.Action {
	case Delayed:
		if !rs.WillRetryUntil.IsZero() {
			line += "still trying until " + formatDate(rs.WillRetryUntil) + "; "
		}
		return line + "last attempt: " + why
	case Expanded:
		return line + "passed on to the members of a list or alias; " + why
	}
	return line + why
}

// sizeText writes a byte count the way people read it.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// errShortRead reports a Report.Message shorter than Report.Size.
var errShortRead = errors.New("message shorter than Report.Size")
