package scan

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"net/textproto"
	"slices"
	"strings"

	"github.com/jhillyerd/enmime/v2/mediatype"
	"golang.org/x/text/encoding/charmap"
)

// The fast path. Most mail a relay sees is one text entity: text/plain
// or text/html with a declared charset, in 7bit, 8bit, quoted-printable
// or base64. For those, enmime's tree is one part, and building it costs
// more than everything else the walk does: its header and body readers
// copy the message byte by byte through several buffers. single decodes
// such a message itself, into exactly the Content the full walk gives
// (FuzzWalkFastPath compares the two on every message single takes).
//
// Everything is decided conservatively: a header enmime would repair
// (see parseHeader), and whatever might make enmime note an error,
// convert differently or read differently, sends the message to the full
// walk. The pre-scan has run before either path, so the bounds and their
// errors are the same.

// rootContentType is what enmime assumes for a message that declares no
// Content-Type (RFC 2045 §5.2).
const rootContentType = `text/plain; charset="us-ascii"`

// maxPooledHeader bounds the header scratch kept for the next message.
const maxPooledHeader = 64 << 10

// qpMaxLine keeps quoted-printable lines clear of enmime's QP cleaner,
// which breaks lines at 1024 bytes (internal/coding.MaxQPLineLen).
const qpMaxLine = 1024 - 4

// fastCharsets are the charset labels (lower case, as enmime looks them
// up) that enmime's table (internal/coding's encodings) maps to UTF-8
// as is (nil here), to Windows-1252 or to ISO 8859-1: the single-byte
// conversions of these are done here with the same x/text charmaps.
// Another label goes the full walk.
var fastCharsets = map[string]*charmap.Charmap{
	"utf-8": nil, "utf8": nil, "unicode-1-1-utf-8": nil, "utf8mb4": nil,
	"us-ascii": charmap.Windows1252, "ascii": charmap.Windows1252, "ansi_x3.4-1968": charmap.Windows1252,
	"iso646-us": charmap.Windows1252, "windows-1252": charmap.Windows1252, "cp1252": charmap.Windows1252,
	"x-cp1252": charmap.Windows1252, "latin1": charmap.Windows1252, "l1": charmap.Windows1252,
	"iso-8859-1": charmap.ISO8859_1, "iso8859-1": charmap.ISO8859_1, "iso8859_1": charmap.ISO8859_1,
	"iso88591": charmap.ISO8859_1, "iso_8859-1": charmap.ISO8859_1, "iso_8859-1:1987": charmap.ISO8859_1,
}

// transfer is a Content-Transfer-Encoding the fast path decodes.
type transfer uint8

const (
	identity transfer = iota // none, 7bit, 8bit, binary
	quotedPrintable
	base64Transfer
)

// fastLeaf is what single takes from the header: the part as the full
// walk would describe it, and how to decode its body.
type fastLeaf struct {
	part     Part
	transfer transfer
	charset  *charmap.Charmap // nil: the bytes are UTF-8 already
}

// single walks a message that is one text entity without enmime's tree.
// It reports false, having added nothing, for any other message.
func (st *walkState) single(ctx context.Context, data []byte, pre *prescanStats) (bool, error) {
	hb, _ := st.w.headers.Get().(*headerBuilder)
	if hb == nil {
		hb = &headerBuilder{}
	}
	h, body, ok := parseHeader(data, hb)
	if cap(hb.values) <= maxPooledHeader {
		st.w.headers.Put(hb) // a hostile header's buffer is not kept
	}
	if !ok {
		return false, nil
	}
	leaf, ok := fastLeafOf(h, &pre.top)
	if !ok {
		return false, nil
	}
	content, ok := leaf.decode(data[body:])
	if !ok {
		return false, nil
	}
	if err := ctxErr(ctx); err != nil {
		return true, err
	}
	st.c.Header = h
	st.c.Subject = subjectOf(h)
	return true, st.leaf(ctx, leaf.part, content)
}

// fastLeafOf decides from the header alone, repeating enmime's reading of
// it (Part.setupHeaders, setupContentHeaders, decodeContent), and takes
// only what enmime reads without a remark.
func fastLeafOf(h textproto.MIMEHeader, seen *mediaType) (fastLeaf, bool) {
	ctype := h.Get("Content-Type")
	if ctype == "" {
		ctype = rootContentType
	}
	ct := seen.parse(ctype)
	mtype, params, invalid, err := ct.mtype, ct.params, ct.invalid, ct.err
	if err != nil || len(invalid) > 0 || (mtype != "text/plain" && mtype != "text/html") || params["boundary"] != "" {
		return fastLeaf{}, false
	}
	cm, known := fastCharsets[strings.ToLower(params["charset"])]
	if !known {
		return fastLeaf{}, false
	}
	disposition, fileName, ok := fastDisposition(h.Get("Content-Disposition"), params)
	if !ok {
		return fastLeaf{}, false
	}
	encoding := h.Get("Content-Transfer-Encoding")
	var tr transfer
	switch strings.ToLower(encoding) {
	case "", "7bit", "8bit", "binary":
		tr = identity
	case "quoted-printable":
		tr = quotedPrintable
	case "base64":
		tr = base64Transfer
	default:
		return fastLeaf{}, false // enmime warns of an unknown encoding
	}
	return fastLeaf{transfer: tr, charset: cm, part: Part{
		ID:          "0",
		Parent:      -1,
		ContentType: mtype,
		Charset:     params["charset"],
		Disposition: strings.ToLower(disposition),
		FileName:    strings.ToValidUTF8(fileName, "\uFFFD"),
		Encoding:    strings.ToLower(strings.TrimSpace(encoding)),
	}}, true
}

// fastDisposition is enmime's disposition and file name (Content-
// Disposition filename, else Content-Type name, else file); ok is false
// for a name enmime would decode (RFC 2047 words).
func fastDisposition(value string, params map[string]string) (disposition, fileName string, ok bool) {
	if value != "" {
		d, dparams, _, err := mediatype.Parse(value)
		if err == nil {
			disposition, fileName = d, dparams["filename"]
		}
	}
	for _, key := range []string{"name", "file"} {
		if fileName == "" {
			fileName = params[key]
		}
	}
	return disposition, fileName, !strings.Contains(fileName, "=?")
}

// decode undoes the transfer encoding and converts the charset; ok is
// false when enmime's cleaners would change the body or its decoders
// complain. The result may share body's bytes.
func (l *fastLeaf) decode(body []byte) (content []byte, ok bool) {
	switch l.transfer {
	case quotedPrintable:
		if content, ok = decodeQP(body); !ok {
			return nil, false
		}
	case base64Transfer:
		if content, ok = decodeBase64(body); !ok {
			return nil, false
		}
	default:
		content = body
	}
	if l.charset == nil || asciiBytes(content) {
		return content, true // these charsets leave ASCII as it is
	}
	out, err := l.charset.NewDecoder().Bytes(content)
	return out, err == nil
}

// decodeQP decodes quoted-printable the way enmime does (its QP cleaner,
// then mime/quotedprintable) for a body the cleaner leaves as it is:
// every "=" starts an escape or a soft line break, no control character
// but TAB, CR and LF, and lines well under the cleaner's limit (a byte
// over 0x7E counts three, as the cleaner escapes it).
func decodeQP(body []byte) ([]byte, bool) {
	line := 0
	for i, c := range body {
		if line >= qpMaxLine {
			return nil, false
		}
		switch {
		case c == '\r' || c == '\n':
			line = 0
		case c == '=':
			if !qpEscape(body[i+1:]) {
				return nil, false
			}
			line++
		case c == '\t' || c >= ' ' && c <= '~':
			line++
		case c >= 0x80:
			line += 3
		default:
			return nil, false
		}
	}
	out := make([]byte, 0, len(body)) // decoding never grows the text
	r := quotedprintable.NewReader(bytes.NewReader(body))
	for {
		if len(out) == cap(out) {
			out = slices.Grow(out, 512)
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, true
		}
		if err != nil {
			return nil, false
		}
	}
}

// qpEscape is the cleaner's test of what follows "=": a line break or
// two hex digits.
func qpEscape(rest []byte) bool {
	switch {
	case len(rest) >= 1 && rest[0] == '\n':
		return true
	case len(rest) < 2:
		return false
	case rest[0] == '\r' && rest[1] == '\n':
		return true
	}
	return isHex(rest[0]) && isHex(rest[1])
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// decodeBase64 decodes base64 the way enmime does (its base64 cleaner
// drops white space and "=" anywhere, then a decoder without padding)
// for a body with no other byte the cleaner would complain of.
func decodeBase64(body []byte) ([]byte, bool) {
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '\t' || c == '\n' || c == '\r' || c == ' ' || c == '=':
		default:
			return nil, false
		}
	}
	if len(clean)%4 == 1 {
		return nil, false // enmime keeps no content and notes an error
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	return out[:n], err == nil
}

func asciiBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
