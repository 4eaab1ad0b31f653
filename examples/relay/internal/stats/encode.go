package stats

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// errEncode reports an event JSON cannot hold: a NaN or infinite Score,
// or a Time RFC 3339 cannot write.
var errEncode = errors.New("stats: event cannot be written")

// appendEvent appends e's journal line to b: the JSON object and a
// newline, byte for byte what encoding/json's Encoder with
// SetEscapeHTML(false) writes for it (FuzzAppendEvent compares). The
// journal wrote with that Encoder before; by hand, without reflection and
// into a reused buffer, an event costs a fraction of it. On error, b's
// contents are unchanged (appendEvent may have written past its length).
func appendEvent(b []byte, e *Event) ([]byte, error) {
	if math.IsNaN(e.Score) || math.IsInf(e.Score, 0) {
		return b, fmt.Errorf("%w: score %v", errEncode, e.Score)
	}
	b = append(b, `{"time":`...)
	b, err := appendTime(b, e.Time)
	if err != nil {
		return b, err
	}
	b = append(b, `,"kind":`...)
	b = appendString(b, string(e.Kind))
	b = appendStringField(b, `,"queue_id":`, e.QueueID)
	b = appendStringField(b, `,"conn_id":`, e.ConnID)
	if e.ClientIP != (netip.Addr{}) { // omitzero
		b = appendAddr(b, e.ClientIP)
	}
	b = appendStringField(b, `,"sender":`, e.Sender)
	b = appendStringField(b, `,"rcpt":`, e.Rcpt)
	b = appendStringField(b, `,"stage":`, e.Stage)
	b = appendStringField(b, `,"filter":`, e.Filter)
	b = appendStringField(b, `,"reason":`, e.Reason)
	if e.Code != 0 {
		b = strconv.AppendInt(append(b, `,"code":`...), int64(e.Code), 10)
	}
	b = appendStringField(b, `,"virus":`, e.Virus)
	if e.Score != 0 {
		b = appendFloat(append(b, `,"score":`...), e.Score)
	}
	if e.Size != 0 {
		b = strconv.AppendInt(append(b, `,"size":`...), e.Size, 10)
	}
	return append(b, "}\n"...), nil
}

// appendStringField appends key and s unless s is empty (omitempty).
func appendStringField(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

// appendTime is time.Time's MarshalJSON: RFC 3339 with nanoseconds,
// refused where RFC 3339 has no form for it (a year outside 0–9999, a
// zone offset of 24 hours or more).
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b)-n0 < len("2006-01-02T15:04:05Z") || b[n0+4] != '-' {
		return b, fmt.Errorf("%w: year outside of range [0,9999]", errEncode)
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		hh := b[len(b)-len("07:00"):]
		if '0' <= c && c <= '9' || 10*(hh[0]-'0')+(hh[1]-'0') >= 24 {
			return b, fmt.Errorf("%w: timezone hour outside of range [0,23]", errEncode)
		}
	}
	return append(b, '"'), nil
}

// appendAddr appends the client_ip field: the address's text form. Only
// a zone (any string) can need escaping.
func appendAddr(b []byte, ip netip.Addr) []byte {
	b = append(b, `,"client_ip":`...)
	if ip.Zone() != "" {
		return appendString(b, ip.String())
	}
	b = append(b, '"')
	b, _ = ip.AppendText(b) // digits, hex, '.' and ':'; no error for a valid address
	return append(b, '"')
}

// appendFloat formats f as encoding/json does: the shortest decimal
// that reads back as f, in exponent form below 1e-6 and from 1e21, with
// a one-digit negative exponent written without its zero ("1e-7").
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string (RFC 8259 §7) the way
// encoding/json does without HTML escaping: '"' and '\\' escaped,
// control characters as \b, \f, \n, \r, \t or \u00XX, each byte of
// invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped (JavaScript
// reads them as line ends). Everything else is copied as it is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = appendEscape(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendEscape appends the escape of an ASCII byte JSON does not take
// as it is.
func appendEscape(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
}
