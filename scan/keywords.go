package scan

import (
	"fmt"
	"regexp"
	"strconv"
)

// KeywordRule is one keyword or regular-expression rule.
type KeywordRule struct {
	// Name identifies the rule in findings and logs. Required.
	Name string
	// Pattern is an RE2 expression (package regexp: linear time, no
	// backreferences); prefix "(?i)" to ignore case. It is matched
	// against UTF-8 text, whatever charset the message used.
	Pattern string
	// Subject and Body say where to look: the decoded Subject, and the
	// text parts (the visible text of HTML parts). Neither means both.
	Subject bool
	Body    bool
	// Action for a match; ActDefault means ActReject.
	Action Action
}

// KeywordsConfig configures Keywords.
type KeywordsConfig struct {
	Rules []KeywordRule
	// MaxTextBytes bounds the text searched per part; 0 means
	// DefaultMaxTextBytes. The walker keeps no more than its own
	// Limits.MaxTextBytes for URLs, but the whole text for rules.
	MaxTextBytes int
}

type keywordRule struct {
	KeywordRule
	re *regexp.Regexp
}

// Keywords matches keyword rules against walked messages. It is
// immutable and safe for concurrent use.
type Keywords struct {
	rules   []keywordRule
	maxText int
}

// NewKeywords compiles the rules.
func NewKeywords(cfg KeywordsConfig) (*Keywords, error) {
	if cfg.MaxTextBytes < 0 {
		return nil, fmt.Errorf("%w: negative MaxTextBytes", ErrConfig)
	}
	k := &Keywords{maxText: cfg.MaxTextBytes}
	if k.maxText == 0 {
		k.maxText = DefaultMaxTextBytes
	}
	seen := map[string]bool{}
	for i, r := range cfg.Rules {
		if r.Name == "" {
			return nil, fmt.Errorf("%w: keyword rule %d has no name", ErrConfig, i+1)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("%w: keyword rule %q given twice", ErrConfig, r.Name)
		}
		seen[r.Name] = true
		if !r.Action.valid() {
			return nil, fmt.Errorf("%w: keyword rule %q: bad action %v", ErrConfig, r.Name, r.Action)
		}
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%w: keyword rule %q: %v", ErrConfig, r.Name, err)
		}
		if r.Pattern == "" {
			return nil, fmt.Errorf("%w: keyword rule %q has no pattern", ErrConfig, r.Name)
		}
		if !r.Subject && !r.Body {
			r.Subject, r.Body = true, true
		}
		r.Action = r.Action.or(ActReject)
		k.rules = append(k.rules, keywordRule{KeywordRule: r, re: re})
	}
	return k, nil
}

// Match returns a finding for every rule and place (the Subject, a part)
// it matches, in rule order.
func (k *Keywords) Match(c *Content) []Finding {
	var out []Finding
	for _, r := range k.rules {
		if r.Subject {
			if loc := r.re.FindStringIndex(c.Subject); loc != nil {
				out = append(out, Finding{Kind: KeywordMatch, Part: "0", Name: "Subject", Rule: r.Name, Action: r.Action,
					Detail: "matched " + snippet(c.Subject, loc)})
			}
		}
		if !r.Body {
			continue
		}
		for i := range c.Parts {
			p := &c.Parts[i]
			if !p.IsText() {
				continue
			}
			s := p.searchText(k.maxText)
			if loc := r.re.FindStringIndex(s); loc != nil {
				out = append(out, Finding{Kind: KeywordMatch, Part: p.ID, Name: p.FileName, Rule: r.Name, Action: r.Action,
					Detail: "matched " + snippet(s, loc)})
			}
		}
	}
	return out
}

// snippet quotes the match, shortened for logs.
func snippet(s string, loc []int) string {
	m := s[loc[0]:loc[1]]
	if len(m) > 60 {
		m = truncUTF8(m, 60) + "…"
	}
	return strconv.Quote(m)
}
