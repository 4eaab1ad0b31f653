package access

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/postern/postern"
)

const (
	// maxLine bounds one line; makemap's own buffer is far smaller.
	maxLine = 1 << 20
	// maxErrors stops a hopeless file from producing an endless report.
	maxErrors = 100
	// maxNumber bounds numeric values so milliseconds fit a time.Duration
	// and counts fit an int on every platform.
	maxNumber = math.MaxInt32
	// greetTimeoutMS is the 5-minute initial-220 timeout clients use
	// (RFC 5321 §4.5.3.2.1): a longer greet pause loses every client.
	greetTimeoutMS = 300000
)

// canonicalTag returns the canonical spelling of a tag Postern
// interprets, given in lower case.
func canonicalTag(lower string) (string, bool) {
	switch lower {
	case "connect":
		return TagConnect, true
	case "from":
		return TagFrom, true
	case "to":
		return TagTo, true
	case "greetpause":
		return TagGreetPause, true
	case "clientrate":
		return TagClientRate, true
	case "clientconn":
		return TagClientConn, true
	}
	return "", false
}

// Load reads and parses the access file at path (the text source, not the
// makemap database).
func Load(path string) (*Map, []Warning, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("access: %w", err)
	}
	return Parse(bytes.NewReader(b), path)
}

// Parse reads an access file in the makemap source format: one
// "key<white space>value" per line; lines starting with '#' and blank lines
// are skipped; keys are case-insensitive. file names the source in errors
// and warnings ("access:12: ..."). All errors found are returned together
// (errors.Join of *ParseError, each wrapping ErrSyntax); warnings are
// returned even when there are errors.
func Parse(r io.Reader, file string) (*Map, []Warning, error) {
	p := &parser{file: file, m: &Map{file: file, tables: make(map[string]*table)}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() && len(p.errs) < maxErrors {
		n++
		p.line(n, sc.Text())
	}
	if err := sc.Err(); err != nil {
		if !errors.Is(err, bufio.ErrTooLong) {
			return nil, p.warns, fmt.Errorf("access: reading %s: %w", file, err)
		}
		p.errorf(n+1, "line longer than %d bytes", maxLine)
	}
	if len(p.errs) >= maxErrors {
		p.errs = append(p.errs, &ParseError{File: file, Line: n, Msg: "too many errors, stopped"})
	}
	switch len(p.errs) {
	case 0:
		return p.m, p.warns, nil
	case 1:
		return nil, p.warns, p.errs[0]
	}
	return nil, p.warns, errors.Join(p.errs...)
}

type parser struct {
	file  string
	m     *Map
	warns []Warning
	errs  []error
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &ParseError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.warns = append(p.warns, Warning{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// isSep is makemap's separator test (isspace).
func isSep(c byte) bool {
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == '\n'
}

func (p *parser) line(n int, s string) {
	if n == 1 {
		s = strings.TrimPrefix(s, "\ufeff")
	}
	s = strings.TrimSuffix(s, "\r")
	if strings.TrimSpace(s) == "" || s[0] == '#' {
		return
	}
	if isSep(s[0]) {
		if strings.TrimSpace(s)[0] == '#' {
			return
		}
		// makemap reports "leading space" and leaves the line out of the
		// database; doing the same keeps a working file working.
		p.warnf(n, "line starts with white space and is ignored (makemap skips it too)")
		return
	}
	i := 0
	for i < len(s) && !isSep(s[i]) {
		i++
	}
	rawKey, value := s[:i], strings.TrimSpace(s[i:])
	if value == "" {
		p.errorf(n, "%s: no value", rawKey)
		return
	}
	e := Entry{Key: rawKey, File: p.file, Line: n, Raw: value}
	tag, key, tagged := splitTag(rawKey)
	if !tagged {
		p.add(n, "", e, value)
		return
	}
	e.Key = key
	if canon, ok := canonicalTag(strings.ToLower(tag)); ok {
		e.Tag = canon
		p.add(n, strings.ToLower(tag), e, value)
		return
	}
	// Sites carry tags for features Postern lacks (Spam:, Srv_Features:,
	// TLS_Clt: ...): keep them, say so, never fail. AuthInfo: entries are
	// the delivery side's logins (route.ParseAuthInfo reads their Raw
	// value); they are kept as written, without a warning.
	e.Tag = tag
	if strings.EqualFold(tag, TagAuthInfo) {
		e.Tag = TagAuthInfo
	} else {
		p.warnf(n, "tag %s: not used by postern (entry kept)", tag)
	}
	if a, err := parseAction(value); err == "" {
		e.Action, e.Reply, e.Reason = a.Action, a.Reply, a.Reason
	} else if num, ok := parseNumber(value); ok {
		e.Action, e.Number = ActionValue, num
	}
	p.insert(n, strings.ToLower(tag), e, keyInfo{kind: kindName, norm: strings.ToLower(key)})
}

// splitTag splits "Tag:key". A tag is a word starting with a letter;
// "IPv6:" starts an address, not a tag, and so does a bare IPv6 address
// such as "fe80::1".
func splitTag(raw string) (tag, key string, ok bool) {
	c := strings.IndexByte(raw, ':')
	if c <= 0 {
		return "", raw, false
	}
	t := raw[:c]
	if !isTagName(t) || strings.EqualFold(t, "ipv6") || isBareIPv6(raw) {
		return "", raw, false
	}
	return t, raw[c+1:], true
}

func isTagName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

func isBareIPv6(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Is6()
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Is6()
	}
	return false
}

// numericTag reports tags whose value is a number, not an action.
func numericTag(tagLower string) bool {
	return tagLower == "greetpause" || tagLower == "clientrate" || tagLower == "clientconn"
}

// add validates a key and value of an interpreted tag (or untagged) and
// inserts the entry.
func (p *parser) add(n int, tagLower string, e Entry, value string) {
	ki, err := classifyKey(e.Key)
	if err != "" {
		p.errorf(n, "%s: %s", e.tagKey(), err)
		return
	}
	if numericTag(tagLower) && strings.EqualFold(value, "SKIP") {
		// SKIP is a lookup control, not an action: sendmail's LookUpDomain
		// and LookUpAddress honour it under any tag.
		e.Action = ActionSkip
	} else if numericTag(tagLower) {
		num, ok := parseNumber(value)
		if !ok {
			if _, aerr := parseAction(value); aerr == "" {
				p.errorf(n, "%s: takes a number (%s), not the action %q", e.tagKey(), numberMeaning(tagLower), value)
			} else {
				p.errorf(n, "%s: value %q is not a number (%s)", e.tagKey(), value, numberMeaning(tagLower))
			}
			return
		}
		if num > maxNumber {
			p.errorf(n, "%s: value %s is out of range", e.tagKey(), value)
			return
		}
		e.Action, e.Number = ActionValue, num
		if tagLower == "greetpause" && num >= greetTimeoutMS {
			p.warnf(n, "%s: a greet pause of %d ms reaches the 5-minute greeting timeout of clients (RFC 5321 §4.5.3.2.1); every client would give up", e.tagKey(), num)
		}
	} else {
		a, aerr := parseAction(value)
		if aerr != "" {
			p.errorf(n, "%s: %s", e.tagKey(), aerr)
			return
		}
		e.Action, e.Reply, e.Reason = a.Action, a.Reply, a.Reason
	}
	for _, w := range keyWarnings(tagLower, e, ki) {
		p.warnf(n, "%s", w)
	}
	p.insert(n, tagLower, e, ki)
}

// tagKey is the key with its tag, as written, for messages.
func (e Entry) tagKey() string {
	switch {
	case e.Tag == "":
		return e.Key
	case e.Key == "":
		return e.Tag + ": (empty key)"
	}
	return e.Tag + ":" + e.Key
}

func numberMeaning(tagLower string) string {
	switch tagLower {
	case "greetpause":
		return "milliseconds"
	case "clientrate":
		return "connections per rate window, 0 = unlimited"
	}
	return "concurrent connections, 0 = unlimited"
}

// insert adds e unless its key is already present: makemap keeps the first
// of duplicate keys and complains, so the first wins here too.
func (p *parser) insert(n int, tagLower string, e Entry, ki keyInfo) {
	t := p.m.tables[tagLower]
	if t == nil {
		t = &table{names: make(map[string]int32)}
		p.m.tables[tagLower] = t
	}
	idx := int32(len(p.m.entries))
	var first int32
	dup := false
	switch ki.kind {
	case kindName:
		if i, ok := t.names[ki.norm]; ok {
			first, dup = i, true
		} else {
			t.names[ki.norm] = idx
		}
	case kindNet, kindLiteral:
		nt := &t.nets
		if ki.kind == kindLiteral {
			nt = &t.lits
		}
		if i, ok := nt.m[ki.pfx]; ok {
			first, dup = i, true
		} else {
			nt.add(ki.pfx, idx)
		}
	}
	if dup {
		f := p.m.entries[first]
		p.warnf(n, "duplicate key %s: the entry at %s wins, this one is ignored (as with makemap)", e.tagKey(), f.Source())
		return
	}
	p.m.entries = append(p.m.entries, e)
}

// keyInfo is a classified key.
type keyInfo struct {
	kind keyKind
	norm string       // kindName: lower-case key
	pfx  netip.Prefix // kindNet, kindLiteral
	// single is set for a full IPv4 address ending in .0 or an IPv6
	// address ending in "::": the key sendmail would take for the network
	// the author probably meant ("192.168.1", "IPv6:2001:db8"), or "-"
	// when sendmail has no key for it (0.0.0.0).
	single string
	// note is a further warning about the key's form.
	note string
}

// classifyKey decides how a key (without tag) is matched. It returns an
// error text for a key that claims to be an address but is malformed.
func classifyKey(key string) (keyInfo, string) {
	lower := strings.ToLower(key)
	if strings.HasPrefix(lower, `"`) {
		return quotedKey(lower)
	}
	if len(lower) >= 2 && lower[0] == '[' && lower[len(lower)-1] == ']' {
		ki, isNet, err := parseNetKey(lower[1 : len(lower)-1])
		if err != "" {
			return keyInfo{}, err
		}
		if isNet {
			ki.kind = kindLiteral
			return ki, ""
		}
		return keyInfo{kind: kindName, norm: lower}, ""
	}
	ki, isNet, err := parseNetKey(lower)
	if err != "" {
		return keyInfo{}, err
	}
	if isNet {
		ki.kind = kindNet
		return ki, ""
	}
	ki = keyInfo{kind: kindName, norm: lower, note: ki.note}
	// Lookups drop the trailing dot of a domain, so a key with one could
	// never match; take it as the author meant it.
	if len(lower) > 1 && strings.HasSuffix(lower, ".") && !strings.HasSuffix(lower, "..") {
		ki.norm = strings.TrimSuffix(lower, ".")
		ki.note = "trailing dot ignored"
	}
	if isBareIPv6(lower) {
		ki.note = "a bare IPv6 address never matches (sendmail writes IPv6 keys as IPv6:" + lower + ")"
	}
	return ki, ""
}

// quotedKey takes a key whose local part is quoted as SMTP quotes it
// ("ceo(x)"@example.com, "ceo(x)"@): lookups are given the canonical form
// of an address (postern.Address), so the key is kept unquoted.
func quotedKey(lower string) (keyInfo, string) {
	userOnly := strings.HasSuffix(lower, "@")
	probe := lower
	if userOnly {
		probe += "x.invalid"
	}
	a, err := postern.ParseMailbox(probe)
	if err != nil {
		return keyInfo{}, fmt.Sprintf("malformed quoted local part in %q", lower)
	}
	norm := a.Local + "@"
	if !userOnly {
		norm += a.Domain
	}
	return keyInfo{kind: kindName, norm: norm}, ""
}

// parseNetKey recognises network keys: a.b.c.d and its prefixes a.b.c,
// a.b, a (sendmail), IPv6:<address or leading 16-bit groups> (sendmail),
// and CIDR a.b.c.d/n or IPv6:<addr>/n (Postern; the form sendmail's
// contrib/cidrexpand takes). isNet false means "not an address, match as a
// name"; err is set for something that is an address but malformed.
func parseNetKey(s string) (ki keyInfo, isNet bool, err string) {
	if len(s) >= 5 && strings.EqualFold(s[:5], "ipv6:") {
		return parseIPv6Key(s[5:])
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		a, aerr := netip.ParseAddr(s[:i])
		if aerr != nil || !a.Is4() {
			return keyInfo{}, false, ""
		}
		pf, perr := netip.ParsePrefix(s)
		if perr != nil {
			return keyInfo{}, false, fmt.Sprintf("malformed network %q", s)
		}
		ki.pfx = pf.Masked()
		if ki.pfx != pf {
			ki.note = "host bits set in " + s + "; taken as " + ki.pfx.String()
		}
		return ki, true, ""
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return keyInfo{}, false, ""
	}
	var b [4]byte
	for i, part := range parts {
		if part == "" || len(part) > 3 {
			return keyInfo{}, false, ""
		}
		v := 0
		for j := 0; j < len(part); j++ {
			if part[j] < '0' || part[j] > '9' {
				return keyInfo{}, false, ""
			}
			v = v*10 + int(part[j]-'0')
		}
		if v > 255 {
			return keyInfo{}, false, ""
		}
		if len(part) > 1 && part[0] == '0' {
			// sendmail compares text: 192.168.01 never equals 192.168.1.
			return keyInfo{note: "leading zeros: this key never matches an address"}, false, ""
		}
		b[i] = byte(v)
	}
	ki.pfx = netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts))
	if len(parts) == 4 && parts[3] == "0" {
		ki.single = v4Network(parts)
	}
	return ki, true, ""
}

// v4Network suggests the network meant by a.b.c.0 in the form sendmail's
// access map takes (leading octets: 192.168.1, 10); "-" for 0.0.0.0,
// which no sendmail key covers. The CIDR form Postern also reads is not
// suggested: a file that must keep working under sendmail cannot use it.
func v4Network(parts []string) string {
	k := len(parts)
	for k > 0 && parts[k-1] == "0" {
		k--
	}
	if k == 0 {
		return "-"
	}
	return strings.Join(parts[:k], ".")
}

// parseIPv6Key parses what follows "IPv6:". With "::", an embedded IPv4
// address or all eight groups it is one address; fewer groups are a network
// of 16 bits per group, as sendmail strips groups from the end.
func parseIPv6Key(s string) (ki keyInfo, isNet bool, err string) {
	if s == "" {
		return keyInfo{}, false, "empty IPv6 address"
	}
	if strings.ContainsRune(s, '%') {
		return keyInfo{}, false, fmt.Sprintf("IPv6 zone not allowed in %q", s)
	}
	if strings.Contains(s, "/") {
		pf, perr := netip.ParsePrefix(s)
		if perr != nil || !pf.Addr().Is6() {
			return keyInfo{}, false, fmt.Sprintf("malformed IPv6 network %q", s)
		}
		ki.pfx = unmapPrefix(pf.Masked())
		if pf.Masked() != pf {
			ki.note = "host bits set in IPv6:" + s + "; taken as IPv6:" + pf.Masked().String()
		}
		return ki, true, ""
	}
	if strings.Contains(s, "::") || strings.Contains(s, ".") || strings.Count(s, ":") == 7 {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || !a.Is6() {
			return keyInfo{}, false, fmt.Sprintf("malformed IPv6 address %q", s)
		}
		ki.pfx = unmapPrefix(netip.PrefixFrom(a, 128))
		if head := strings.TrimSuffix(s, "::"); head != s && head != "" && !strings.Contains(head, "::") && !a.Is4In6() {
			ki.single = "IPv6:" + head
		}
		return ki, true, ""
	}
	groups := strings.Split(s, ":")
	if len(groups) > 8 {
		return keyInfo{}, false, fmt.Sprintf("malformed IPv6 address %q: more than 8 groups", s)
	}
	var b [16]byte
	for i, g := range groups {
		if g == "" || len(g) > 4 {
			return keyInfo{}, false, fmt.Sprintf("malformed IPv6 prefix %q", s)
		}
		v, perr := strconv.ParseUint(g, 16, 16)
		if perr != nil {
			return keyInfo{}, false, fmt.Sprintf("malformed IPv6 prefix %q", s)
		}
		b[2*i], b[2*i+1] = byte(v>>8), byte(v)
	}
	ki.pfx = unmapPrefix(netip.PrefixFrom(netip.AddrFrom16(b), 16*len(groups)))
	return ki, true, ""
}

// unmapPrefix turns ::ffff:a.b.c.d/n into a.b.c.d/(n-96): client
// addresses are unmapped before lookup.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// keyWarnings lists what is odd about a valid entry.
func keyWarnings(tagLower string, e Entry, ki keyInfo) []string {
	var w []string
	tk := e.tagKey()
	if ki.note != "" {
		w = append(w, tk+": "+ki.note)
	}
	switch {
	case ki.single == "-":
		w = append(w, fmt.Sprintf("%s matches only the single address %s, as in sendmail", tk, ki.pfx.Addr()))
	case ki.single != "":
		tagp := ""
		if e.Tag != "" {
			tagp = e.Tag + ":"
		}
		net := ki.single
		if ki.kind == kindLiteral {
			net = "[" + net + "]"
		}
		w = append(w, fmt.Sprintf("%s matches only the single address %s, as in sendmail; the network is written %s%s",
			tk, ki.pfx.Addr(), tagp, net))
	}
	hasAt := ki.kind == kindName && strings.Contains(ki.norm, "@")
	switch tagLower {
	case "from", "to":
		if ki.kind == kindNet {
			w = append(w, fmt.Sprintf("%s: %s: keys are matched against envelope addresses, so an IP address never matches; an address literal is written %s:[%s], the connecting client is matched by Connect:",
				tk, e.Tag, e.Tag, e.Key))
		}
		if ki.kind == kindName && ki.norm == "" {
			w = append(w, tk+": an empty key is a default only for GreetPause:, ClientRate: and ClientConn:; this entry never matches")
		}
		if tagLower == "from" && e.Action == ActionRelay {
			w = append(w, tk+": RELAY on From: does not permit relaying (sendmail needs FEATURE(`relay_mail_from')); it acts as OK")
		}
	case "connect", "greetpause":
		if hasAt {
			w = append(w, fmt.Sprintf("%s: %s: keys are host names and IP addresses; an e-mail address never matches", tk, e.Tag))
		}
		if tagLower == "connect" && ki.kind == kindName && ki.norm == "" {
			w = append(w, tk+": an empty key is a default only for GreetPause:, ClientRate: and ClientConn:; this entry never matches")
		}
	case "clientrate", "clientconn":
		if ki.kind == kindLiteral || ki.kind == kindName && ki.norm != "" {
			w = append(w, fmt.Sprintf("%s: %s: is looked up by client IP address only (as in sendmail); this key never matches", tk, e.Tag))
		}
	}
	if e.Action == ActionSkip && hasAt {
		w = append(w, tk+": SKIP applies to host names and networks (cf/README); on an address it only ends the search")
	}
	return w
}

// parsedAction is the result of parseAction.
type parsedAction struct {
	Action Action
	Reply  postern.Reply
	Reason string
}

// parseAction parses an action value. It returns an error text, "" if ok.
func parseAction(v string) (parsedAction, string) {
	switch strings.ToUpper(v) {
	case "OK":
		return parsedAction{Action: ActionOK}, ""
	case "RELAY":
		return parsedAction{Action: ActionRelay}, ""
	case "REJECT":
		return parsedAction{Action: ActionReject}, ""
	case "DISCARD":
		return parsedAction{Action: ActionDiscard}, ""
	case "SKIP":
		return parsedAction{Action: ActionSkip}, ""
	}
	if hasPrefixFold(v, "ERROR:") {
		rep, err := parseErrorValue(v[len("ERROR:"):])
		if err != "" {
			return parsedAction{}, err
		}
		return parsedAction{Action: ActionError, Reply: rep}, ""
	}
	if hasPrefixFold(v, "QUARANTINE:") {
		reason := unquote(strings.TrimSpace(v[len("QUARANTINE:"):]))
		if reason == "" {
			return parsedAction{}, "QUARANTINE: needs a reason"
		}
		return parsedAction{Action: ActionQuarantine, Reason: reason}, ""
	}
	// The deprecated form: the value is a reply, "550 text" (cf/README).
	if u := unquote(v); len(u) >= 3 && isDigits(u[:3]) && (len(u) == 3 || isSep(u[3])) {
		rep, err := parseReplyText(u, postern.EnhancedCode{})
		if err != "" {
			return parsedAction{}, err
		}
		return parsedAction{Action: ActionError, Reply: rep}, ""
	}
	if isDigits(v) {
		return parsedAction{}, fmt.Sprintf("the number %s is not an action (OK, RELAY, REJECT, DISCARD, SKIP, ERROR:..., QUARANTINE:...)", v)
	}
	return parsedAction{}, fmt.Sprintf("unknown action %q (want OK, RELAY, REJECT, DISCARD, SKIP, ERROR:..., QUARANTINE:... or a 4xx/5xx reply)", v)
}

// parseErrorValue parses what follows "ERROR:": [D.S.N:]NNN text, where
// the whole or the text may be in double quotes.
func parseErrorValue(s string) (postern.Reply, string) {
	s = strings.TrimSpace(s)
	var esc postern.EnhancedCode
	if c := strings.IndexByte(s, ':'); c > 0 && looksESC(s[:c]) {
		e, err := postern.ParseEnhancedCode(s[:c])
		if err != nil || e[0] == 2 {
			return postern.Reply{}, fmt.Sprintf("bad enhanced status code %q (want 4.x.x or 5.x.x, RFC 3463)", s[:c])
		}
		esc = e
		s = strings.TrimSpace(s[c+1:])
	}
	s = unquote(s)
	if len(s) < 3 || !isDigits(s[:3]) || len(s) > 3 && !isSep(s[3]) {
		return postern.Reply{}, fmt.Sprintf("ERROR: needs a reply code, as in ERROR:550 text or ERROR:5.7.1:550 text; got %q", s)
	}
	return parseReplyText(s, esc)
}

// looksESC reports a D.S.N-shaped word, so "ERROR:550 x:y" is not taken
// for one.
func looksESC(s string) bool {
	if strings.Count(s, ".") != 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}

// parseReplyText parses "NNN text" whose code must be 4xx or 5xx; a
// leading enhanced code in the text is taken as sendmail's error mailer
// does.
func parseReplyText(s string, esc postern.EnhancedCode) (postern.Reply, string) {
	code, _ := strconv.Atoi(s[:3])
	if code < 400 || code > 599 {
		return postern.Reply{}, fmt.Sprintf("reply code %d must be 4xx or 5xx", code)
	}
	text := unquote(strings.TrimSpace(s[3:]))
	if esc.IsZero() {
		if w, rest, _ := strings.Cut(text, " "); looksESC(w) {
			if e, err := postern.ParseEnhancedCode(w); err == nil && e[0] == code/100 {
				esc, text = e, strings.TrimSpace(rest)
			}
		}
	}
	if !esc.IsZero() && esc[0] != code/100 {
		return postern.Reply{}, fmt.Sprintf("enhanced status code %s does not match reply code %d (the class must be %d)", esc, code, code/100)
	}
	return postern.NewReply(code, esc, text), ""
}

// parseNumber parses a non-negative decimal number; one too long to
// represent comes back as MaxInt64 so the caller reports it as out of range.
func parseNumber(s string) (int64, bool) {
	if !isDigits(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return math.MaxInt64, true
	}
	return n, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
