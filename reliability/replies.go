package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"time"
)

// replyLine is one line a server sent, as the hostile-input driver sees it.
type replyLine struct {
	Code  string // "250"; "" when the line is not a reply line
	Final bool   // the last line of its reply ("250 ", not "250-")
	Raw   string // the line without its CRLF, cut at maxReplyLine
	Err   string // why the line is malformed, "" if it is well formed
	At    time.Time
}

// maxReplyLine is RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets
// with its CRLF.
const maxReplyLine = 512

// parseReplyLine checks one reply line, CRLF included (RFC 5321 §4.2):
// three digits, the first 2-5, then a space (last line) or a hyphen (more
// follow) and text, or nothing at all after the code. Code and Final are
// set whenever the line starts like a reply, even a malformed one, so a
// reader can count replies.
func parseReplyLine(line string) replyLine {
	l := replyLine{Raw: strings.TrimRight(line, "\r\n")}
	if len(l.Raw) > 200 {
		l.Raw = l.Raw[:200] + "…"
	}
	text, crlf := strings.CutSuffix(line, "\r\n")
	if len(text) < 3 || text[0] < '2' || text[0] > '5' || !isDigit(text[1]) || !isDigit(text[2]) {
		l.Err = "no reply code"
		return l
	}
	switch {
	case len(text) == 3 || text[3] == ' ':
		l.Code, l.Final = text[:3], true
	case text[3] == '-':
		l.Code = text[:3]
	default:
		l.Err = "code not followed by space or hyphen"
		return l
	}
	switch {
	case len(line) > maxReplyLine:
		l.Err = "longer than 512 octets"
	case !crlf:
		l.Err = "not ended by CRLF"
	default:
		for i := 4; i < len(text); i++ {
			if c := text[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				l.Err = "control character in the text"
				break
			}
		}
	}
	return l
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// readReplies reads lines from r until it ends, sending each parsed line.
// A line longer than the reader's buffer is reported once, malformed.
func readReplies(r io.Reader, out chan<- replyLine) {
	defer close(out)
	br := bufio.NewReaderSize(r, 4096)
	for {
		frag, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			l := parseReplyLine(string(frag))
			if l.Code != "" {
				l.Err = "longer than 512 octets"
			}
			l.At = time.Now()
			out <- l
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			continue
		}
		if len(frag) > 0 {
			l := parseReplyLine(string(frag))
			l.At = time.Now()
			out <- l
		}
		if err != nil {
			return
		}
	}
}
