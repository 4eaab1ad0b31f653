package route

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// TLSPolicyEntry is one line of a TLS policy map.
type TLSPolicyEntry struct {
	// Key is the left-hand side in lookup form: "example.com",
	// ".example.com", "[mail.example.com]:587", "[192.0.2.1]".
	Key   string
	Level TLSPolicy
	// Match are the names a certificate must carry for TLSVerify and
	// TLSSecure, as Postfix's match= gives them: "hostname" (the MX host
	// or the host named), "nexthop" (the next-hop domain), "dot-nexthop"
	// (any name under it), a name, or ".name" (any name under it).
	Match []string
	// MinVersion and MaxVersion bound the protocol (protocols=); 0 is
	// the tls package's default.
	MinVersion, MaxVersion uint16
	// ServerName is the SNI name sent (servername=): "hostname", a name,
	// or "" for the host name.
	ServerName string
	File       string
	Line       int
}

// TLSPolicyMap is a parsed TLS policy map. It is immutable and safe for
// concurrent use.
type TLSPolicyMap struct {
	file    string
	entries map[string]TLSPolicyEntry
}

// TLSPolicySource gives the TLS policy map in force: a *TLSPolicyMap,
// or a *Watcher[*TLSPolicyMap] that follows the file.
type TLSPolicySource interface {
	Current() *TLSPolicyMap
}

// Current returns m, so a fixed map is a TLSPolicySource.
func (m *TLSPolicyMap) Current() *TLSPolicyMap { return m }

// Len returns the number of entries.
func (m *TLSPolicyMap) Len() int {
	if m == nil {
		return 0
	}
	return len(m.entries)
}

// NewTLSPolicyMapWatcher loads the TLS policy map at path and returns a
// Watcher serving it; it fails if the first load fails.
func NewTLSPolicyMapWatcher(path string, cfg WatcherConfig) (*Watcher[*TLSPolicyMap], error) {
	return newWatcher(path, "TLS policy map", ParseTLSPolicyMap, (*TLSPolicyMap).Len, cfg)
}

// Lookup finds the entry for a next-hop host as Postfix does: the host
// in its written form, with brackets and a port when it has them
// ("[mail.example.com]:587"); a plain domain (a recipient domain, or a
// name looked up by MX) then tries ".parent" for each parent domain.
func (m *TLSPolicyMap) Lookup(h Host) (TLSPolicyEntry, bool) {
	if m == nil || len(m.entries) == 0 || h.Socket != "" {
		return TLSPolicyEntry{}, false
	}
	k := Host{Name: h.Name, Addr: h.Addr, Port: h.Port, NoMX: h.NoMX}.String()
	if e, ok := m.entries[k]; ok {
		return e, true
	}
	if h.NoMX || h.Addr.IsValid() || h.Port != 0 {
		return TLSPolicyEntry{}, false
	}
	for i := strings.IndexByte(k, '.'); i >= 0 && i < len(k)-1; {
		if e, ok := m.entries[k[i:]]; ok {
			return e, true
		}
		j := strings.IndexByte(k[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return TLSPolicyEntry{}, false
}

// ParseTLSPolicyMap reads a TLS policy map in the text syntax of
// Postfix's smtp_tls_policy_maps (the file postmap reads):
//
//	example.com             secure match=.example.com:example.com
//	.example.com            encrypt protocols=>=TLSv1.2
//	[mail.example.net]:587  verify match=hostname
//	example.org             dane-only
//	[192.0.2.25]            none
//
// '#' starts a comment line; a line starting with white space continues
// the previous one. Levels are none, may, encrypt, dane, dane-only,
// verify and secure; attributes match=, protocols=, ciphers=, exclude=,
// servername= and connection_reuse=. The fingerprint level, tafile= and
// unknown attributes are errors: an entry the relay cannot honour is not
// quietly weakened.
func ParseTLSPolicyMap(r io.Reader, file string) (*TLSPolicyMap, error) {
	m := &TLSPolicyMap{file: file, entries: map[string]TLSPolicyEntry{}}
	var errs []error
	lines, err := logicalLines(r)
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.File = file
		return nil, pe
	}
	if err != nil {
		return nil, fmt.Errorf("route: reading %s: %w", file, err)
	}
	for _, l := range lines {
		if len(errs) >= maxErrors {
			errs = append(errs, &ParseError{File: file, Line: l.n, Msg: "too many errors, stopped"})
			break
		}
		e, err := parsePolicyLine(l.text)
		if err != nil {
			errs = append(errs, &ParseError{File: file, Line: l.n, Msg: err.Error()})
			continue
		}
		e.File, e.Line = file, l.n
		if prev, dup := m.entries[e.Key]; dup {
			errs = append(errs, &ParseError{File: file, Line: l.n, Msg: fmt.Sprintf("duplicate key %q (first on line %d)", e.Key, prev.Line)})
			continue
		}
		m.entries[e.Key] = e
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

type logicalLine struct {
	n    int
	text string
}

// logicalLines joins continuation lines (starting with white space) to
// the line before, as Postfix's table readers do.
func logicalLines(r io.Reader) ([]logicalLine, error) {
	var out []logicalLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		s := strings.TrimRight(sc.Text(), "\r")
		if n == 1 {
			s = strings.TrimPrefix(s, "\ufeff")
		}
		t := strings.TrimSpace(s)
		switch {
		case t == "" || t[0] == '#':
		case s[0] == ' ' || s[0] == '\t':
			if len(out) == 0 {
				return nil, &ParseError{File: "", Line: n, Msg: "continuation line with nothing to continue"}
			}
			out[len(out)-1].text += " " + t
		default:
			out = append(out, logicalLine{n: n, text: t})
		}
	}
	return out, sc.Err()
}

// parsePolicyLine reads "key level attr=value ...".
func parsePolicyLine(s string) (TLSPolicyEntry, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return TLSPolicyEntry{}, fmt.Errorf("key %q has no security level", f[0])
	}
	var e TLSPolicyEntry
	var err error
	if e.Key, err = policyKey(f[0]); err != nil {
		return e, err
	}
	if e.Level, err = ParseTLSPolicy(f[1]); err != nil {
		return e, err
	}
	for _, a := range f[2:] {
		if err := e.setAttr(a); err != nil {
			return e, err
		}
	}
	return e, nil
}

// policyKey puts a left-hand side in lookup form.
func policyKey(k string) (string, error) {
	if d, ok := strings.CutPrefix(k, "."); ok {
		n, err := normalizeDomain(d)
		if err != nil {
			return "", fmt.Errorf("bad key %q", k)
		}
		return "." + n, nil
	}
	hosts, err := parseHosts(k)
	if err != nil || len(hosts) != 1 {
		return "", fmt.Errorf("bad key %q: want domain, .domain, host, [host] or [host]:port", k)
	}
	return hosts[0].String(), nil
}

func (e *TLSPolicyEntry) setAttr(a string) error {
	name, val, ok := strings.Cut(a, "=")
	if !ok {
		return fmt.Errorf("attribute %q: want name=value", a)
	}
	switch strings.ToLower(name) {
	case "match":
		for p := range strings.SplitSeq(val, ":") {
			if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
				if err := checkMatch(p); err != nil {
					return err
				}
				e.Match = append(e.Match, p)
			}
		}
	case "protocols":
		min, max, err := parseProtocols(val)
		if err != nil {
			return err
		}
		e.MinVersion, e.MaxVersion = min, max
	case "ciphers":
		switch strings.ToLower(val) {
		case "export", "low", "medium", "high":
			// Go offers only strong AEAD suites: every grade is met.
		default:
			return fmt.Errorf("ciphers=%s: want export, low, medium or high (null is not offered)", val)
		}
	case "exclude", "connection_reuse":
		// Nothing to exclude from Go's suites; connections are reused
		// per policy anyway.
	case "servername":
		e.ServerName = strings.ToLower(val)
	default:
		return fmt.Errorf("attribute %q is not supported", name)
	}
	return nil
}

func checkMatch(p string) error {
	switch p {
	case "hostname", "nexthop", "dot-nexthop":
		return nil
	}
	if _, err := normalizeDomain(strings.TrimPrefix(p, ".")); err != nil {
		return fmt.Errorf("match=%s: not hostname, nexthop, dot-nexthop or a name", p)
	}
	return nil
}

var tlsVersions = []struct {
	name string
	v    uint16
}{{"tlsv1", tls.VersionTLS10}, {"tlsv1.1", tls.VersionTLS11}, {"tlsv1.2", tls.VersionTLS12}, {"tlsv1.3", tls.VersionTLS13}}

func tlsVersion(s string) (uint16, bool) {
	for _, v := range tlsVersions {
		if v.name == s {
			return v.v, true
		}
	}
	return 0, s == "sslv2" || s == "sslv3"
}

// parseProtocols reads Postfix's protocol list: ">=TLSv1.2", "<=TLSv1.2",
// exclusions "!SSLv3:!TLSv1", or the versions allowed "TLSv1.2:TLSv1.3"
// (separated by ':' or ','). SSLv2 and SSLv3 are never offered. Go sets
// a range, so the versions left must be contiguous.
func parseProtocols(s string) (uint16, uint16, error) {
	ok := map[uint16]bool{}
	var pos []uint16
	var rules []func(v uint16) bool
	for p := range strings.FieldsFuncSeq(strings.ToLower(s), func(r rune) bool { return r == ':' || r == ',' || r == ' ' || r == '\t' }) {
		op := ""
		for _, o := range []string{">=", "<=", "!"} {
			if rest, found := strings.CutPrefix(p, o); found {
				op, p = o, rest
				break
			}
		}
		v, known := tlsVersion(p)
		if !known {
			return 0, 0, fmt.Errorf("protocols=%s: unknown protocol %q", s, p)
		}
		switch op {
		case ">=":
			rules = append(rules, func(x uint16) bool { return x >= v })
		case "<=":
			rules = append(rules, func(x uint16) bool { return x <= v })
		case "!":
			rules = append(rules, func(x uint16) bool { return x != v })
		default:
			pos = append(pos, v)
		}
	}
	var min, max uint16
	gap := false
	for _, tv := range tlsVersions {
		ok[tv.v] = len(pos) == 0 || slices.Contains(pos, tv.v)
		for _, r := range rules {
			ok[tv.v] = ok[tv.v] && r(tv.v)
		}
		switch {
		case ok[tv.v] && max != 0 && gap:
			return 0, 0, fmt.Errorf("protocols=%s: the versions left are not a range", s)
		case ok[tv.v]:
			if min == 0 {
				min = tv.v
			}
			max = tv.v
		case min != 0:
			gap = true
		}
	}
	if min == 0 {
		return 0, 0, fmt.Errorf("protocols=%s leaves no protocol", s)
	}
	return min, max, nil
}
