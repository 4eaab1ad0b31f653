package webui

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
)

// Bounds of what is read and shown of a header.
const (
	maxSummaryBytes = 64 << 10  // read for the list's From and Subject
	maxHeaderBytes  = 256 << 10 // read for the message page (scan's default)
	maxFields       = 1000
	maxFieldValue   = 16 << 10
	maxSummaries    = 4096
)

// field is one header field, unfolded and decoded for display.
type field struct{ Name, Value string }

// parseHeader reads the header fields at the start of data (RFC 5322
// §2.2), up to the empty line that ends them or the end of data: folded
// lines are unfolded (§2.2.3), encoded words decoded (RFC 2047), invalid
// UTF-8 and control characters replaced. Lines that are not fields are
// skipped; nothing here fails. The result is for showing, never for
// deciding anything.
func parseHeader(data []byte, max int) []field {
	var out []field
	for len(data) > 0 && len(out) <= max {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if n := len(out); n > 0 && len(out[n-1].Value) < maxFieldValue {
				out[n-1].Value += string(line)
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validFieldName(name) {
			continue // an mbox "From " line, or garbage
		}
		out = append(out, field{Name: string(name), Value: string(value)})
	}
	if len(out) > max {
		out = out[:max]
	}
	for i := range out {
		out[i].Value = cleanText(enmime.DecodeRFC2047(strings.TrimSpace(out[i].Value)), maxFieldValue, true)
	}
	return out
}

// validFieldName: printable US-ASCII but colon (RFC 5322 §2.2).
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// cleanText makes text safe to show as text: valid UTF-8, control
// characters (but newlines and tabs in a body) replaced, at most max
// bytes. HTML escaping is the template's job.
func cleanText(s string, max int, oneLine bool) string {
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return r
		case r == '\n' && !oneLine:
			return r
		case r == '\r' && !oneLine:
			return -1
		case unicode.IsControl(r):
			return ' '
		}
		return r
	}, s)
}

// summary is what the list shows of a message's header.
type summary struct{ From, Subject string }

// summary reads the From and Subject of a queued message. Queued bytes
// never change under an ID, so they are cached (bounded).
func (s *Server) summary(id string) summary {
	s.sumMu.Lock()
	sum, ok := s.summaries[id]
	s.sumMu.Unlock()
	if ok {
		return sum
	}
	rc, err := s.cfg.Queue.Open(id)
	if err != nil {
		return summary{}
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxSummaryBytes))
	rc.Close()
	if err != nil {
		return summary{}
	}
	for _, f := range parseHeader(data, maxFields) {
		switch {
		case strings.EqualFold(f.Name, "From") && sum.From == "":
			sum.From = f.Value
		case strings.EqualFold(f.Name, "Subject") && sum.Subject == "":
			sum.Subject = f.Value
		}
	}
	s.sumMu.Lock()
	if len(s.summaries) >= maxSummaries {
		clear(s.summaries)
	}
	s.summaries[id] = sum
	s.sumMu.Unlock()
	return sum
}

// messageView is a message as the page shows it: its header, its text,
// what is attached. Never its HTML.
type messageView struct {
	Header      []field
	Text        string
	FromHTML    bool
	Attachments []attachment
	Notes       []string
}

type attachment struct {
	Name, Type string
	Size       int
}

func (s *Server) viewMessage(ctx context.Context, id string) *messageView {
	rc, err := s.cfg.Queue.Open(id)
	if err != nil {
		return &messageView{Notes: []string{"The message could not be read from the queue."}}
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, s.cfg.MaxView+1))
	if err != nil {
		return &messageView{Notes: []string{"The message could not be read from the queue."}}
	}
	return s.viewBytes(ctx, data)
}

// viewBytes parses a message for display, within bounds: at most MaxView
// bytes (the rest is cut off), the MIME structure vetted first by scan's
// walker (depth, parts, header and line sizes, time), so enmime only sees
// what it handles quickly; then enmime gives the text, converting an
// HTML-only message to text (its HTML is never shown as HTML).
func (s *Server) viewBytes(ctx context.Context, data []byte) *messageView {
	v := &messageView{}
	if int64(len(data)) > s.cfg.MaxView {
		data = data[:s.cfg.MaxView]
		v.Notes = append(v.Notes, fmt.Sprintf("The message is larger than %s; only its beginning is shown.", humanSize(s.cfg.MaxView)))
	}
	v.Header = parseHeader(data[:min(len(data), maxHeaderBytes)], maxFields)
	if _, err := s.walker.WalkBytes(ctx, data); err != nil {
		v.Notes = append(v.Notes, "The message's structure is beyond what this page shows ("+cleanText(err.Error(), 200, true)+"); its raw body is shown instead.")
		v.Text = s.text(rawBody(data))
		return v
	}
	env, err := s.parser.ReadEnvelope(bytes.NewReader(data))
	if err != nil {
		v.Notes = append(v.Notes, "The message could not be parsed; its raw body is shown instead.")
		v.Text = s.text(rawBody(data))
		return v
	}
	v.Text = s.text(env.Text)
	if env.HTML != "" && !hasPlainText(env) {
		v.FromHTML = true
	}
	if len(env.Text) > s.cfg.MaxText {
		v.Notes = append(v.Notes, fmt.Sprintf("The text is longer than %s; only its beginning is shown.", humanSize(int64(s.cfg.MaxText))))
	}
	for _, group := range [][]*enmime.Part{env.Attachments, env.Inlines, env.OtherParts} {
		for _, p := range group {
			if len(v.Attachments) == 100 {
				break
			}
			name := p.FileName
			if name == "" {
				name = "(no name)"
			}
			v.Attachments = append(v.Attachments, attachment{Name: cleanText(name, 256, true),
				Type: cleanText(p.ContentType, 128, true), Size: len(p.Content)})
		}
	}
	n := 0
	for _, e := range env.Errors {
		if e.Name != enmime.ErrorPlainTextFromHTML {
			n++
		}
	}
	if n > 0 {
		v.Notes = append(v.Notes, fmt.Sprintf("The parser found %d problem(s) in the message's MIME structure.", n))
	}
	return v
}

// hasPlainText reports whether enmime found a text/plain body (rather
// than converting the HTML one).
func hasPlainText(env *enmime.Envelope) bool {
	for _, e := range env.Errors {
		if e.Name == enmime.ErrorPlainTextFromHTML {
			return false
		}
	}
	return true
}

func (s *Server) text(t string) string { return cleanText(t, s.cfg.MaxText, false) }

// rawBody is what follows the header.
func rawBody(data []byte) string {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return string(data[i+4:])
	}
	if i := bytes.Index(data, []byte("\n\n")); i >= 0 {
		return string(data[i+2:])
	}
	return ""
}
