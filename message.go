package postern

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"strings"
	"sync"
)

// ErrHeaderTooLarge is returned by NewMessage when the header block is larger
// than the limit it was given.
var ErrHeaderTooLarge = errors.New("postern: message header too large")

// DefaultMaxHeaderBytes bounds the header block NewMessage keeps in memory
// when no limit is given.
const DefaultMaxHeaderBytes = 256 << 10

// Field is one header field as received: its name and its exact bytes
// (name, colon, value, folding and the line end).
type Field struct {
	Name string
	Raw  []byte
}

// Value returns the unfolded value (RFC 5322 §2.2.3: line ends removed)
// with surrounding white space removed.
func (f Field) Value() string {
	_, v, _ := bytes.Cut(f.Raw, []byte{':'})
	v = bytes.TrimSpace(v)
	if bytes.IndexByte(v, '\n') < 0 {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return string(out)
}

// EditKind says what a HeaderEdit does.
type EditKind uint8

// Edit kinds.
const (
	EditAdd EditKind = iota + 1
	EditDelete
)

// HeaderEdit records one change requested by a filter.
type HeaderEdit struct {
	Kind EditKind
	Name string
	// Value is the added value (EditAdd).
	Value string
	// Index is the occurrence of Name among the received fields, counting
	// from 0 (EditDelete).
	Index int
}

// Message is a spooled message. The received bytes are never changed: they
// stay readable through ReaderAt so signatures can be checked on exactly what
// arrived. Filters record header edits; Render writes the final message.
//
// A Message is owned by one transaction; its edit methods are not safe for
// concurrent use.
type Message struct {
	src     io.ReaderAt
	size    int64
	bodyOff int64
	fields  []Field
	header  textproto.MIMEHeader
	hdrOnce sync.Once // Header is a read method: safe to call concurrently
	edits   []HeaderEdit
	deleted map[int]bool
}

// NewMessage parses the header of the size bytes in src. maxHeader bounds
// the header block (0 means DefaultMaxHeaderBytes); a longer header returns
// ErrHeaderTooLarge. Lines may end in CRLF or bare LF. A line that is
// neither a field nor a continuation ends the header (RFC 5322 §2.1 would
// have a blank line there; the line is then the first of the body).
func NewMessage(src io.ReaderAt, size int64, maxHeader int) (*Message, error) {
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	m := &Message{src: src, size: size}
	var p headerParser
	var off int64 // bytes of src read into p.buf
	for {
		done, err := p.parse(off >= size)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
		if off > int64(maxHeader) {
			return nil, fmt.Errorf("%w: over %d bytes", ErrHeaderTooLarge, maxHeader)
		}
		chunk := int(min(size-off, 4096))
		p.buf = slices.Grow(p.buf, chunk)
		n, err := src.ReadAt(p.buf[len(p.buf):len(p.buf)+chunk], off)
		p.buf = p.buf[:len(p.buf)+n]
		off += int64(n)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("postern: read message: %w", err)
		}
		if n == 0 {
			size = off // the source is shorter than it said
		}
	}
	if p.pos > maxHeader {
		return nil, fmt.Errorf("%w: over %d bytes", ErrHeaderTooLarge, maxHeader)
	}
	m.fields = make([]Field, len(p.spans))
	for i, sp := range p.spans {
		m.fields[i] = Field{Name: sp.name, Raw: p.buf[sp.start:sp.end:sp.end]}
	}
	m.bodyOff = int64(p.body)
	if p.body < 0 {
		m.bodyOff = size
	}
	return m, nil
}

// headerParser finds the fields in a growing buffer by offsets, so the
// buffer can be reallocated while it is read.
type headerParser struct {
	buf   []byte
	pos   int // start of the first line not yet parsed
	spans []fieldSpan
	body  int // where the body starts, once known
}

type fieldSpan struct {
	name       string
	start, end int
}

// parse consumes complete lines; it reports true once the header's end is
// known. eof means buf holds the whole message.
func (p *headerParser) parse(eof bool) (bool, error) {
	for {
		nl := bytes.IndexByte(p.buf[p.pos:], '\n')
		end := p.pos + nl + 1
		if nl < 0 {
			if !eof {
				return false, nil
			}
			if p.pos < len(p.buf) && !p.addLine(p.pos, len(p.buf)) {
				p.body = p.pos
				return true, nil
			}
			p.pos, p.body = len(p.buf), -1
			return true, nil
		}
		if len(bytes.TrimRight(p.buf[p.pos:end], "\r\n")) == 0 {
			p.body = end
			return true, nil
		}
		if !p.addLine(p.pos, end) {
			p.body = p.pos
			return true, nil
		}
		p.pos = end
	}
}

// addLine adds a field or continues the last one; it reports false for a
// line that is neither.
func (p *headerParser) addLine(start, end int) bool {
	line := p.buf[start:end]
	if (line[0] == ' ' || line[0] == '\t') && len(p.spans) > 0 {
		p.spans[len(p.spans)-1].end = end
		return true
	}
	name, ok := fieldName(bytes.TrimRight(line, "\r\n"))
	if !ok {
		return false
	}
	p.spans = append(p.spans, fieldSpan{name: name, start: start, end: end})
	return true
}

// fieldName returns the name of a "Name: value" line. RFC 5322 §3.6.8: a
// name is printable US-ASCII except colon.
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	name := bytes.TrimRight(line[:i], " \t") // obsolete syntax allows WSP before ':'
	if len(name) == 0 {
		return "", false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(name), true
}

// Size is the size of the received message in bytes.
func (m *Message) Size() int64 { return m.size }

// ReaderAt gives the received bytes, unchanged.
func (m *Message) ReaderAt() io.ReaderAt { return m.src }

// NewReader returns a reader over the received bytes from the start.
func (m *Message) NewReader() io.Reader { return io.NewSectionReader(m.src, 0, m.size) }

// BodyOffset is where the body starts in the received bytes.
func (m *Message) BodyOffset() int64 { return m.bodyOff }

// NewBodyReader returns a reader over the received body.
func (m *Message) NewBodyReader() io.Reader {
	return io.NewSectionReader(m.src, m.bodyOff, m.size-m.bodyOff)
}

// Fields returns the received header fields in order. Do not modify.
func (m *Message) Fields() []Field { return m.fields }

// Header returns the received header, unfolded, keyed canonically. It does
// not reflect edits. It is built on first use. Do not modify.
func (m *Message) Header() textproto.MIMEHeader {
	m.hdrOnce.Do(func() {
		h := make(textproto.MIMEHeader, len(m.fields))
		for _, f := range m.fields {
			h.Add(f.Name, f.Value())
		}
		m.header = h
	})
	return m.header
}

// AddHeader records a field to add at the top of the header, as trace and
// result fields are (RFC 5321 §4.4, RFC 8601 §5). The last field added is
// rendered first. value may be folded with CRLF followed by white space.
//
// Values often carry text chosen by the client (a HELO name, an address), so
// a line break that is not a fold (CRLF followed by white space) becomes a
// space, and a name that is not an RFC 5322 field name has its bad bytes
// replaced by '-': an added field can never end the header or add another.
func (m *Message) AddHeader(name, value string) {
	m.edits = append(m.edits, HeaderEdit{Kind: EditAdd, Name: safeFieldName(name), Value: safeFieldValue(value)})
}

func safeFieldName(name string) string {
	if name == "" {
		return "X-Unnamed"
	}
	b := []byte(name)
	for i, c := range b {
		if c < 33 || c > 126 || c == ':' {
			b[i] = '-'
		}
	}
	return string(b)
}

func safeFieldValue(v string) string {
	v = strings.TrimRight(v, "\r\n")
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	b := make([]byte, 0, len(v)+8)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\r' && i+2 < len(v) && v[i+1] == '\n' && (v[i+2] == ' ' || v[i+2] == '\t'):
			b = append(b, '\r', '\n') // a fold: keep it
			i++
		case c == '\n' && i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t'):
			b = append(b, '\r', '\n') // a fold with bare LF: make it CRLF
		case c == '\r' || c == '\n':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// DeleteHeader records the removal of the index-th received field named name
// (case-insensitive, counting from 0). It reports whether such a field
// exists.
func (m *Message) DeleteHeader(name string, index int) bool {
	n := 0
	for i, f := range m.fields {
		if !strings.EqualFold(f.Name, name) {
			continue
		}
		if n == index {
			if m.deleted == nil {
				m.deleted = make(map[int]bool)
			}
			m.deleted[i] = true
			m.edits = append(m.edits, HeaderEdit{Kind: EditDelete, Name: name, Index: index})
			return true
		}
		n++
	}
	return false
}

// Edits returns the edits recorded so far, in order.
func (m *Message) Edits() []HeaderEdit { return m.edits }

// Render writes the final message: added fields (last added first), the
// received fields not deleted, then the received body. Added fields end in
// CRLF; received bytes are copied as they are.
func (m *Message) Render(w io.Writer) error {
	// A buffer the size of the message, up to 32 KiB: most mail is a
	// few KiB, and this runs once per message.
	bw := bufio.NewWriterSize(w, int(min(32<<10, m.size+m.addedSize())))
	for i := len(m.edits) - 1; i >= 0; i-- {
		e := m.edits[i]
		if e.Kind != EditAdd {
			continue
		}
		bw.WriteString(e.Name)
		bw.WriteString(": ")
		bw.WriteString(strings.TrimRight(e.Value, "\r\n"))
		bw.WriteString("\r\n")
	}
	for i, f := range m.fields {
		if !m.deleted[i] {
			bw.Write(f.Raw)
		}
	}
	if _, err := io.Copy(bw, io.NewSectionReader(m.src, m.headerEnd(), m.size-m.headerEnd())); err != nil {
		return fmt.Errorf("postern: render body: %w", err)
	}
	return bw.Flush()
}

// addedSize is how many bytes the added fields take when rendered.
func (m *Message) addedSize() int64 {
	var n int64
	for _, e := range m.edits {
		if e.Kind == EditAdd {
			n += int64(len(e.Name) + len(e.Value) + 4)
		}
	}
	return n
}

// headerEnd is where the received fields end: the blank line (if any) and
// the body follow.
func (m *Message) headerEnd() int64 {
	var n int64
	for _, f := range m.fields {
		n += int64(len(f.Raw))
	}
	return n
}
