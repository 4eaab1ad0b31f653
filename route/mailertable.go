package route

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

const (
	// maxLine bounds one line of a map file.
	maxLine = 1 << 16
	// maxErrors stops a hopeless file from producing an endless report.
	maxErrors = 100
)

// Entry is one mailertable line.
type Entry struct {
	// Key is the left-hand side in lower case: "host.example",
	// ".example" (every host under example) or "." (everything).
	Key string
	Hop NextHop
	// File and Line say where the entry was read.
	File string
	Line int
}

// Table is a parsed mailertable. It is immutable and safe for concurrent
// use.
type Table struct {
	file    string
	entries map[string]Entry
}

// TableSource gives the mailertable in force: a *Table itself, or a
// *Watcher[*Table] that reloads it when the file changes.
type TableSource interface {
	Current() *Table
}

// Current returns t, so a fixed table is a TableSource.
func (t *Table) Current() *Table { return t }

// Len returns the number of entries.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// File returns the name the table was parsed under.
func (t *Table) File() string { return t.file }

// Lookup finds the entry for a recipient domain with sendmail's rules:
// the domain itself, then ".parent" for each parent domain from the most
// specific (".b.example" matches a.b.example but not b.example), then
// the catch-all ".". Case does not matter.
func (t *Table) Lookup(domain string) (Entry, bool) {
	if t == nil || len(t.entries) == 0 {
		return Entry{}, false
	}
	d, ok := lookupForm(domain)
	if !ok {
		return Entry{}, false
	}
	if e, ok := t.entries[d]; ok {
		return e, true
	}
	if !strings.HasPrefix(d, "[") {
		for i := strings.IndexByte(d, '.'); i >= 0 && i < len(d)-1; {
			if e, ok := t.entries[d[i:]]; ok {
				return e, true
			}
			j := strings.IndexByte(d[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	e, ok := t.entries["."]
	return e, ok
}

// lookupForm puts a recipient domain in the form of the table's keys.
func lookupForm(domain string) (string, bool) {
	if strings.HasPrefix(domain, "[") {
		k, err := literalKey(domain)
		return k, err == nil
	}
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	return d, d != ""
}

// literalKey normalises an address literal: "[192.0.2.1]",
// "[IPv6:2001:db8::1]".
func literalKey(s string) (string, error) {
	h, err := parseHost(s)
	if err != nil || !h.Addr.IsValid() {
		return "", fmt.Errorf("bad address literal %q", s)
	}
	return Host{Name: h.Name, Addr: h.Addr}.String(), nil
}

// normalizeKey checks a left-hand side and returns its lookup form.
func normalizeKey(k string) (string, error) {
	switch {
	case k == ".":
		return ".", nil
	case strings.HasPrefix(k, "["):
		return literalKey(k)
	case strings.HasPrefix(k, "."):
		d, err := normalizeDomain(k[1:])
		if err != nil {
			return "", fmt.Errorf("bad key %q", k)
		}
		return "." + d, nil
	}
	d, err := normalizeDomain(k)
	if err != nil {
		return "", fmt.Errorf("bad key %q", k)
	}
	return d, nil
}

// LoadMailertable reads and parses the mailertable source file at path
// (the text that makemap reads, not the database it writes).
func LoadMailertable(path string) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	return ParseMailertable(bytes.NewReader(b), path)
}

// ParseMailertable reads a mailertable in sendmail's text format: one
// "key<white space>mailer:host" per line; lines starting with '#' and
// blank lines are skipped; keys are case-insensitive. file names the
// source in errors ("mailertable:12: ..."). All errors are returned
// together (errors.Join of *ParseError, each wrapping ErrSyntax); a
// duplicate key is an error, as it is for makemap.
func ParseMailertable(r io.Reader, file string) (*Table, error) {
	t := &Table{file: file, entries: make(map[string]Entry)}
	var errs []error
	errorf := func(line int, format string, args ...any) {
		errs = append(errs, &ParseError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() && len(errs) < maxErrors {
		n++
		key, value, ok := splitMapLine(sc.Text(), n == 1)
		if !ok {
			continue
		}
		if value == "" {
			errorf(n, "key %q has no value", key)
			continue
		}
		k, err := normalizeKey(key)
		if err != nil {
			errorf(n, "%v", err)
			continue
		}
		hop, err := ParseNextHop(value)
		if err != nil {
			errorf(n, "%s", strings.TrimPrefix(err.Error(), ErrSyntax.Error()+": "))
			continue
		}
		if prev, dup := t.entries[k]; dup {
			errorf(n, "duplicate key %q (first on line %d)", key, prev.Line)
			continue
		}
		t.entries[k] = Entry{Key: k, Hop: hop, File: file, Line: n}
	}
	if err := sc.Err(); err != nil {
		if !errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("route: reading %s: %w", file, err)
		}
		errorf(n+1, "line longer than %d bytes", maxLine)
	}
	if len(errs) >= maxErrors {
		errorf(n, "too many errors, stopped")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// splitMapLine splits a makemap line into key and value; ok is false for
// comments and blank lines.
func splitMapLine(s string, first bool) (key, value string, ok bool) {
	if first {
		s = strings.TrimPrefix(s, "\ufeff")
	}
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" || s[0] == '#' {
		return "", "", false
	}
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, "", true
	}
	return s[:i], strings.TrimSpace(s[i:]), true
}

// literalAddr returns the address of a domain literal ("[192.0.2.1]").
func literalAddr(domain string) (netip.Addr, bool) {
	if !strings.HasPrefix(domain, "[") {
		return netip.Addr{}, false
	}
	h, err := parseHost(domain)
	if err != nil || !h.Addr.IsValid() {
		return netip.Addr{}, false
	}
	return h.Addr, true
}
