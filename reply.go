package postern

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrReplySyntax is returned (wrapped) by ParseReply for text that is not an
// SMTP reply.
var ErrReplySyntax = errors.New("postern: malformed SMTP reply")

// maxReplyLines bounds a multi-line reply read from a remote server, so a
// hostile peer cannot make ParseReply allocate without end.
const maxReplyLines = 512

// EnhancedCode is an RFC 3463 enhanced status code: class.subject.detail.
// The zero value means "none"; the server edge then derives X.0.0 from the
// reply code as RFC 2034 §3 asks.
type EnhancedCode [3]int

// ESC returns the enhanced status code class.subject.detail.
func ESC(class, subject, detail int) EnhancedCode {
	return EnhancedCode{class, subject, detail}
}

// IsZero reports whether no enhanced code is set.
func (e EnhancedCode) IsZero() bool { return e == EnhancedCode{} }

// String returns the dotted form, or "" for the zero value.
func (e EnhancedCode) String() string {
	if e.IsZero() {
		return ""
	}
	return strconv.Itoa(e[0]) + "." + strconv.Itoa(e[1]) + "." + strconv.Itoa(e[2])
}

// ParseEnhancedCode parses "5.7.1". RFC 3463 §2: class is 2, 4 or 5, subject
// 0-999 and detail 0-999.
func ParseEnhancedCode(s string) (EnhancedCode, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, fmt.Errorf("%w: enhanced status code %q", ErrReplySyntax, s)
	}
	var e EnhancedCode
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) || strings.Trim(p, "0123456789") != "" {
			return EnhancedCode{}, fmt.Errorf("%w: enhanced status code %q", ErrReplySyntax, s)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return EnhancedCode{}, fmt.Errorf("%w: enhanced status code %q", ErrReplySyntax, s)
		}
		e[i] = n
	}
	if e[0] != 2 && e[0] != 4 && e[0] != 5 {
		return EnhancedCode{}, fmt.Errorf("%w: enhanced status class in %q", ErrReplySyntax, s)
	}
	return e, nil
}

// Reply is an SMTP reply: a three-digit code, an optional enhanced status
// code and one or more text lines. Reply implements error so a policy can
// return it as is; only the server edge turns it into wire bytes.
type Reply struct {
	Code     int
	Enhanced EnhancedCode
	Lines    []string
}

// NewReply builds a one-line reply.
func NewReply(code int, esc EnhancedCode, text string) Reply {
	return Reply{Code: code, Enhanced: esc, Lines: []string{text}}
}

// IsZero reports whether r is the zero Reply (no code).
func (r Reply) IsZero() bool { return r.Code == 0 }

// Temporary reports a 4xx reply: the client should retry later.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Text joins the text lines with a space.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// Error formats the reply on one line, e.g. "550 5.7.1 Relay denied";
// the zero Reply (no reply at all) is "no reply".
func (r Reply) Error() string {
	if r.IsZero() {
		return "no reply"
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if !r.Enhanced.IsZero() {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced.String())
	}
	if t := r.Text(); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	return b.String()
}

// Wire returns the reply as sent on the wire (RFC 5321 §4.2.1): every line
// but the last has a hyphen after the code, each line carries the enhanced
// code, and each ends in CRLF. CR and LF inside text are replaced by spaces
// so text taken from a map or a DNS TXT record cannot inject a reply line.
func (r Reply) Wire() string {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	var b strings.Builder
	for i, l := range lines {
		b.WriteString(strconv.Itoa(r.Code))
		if i < len(lines)-1 {
			b.WriteByte('-')
		} else {
			b.WriteByte(' ')
		}
		if !r.Enhanced.IsZero() {
			b.WriteString(r.Enhanced.String())
			if l != "" {
				b.WriteByte(' ')
			}
		}
		b.WriteString(sanitizeLine(l))
		b.WriteString("\r\n")
	}
	return b.String()
}

func sanitizeLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return crlfToSpace.Replace(s) // bytewise: 8-bit text is kept as is
}

var crlfToSpace = strings.NewReplacer("\r", " ", "\n", " ")

// ParseReply reads one complete, possibly multi-line, reply from r
// (RFC 5321 §4.2). Enhanced status codes are recognised when every line
// starts with one of the same class as the reply code (RFC 2034 §4);
// otherwise the text is kept whole.
func ParseReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	var escs []EnhancedCode
	var texts []string
	for n := 0; ; n++ {
		if n >= maxReplyLines {
			return Reply{}, fmt.Errorf("%w: more than %d lines", ErrReplySyntax, maxReplyLines)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && (line != "" || n > 0) {
				err = io.ErrUnexpectedEOF
			}
			return Reply{}, err
		}
		line = sanitizeLine(strings.TrimRight(line, "\r\n")) // a stray CR is not a line end
		if len(line) < 3 {
			return Reply{}, fmt.Errorf("%w: short line %q", ErrReplySyntax, line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || line[0] == '+' || line[0] == '-' {
			return Reply{}, fmt.Errorf("%w: bad code in %q", ErrReplySyntax, line)
		}
		if n == 0 {
			rep.Code = code
		} else if code != rep.Code {
			return Reply{}, fmt.Errorf("%w: code changed from %d to %d", ErrReplySyntax, rep.Code, code)
		}
		last := true
		text := ""
		if len(line) > 3 {
			switch line[3] {
			case '-':
				last = false
			case ' ':
			default:
				return Reply{}, fmt.Errorf("%w: bad separator in %q", ErrReplySyntax, line)
			}
			text = line[4:]
		}
		esc, rest := splitESC(text, code)
		escs = append(escs, esc)
		texts = append(texts, text)
		rep.Lines = append(rep.Lines, rest)
		if last {
			break
		}
	}
	// Keep the enhanced code only if every line had the same one; else put
	// the text back as it came, nothing is lost.
	same := !escs[0].IsZero()
	for _, e := range escs[1:] {
		if e != escs[0] {
			same = false
		}
	}
	if same {
		rep.Enhanced = escs[0]
	} else {
		copy(rep.Lines, texts)
	}
	return rep, nil
}

// ParseReplyString parses a reply held in a string.
func ParseReplyString(s string) (Reply, error) {
	if !strings.HasSuffix(s, "\n") {
		s += "\r\n"
	}
	return ParseReply(bufio.NewReader(strings.NewReader(s)))
}

func splitESC(text string, code int) (EnhancedCode, string) {
	word, rest, _ := strings.Cut(text, " ")
	if word == "" || word[0] < '2' || word[0] > '5' {
		return EnhancedCode{}, text
	}
	esc, err := ParseEnhancedCode(word)
	if err != nil || esc[0] != code/100 {
		return EnhancedCode{}, text
	}
	return esc, rest
}
