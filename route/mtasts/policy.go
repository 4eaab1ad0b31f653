package mtasts

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by the errors of ParsePolicy and ParseRecord.
var ErrSyntax = errors.New("mtasts: bad policy")

// MaxMaxAge is the longest max_age a policy may give (RFC 8461 §3.2).
const MaxMaxAge = 31557600 * time.Second

// Mode is a policy's mode.
type Mode string

// The modes (RFC 8461 §5).
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// Policy is a domain's MTA-STS policy.
type Policy struct {
	// Domain is the policy domain; ID the id of the TXT record it was
	// fetched under.
	Domain string
	ID     string
	Mode   Mode
	// MX are the patterns of the hosts that may receive mail, in lower
	// case: "mail.example.com" or "*.example.com".
	MX     []string
	MaxAge time.Duration
	// Text is the policy as fetched.
	Text string
	// Fetched is when it was fetched.
	Fetched time.Time
}

// Expires is when the policy may no longer be used.
func (p *Policy) Expires() time.Time { return p.Fetched.Add(p.MaxAge) }

// Lines returns the policy's lines, without line ends: TLS-RPT reports
// name a policy by them (RFC 8460 §4.4, policy-string).
func (p *Policy) Lines() []string {
	var out []string
	for l := range strings.SplitSeq(strings.ReplaceAll(p.Text, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// MatchMX reports whether host may receive mail under the policy (RFC
// 8461 §4.1): it equals a pattern, or a pattern "*.rest" has exactly one
// label in place of the star.
func (p *Policy) MatchMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, tail, found := strings.Cut(host, ".")
			if found && label != "" && tail == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// ParsePolicy reads a policy (RFC 8461 §3.2): "key: value" lines ended
// by LF or CRLF; version STSv1, mode, max_age and, unless mode is none,
// at least one mx are required. Unknown keys are ignored; of a key given
// twice (mx aside) the first counts.
func ParsePolicy(text string) (Policy, error) {
	p := Policy{Text: text}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 1024), MaxPolicySize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("%w: line %d: no colon", ErrSyntax, n)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key != "mx" && seen[key] {
			continue
		}
		seen[key] = true
		if err := p.set(key, val); err != nil {
			return Policy{}, fmt.Errorf("%w: line %d: %v", ErrSyntax, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	switch {
	case !seen["version"]:
		return Policy{}, fmt.Errorf("%w: no version", ErrSyntax)
	case p.Mode == "":
		return Policy{}, fmt.Errorf("%w: no mode", ErrSyntax)
	case !seen["max_age"]:
		return Policy{}, fmt.Errorf("%w: no max_age", ErrSyntax)
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return Policy{}, fmt.Errorf("%w: no mx", ErrSyntax)
	}
	return p, nil
}

func (p *Policy) set(key, val string) error {
	switch key {
	case "version":
		if val != "STSv1" {
			return fmt.Errorf("version %q (want STSv1)", val)
		}
	case "mode":
		switch m := Mode(val); m {
		case ModeEnforce, ModeTesting, ModeNone:
			p.Mode = m
		default:
			return fmt.Errorf("mode %q (want enforce, testing or none)", val)
		}
	case "max_age":
		// 1*10DIGIT, at most 31557600 (§3.2).
		if len(val) == 0 || len(val) > 10 || strings.Trim(val, "0123456789") != "" {
			return fmt.Errorf("max_age %q is not a number of seconds", val)
		}
		n, _ := strconv.ParseInt(val, 10, 64)
		if time.Duration(n)*time.Second > MaxMaxAge {
			return fmt.Errorf("max_age %d is more than %d", n, int64(MaxMaxAge/time.Second))
		}
		p.MaxAge = time.Duration(n) * time.Second
	case "mx":
		pat := strings.ToLower(strings.TrimSuffix(val, "."))
		if !validPattern(pat) {
			return fmt.Errorf("mx %q is not a host name or *.domain", val)
		}
		p.MX = append(p.MX, pat)
	}
	return nil
}

// validPattern accepts a host name, or "*." and a name of two labels or
// more.
func validPattern(s string) bool {
	rest, wild := strings.CutPrefix(s, "*.")
	if wild && !strings.Contains(rest, ".") {
		return false
	}
	if rest == "" || len(rest) > 253 {
		return false
	}
	for label := range strings.SplitSeq(rest, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Record is a domain's "_mta-sts" TXT record (RFC 8461 §3.1).
type Record struct {
	ID string
}

// ParseRecord reads one TXT record: "v=STSv1; id=20160831085700Z;",
// with optional further fields (ignored). The id is 1 to 32 letters and
// digits.
func ParseRecord(txt string) (Record, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != "v=STSv1" {
		return Record{}, fmt.Errorf("%w: record does not start with v=STSv1", ErrSyntax)
	}
	var r Record
	for _, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return Record{}, fmt.Errorf("%w: field %q", ErrSyntax, f)
		}
		if k == "id" && r.ID == "" {
			if len(v) < 1 || len(v) > 32 || !alnum(v) {
				return Record{}, fmt.Errorf("%w: id %q", ErrSyntax, v)
			}
			r.ID = v
		}
	}
	if r.ID == "" {
		return Record{}, fmt.Errorf("%w: no id", ErrSyntax)
	}
	return r, nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
