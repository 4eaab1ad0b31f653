package smtpserver

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// BareNewline is what the server does with a bare CR or a bare LF (one not
// part of a CRLF pair) in a message, whether it came with DATA or BDAT.
// Either way only CRLF "." CRLF ends DATA, and the stored message has CRLF
// line ends only, so no later hop can read a line end, or an end of data,
// that the client did not send as such.
type BareNewline uint8

const (
	// BareNewlineNormalize turns each bare CR and each bare LF into CRLF
	// and accepts the message (Postfix 3.9's default,
	// smtpd_forbid_bare_newline = normalize).
	BareNewlineNormalize BareNewline = iota
	// BareNewlineReject reads the message to its end and refuses it with
	// "550 5.5.2 Error: bare <LF> received" (or <CR>); the session goes
	// on. A command line ending in a bare LF is refused the same way
	// (Postfix smtpd_forbid_bare_newline = reject).
	BareNewlineReject
)

// String returns "normalize" or "reject".
func (b BareNewline) String() string {
	switch b {
	case BareNewlineNormalize:
		return "normalize"
	case BareNewlineReject:
		return "reject"
	}
	return fmt.Sprintf("BareNewline(%d)", uint8(b))
}

// ParseBareNewline reads "normalize" or "reject" (any case); "" is
// normalize.
func ParseBareNewline(s string) (BareNewline, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "normalize":
		return BareNewlineNormalize, nil
	case "reject":
		return BareNewlineReject, nil
	}
	return 0, fmt.Errorf("%w: bare newline handling %q is not normalize or reject", ErrConfig, s)
}

// bareName names a bare line end in replies and logs.
func bareName(c byte) string {
	if c == '\r' {
		return "<CR>"
	}
	return "<LF>"
}

// decoderState is where a dataDecoder stands in the current line.
type decoderState uint8

const (
	atLineStart decoderState = iota
	afterDot                 // "." at the start of a line
	afterDotCR               // ".\r" at the start of a line
	inLine
	afterCR // a CR: the start of CRLF, or a bare CR
)

// dataDecoder is the one rule for where a message ends and what its lines
// are. It turns the bytes a client sends after 354 (or in BDAT chunks)
// into canonical text: every line end CRLF, and, for DATA, every line that
// starts with "." dot-stuffed, ended by ".\r\n" exactly where the client
// ended the data. go-smtp's DATA reader, which is exact on such text only,
// then takes out the stuffing, so the edge alone decides where the message
// ends.
//
// The rules (RFC 5321 §4.1.1.4, §4.5.2):
//   - a CR not followed by LF and an LF not preceded by CR are bare line
//     ends; each becomes CRLF and is remembered in bare;
//   - DATA ends at a line "." between two real CRLFs; the CRLF after the
//     354 counts as the first;
//   - a line of more than "." loses its leading dot; a line "." that is
//     not the end (a bare line end on either side) is kept as ".".
type dataDecoder struct {
	state   decoderState
	realEOL bool // the last line ended in a real CRLF
	dots    bool // DATA: dot-stuffing and the end marker; BDAT has neither
	bare    byte // the first bare line end seen, '\r' or '\n'; 0 for none
}

// reset starts a message: dots for DATA, not for BDAT.
func (d *dataDecoder) reset(dots bool) {
	*d = dataDecoder{realEOL: true, dots: dots}
}

// lineEnd appends CRLF for a line end; bare is 0 for a real CRLF.
func (d *dataDecoder) lineEnd(dst []byte, bare byte) []byte {
	d.state = atLineStart
	d.realEOL = bare == 0
	if bare != 0 && d.bare == 0 {
		d.bare = bare
	}
	return append(dst, '\r', '\n')
}

// decode appends the canonical text for src to dst and returns it with the
// number of bytes of src used: all of them, unless the end of data came
// first (end is then true, and dst ends with ".\r\n").
func (d *dataDecoder) decode(dst, src []byte) (out []byte, used int, end bool) {
	n := 0
	for n < len(src) {
		c := src[n]
		switch d.state {
		case inLine:
			i := indexCRLF(src[n:])
			if i < 0 {
				return append(dst, src[n:]...), len(src), false
			}
			dst = append(dst, src[n:n+i]...)
			n += i
			if src[n] == '\r' {
				d.state = afterCR
			} else {
				dst = d.lineEnd(dst, '\n')
			}
			n++
		case atLineStart:
			switch {
			case c == '.' && d.dots:
				d.state = afterDot
			case c == '\r':
				d.state = afterCR
			case c == '\n':
				dst = d.lineEnd(dst, '\n')
			default:
				d.state = inLine
				continue // the text path copies c
			}
			n++
		case afterDot:
			switch c {
			case '\r':
				d.state = afterDotCR
				n++
			case '\n': // a lone "." ended by a bare LF: content "."
				dst = d.lineEnd(append(dst, '.', '.'), '\n')
				n++
			case '.': // ".." is the line "." and more: stuffed again for go-smtp
				dst = append(dst, '.', '.')
				d.state = inLine
				n++
			default: // the stuffing dot goes; c starts the content
				d.state = inLine
			}
		case afterDotCR:
			if c != '\n' {
				// A lone "." ended by a bare CR; c starts the next line.
				dst = d.lineEnd(append(dst, '.', '.'), '\r')
				continue
			}
			n++
			if d.realEOL {
				d.state = atLineStart
				return append(dst, '.', '\r', '\n'), n, true
			}
			// CR LF "." CRLF after a bare line end is not the end.
			dst = d.lineEnd(append(dst, '.', '.'), 0)
		case afterCR:
			if c == '\n' {
				dst = d.lineEnd(dst, 0)
				n++
				continue
			}
			dst = d.lineEnd(dst, '\r') // c starts the next line
		}
	}
	return dst, n, false
}

// flush ends BDAT text: a CR left at the very end is a bare CR.
func (d *dataDecoder) flush(dst []byte) []byte {
	if d.state == afterCR {
		return d.lineEnd(dst, '\r')
	}
	return dst
}

// indexCRLF returns the index of the first CR or LF in b, or -1.
func indexCRLF(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// lineEndReader applies the decoder's line end rule, without dots, to a
// message read from r: how BDAT chunks (which the edge passes through
// unchanged, as go-smtp counts their bytes) get the same treatment as
// DATA. Text the edge already made canonical passes unchanged.
type lineEndReader struct {
	r   io.Reader
	d   dataDecoder
	in  []byte
	out []byte // decoded, not yet read
	buf []byte // backing store of out
	err error
}

func newLineEndReader(r io.Reader) *lineEndReader {
	l := &lineEndReader{r: r, in: make([]byte, 4<<10)}
	l.d.reset(false)
	return l
}

func (l *lineEndReader) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		if l.err != nil {
			return 0, l.err
		}
		n, err := l.r.Read(l.in)
		l.buf, _, _ = l.d.decode(l.buf[:0], l.in[:n])
		if err == io.EOF {
			l.buf = l.d.flush(l.buf)
		}
		l.out, l.err = l.buf, err
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}
