package scan

import (
	"bytes"
	"net/textproto"
)

// parseHeader reads the header block at the start of data into what
// enmime.ReadHeader makes of it, and returns the offset of the body. It
// takes only a regular header: fields whose names are all RFC 5322 ftext
// (enmime's set, validFieldByte), continuation lines after a field, lines
// ended by LF or CRLF, and no other CR. ok is false for anything else (a
// space in a field name, a line without a colon or starting with one, a
// first line that is a continuation, a stray CR): enmime repairs those
// with remarks, and the message goes to the full walk.
//
// enmime.ReadHeader joins a field's lines with one space after trimming
// each (TrimBytes), and its MIME reader then trims the joined line and
// the white space after the colon, and canonicalizes the name
// (internal/textproto.canonicalEmailMIMEHeaderKey): parseHeader does the
// same in one pass. FuzzWalkFastPath compares the two headers.
//
// hb is scratch space, reset here; what parseHeader returns does not
// refer to it.
func parseHeader(data []byte, hb *headerBuilder) (h textproto.MIMEHeader, body int, ok bool) {
	hb.fields, hb.values, hb.open = hb.fields[:0], hb.values[:0], false
	for pos := 0; pos < len(data); {
		line, next := data[pos:], len(data)
		// A last line without LF keeps its CR, as bufio.ReadLine does.
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i], pos+i+1
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
		}
		pos = next
		switch {
		case bytes.IndexByte(line, '\r') >= 0:
			return nil, 0, false
		case len(line) == 0:
			return hb.header(), pos, true
		case line[0] == ' ' || line[0] == '\t':
			if !hb.continued(line) {
				return nil, 0, false
			}
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !validFieldName(line[:colon]) {
				return nil, 0, false
			}
			hb.start(line, colon)
		}
	}
	return hb.header(), len(data), true // a header without a body
}

// headerBuilder collects a header's fields: their names, and their
// values one after another in one buffer that becomes one string at the
// end, so that a header costs a few allocations rather than two a field.
type headerBuilder struct {
	fields []fieldSpan
	values []byte
	open   bool   // a field is being read: continuations go to it
	key    string // its name
	from   int    // where its value starts in values
}

// fieldSpan is a field read: its name and where its value is in values.
type fieldSpan struct {
	key        string
	start, end int
}

// start begins a field; line has its name, valid, before colon.
func (hb *headerBuilder) start(line []byte, colon int) {
	hb.finish()
	hb.open, hb.key, hb.from = true, canonicalKey(line[:colon]), len(hb.values)
	hb.values = append(hb.values, trimSP(line[colon+1:])...)
}

// continued appends a continuation line as enmime does: one space and
// the trimmed line. It is false without a field to continue.
func (hb *headerBuilder) continued(line []byte) bool {
	if !hb.open {
		return false
	}
	hb.values = append(hb.values, ' ')
	hb.values = append(hb.values, trimSP(line)...)
	return true
}

// finish ends the field being read: its value is the joined lines
// without the white space around them.
func (hb *headerBuilder) finish() {
	if !hb.open {
		return
	}
	v := bytes.TrimRight(hb.values[hb.from:], " \t")
	start := hb.from + len(v) - len(bytes.TrimLeft(v, " \t"))
	hb.fields = append(hb.fields, fieldSpan{hb.key, start, hb.from + len(v)})
	hb.open = false
}

// header is the fields read, in order, as a MIMEHeader.
func (hb *headerBuilder) header() textproto.MIMEHeader {
	hb.finish()
	s := string(hb.values)
	h := make(textproto.MIMEHeader, len(hb.fields))
	slab := make([]string, len(hb.fields)) // one value each, most keys have one
	for i, f := range hb.fields {
		slab[i] = s[f.start:f.end]
		if vv, ok := h[f.key]; ok {
			h[f.key] = append(vv, slab[i])
		} else {
			h[f.key] = slab[i : i+1 : i+1]
		}
	}
	return h
}

// trimSP trims spaces and tabs, enmime's trim of a header line (its
// TrimBytes also trims CR and LF, which a line here does not hold).
func trimSP(b []byte) []byte {
	return bytes.Trim(b, " \t")
}

func validFieldName(name []byte) bool {
	for _, c := range name {
		if !validFieldByte(c) {
			return false
		}
	}
	return true
}

// canonicalKey is the canonical form of a valid field name: upper case
// at the start and after each "-", lower case elsewhere. Common names
// come without an allocation.
func canonicalKey(name []byte) string {
	var buf [64]byte
	b := buf[:0]
	if len(name) > len(buf) {
		b = make([]byte, 0, len(name))
	}
	upper := true
	for _, c := range name {
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b = append(b, c)
		upper = c == '-'
	}
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return string(b)
}

// commonKeys interns the names of the fields most mail has.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Received", "From", "To", "Cc", "Subject", "Date", "Message-Id",
		"Mime-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
		"Return-Path", "Reply-To", "In-Reply-To", "References", "Dkim-Signature",
		"Authentication-Results", "Received-Spf", "X-Mailer", "User-Agent", "List-Unsubscribe"} {
		m[k] = k
	}
	return m
}()
