package scan

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/jhillyerd/enmime/v2/mediatype"
)

// The pre-scan reads the raw message once, line by line, and follows its
// MIME structure (RFC 2045 §5, RFC 2046 §5.1) just far enough to count
// entities and nesting and to measure header blocks and lines. It runs
// before enmime sees the message: enmime has no bounds of its own, and
// its cost grows faster than linearly with the number of parts and the
// depth, so a hostile tree must be refused before it is parsed.
//
// The pre-scan mirrors where enmime (v2.3.0) finds boundaries, and where
// the two could disagree it errs on the side of counting more: every
// entity enmime will build has been counted here, at a depth no smaller.
// FuzzWalk checks exactly that. enmime's rules, which look odd next to
// RFC 2046, are:
//
//   - Inside a part, a boundary line is recognised after every LF, and two
//     bytes after every CR: "--B" at offset 0 or 1 followed by a white
//     space byte is a delimiter, "--B--" at offset 0 a close delimiter.
//     The bytes looked at must all be there (not at the end of the input).
//     A line starting with CR or LF is not looked at.
//   - An outer multipart's boundary ends every inner one: its reader
//     sits below theirs.
//   - Between parts and in the preamble, lines are read whole and the
//     boundary may stand anywhere in the line; "--B--" anywhere closes.

type frame struct {
	dash  []byte // "--" boundary
	term  []byte // "--" boundary "--"
	depth int    // depth of the multipart entity
	id    string // its ID
	parts int    // parts started so far
}

const (
	modeHeader   = iota // reading an entity's header
	modeBody            // reading a leaf's body or an epilogue
	modePreamble        // the innermost multipart reads lines looking for a boundary
)

type stopKind uint8

const (
	stopNone stopKind = iota
	stopDelim
	stopTerm
)

type prescanStats struct {
	parts    int
	maxDepth int
	top      mediaType // the top entity's Content-Type, as parsed
}

// mediaType is a Content-Type value and what mediatype.Parse made of it.
type mediaType struct {
	value   string
	mtype   string
	params  map[string]string
	invalid []string
	err     error
	parsed  bool
}

// parseMediaType parses value, or takes the parse of an equal value.
func (m *mediaType) parse(value string) mediaType {
	if m.parsed && m.value == value {
		return *m
	}
	mtype, params, invalid, err := mediatype.Parse(value)
	return mediaType{value: value, mtype: mtype, params: params, invalid: invalid, err: err, parsed: true}
}

type prescanner struct {
	lim      *Limits
	maxParts int
	frames   []frame
	mode     int
	depth    int    // depth of the entity being read
	id       string // its ID
	parts    int
	maxDepth int
	top      mediaType
	// header of the entity being read
	hdrBytes   int
	collect    int // 0: nothing, 1: Content-Type value, 2: Content-Transfer-Encoding value
	ct, cte    []byte
	gotCT      bool
	gotCTE     bool
	lineNumber int
}

// prescan checks data against the limits. baseDepth and baseID are those
// of the top entity (non-zero for an attached message); maxParts is the
// number of entities still allowed.
func prescan(ctx context.Context, data []byte, lim *Limits, baseDepth int, baseID string, maxParts int) (prescanStats, error) {
	p := &prescanner{lim: lim, maxParts: maxParts, mode: modeHeader, depth: baseDepth, id: baseID}
	if err := p.newEntity(baseDepth, baseID); err != nil {
		return prescanStats{}, err
	}
	for pos := 0; pos < len(data); {
		p.lineNumber++
		if p.lineNumber&1023 == 0 {
			if err := ctxErr(ctx); err != nil {
				return prescanStats{}, err
			}
		}
		end := len(data)
		if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		if err := p.line(data, pos, end); err != nil {
			return prescanStats{}, err
		}
		pos = end
	}
	return prescanStats{parts: p.parts, maxDepth: p.maxDepth, top: p.top}, nil
}

func childID(parent string, n int) string {
	if parent == "0" {
		return strconv.Itoa(n)
	}
	return parent + "." + strconv.Itoa(n)
}

func (p *prescanner) newEntity(depth int, id string) error {
	p.parts++
	if p.parts > p.maxParts {
		return &LimitError{Limit: LimitParts, Max: int64(p.lim.MaxParts), Part: id}
	}
	if depth > p.lim.MaxDepth {
		return &LimitError{Limit: LimitDepth, Max: int64(p.lim.MaxDepth), Part: id}
	}
	p.maxDepth = max(p.maxDepth, depth)
	p.mode, p.depth, p.id = modeHeader, depth, id
	p.hdrBytes, p.collect, p.gotCT, p.gotCTE = 0, 0, false, false
	p.ct, p.cte = p.ct[:0], p.cte[:0]
	return nil
}

// stop reports what enmime's boundary reader for f sees at data[at:].
func (f *frame) stop(data []byte, at int) stopKind {
	n := len(f.term) // enmime peeks len(boundary)+4 bytes
	if at+n > len(data) {
		return stopNone
	}
	w := data[at : at+n]
	if bytes.Equal(w, f.term) {
		return stopTerm
	}
	if isDelimiter(w, f.dash) {
		return stopDelim
	}
	return stopNone
}

// isDelimiter is enmime's test: the first "--B" in b is followed by a
// white space byte.
func isDelimiter(b, dash []byte) bool {
	i := bytes.Index(b, dash)
	return i >= 0 && i+len(dash) < len(b) && isSpaceByte(b[i+len(dash)])
}

// isSpaceByte is unicode.IsSpace of a byte taken as a rune, as enmime
// tests it.
func isSpaceByte(c byte) bool {
	switch c {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}

// firstStop finds, at a position where enmime's readers look, the
// outermost of frames[:upto] that stops there.
func (p *prescanner) firstStop(data []byte, at, upto int) (int, stopKind) {
	for i := 0; i < upto; i++ {
		if k := p.frames[i].stop(data, at); k != stopNone {
			return i, k
		}
	}
	return -1, stopNone
}

// crStop finds the first lone CR in data[from:end] where one of
// frames[:upto] stops: enmime looks two bytes after every CR.
func (p *prescanner) crStop(data []byte, from, end, upto int) (pos, frame int) {
	if upto <= 0 {
		return -1, -1
	}
	for i := from; i < end; i++ {
		j := bytes.IndexByte(data[i:end], '\r')
		if j < 0 {
			return -1, -1
		}
		i += j
		if i+1 >= len(data) || data[i+1] == '\n' {
			continue // CRLF: the next line's start is looked at instead
		}
		if f, _ := p.firstStop(data, i+2, upto); f >= 0 {
			return i, f
		}
	}
	return -1, -1
}

// line handles data[start:end], one line with its LF (none at the end of
// the input).
func (p *prescanner) line(data []byte, start, end int) error {
	l := data[start:end]
	if p.mode != modeBody && len(l) > p.lim.MaxLineLength {
		return &LimitError{Limit: LimitLineLength, Max: int64(p.lim.MaxLineLength), Part: p.id}
	}
	if l[0] != '\r' && l[0] != '\n' {
		if f, _ := p.firstStop(data, start, len(p.frames)); f >= 0 {
			return p.boundaryLine(data, start, end, f)
		}
	}
	// Lone CRs inside the line. While the innermost multipart reads its
	// preamble it reads whole lines, so only the outer ones stop there.
	upto := len(p.frames)
	if p.mode == modePreamble {
		upto--
	}
	if c, f := p.crStop(data, start, end, upto); c >= 0 {
		return p.crStops(data, c, end, f)
	}
	switch p.mode {
	case modePreamble:
		return p.preambleLine(l)
	case modeHeader:
		return p.headerLine(l)
	}
	return nil
}

// crStops handles a stop of frames[f] at the lone CR data[c]: the inner
// multiparts end, frames[f] reads on from there (a line starting with CR
// counts as blank to it), and outer ones may stop further on.
func (p *prescanner) crStops(data []byte, c, end, f int) error {
	for c >= 0 {
		p.frames = p.frames[:f+1]
		p.mode = modePreamble
		c, f = p.crStop(data, c+1, end, f)
	}
	return nil
}

// boundaryLine handles a line at whose start frames[f] stops.
func (p *prescanner) boundaryLine(data []byte, start, end, f int) error {
	p.frames = p.frames[:f+1]
	fr := &p.frames[f]
	// The multipart reads the line from its own source, which ends at a
	// stop of an outer multipart.
	lineEnd, outer := end, -1
	if c, o := p.crStop(data, start, end, f); c >= 0 {
		lineEnd, outer = c, o
	}
	l := data[start:lineEnd]
	switch {
	case bytes.Contains(l, fr.term):
		p.frames = p.frames[:f]
		p.mode = modeBody // the epilogue, part of the enclosing entity
	case outer < 0 && l[len(l)-1] == '\n' && isDelimiter(l, fr.dash):
		fr.parts++
		if err := p.newEntity(fr.depth+1, childID(fr.id, fr.parts)); err != nil {
			return err
		}
	default:
		p.frames = p.frames[:f] // the source ended: so does the multipart
		p.mode = modeBody
	}
	if outer >= 0 {
		return p.crStops(data, lineEnd, end, outer)
	}
	return nil
}

// preambleLine: the innermost multipart reads a whole line (enmime's
// boundaryReader.Next).
func (p *prescanner) preambleLine(l []byte) error {
	if l[0] == '\r' || l[0] == '\n' {
		return nil // blank to enmime
	}
	fr := &p.frames[len(p.frames)-1]
	switch {
	case bytes.Contains(l, fr.term):
		p.frames = p.frames[:len(p.frames)-1]
		p.mode = modeBody
	case l[len(l)-1] == '\n' && isDelimiter(l, fr.dash):
		fr.parts++
		return p.newEntity(fr.depth+1, childID(fr.id, fr.parts))
	}
	// Anything else: preamble, or after a part a line enmime gives up on
	// (it then skips to an outer boundary); counting on is the safe side.
	return nil
}

// headerLine follows enmime's ReadHeader closely enough to pick the same
// first Content-Type and Content-Transfer-Encoding fields.
func (p *prescanner) headerLine(l []byte) error {
	p.hdrBytes += len(l)
	if p.hdrBytes > p.lim.MaxHeaderBytes {
		return &LimitError{Limit: LimitHeaderSize, Max: int64(p.lim.MaxHeaderBytes), Part: p.id}
	}
	s := l
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
		if len(s) > 0 && s[len(s)-1] == '\r' {
			s = s[:len(s)-1]
		}
	}
	if len(s) == 0 {
		return p.endHeader()
	}
	colon := bytes.IndexByte(s, ':')
	switch {
	case s[0] == ' ' || s[0] == '\t' || s[0] == '\r' || s[0] == '\n':
		p.appendValue(' ', bytes.TrimSpace(s))
	case colon == 0:
		// enmime drops the line
	case colon > 0:
		if bytes.Contains(s[:colon+1], []byte(" :")) {
			s = bytes.Replace(s, []byte(" :"), []byte(":"), 1)
			colon = bytes.IndexByte(s, ':')
		}
		name := s[:colon]
		for _, c := range name {
			if c != ' ' && !validFieldByte(c) {
				return nil // enmime drops the line
			}
		}
		p.collect = 0
		switch {
		case !p.gotCT && bytes.EqualFold(name, []byte("Content-Type")):
			p.gotCT, p.collect = true, 1
		case !p.gotCTE && bytes.EqualFold(name, []byte("Content-Transfer-Encoding")):
			p.gotCTE, p.collect = true, 2
		}
		p.appendValue(0, s[colon+1:])
	default:
		p.appendValue(' ', s) // a continuation without indent
	}
	return nil
}

func (p *prescanner) appendValue(sep byte, v []byte) {
	var dst *[]byte
	switch p.collect {
	case 1:
		dst = &p.ct
	case 2:
		dst = &p.cte
	default:
		return
	}
	if sep != 0 {
		*dst = append(*dst, sep)
	}
	*dst = append(*dst, v...)
}

// validFieldByte is RFC 5322 §3.6.8 ftext minus a few that enmime also
// refuses (it keeps its own table; this is the same set).
func validFieldByte(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	}
	return strings.IndexByte("!\"#$%&'()*+,-./;<=>?@[\\]^_`{|}~", c) >= 0
}

func (p *prescanner) endHeader() error {
	ct := p.top.parse(strings.TrimSpace(string(p.ct)))
	if p.parts == 1 {
		p.top = ct // kept for the fast path, which reads the same value
	}
	mtype, params, err := ct.mtype, ct.params, ct.err
	if err == nil && params["boundary"] != "" {
		b := params["boundary"]
		if len(b) > maxBoundary {
			return &LimitError{Limit: LimitBoundaryLength, Max: maxBoundary, Part: p.id}
		}
		p.frames = append(p.frames, frame{
			dash:  []byte("--" + b),
			term:  []byte("--" + b + "--"),
			depth: p.depth,
			id:    p.id,
		})
		p.mode = modePreamble
		return nil
	}
	if err == nil && isMessageType(mtype) && identityCTE(string(p.cte)) {
		// An attached message in the clear: its own header follows.
		return p.newEntity(p.depth+1, childID(p.id, 1))
	}
	p.mode = modeBody
	return nil
}

// isMessageType reports the types whose content is a whole message the
// walker descends into (RFC 2046 §5.2.1, RFC 6532 §3.7).
func isMessageType(mtype string) bool {
	return strings.EqualFold(mtype, "message/rfc822") || strings.EqualFold(mtype, "message/global")
}

func identityCTE(cte string) bool {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}
