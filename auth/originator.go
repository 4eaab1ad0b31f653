package auth

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/postern/postern"
)

// ErrOriginator is wrapped by the errors of CheckOriginator: an originator
// field (From, Sender) that names an address the user may not use, or
// that cannot be read.
var ErrOriginator = errors.New("auth: originator field not allowed")

// OriginatorError says which originator field CheckOriginator refused and
// why. It wraps ErrOriginator.
type OriginatorError struct {
	// Field is "From" or "Sender".
	Field string
	// Addr is the address refused; "" when the field as a whole is wrong
	// (missing, repeated, unparsable).
	Addr string
	// Problem says what is wrong, for logs.
	Problem string
}

func (e *OriginatorError) Error() string {
	if e.Addr != "" {
		return fmt.Sprintf("%v: %s: <%s> %s", ErrOriginator, e.Field, e.Addr, e.Problem)
	}
	return fmt.Sprintf("%v: %s: %s", ErrOriginator, e.Field, e.Problem)
}

func (e *OriginatorError) Unwrap() error { return ErrOriginator }

// SenderAllower says which addresses an authenticated user may send as.
// *SenderMap and *SenderBindings implement it.
type SenderAllower interface {
	Allowed(user, addr string) bool
}

var (
	_ SenderAllower = (*SenderMap)(nil)
	_ SenderAllower = (*SenderBindings)(nil)
)

// CheckOriginator checks the originator fields of m (RFC 5322 §3.6.2)
// against allowed, which says whether the sending user may use an
// address. It returns nil when
//
//   - there is exactly one From field, every mailbox in it (groups
//     included, RFC 6854) is allowed, and it names at least one;
//   - there is at most one Sender field, naming one allowed mailbox.
//
// Anything else is an *OriginatorError: a field that cannot be parsed,
// that holds control characters other than folding, or that is not valid
// UTF-8 is refused, not waved through, because the receiving side (a mail
// reader, a DMARC check) might read it differently. Encoded words
// (RFC 2047) are decoded in display names only; an address is taken
// literally.
func CheckOriginator(m *postern.Message, allowed func(addr string) bool) error {
	var from, sender []postern.Field
	for _, f := range m.Fields() {
		switch {
		case strings.EqualFold(f.Name, "From"):
			from = append(from, f)
		case strings.EqualFold(f.Name, "Sender"):
			sender = append(sender, f)
		}
	}
	switch {
	case len(from) == 0:
		return &OriginatorError{Field: "From", Problem: "missing"}
	case len(from) > 1:
		return &OriginatorError{Field: "From", Problem: fmt.Sprintf("%d fields, RFC 5322 allows one", len(from))}
	case len(sender) > 1:
		return &OriginatorError{Field: "Sender", Problem: fmt.Sprintf("%d fields, RFC 5322 allows one", len(sender))}
	}
	if err := checkOriginatorField(from[0], "From", false, allowed); err != nil {
		return err
	}
	if len(sender) == 1 {
		return checkOriginatorField(sender[0], "Sender", true, allowed)
	}
	return nil
}

func checkOriginatorField(f postern.Field, name string, single bool, allowed func(string) bool) error {
	addrs, err := OriginatorAddresses(f)
	if err != nil {
		return &OriginatorError{Field: name, Problem: err.Error()}
	}
	switch {
	case len(addrs) == 0:
		return &OriginatorError{Field: name, Problem: "names no mailbox"}
	case single && len(addrs) > 1:
		return &OriginatorError{Field: name, Problem: "names more than one mailbox"}
	}
	for _, a := range addrs {
		if !allowed(a) {
			return &OriginatorError{Field: name, Addr: a, Problem: "not owned by the user"}
		}
	}
	return nil
}

// OriginatorAddresses returns the addresses of a From, Sender or Reply-To
// style field: every mailbox, the members of groups included. It refuses
// a field with control characters other than its folding, invalid UTF-8,
// or a value net/mail cannot parse.
func OriginatorAddresses(f postern.Field) ([]string, error) {
	_, raw, _ := strings.Cut(string(f.Raw), ":")
	raw = strings.TrimRight(raw, "\r\n")
	if !utf8.ValidString(raw) {
		return nil, errors.New("not valid UTF-8")
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\r' || c == '\n' {
			// Only CRLF (or LF) followed by white space: folding.
			j := i
			if c == '\r' {
				j++
			}
			if j >= len(raw) || raw[j] != '\n' || j+1 >= len(raw) || (raw[j+1] != ' ' && raw[j+1] != '\t') {
				return nil, errors.New("bare CR or LF")
			}
			i = j
			continue
		}
		if c < 0x20 && c != '\t' || c == 0x7f {
			return nil, fmt.Errorf("control character %#02x", c)
		}
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		// Display names may be in any charset: only the addresses matter.
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
	list, err := p.ParseList(f.Value())
	if err != nil {
		return nil, fmt.Errorf("cannot be parsed: %w", err)
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out, nil
}
