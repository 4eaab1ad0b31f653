package dsn

import (
	"strings"
	"unicode/utf8"
)

// maxLine is where header fields are folded (RFC 5322 §2.1.1 "SHOULD be no
// more than 78 characters"), hardLine the limit no line may pass (998
// plus CRLF).
const (
	maxLine  = 78
	hardLine = 998
	maxWord  = 900 // longest word wrap puts on a line
)

// cleanHeader makes s safe as (part of) a one-line field value: CR, LF,
// tab and other control characters become spaces (no header injection
// from an address or a remote server's text), runs of spaces become one,
// and the ends are trimmed. Unless global, anything not ASCII becomes '?'
// (RFC 3464 fields are ASCII; RFC 6533 global ones are UTF-8); invalid
// UTF-8 becomes '?' in any case.
func cleanHeader(s string, global bool) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i, w := 0, 0; i < len(s); i += w {
		r := rune(s[i])
		w = 1
		if r >= utf8.RuneSelf {
			r, w = utf8.DecodeRuneInString(s[i:])
		}
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			r = ' '
		case r == utf8.RuneError && w == 1, r >= utf8.RuneSelf && !global:
			r = '?'
		}
		if r == ' ' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// isASCII reports whether s has only 7-bit characters.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// writeField appends "name: value" CRLF to b, folded (RFC 5322 §2.2.3) at
// spaces so that lines stay within maxLine where the words allow. A word
// too long for even a line of its own is cut at hardLine (it cannot be
// folded without changing it; only hostile input gets there). value must
// already be clean (cleanHeader): one line, single spaces.
func writeField(b *strings.Builder, name, value string) {
	b.WriteString(name)
	b.WriteByte(':')
	lineLen := len(name) + 1
	first := true
	for word := range strings.SplitSeq(value, " ") {
		if word == "" {
			continue
		}
		for len(word) > 0 {
			if !first && lineLen+1+len(word) > maxLine {
				b.WriteString("\r\n")
				lineLen = 0
			}
			w := cutUTF8(word, hardLine-1-lineLen)
			word = word[len(w):]
			b.WriteByte(' ')
			b.WriteString(w)
			lineLen += 1 + len(w)
			first = false
		}
	}
	b.WriteString("\r\n")
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence (at least one byte, so callers progress).
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 1 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// wrap appends text to b as lines of at most width characters (counted in
// runes), continuation lines indented by indent spaces, each line ending
// in CRLF. text must be clean (one line, single spaces).
func wrap(b *strings.Builder, text string, width, indent int) {
	pad := strings.Repeat(" ", indent)
	lineLen, start := 0, true
	put := func(w string) {
		n := utf8.RuneCountInString(w)
		switch {
		case start:
		case lineLen+1+n > width:
			b.WriteString("\r\n")
			b.WriteString(pad)
			lineLen = indent
		default:
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(w)
		lineLen += n
		start = false
	}
	for word := range strings.SplitSeq(text, " ") {
		// A word no line can hold (only hostile input has one) is cut.
		for len(word) > maxWord {
			w := cutUTF8(word, maxWord)
			word = word[len(w):]
			put(w)
		}
		if word != "" {
			put(word)
		}
	}
	b.WriteString("\r\n")
}

// normalizeCRLF returns b with every line ending in CRLF: bare LFs get
// their CR (RFC 5322 §2.3; the DSN goes out over SMTP), and a last line
// without an end gets one.
func normalizeCRLF(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare++
		}
	}
	last := len(b) > 0 && b[len(b)-1] != '\n'
	if bare == 0 && !last {
		return b
	}
	out := make([]byte, 0, len(b)+bare+2)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if last {
		if out[len(out)-1] == '\r' {
			out = append(out, '\n')
		} else {
			out = append(out, '\r', '\n')
		}
	}
	return out
}
