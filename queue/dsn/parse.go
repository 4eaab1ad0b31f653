package dsn

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/postern/postern"
)

// Defaults of Parser.
const (
	DefaultParseMaxBytes     = 32 << 20
	DefaultParseMaxHeader    = 256 << 10
	DefaultParseMaxStatus    = 1 << 20
	DefaultParseMaxRcpts     = 1000
	DefaultParseMaxReturned  = 1 << 20
	DefaultParseMaxText      = 64 << 10
	DefaultParseMaxParts     = 32
	maxTypedValue            = 64 << 10
	parseProbeZeroReadsLimit = 100
)

// Parser reads DSNs within limits. The zero value uses the default of
// every limit; a Parser is a value, safe for concurrent use.
type Parser struct {
	// MaxBytes bounds the input read; 0 means 32 MiB. Input past it ends
	// the parse: with an error before the delivery-status part, with
	// Parsed.Incomplete after it.
	MaxBytes int64
	// MaxHeaderBytes bounds the DSN's own header; 0 means 256 KiB.
	MaxHeaderBytes int
	// MaxStatusBytes bounds the delivery-status part; 0 means 1 MiB.
	MaxStatusBytes int
	// MaxRecipients bounds the per-recipient blocks; 0 means 1000.
	MaxRecipients int
	// MaxReturnedBytes is how much of the returned message is kept; 0
	// means 1 MiB. The rest is skipped and ReturnedTruncated set.
	MaxReturnedBytes int
	// MaxTextBytes is how much of the human-readable part is kept; 0
	// means 64 KiB.
	MaxTextBytes int
	// MaxParts bounds the parts of the multipart/report; 0 means 32.
	MaxParts int
}

// Typed is a field value made of a type and a value, "type; value":
// Final-Recipient ("rfc822; a@example.net"), Reporting-MTA ("dns;
// mx.example.org"), Diagnostic-Code ("smtp; 550 5.1.1 ...").
type Typed struct {
	// Type is the address, MTA-name or diagnostic type, in lower case; ""
	// when the field had no ';'.
	Type string
	// Value is the rest, trimmed. A utf-8 address (RFC 6533 §3) has its
	// \x{HEX} escapes decoded.
	Value string
}

// String returns "type; value" (or the value alone without a type).
func (t Typed) String() string {
	if t.Type == "" {
		return t.Value
	}
	return t.Type + "; " + t.Value
}

// IsZero reports a field that was absent.
func (t Typed) IsZero() bool { return t == Typed{} }

// Parsed is a DSN as Parse read it.
type Parsed struct {
	// Header is the DSN's own header (From, Subject, Message-ID ...).
	Header mail.Header
	// Global is set for an RFC 6533 message/global-delivery-status.
	Global bool

	// Per-message fields (RFC 3464 §2.2).
	EnvID           string
	ReportingMTA    Typed
	DSNGateway      Typed
	ReceivedFromMTA Typed
	ArrivalDate     time.Time // zero when absent or not a date
	// Fields holds every per-message field as read, extension fields
	// ("X-Postfix-Queue-ID", QueueIDField ...) included; keys are in
	// textproto canonical form.
	Fields textproto.MIMEHeader

	// Recipients are the per-recipient blocks (RFC 3464 §2.3), in order.
	Recipients []RecipientReport

	// Text is the human-readable part (decoded from quoted-printable or
	// base64, not from its charset), at most Parser.MaxTextBytes of it.
	Text []byte
	// Returned is the returned message or header (decoded from its
	// transfer encoding), ReturnedType its media type ("message/rfc822",
	// "text/rfc822-headers", "message/global", "message/global-headers");
	// both empty when the DSN returned nothing.
	Returned          []byte
	ReturnedType      string
	ReturnedTruncated bool
	// Incomplete is set when the input ended early, or went over
	// Parser.MaxBytes, after the delivery-status part.
	Incomplete bool
}

// RecipientReport is one per-recipient block of a DSN.
type RecipientReport struct {
	OriginalRecipient Typed
	FinalRecipient    Typed
	Action            Action
	Status            postern.EnhancedCode
	RemoteMTA         Typed
	DiagnosticCode    Typed
	LastAttemptDate   time.Time // zero when absent or not a date
	FinalLogID        string
	WillRetryUntil    time.Time // zero when absent or not a date
	// Fields holds every field of the block as read.
	Fields textproto.MIMEHeader
}

// Reply returns the Diagnostic-Code as an SMTP reply, when its type is
// smtp and it starts with a reply code. The lines of a multi-line reply
// that was written on one line stay together as its text.
func (rr *RecipientReport) Reply() (postern.Reply, bool) {
	if rr.DiagnosticCode.Type != "smtp" {
		return postern.Reply{}, false
	}
	v := rr.DiagnosticCode.Value
	if rep, err := postern.ParseReplyString(v); err == nil {
		return rep, true
	}
	// "550-5.1.1 first line 550-5.1.1 second line": a multi-line reply
	// written on one (folded) line, as some MTAs do.
	if len(v) < 3 {
		return postern.Reply{}, false
	}
	code, err := strconv.Atoi(v[:3])
	if err != nil || code < 200 || code > 599 || (len(v) > 3 && v[3] != ' ' && v[3] != '-') {
		return postern.Reply{}, false
	}
	rep := postern.Reply{Code: code}
	text := strings.TrimSpace(v[3:])
	text = strings.TrimPrefix(text, "-")
	if word, rest, _ := strings.Cut(text, " "); word != "" {
		if esc, err := postern.ParseEnhancedCode(word); err == nil && esc[0] == code/100 {
			rep.Enhanced, text = esc, rest
		}
	}
	rep.Lines = []string{text}
	return rep, true
}

// Parse reads a DSN with the default limits; see Parser.Parse.
func Parse(r io.Reader) (*Parsed, error) { return Parser{}.Parse(r) }

// Parse reads a multipart/report delivery status notification (RFC 3464,
// RFC 6522), ours or another MTA's, RFC 6533 global ones included. It
// needs the delivery-status part with a Reporting-MTA and, for each
// recipient, Final-Recipient, Action and Status; anything else that is
// absent stays zero, and a date it cannot read is left zero (the field
// is still in Fields). Input that is not such a report, or over a limit,
// gives an error wrapping ErrMalformed. Parse never panics.
func (p Parser) Parse(r io.Reader) (*Parsed, error) {
	lim := p.withDefaults()
	lr := &limitReader{r: r, n: lim.MaxBytes, limit: lim.MaxBytes}
	br := bufio.NewReader(lr)
	header, boundary, err := readReportHeader(br, lim.MaxHeaderBytes)
	if err != nil {
		return nil, malformed(lr, "%w", err)
	}
	rd := &reportReader{lim: lim, lr: lr, out: &Parsed{Header: header}}
	// multipart answers a bare io.EOF both after the close delimiter and
	// when the input ends right after a delimiter line; watch for the
	// close delimiter to tell the two apart.
	cw := &closeWatcher{r: br, needle: []byte("--" + boundary + "--")}
	mr := multipart.NewReader(cw, boundary)
	for n := 0; ; n++ {
		part, err := mr.NextPart()
		if err == io.EOF && cw.seen { //nolint:errorlint // a wrapped io.EOF is input cut short
			break
		}
		if err == io.EOF { //nolint:errorlint
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			if rd.haveStatus {
				rd.out.Incomplete = true
				break
			}
			return nil, malformed(lr, "%w", err)
		}
		if n >= lim.MaxParts {
			return nil, malformed(lr, "more than %d parts", lim.MaxParts)
		}
		finished, err := rd.part(part)
		if err != nil {
			return nil, err
		}
		if finished {
			return rd.out, nil
		}
	}
	if !rd.haveStatus {
		return nil, malformed(lr, "no message/delivery-status part")
	}
	return rd.out, nil
}

// readReportHeader reads the report's header, which must make it a
// multipart/report of a delivery status, and returns the header and the
// boundary of its parts.
func readReportHeader(br *bufio.Reader, max int) (mail.Header, string, error) {
	hdr, err := readHeaderBlock(br, max)
	if err != nil {
		return nil, "", fmt.Errorf("header: %w", err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(hdr))
	if err != nil {
		return nil, "", fmt.Errorf("header: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil && (!errors.Is(err, mime.ErrInvalidMediaParameter) || mt == "") {
		return nil, "", fmt.Errorf("Content-Type: %w", err)
	}
	if mt != "multipart/report" {
		return nil, "", fmt.Errorf("Content-Type %q is not multipart/report", mt)
	}
	switch rt := strings.ToLower(params["report-type"]); rt {
	case "", "delivery-status", "global-delivery-status":
	default:
		return nil, "", fmt.Errorf("report-type %q is not a delivery status", rt)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, "", errors.New("multipart/report without a boundary")
	}
	return msg.Header, boundary, nil
}

// reportReader takes a report's parts in turn: the human-readable text
// before the status, the first delivery-status part, the returned message
// or header after it.
type reportReader struct {
	lim        Parser
	lr         *limitReader
	out        *Parsed
	haveStatus bool
}

// part takes one part; finished says the report ends there (a returned
// message cut short: what came is kept).
func (rd *reportReader) part(part *multipart.Part) (finished bool, err error) {
	lim, out := rd.lim, rd.out
	pt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
	if pt == "" {
		pt = "text/plain" // RFC 2045 §5.2
	}
	body := decodeBody(part)
	switch {
	case pt == "message/delivery-status" || pt == "message/global-delivery-status":
		if rd.haveStatus {
			return false, nil // only the first one counts
		}
		data, over, err := readAtMost(body, lim.MaxStatusBytes)
		if err != nil {
			return false, malformed(rd.lr, "delivery-status part: %w", err)
		}
		if over {
			return false, malformed(rd.lr, "delivery-status part larger than %d bytes", lim.MaxStatusBytes)
		}
		if err := parseStatus(data, out, lim.MaxRecipients); err != nil {
			return false, err
		}
		out.Global = pt == "message/global-delivery-status"
		rd.haveStatus = true
	case !rd.haveStatus && out.Text == nil && strings.HasPrefix(pt, "text/"):
		data, _, err := readAtMost(body, lim.MaxTextBytes)
		if err != nil {
			return false, malformed(rd.lr, "text part: %w", err)
		}
		out.Text = data
	case rd.haveStatus && out.ReturnedType == "" && returnedTypes[pt]:
		data, over, err := readAtMost(body, lim.MaxReturnedBytes)
		out.Returned, out.ReturnedType, out.ReturnedTruncated = data, pt, over
		if err != nil {
			out.ReturnedTruncated, out.Incomplete = true, true
			return true, nil
		}
	}
	return false, nil
}

var returnedTypes = map[string]bool{
	"message/rfc822":         true,
	"text/rfc822-headers":    true,
	"message/global":         true,
	"message/global-headers": true,
}

func (p Parser) withDefaults() Parser {
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultParseMaxBytes
	}
	if p.MaxHeaderBytes <= 0 {
		p.MaxHeaderBytes = DefaultParseMaxHeader
	}
	if p.MaxStatusBytes <= 0 {
		p.MaxStatusBytes = DefaultParseMaxStatus
	}
	if p.MaxRecipients <= 0 {
		p.MaxRecipients = DefaultParseMaxRcpts
	}
	if p.MaxReturnedBytes <= 0 {
		p.MaxReturnedBytes = DefaultParseMaxReturned
	}
	if p.MaxTextBytes <= 0 {
		p.MaxTextBytes = DefaultParseMaxText
	}
	if p.MaxParts <= 0 {
		p.MaxParts = DefaultParseMaxParts
	}
	return p
}

// malformed wraps ErrMalformed, saying so when the input went over
// MaxBytes (the likely cause of whatever failed then).
func malformed(lr *limitReader, format string, args ...any) error {
	msg := fmt.Errorf(format, args...)
	if lr.over {
		return fmt.Errorf("%w: input larger than %d bytes: %w", ErrMalformed, lr.limit, msg)
	}
	return fmt.Errorf("%w: %w", ErrMalformed, msg)
}

// decodeBody undoes a base64 transfer encoding (multipart already undoes
// quoted-printable).
func decodeBody(p *multipart.Part) io.Reader {
	if strings.EqualFold(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")), "base64") {
		return base64.NewDecoder(base64.StdEncoding, p) // it skips CR and LF
	}
	return p
}

// readAtMost reads r up to n bytes and says whether more followed.
func readAtMost(r io.Reader, n int) ([]byte, bool, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(n)+1))
	if len(data) > n {
		return data[:n], true, nil
	}
	return data, false, err
}

// readHeaderBlock reads the header of a message up to and including the
// empty line that ends it, at most max bytes.
func readHeaderBlock(br *bufio.Reader, max int) ([]byte, error) {
	var hdr []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > max {
			return nil, fmt.Errorf("larger than %d bytes", max)
		}
		hdr = append(hdr, line...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(hdr) == 0 {
				return nil, errors.New("empty input")
			}
			return hdr, nil
		case err != nil:
			return nil, err
		}
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return hdr, nil
		}
	}
}

// parseStatus reads the delivery-status body (RFC 3464 §2.1): blocks of
// header-like fields separated by empty lines, the first about the
// message, the others one per recipient.
func parseStatus(data []byte, out *Parsed, maxRcpts int) error {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	first := true
	for {
		h, err := tp.ReadMIMEHeader()
		if len(h) > 0 {
			if first {
				if err := perMessage(h, out); err != nil {
					return err
				}
				first = false
			} else {
				if len(out.Recipients) >= maxRcpts {
					return fmt.Errorf("%w: more than %d recipients", ErrMalformed, maxRcpts)
				}
				rr, err := perRecipient(h, out.Global)
				if err != nil {
					return err
				}
				out.Recipients = append(out.Recipients, rr)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: delivery-status: %w", ErrMalformed, err)
		}
	}
	if first {
		return fmt.Errorf("%w: empty delivery-status part", ErrMalformed)
	}
	if len(out.Recipients) == 0 {
		return fmt.Errorf("%w: delivery-status without a recipient", ErrMalformed)
	}
	return nil
}

func perMessage(h textproto.MIMEHeader, out *Parsed) error {
	out.Fields = h
	out.ReportingMTA = typed(h.Get("Reporting-MTA"))
	if out.ReportingMTA.Value == "" {
		return fmt.Errorf("%w: delivery-status without Reporting-MTA", ErrMalformed)
	}
	out.EnvID = strings.TrimSpace(h.Get("Original-Envelope-Id"))
	out.DSNGateway = typed(h.Get("DSN-Gateway"))
	out.ReceivedFromMTA = typed(h.Get("Received-From-MTA"))
	out.ArrivalDate = date(h.Get("Arrival-Date"))
	return nil
}

func perRecipient(h textproto.MIMEHeader, global bool) (RecipientReport, error) {
	rr := RecipientReport{
		Fields:            h,
		OriginalRecipient: address(h.Get("Original-Recipient"), global),
		FinalRecipient:    address(h.Get("Final-Recipient"), global),
		RemoteMTA:         typed(h.Get("Remote-MTA")),
		DiagnosticCode:    typed(h.Get("Diagnostic-Code")),
		LastAttemptDate:   date(h.Get("Last-Attempt-Date")),
		FinalLogID:        strings.TrimSpace(h.Get("Final-Log-ID")),
		WillRetryUntil:    date(h.Get("Will-Retry-Until")),
	}
	if rr.FinalRecipient.Value == "" {
		return rr, fmt.Errorf("%w: recipient block without Final-Recipient", ErrMalformed)
	}
	rr.Action = Action(strings.ToLower(firstWord(h.Get("Action"))))
	if !rr.Action.Valid() {
		return rr, fmt.Errorf("%w: recipient %s: action %q", ErrMalformed, rr.FinalRecipient.Value, h.Get("Action"))
	}
	st, err := postern.ParseEnhancedCode(firstWord(h.Get("Status")))
	if err != nil {
		return rr, fmt.Errorf("%w: recipient %s: status %q", ErrMalformed, rr.FinalRecipient.Value, h.Get("Status"))
	}
	rr.Status = st
	return rr, nil
}

// firstWord returns v up to the first space or comment: "5.1.1 (bad
// mailbox)" and "failed (no such user)" are seen in the wild.
func firstWord(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, " \t("); i >= 0 {
		v = v[:i]
	}
	return v
}

func typed(v string) Typed {
	if len(v) > maxTypedValue {
		v = v[:maxTypedValue]
	}
	t, rest, ok := strings.Cut(v, ";")
	if !ok {
		return Typed{Value: strings.TrimSpace(v)}
	}
	return Typed{Type: strings.ToLower(strings.TrimSpace(t)), Value: strings.TrimSpace(rest)}
}

// address reads an address field; a utf-8 address outside a global
// report has its non-ASCII characters as \x{HEX} (RFC 6533 §3).
func address(v string, global bool) Typed {
	t := typed(v)
	if t.Type == "utf-8" && !global {
		t.Value = decodeEmbedded(t.Value)
	}
	return t
}

// decodeEmbedded replaces each \x{HEX} (1 to 6 hex digits naming a valid
// character) with that character; anything else stays as it is.
func decodeEmbedded(s string) string {
	if !strings.Contains(s, `\x{`) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		rest := s[i+3:]
		j := strings.IndexByte(rest, '}')
		if j >= 1 && j <= 6 {
			if n, err := strconv.ParseUint(rest[:j], 16, 32); err == nil && utf8.ValidRune(rune(n)) {
				b.WriteRune(rune(n))
				s = rest[j+1:]
				continue
			}
		}
		b.WriteString(`\x{`)
		s = rest
	}
}

func date(v string) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	t, err := mail.ParseDate(v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// limitReader reads at most n bytes of r and then fails with
// errTooLarge if r has more.
type limitReader struct {
	r     io.Reader
	n     int64
	limit int64
	over  bool
}

var errTooLarge = errors.New("input too large")

func (l *limitReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if l.n <= 0 {
		// At the limit: one more byte says whether the input goes on.
		var b [1]byte
		for i := 0; i < parseProbeZeroReadsLimit; i++ {
			k, err := l.r.Read(b[:])
			if k > 0 {
				l.over = true
				return 0, errTooLarge
			}
			if err != nil {
				return 0, err
			}
		}
		return 0, io.ErrNoProgress
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}

// closeWatcher passes r through and notes whether needle went by.
type closeWatcher struct {
	r      io.Reader
	needle []byte
	tail   []byte // the last len(needle)-1 bytes seen
	seen   bool
}

func (c *closeWatcher) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.seen {
		data := append(c.tail, p[:n]...)
		c.seen = bytes.Contains(data, c.needle)
		keep := min(len(data), len(c.needle)-1)
		c.tail = append(c.tail[:0], data[len(data)-keep:]...)
	}
	return n, err
}
