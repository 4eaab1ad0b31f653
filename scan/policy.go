package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/filewatch"
	"github.com/postern/postern/scan/scanner"
)

// The per-recipient policy types live in scan/scanner (a source such as
// a directory builds them without importing this package); these are
// their names here.

// SpamMode says whether spam filtering applies to a recipient.
type SpamMode = scanner.SpamMode

// Spam modes.
const (
	SpamDefault = scanner.SpamDefault // no entry says: filtering is on
	SpamOn      = scanner.SpamOn
	SpamOff     = scanner.SpamOff
)

// SenderMatch is how a recipient's lists judge a sender.
type SenderMatch = scanner.SenderMatch

// Sender matches.
const (
	SenderUnlisted = scanner.SenderUnlisted
	SenderAllowed  = scanner.SenderAllowed
	SenderDenied   = scanner.SenderDenied
)

// RcptPolicy is the spam policy of one recipient; see scanner.RcptPolicy.
// The zero value is the policy of a recipient no entry names: filtering
// on, the filter's scores, no lists.
type RcptPolicy = scanner.RcptPolicy

func normAddr(a string) string { return scanner.PolicyAddr(a) }

// Policy is a parsed policy file: per-recipient spam settings and sender
// lists. It is immutable and safe for concurrent use. A nil *Policy gives
// every recipient the zero RcptPolicy.
type Policy struct {
	file    string
	entries map[string]RcptPolicy
}

// PolicySource gives the policy in force; *Policy and *PolicyWatcher
// are sources.
type PolicySource interface {
	Current() *Policy
}

// Current returns p itself.
func (p *Policy) Current() *Policy { return p }

// Len returns the number of entries.
func (p *Policy) Len() int {
	if p == nil {
		return 0
	}
	return len(p.entries)
}

// Lookup returns the policy for a recipient address: the entry of the
// address, else of the address without its +detail, else of "@domain",
// else of "@.parent" for each parent domain (nearest first), else "*".
func (p *Policy) Lookup(rcpt string) RcptPolicy {
	if p == nil {
		return RcptPolicy{}
	}
	addr := normAddr(rcpt)
	if e, ok := p.entries[addr]; ok {
		return e
	}
	local, dom := postern.AddrLocal(addr), postern.AddrDomain(addr)
	if i := strings.IndexByte(local, '+'); i > 0 && dom != "" {
		if e, ok := p.entries[local[:i]+"@"+dom]; ok {
			return e
		}
	}
	if dom != "" {
		if e, ok := p.entries["@"+dom]; ok {
			return e
		}
		for d := dom; ; {
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
			if e, ok := p.entries["@."+d]; ok {
				return e
			}
		}
	}
	return p.entries["*"]
}

// LoadPolicy reads and parses a policy file.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return ParsePolicy(bytes.NewReader(b), path)
}

// maxPolicyLine bounds one line of a policy file.
const maxPolicyLine = 1 << 20

// ParsePolicy parses a policy file; file names it in errors. The format,
// one recipient per entry:
//
//	# comment
//	KEY FIELD=VALUE ...
//	    FIELD=VALUE ...     (a line starting with white space continues)
//
// KEY is "user@domain", "@domain", "@.domain" (subdomains) or "*"
// (everyone else). FIELDs: spam=on|off, tag=SCORE, reject=SCORE|off,
// allow=LIST, deny=LIST, where LIST is comma-separated "user@domain",
// "@domain", "@.domain" or "<>"; allow and deny may be repeated.
func ParsePolicy(r io.Reader, file string) (*Policy, error) {
	p := &Policy{file: file, entries: map[string]RcptPolicy{}}
	lines := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxPolicyLine)
	var cur *RcptPolicy
	var curKey string
	n := 0
	flush := func() {
		if cur != nil {
			p.entries[curKey] = *cur
		}
		cur = nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		perr := func(format string, args ...any) error {
			return &ParseError{File: file, Line: n, Msg: fmt.Sprintf(format, args...)}
		}
		if !utf8.ValidString(line) {
			return nil, perr("line is not valid UTF-8")
		}
		fields := strings.Fields(line)
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil {
				return nil, perr("continuation line without an entry above")
			}
		} else {
			flush()
			key, err := policyKey(fields[0])
			if err != nil {
				return nil, perr("%v", err)
			}
			if first, dup := lines[key]; dup {
				return nil, perr("%s given twice (first at line %d)", key, first)
			}
			lines[key] = n
			curKey = key
			cur = &RcptPolicy{Key: key, Source: file + ":" + strconv.Itoa(n)}
			fields = fields[1:]
		}
		for _, f := range fields {
			if err := setField(cur, f); err != nil {
				return nil, perr("%v", err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &ParseError{File: file, Line: n + 1, Msg: "line too long"}
		}
		return nil, fmt.Errorf("scan: read %s: %w", file, err)
	}
	flush()
	return p, nil
}

func policyKey(k string) (string, error) {
	if k == "*" {
		return k, nil
	}
	e, err := scanner.PolicyEntry(k, false)
	if err != nil {
		return "", fmt.Errorf("bad key %q: %v", normAddr(k), err)
	}
	return e, nil
}

func setField(p *RcptPolicy, f string) error {
	name, val, ok := strings.Cut(f, "=")
	if !ok || val == "" {
		return fmt.Errorf("field %q: want name=value", f)
	}
	switch strings.ToLower(name) {
	case "spam":
		switch strings.ToLower(val) {
		case "on", "yes":
			p.Spam = SpamOn
		case "off", "no":
			p.Spam = SpamOff
		default:
			return fmt.Errorf("spam=%s: want on or off", val)
		}
	case "tag":
		s, err := parseScore(val)
		if err != nil {
			return fmt.Errorf("tag=%s: %v", val, err)
		}
		p.TagScore = s
	case "reject":
		if strings.EqualFold(val, "off") {
			p.NeverReject, p.RejectScore = true, 0
			return nil
		}
		s, err := parseScore(val)
		if err != nil {
			return fmt.Errorf("reject=%s: %v", val, err)
		}
		p.RejectScore, p.NeverReject = s, false
	case "allow", "deny":
		for raw := range strings.SplitSeq(val, ",") {
			e, err := scanner.PolicyEntry(raw, true)
			if err != nil {
				return fmt.Errorf("%s entry %q: %v", name, normAddr(raw), err)
			}
			if strings.EqualFold(name, "allow") {
				p.Allow = append(p.Allow, e)
			} else {
				p.Deny = append(p.Deny, e)
			}
		}
	default:
		return fmt.Errorf("unknown field %q (want spam, tag, reject, allow or deny)", name)
	}
	return nil
}

func parseScore(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return 0, errors.New("want a non-zero number")
	}
	return f, nil
}

// PolicyWatcherConfig configures a PolicyWatcher. The zero value is
// usable.
type PolicyWatcherConfig struct {
	// Interval between checks of the file; 0 means 5 seconds.
	Interval time.Duration
	// Logger receives reloads and errors; nil discards.
	Logger *slog.Logger
}

// PolicyWatcher keeps the policy of one file current. It loads the file
// at creation; Run then checks it every Interval and reloads it when its
// size or modification time changed and has stayed the same for one
// more check (so a file being written is not read half done), and its
// content differs. A file that does not parse leaves the previous policy
// in force and is logged with its file and line. Current is safe for
// concurrent use.
type PolicyWatcher struct {
	fw *filewatch.Watcher[*Policy]
}

// NewPolicyWatcher loads path and returns a watcher; it fails if the
// first load fails.
func NewPolicyWatcher(path string, cfg PolicyWatcherConfig) (*PolicyWatcher, error) {
	if path == "" || cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: policy watcher needs a path and a non-negative interval", ErrConfig)
	}
	fw, err := filewatch.New(filewatch.Config[*Policy]{Path: path, What: "scan policy", Kept: "policy", Prefix: "scan",
		Parse: ParsePolicy, Logger: cfg.Logger, Interval: cfg.Interval,
		Loaded: func(_ context.Context, p *Policy) []slog.Attr { return []slog.Attr{slog.Int("entries", p.Len())} }})
	if err != nil {
		return nil, err
	}
	return &PolicyWatcher{fw: fw}, nil
}

// Current returns the policy in force.
func (w *PolicyWatcher) Current() *Policy { return w.fw.Current() }

// Reload reads the file now (for SIGHUP); on error the previous policy
// stays in force.
func (w *PolicyWatcher) Reload() error { return w.fw.Reload() }

// Run checks the file every Interval until ctx is done.
func (w *PolicyWatcher) Run(ctx context.Context) error { return w.fw.Run(ctx) }
