package route

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/postern/postern"
)

// Recipients is a static list of valid recipients: addresses and
// "@domain" catch-alls. It is immutable and safe for concurrent use.
type Recipients struct {
	file     string
	addrs    map[string]struct{}
	catchAll map[string]struct{}
	domains  map[string]struct{}
}

// RecipientsSource gives the recipients list in force: a *Recipients
// itself, or a *Watcher[*Recipients].
type RecipientsSource interface {
	Current() *Recipients
}

// Current returns r, so a fixed list is a RecipientsSource.
func (r *Recipients) Current() *Recipients { return r }

// Len returns the number of lines that named an address or a domain.
func (r *Recipients) Len() int {
	if r == nil {
		return 0
	}
	return len(r.addrs) + len(r.catchAll)
}

// Covers reports whether the list names any address of domain: only
// then can it call an address unknown.
func (r *Recipients) Covers(domain string) bool {
	if r == nil {
		return false
	}
	_, ok := r.domains[strings.ToLower(strings.TrimSuffix(domain, "."))]
	return ok
}

// Valid reports whether addr is on the list, itself or through its
// domain's catch-all. Case does not matter.
func (r *Recipients) Valid(addr string) bool {
	if r == nil {
		return false
	}
	d := postern.AddrDomain(addr)
	if _, ok := r.catchAll[d]; ok {
		return true
	}
	_, ok := r.addrs[strings.ToLower(postern.AddrLocal(addr))+"@"+d]
	return ok
}

// LoadRecipients reads and parses the recipients file at path.
func LoadRecipients(path string) (*Recipients, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	return ParseRecipients(bytes.NewReader(b), path)
}

// ParseRecipients reads a recipients list: one address per line
// ("user@example.com", angle brackets allowed; a local part that needs
// them in quotes, as in SMTP: "john smith"@example.com) or "@example.com" for
// every address of a domain, optionally followed by white space and a
// value that is ignored (so Postfix local_recipient_maps sources load
// too); '#' starts a comment; blank lines are skipped; case does not
// matter. Errors name file and line and wrap
// ErrSyntax.
func ParseRecipients(rd io.Reader, file string) (*Recipients, error) {
	r := &Recipients{file: file, addrs: map[string]struct{}{}, catchAll: map[string]struct{}{}, domains: map[string]struct{}{}}
	var errs []error
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() && len(errs) < maxErrors {
		n++
		line := sc.Text()
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		line = stripComment(line)
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := r.add(line); err != "" {
			errs = append(errs, &ParseError{File: file, Line: n, Msg: err})
		}
	}
	if err := sc.Err(); err != nil {
		if !errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("route: reading %s: %w", file, err)
		}
		errs = append(errs, &ParseError{File: file, Line: n + 1, Msg: fmt.Sprintf("line longer than %d bytes", maxLine)})
	}
	if len(errs) >= maxErrors {
		errs = append(errs, &ParseError{File: file, Line: n, Msg: "too many errors, stopped"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

func (r *Recipients) add(line string) string {
	// Like a Postfix lookup table, a line may have a value after the
	// address; it is ignored.
	line = firstField(line)
	if strings.HasPrefix(line, "<") != strings.HasSuffix(line, ">") {
		return fmt.Sprintf("unbalanced angle brackets in %q", line)
	}
	a := strings.TrimSuffix(strings.TrimPrefix(line, "<"), ">")
	if strings.HasPrefix(a, `"`) {
		// The wire form: kept in the canonical form the server's lookups
		// use (postern.Address).
		ad, err := postern.ParseMailbox(a)
		if err != nil {
			return fmt.Sprintf("bad quoted address %q", line)
		}
		a = ad.String()
	}
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return fmt.Sprintf("%q is not an address (user@domain) or a domain (@domain)", line)
	}
	local, domain := a[:i], a[i+1:]
	d, err := normalizeDomain(domain)
	if err != nil {
		return fmt.Sprintf("bad domain in %q", line)
	}
	if hasCtl(local) || strings.ContainsAny(local, "<>") {
		return fmt.Sprintf("bad local part in %q", line)
	}
	r.domains[d] = struct{}{}
	if local == "" {
		r.catchAll[d] = struct{}{}
		return ""
	}
	r.addrs[strings.ToLower(local)+"@"+d] = struct{}{}
	return ""
}

// firstField returns the text up to the first white space outside a
// quoted local part.
func firstField(line string) string {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			return line[:i]
		}
	}
	return line
}

// stripComment cuts a '#' comment that starts the line or follows white
// space ('#' is legal inside an address).
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return s[:i]
		}
	}
	return s
}
