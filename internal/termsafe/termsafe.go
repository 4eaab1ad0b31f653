package termsafe

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Replacement stands for every character taken out.
const Replacement = '?'

// shown reports whether r is printed as itself: letters, marks, numbers,
// punctuation, symbols and spaces (unicode.IsGraphic). Control and
// format characters (C0, DEL, C1 such as the one-byte CSI U+009B, bidi
// overrides, zero-width joiners), line and paragraph separators, private
// use and unassigned code points are not.
func shown(r rune) bool { return r != utf8.RuneError && unicode.IsGraphic(r) }

// String returns s for one field on one line: every character that is not
// shown, tab and line ends included, and every byte of invalid UTF-8
// becomes '?'. It returns s itself when nothing needs replacing.
func String(s string) string { return clean(s, false) }

// Text returns s for output of several lines: as String, but line feeds,
// tabs and CR LF line ends are kept (a lone CR, which overprints the
// line, is not).
func Text(s string) string { return clean(s, true) }

func clean(s string, lines bool) string {
	i := firstBad(s, lines)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteByte(Replacement)
		case keep(r, s[i+n:], lines):
			b.WriteString(s[i : i+n])
		default:
			b.WriteRune(Replacement)
		}
		i += n
	}
	return b.String()
}

// keep decides one rune; rest is what follows it (for CR LF).
func keep(r rune, rest string, lines bool) bool {
	if lines {
		switch r {
		case '\n', '\t':
			return true
		case '\r':
			return strings.HasPrefix(rest, "\n")
		}
	}
	return shown(r)
}

// firstBad returns the index of the first byte to replace, or -1.
func firstBad(s string, lines bool) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !keep(r, s[i+n:], lines) {
			return i
		}
		i += n
	}
	return -1
}

// Writer passes what is written through Text to another writer. A
// character or CR LF split between two writes is held back until the
// next one completes it; Close writes what is still held (as '?' when it
// is incomplete). It does not close the writer below.
type Writer struct {
	w       io.Writer
	pending []byte
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write cleans p and writes it; it reports len(p) written when the
// writer below took everything.
func (w *Writer) Write(p []byte) (int, error) {
	buf := append(w.pending, p...)
	cut := len(buf)
	// Hold back an incomplete last character, or a CR whose LF may come.
	for back := 1; back <= utf8.UTFMax && back <= len(buf); back++ {
		if utf8.RuneStart(buf[len(buf)-back]) {
			if !utf8.FullRune(buf[len(buf)-back:]) {
				cut = len(buf) - back
			}
			break
		}
	}
	if cut == len(buf) && cut > 0 && buf[cut-1] == '\r' {
		cut--
	}
	out := Text(string(buf[:cut]))
	w.pending = append(w.pending[:0:0], buf[cut:]...)
	if _, err := io.WriteString(w.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes what is held back.
func (w *Writer) Close() error {
	if len(w.pending) == 0 {
		return nil
	}
	out := Text(string(w.pending))
	w.pending = nil
	_, err := io.WriteString(w.w, out)
	return err
}
