package stats

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf8"
)

// maxLine bounds a journal line; a longer one is skipped as bad without
// being held in memory.
const maxLine = 64 << 10

// readEvents calls fn for each event of a journal file, in order, and
// returns how many lines were bad: not a JSON object, or without a time or
// kind. Blank lines are ignored. A last line without its newline is being
// written, or was torn by a crash: it is used when it parses and skipped
// silently when it does not. fn's error stops the reading and is
// returned.
func readEvents(r io.Reader, fn func(Event) error) (bad int, err error) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			bad++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return bad, nil
			} else if err != nil {
				return bad, err
			}
			continue
		case err == io.EOF:
			if e, ok := decodeEvent(line); ok {
				return bad, fn(e)
			}
			return bad, nil
		case err != nil:
			return bad, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, ok := decodeEvent(line)
		if !ok {
			bad++
			continue
		}
		if err := fn(e); err != nil {
			return bad, err
		}
	}
}

// decodeEvent parses one line; ok is false for anything but an object
// with a time and a kind.
func decodeEvent(line []byte) (e Event, ok bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return Event{}, false
	}
	var fast bool
	if e, fast = decodeFlat(line); !fast {
		e = Event{}
		if err := json.Unmarshal(line, &e); err != nil {
			return Event{}, false
		}
	}
	if e.Time.IsZero() || e.Kind == "" {
		return Event{}, false
	}
	return e, true
}

// decodeFlat parses the lines the journal writes: one object whose keys
// are Event's own and whose values are plain strings (no escapes) and
// numbers. It is several times faster than json.Unmarshal, which decides
// everything else (ok false): escapes, nulls, unknown or differently
// cased keys, invalid UTF-8, anything malformed. Where decodeFlat
// succeeds it agrees with json.Unmarshal (FuzzReadEvents checks).
func decodeFlat(b []byte) (e Event, ok bool) {
	p := flat{b: b}
	if !p.byte('{') {
		return e, false
	}
	if p.byte('}') {
		return e, p.end()
	}
	for {
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return e, false
		}
		switch string(key) {
		case "time":
			v, ok := p.str()
			if !ok || e.Time.UnmarshalText(v) != nil {
				return e, false
			}
		case "client_ip":
			v, ok := p.str()
			if !ok || e.ClientIP.UnmarshalText(v) != nil {
				return e, false
			}
		case "kind":
			v, ok := p.str()
			if !ok {
				return e, false
			}
			e.Kind = kindOf(v)
		case "queue_id":
			ok = p.strTo(&e.QueueID)
		case "conn_id":
			ok = p.strTo(&e.ConnID)
		case "sender":
			ok = p.strTo(&e.Sender)
		case "rcpt":
			ok = p.strTo(&e.Rcpt)
		case "stage":
			ok = p.strTo(&e.Stage)
		case "filter":
			ok = p.strTo(&e.Filter)
		case "reason":
			ok = p.strTo(&e.Reason)
		case "virus":
			ok = p.strTo(&e.Virus)
		case "code":
			var n int64
			n, ok = p.int()
			e.Code = int(n)
			ok = ok && int64(e.Code) == n // json refuses what int cannot hold
		case "size":
			e.Size, ok = p.int()
		case "score":
			e.Score, ok = p.float()
		default:
			return e, false
		}
		if !ok {
			return e, false
		}
		if p.byte('}') {
			return e, p.end()
		}
		if !p.byte(',') {
			return e, false
		}
	}
}

// kindOf returns the constant for a known kind, sparing an allocation.
func kindOf(v []byte) Kind {
	for _, k := range [...]Kind{Received, Rejected, Delivered, Deferred, Bounced, Expired, Quarantined, Discarded, Virus, Spam, Ham} {
		if string(k) == string(v) {
			return k
		}
	}
	return Kind(v)
}

// flat is a cursor over one line for decodeFlat.
type flat struct {
	b []byte
	i int
}

// ws skips JSON whitespace (RFC 8259 §2).
func (p *flat) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

// byte consumes c after whitespace.
func (p *flat) byte(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *flat) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// str reads a string without escapes or control characters, in valid
// UTF-8: json.Unmarshal would return exactly its bytes.
func (p *flat) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *flat) strTo(dst *string) bool {
	v, ok := p.str()
	*dst = string(v)
	return ok
}

// number reads a JSON number literal (RFC 8259 §6).
func (p *flat) number() ([]byte, bool) {
	p.ws()
	b, start := p.b, p.i
	digits := func() bool {
		s := p.i
		for p.i < len(b) && b[p.i] >= '0' && b[p.i] <= '9' {
			p.i++
		}
		return p.i > s
	}
	if p.i < len(b) && b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(b) && b[p.i] == '0':
		p.i++
	case !digits():
		return nil, false
	}
	if p.i < len(b) && b[p.i] == '.' {
		p.i++
		if !digits() {
			return nil, false
		}
	}
	if p.i < len(b) && (b[p.i] == 'e' || b[p.i] == 'E') {
		p.i++
		if p.i < len(b) && (b[p.i] == '+' || b[p.i] == '-') {
			p.i++
		}
		if !digits() {
			return nil, false
		}
	}
	return b[start:p.i], true
}

// int reads an integer as json.Unmarshal does for an int64 field.
func (p *flat) int() (int64, bool) {
	lit, ok := p.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return n, err == nil
}

// float reads a number as json.Unmarshal does for a float64 field.
func (p *flat) float() (float64, bool) {
	lit, ok := p.number()
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	return f, err == nil
}
