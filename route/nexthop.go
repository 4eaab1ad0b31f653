package route

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/postern/postern"
)

// Kind is the delivery method of a next hop.
type Kind uint8

// The kinds of next hop.
const (
	// KindSMTP delivers over SMTP: the sendmail mailers esmtp, smtp,
	// smtp8, dsmtp and relay.
	KindSMTP Kind = iota + 1
	// KindLMTP delivers over LMTP (RFC 2033) to a host or a Unix socket.
	KindLMTP
	// KindLocal delivers into Maildir folders on this machine.
	KindLocal
	// KindError answers every recipient with a fixed reply.
	KindError
)

var kindNames = [...]string{"", "smtp", "lmtp", "local", "error"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// mailerKinds are the mailer names a mailertable may use. sendmail's
// SMTP mailers differ in details (8-bit handling, EHLO or HELO) that
// go-smtp's client settles by itself: EHLO first, HELO when refused.
var mailerKinds = map[string]Kind{
	"esmtp": KindSMTP, "smtp": KindSMTP, "smtp8": KindSMTP, "dsmtp": KindSMTP, "relay": KindSMTP,
	"lmtp": KindLMTP, "local": KindLocal, "error": KindError,
}

// Default ports: SMTP (RFC 5321 §4.5.4.2 … port 25) and LMTP, which has
// no assigned port; 24 is what Postfix and Cyrus use.
const (
	DefaultSMTPPort = 25
	DefaultLMTPPort = 24
)

// Host is one host of a next hop.
type Host struct {
	// Name is the host name in lower case without a trailing dot, or the
	// address of a literal.
	Name string
	// Addr is set for an address literal ("[192.0.2.1]",
	// "[IPv6:2001:db8::1]").
	Addr netip.Addr
	// Port is the TCP port; 0 means the mailer's default.
	Port uint16
	// NoMX is set for a bracketed name or an address: its A/AAAA records
	// are used, not its MX records.
	NoMX bool
	// Socket is the path of a Unix-domain socket (LMTP only).
	Socket string
}

// String returns the host in mailertable syntax.
func (h Host) String() string {
	if h.Socket != "" {
		return h.Socket
	}
	var s string
	switch {
	case h.Addr.Is4():
		s = "[" + h.Addr.String() + "]"
	case h.Addr.IsValid():
		s = "[IPv6:" + h.Addr.String() + "]"
	case h.NoMX:
		s = "[" + h.Name + "]"
	default:
		s = h.Name
	}
	if h.Port != 0 {
		s += ":" + strconv.Itoa(int(h.Port))
	}
	return s
}

// NextHop says how and where mail goes: the right-hand side of a
// mailertable line, the smart host, or the MX route of a domain. A
// NextHop is a value; its slices must not be modified.
type NextHop struct {
	// Mailer is the mailer name in lower case (esmtp, smtp, relay, lmtp,
	// local, error, …).
	Mailer string
	Kind   Kind
	// Hosts are tried in order, each expanded by MX unless NoMX (sendmail
	// takes a colon-separated list, "esmtp:[a]:[b]"). Empty for an SMTP
	// hop means the recipient's domain, by MX.
	Hosts []Host
	// User is the user of "local:user" (the Maildir folder), or the
	// address every recipient is rewritten to for "smtp:user@host".
	User string
	// Reply is the answer of an error hop.
	Reply postern.Reply
}

// String returns the hop in mailertable syntax; it is also its
// destination key.
func (h NextHop) String() string {
	var b strings.Builder
	b.WriteString(h.Mailer)
	b.WriteByte(':')
	switch h.Kind {
	case KindLocal:
		b.WriteString(h.User)
	case KindError:
		if !h.Reply.Enhanced.IsZero() {
			b.WriteString(h.Reply.Enhanced.String())
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(h.Reply.Code))
		if t := h.Reply.Text(); t != "" {
			b.WriteByte(' ')
			b.WriteString(t)
		}
	default:
		if h.User != "" {
			b.WriteString(h.User)
			b.WriteByte('@')
		}
		for i, hh := range h.Hosts {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(hh.String())
		}
	}
	return b.String()
}

// ParseNextHop parses the right-hand side of a mailertable line:
//
//	esmtp:[192.168.1.1]          no MX lookup
//	smtp:mail.example.com        MX lookup of mail.example.com
//	smtp:mail.example.com:2525   with a port
//	relay:[a.example]:[b.example] a list, tried in order
//	esmtp:[IPv6:2001:db8::25]
//	smtp:postmaster@mailhub.example  every recipient becomes postmaster@mailhub.example
//	lmtp:store.example:24  lmtp:/run/dovecot/lmtp
//	local:  local:user
//	error:5.7.1:550 Relaying denied  error:550 Relaying denied
//	error:nouser User unknown
//
// An SMTP mailer with nothing after the colon ("esmtp:") delivers to the
// recipient's own domain by MX.
func ParseNextHop(s string) (NextHop, error) {
	s = strings.TrimSpace(s)
	mailer, rest, ok := strings.Cut(s, ":")
	if !ok {
		return NextHop{}, fmt.Errorf("%w: %q: want mailer:host", ErrSyntax, s)
	}
	mailer = strings.ToLower(strings.TrimSpace(mailer))
	kind, ok := mailerKinds[mailer]
	if !ok {
		return NextHop{}, fmt.Errorf("%w: unsupported mailer %q", ErrSyntax, mailer)
	}
	h := NextHop{Mailer: mailer, Kind: kind}
	var err error
	switch kind {
	case KindError:
		h.Reply, err = parseErrorReply(rest)
	case KindLocal:
		h.User, err = parseLocalUser(rest)
	case KindLMTP:
		h.Hosts, err = parseLMTPHosts(rest)
	default:
		h.User, h.Hosts, err = parseSMTPHosts(rest)
	}
	if err != nil {
		return NextHop{}, err
	}
	return h, nil
}

func parseLocalUser(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if s == "." || s == ".." || strings.ContainsAny(s, "/\\") || hasCtl(s) || strings.ContainsAny(s, " \t") {
		return "", fmt.Errorf("%w: bad local user %q", ErrSyntax, s)
	}
	return s, nil
}

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// sysexitReplies are the symbolic codes of sendmail's older error mailer
// syntax ("error:nouser User unknown").
var sysexitReplies = map[string]struct {
	code int
	esc  postern.EnhancedCode
}{
	"nouser":      {550, postern.ESC(5, 1, 1)},
	"nohost":      {550, postern.ESC(5, 1, 2)},
	"unavailable": {550, postern.ESC(5, 0, 0)},
	"tempfail":    {451, postern.ESC(4, 0, 0)},
}

const defaultErrorText = "Delivery refused by the mailertable"

// parseErrorReply parses "D.S.N:NNN text", "NNN text" (text may start
// with an enhanced code) and "sysexit text".
func parseErrorReply(s string) (postern.Reply, error) {
	s = strings.TrimSpace(s)
	var esc postern.EnhancedCode
	if head, tail, ok := strings.Cut(s, ":"); ok && !strings.ContainsAny(head, " \t") {
		e, err := postern.ParseEnhancedCode(head)
		if err != nil {
			return postern.Reply{}, fmt.Errorf("%w: error mailer: bad status code %q", ErrSyntax, head)
		}
		esc, s = e, strings.TrimSpace(tail)
	}
	word, text, _ := strings.Cut(s, " ")
	text = strings.TrimSpace(text)
	if hasCtl(strings.ReplaceAll(text, "\t", " ")) {
		return postern.Reply{}, fmt.Errorf("%w: error mailer: control character in text", ErrSyntax)
	}
	if se, ok := sysexitReplies[strings.ToLower(word)]; ok && esc.IsZero() {
		if text == "" {
			text = defaultErrorText
		}
		return postern.NewReply(se.code, se.esc, text), nil
	}
	if len(word) != 3 || strings.Trim(word, "0123456789") != "" {
		return postern.Reply{}, fmt.Errorf("%w: error mailer: want a 4xx or 5xx reply code, got %q", ErrSyntax, word)
	}
	code, _ := strconv.Atoi(word)
	if code < 400 || code > 599 {
		return postern.Reply{}, fmt.Errorf("%w: error mailer: reply code %d is not 4xx or 5xx", ErrSyntax, code)
	}
	if text == "" {
		text = defaultErrorText
	}
	// The text may carry its own enhanced code ("550 5.7.1 Denied"):
	// postern's reply parser takes it when its class matches.
	r, err := postern.ParseReplyString(word + " " + text)
	if err != nil {
		return postern.Reply{}, fmt.Errorf("%w: error mailer: %v", ErrSyntax, err)
	}
	if r.Text() == "" {
		r.Lines = []string{defaultErrorText} // the text was only an enhanced code
	}
	if !esc.IsZero() {
		if esc[0] != code/100 {
			return postern.Reply{}, fmt.Errorf("%w: error mailer: status %s does not match reply code %d", ErrSyntax, esc, code)
		}
		r.Enhanced = esc
	}
	return r, nil
}

// splitHostList splits at colons outside square brackets.
func splitHostList(s string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			if depth > 0 {
				return nil, fmt.Errorf("%w: nested '[' in %q", ErrSyntax, s)
			}
			depth++
		case ']':
			if depth == 0 {
				return nil, fmt.Errorf("%w: unbalanced ']' in %q", ErrSyntax, s)
			}
			depth--
		case ':':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%w: unbalanced '[' in %q", ErrSyntax, s)
	}
	return append(parts, s[start:]), nil
}

// parseHosts parses a colon-separated host list in which a number after
// a host is that host's port.
func parseHosts(s string) ([]Host, error) {
	parts, err := splitHostList(s)
	if err != nil {
		return nil, err
	}
	var hosts []Host
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p != "" && strings.Trim(p, "0123456789") == "" {
			if len(hosts) == 0 || hosts[len(hosts)-1].Port != 0 {
				return nil, fmt.Errorf("%w: port %s without a host in %q", ErrSyntax, p, s)
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%w: bad port %q", ErrSyntax, p)
			}
			hosts[len(hosts)-1].Port = uint16(n)
			continue
		}
		h, err := parseHost(p)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

func parseHost(p string) (Host, error) {
	if p == "" {
		return Host{}, fmt.Errorf("%w: empty host", ErrSyntax)
	}
	if strings.HasPrefix(p, "[") {
		if !strings.HasSuffix(p, "]") || len(p) < 3 {
			return Host{}, fmt.Errorf("%w: bad bracketed host %q", ErrSyntax, p)
		}
		in := p[1 : len(p)-1]
		if len(in) > 5 && strings.EqualFold(in[:5], "IPv6:") {
			a, err := netip.ParseAddr(in[5:])
			if err != nil || !a.Is6() || a.Zone() != "" {
				return Host{}, fmt.Errorf("%w: bad IPv6 literal %q", ErrSyntax, p)
			}
			// An IPv4-mapped literal ([IPv6:::ffff:127.0.0.1]) is valid
			// (RFC 5321 §4.1.3) and is the IPv4 address: unmapped, so
			// the loop check and the address family see what it is.
			a = a.Unmap()
			return Host{Name: a.String(), Addr: a, NoMX: true}, nil
		}
		if a, err := netip.ParseAddr(in); err == nil && a.Zone() == "" {
			a = a.Unmap()
			return Host{Name: a.String(), Addr: a, NoMX: true}, nil
		}
		name, err := normalizeDomain(in)
		if err != nil {
			return Host{}, err
		}
		return Host{Name: name, NoMX: true}, nil
	}
	if a, err := netip.ParseAddr(p); err == nil && a.Zone() == "" {
		// A bare address: sendmail would look up MX records for it and
		// fail; it can only mean the address.
		a = a.Unmap()
		return Host{Name: a.String(), Addr: a, NoMX: true}, nil
	}
	name, err := normalizeDomain(p)
	if err != nil {
		return Host{}, err
	}
	return Host{Name: name}, nil
}

// normalizeDomain checks a host name (letters, digits, hyphens and
// underscores in labels of at most 63 bytes, at most 253 in all; UTF-8
// allowed for internationalised names) and returns it in lower case
// without a trailing dot.
func normalizeDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	if d == "" || len(d) > 253 {
		return "", fmt.Errorf("%w: bad host name %q", ErrSyntax, s)
	}
	// RFC 3696 §2: a top-level label is never all digits; such a name
	// would read as a port or a malformed address.
	if last := d[strings.LastIndexByte(d, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		return "", fmt.Errorf("%w: bad host name %q", ErrSyntax, s)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w: bad host name %q", ErrSyntax, s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return "", fmt.Errorf("%w: bad host name %q", ErrSyntax, s)
			}
		}
	}
	return d, nil
}

func parseSMTPHosts(s string) (user string, hosts []Host, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil, nil
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		if i == 0 {
			return "", nil, fmt.Errorf("%w: empty user in %q", ErrSyntax, s)
		}
		user = s[:i]
		if strings.ContainsAny(user, " \t<>[]:") || hasCtl(user) {
			return "", nil, fmt.Errorf("%w: bad user %q", ErrSyntax, user)
		}
		s = s[i+1:]
	}
	hosts, err = parseHosts(s)
	if err != nil {
		return "", nil, err
	}
	if user != "" && len(hosts) != 1 {
		return "", nil, fmt.Errorf("%w: user@host takes exactly one host", ErrSyntax)
	}
	return user, hosts, nil
}

func parseLMTPHosts(s string) ([]Host, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "unix:"); ok {
		s = rest
		if !strings.HasPrefix(s, "/") {
			return nil, fmt.Errorf("%w: LMTP socket %q is not an absolute path", ErrSyntax, s)
		}
	}
	if strings.HasPrefix(s, "/") {
		if hasCtl(s) || strings.ContainsAny(s, " \t") {
			return nil, fmt.Errorf("%w: bad LMTP socket path %q", ErrSyntax, s)
		}
		return []Host{{Name: "localhost", Socket: s, NoMX: true}}, nil
	}
	s = strings.TrimPrefix(s, "inet:")
	if s == "" {
		return nil, fmt.Errorf("%w: LMTP needs a host or a socket", ErrSyntax)
	}
	hosts, err := parseHosts(s)
	if err != nil {
		return nil, err
	}
	for i := range hosts {
		hosts[i].NoMX = true // LMTP goes to the named host, never by MX
	}
	return hosts, nil
}
