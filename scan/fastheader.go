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
func parseHeader(data []byte) (h textproto.MIMEHeader, body int, ok bool) {
	h = make(textproto.MIMEHeader, 16)
	var f headerField
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
			f.addTo(h)
			return h, pos, true
		case line[0] == ' ' || line[0] == '\t':
			if !f.continued(line) {
				return nil, 0, false
			}
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !validFieldName(line[:colon]) {
				return nil, 0, false
			}
			f.addTo(h)
			f.start(line)
		}
	}
	f.addTo(h) // a header without a body
	return h, len(data), true
}

// headerField is the field being read: its first line, and its lines
// joined once a continuation comes.
type headerField struct {
	line   []byte // the field so far: into data, or joined; nil for none
	joined []byte // a field with continuations, joined
	isJoin bool   // line is joined
}

func (f *headerField) start(line []byte) {
	f.line, f.isJoin = trimSP(line), false
}

// continued appends a continuation line as enmime does: one space and
// the trimmed line. It is false without a field to continue.
func (f *headerField) continued(line []byte) bool {
	if f.line == nil {
		return false
	}
	if !f.isJoin {
		f.joined, f.isJoin = append(f.joined[:0], f.line...), true
	}
	f.joined = append(f.joined, ' ')
	f.joined = append(f.joined, trimSP(line)...)
	f.line = f.joined
	return true
}

// addTo adds the field read, if any, to h: the canonical name, the value
// without the white space around it.
func (f *headerField) addTo(h textproto.MIMEHeader) {
	if f.line == nil {
		return
	}
	l := trimSP(f.line)
	colon := bytes.IndexByte(l, ':')
	key := canonicalKey(l[:colon])
	h[key] = append(h[key], string(bytes.TrimLeft(l[colon+1:], " \t")))
	f.line = nil
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
