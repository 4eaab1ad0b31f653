package access

import (
	"net/netip"
	"strings"
	"time"
)

// A lookup is a list of searches ("components"), each walking from the most
// to the least specific key: a host name and its parent domains, an address
// and its networks, an e-mail address and its +detail variants. Within a
// component the first key found decides. SKIP ends its component as if
// nothing had been found there, and the next component is searched
// (sendmail's LookUpDomain/LookUpAddress return their default on SKIP and
// the calling ruleset goes on). This mirrors the rulesets of sendmail's
// cf/m4/proto.m4 that the comments below name.

// walker carries one lookup: the tagged table, the untagged table (nil when
// the tag requires the tag) and the result so far: the deciding entry, or
// the first SKIP seen, or -1.
type walker struct {
	m   *Map
	tt  *table
	ut  *table
	hit int32
}

// normTag returns the lower-case tag without a trailing colon; the known
// tags come back as constants, sparing lookups an allocation.
func normTag(tag string) string {
	tag = strings.TrimSuffix(tag, ":")
	for _, k := range [...]string{"connect", "from", "to", "greetpause", "clientrate", "clientconn"} {
		if strings.EqualFold(tag, k) {
			return k
		}
	}
	return strings.ToLower(tag)
}

// newWalker prepares a lookup. With untagged, each key is tried with the
// tag and then without (sendmail's "+" mark); otherwise with the tag only
// ("!"). The tag "" means untagged keys only.
func (m *Map) newWalker(tagLower string, untagged bool) walker {
	w := walker{m: m, hit: -1}
	if tagLower != "" {
		w.tt = m.tables[tagLower]
	}
	if untagged || tagLower == "" {
		w.ut = m.tables[""]
	}
	return w
}

// name looks up one exact key, tagged first.
func (w *walker) name(key string) (int32, bool) {
	if w.tt != nil {
		if i, ok := w.tt.names[key]; ok {
			return i, true
		}
	}
	if w.ut != nil {
		if i, ok := w.ut.names[key]; ok {
			return i, true
		}
	}
	return -1, false
}

// domain walks a host or domain name up to its top-level label:
// mail.example.com, .example.com, example.com, .com, com. The dotted forms
// are FEATURE(`lookupdotdomain') keys that match subdomains only
// (proto.m4 LookUpDomain).
func (w *walker) domain(name string) (int32, bool) {
	for s := name; s != ""; {
		if i, ok := w.name(s); ok {
			return i, true
		}
		dot := strings.IndexByte(s, '.')
		if dot < 0 {
			break
		}
		if dot > 0 {
			if i, ok := w.name(s[dot:]); ok {
				return i, true
			}
		}
		s = s[dot+1:]
	}
	return -1, false
}

// network finds the longest network key containing a: bare keys (lit
// false) or bracketed ones. With sendmail's own keys this is its order
// a.b.c.d, a.b.c, a.b, a (proto.m4 LookUpAddress); CIDR keys fit in by
// prefix length. At equal length the tagged key wins.
func (w *walker) network(lit bool, a netip.Addr) (int32, bool) {
	if !a.IsValid() {
		return -1, false
	}
	var tn, un *netTable
	if w.tt != nil {
		tn = pick(w.tt, lit)
	}
	if w.ut != nil {
		un = pick(w.ut, lit)
	}
	lt, lu := lensOf(tn, a), lensOf(un, a)
	for i, j := 0, 0; i < len(lt) || j < len(lu); {
		var l int
		switch {
		case j >= len(lu) || i < len(lt) && lt[i] > lu[j]:
			l = lt[i]
			i++
		case i >= len(lt) || lu[j] > lt[i]:
			l = lu[j]
			j++
		default:
			l = lt[i]
			i++
			j++
		}
		p, err := a.Prefix(l)
		if err != nil {
			continue
		}
		if tn != nil {
			if x, ok := tn.m[p]; ok {
				return x, true
			}
		}
		if un != nil {
			if x, ok := un.m[p]; ok {
				return x, true
			}
		}
	}
	return -1, false
}

func pick(t *table, lit bool) *netTable {
	if lit {
		return &t.lits
	}
	return &t.nets
}

func lensOf(n *netTable, a netip.Addr) []int {
	if n == nil {
		return nil
	}
	if a.Is4() {
		return n.lens4
	}
	return n.lens6
}

// dflt looks up the tag alone (an empty key): "GreetPause: 5000" is the
// value for everybody not matched otherwise, as in cf/README's
// "ClientRate: 10" example.
func (w *walker) dflt() (int32, bool) {
	if w.tt == nil {
		return -1, false
	}
	i, ok := w.tt.names[""]
	return i, ok
}

// step applies one component's result: a match other than SKIP ends the
// lookup.
func (w *walker) step(i int32, ok bool) bool {
	if !ok {
		return false
	}
	if w.m.entries[i].Action == ActionSkip {
		if w.hit < 0 {
			w.hit = i
		}
		return false
	}
	w.hit = i
	return true
}

// result returns the deciding entry; with only SKIPs found, the first
// SKIP is returned so callers can say why nothing applied.
func (w *walker) result() (Entry, bool) {
	if w.hit < 0 {
		return Entry{}, false
	}
	return w.m.entries[w.hit], true
}

// LookupClient finds the entry for a connecting client under tag
// (Connect, GreetPause, ClientRate, ClientConn or any other tag; case and
// a trailing colon do not matter; "" means untagged keys only). ip is the
// client address (IPv4-mapped addresses are unmapped); hostname is its
// verified host name, "" if unknown.
//
// The order follows sendmail's rulesets:
//
//   - Connect (check_relay) and GreetPause (greet_pause): first the host
//     name and its parent domains (mail.example.com, example.com, com); when
//     the name is unknown sendmail uses "[a.b.c.d]" as the name, so
//     bracketed keys ([192.0.2.1], [192.0.2], [IPv6:2001:db8::1]) are tried
//     instead. Then the address: a.b.c.d, a.b.c, a.b, a for IPv4;
//     IPv6:<address> and shorter IPv6:<groups> prefixes for IPv6; CIDR keys
//     (a Postern extension, also what contrib/cidrexpand accepts) by prefix
//     length, the longest match first.
//   - ClientRate and ClientConn (RateControl, ConnControl): the address
//     only; the host name is not used.
//   - Connect tries the tagged key and then the untagged one at each step,
//     so "127.0.0.1 RELAY" and "localhost RELAY" apply to connections. The
//     other tags need the tag, and the tag alone with an empty key
//     ("GreetPause: 5000") is the default when nothing else matched.
//
// SKIP ends the search of the host name or of the address where it is
// found; the other search still runs. When only SKIP entries were found,
// the first is returned with ok true and Action ActionSkip.
func (m *Map) LookupClient(tag string, ip netip.Addr, hostname string) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	tagL := normTag(tag)
	w := m.newWalker(tagL, tagL == "connect")
	ip = ip.Unmap().WithZone("")
	switch tagL {
	case "clientrate", "clientconn":
		if w.step(w.network(false, ip)) {
			return w.result()
		}
	default:
		if w.step(w.host(hostname, ip)) || w.step(w.network(false, ip)) {
			return w.result()
		}
	}
	if tagL != "connect" && tagL != "" {
		w.step(w.dflt())
	}
	return w.result()
}

// host walks the client's name, or its bracketed address when the name is
// unknown (sendmail's ${client_name} is "[a.b.c.d]" then).
func (w *walker) host(hostname string, ip netip.Addr) (int32, bool) {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(hostname)), ".")
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		if a, ok := parseLiteral(h); ok {
			return w.network(true, a)
		}
		return w.name(h)
	}
	if h == "" {
		return w.network(true, ip)
	}
	return w.domain(h)
}

// parseLiteral parses an address literal: [192.0.2.1] or [IPv6:2001:db8::1].
func parseLiteral(s string) (netip.Addr, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return netip.Addr{}, false
	}
	s = s[1 : len(s)-1]
	if hasPrefixFold(s, "ipv6:") {
		a, err := netip.ParseAddr(s[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// mailbox is an envelope address split for lookups; all fields lower-case.
type mailbox struct {
	null   bool   // the null reverse path <>
	full   string // local@domain without a trailing dot on domain
	user   string // local@ (the "user@" key)
	local  string
	domain string
}

func splitMailbox(addr string) mailbox {
	s := strings.TrimSpace(addr)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	// An obsolete source route (@a,@b:user@dom, RFC 5321 §4.1.2) is
	// ignored as RFC 5321 §3.6.1 allows.
	if strings.HasPrefix(s, "@") {
		if c := strings.IndexByte(s, ':'); c >= 0 {
			s = s[c+1:]
		}
	}
	if s == "" {
		return mailbox{null: true}
	}
	lower := strings.ToLower(s)
	at := strings.LastIndexByte(lower, '@')
	if at < 0 {
		return mailbox{local: lower, user: lower + "@"}
	}
	mb := mailbox{local: lower[:at], user: lower[:at+1], domain: lower[at+1:]}
	if d := strings.TrimSuffix(mb.domain, "."); d != mb.domain {
		mb.domain = d
		mb.full = mb.user + d
	} else {
		mb.full = lower
	}
	if mb.domain == "" {
		mb.full = ""
	}
	return mb
}

// plusBase returns "user" and true for "user+detail".
func plusBase(local string) (string, bool) {
	if i := strings.IndexByte(local, '+'); i > 0 {
		return local[:i], true
	}
	return "", false
}

// fullAddr looks up user+detail@domain, user+*@domain, user@domain
// (proto.m4 LookUpFull).
func (w *walker) fullAddr(mb mailbox) (int32, bool) {
	if mb.full == "" {
		return -1, false
	}
	if i, ok := w.name(mb.full); ok {
		return i, true
	}
	if base, ok := plusBase(mb.local); ok {
		if i, ok := w.name(base + "+*@" + mb.domain); ok {
			return i, true
		}
		return w.name(base + "@" + mb.domain)
	}
	return -1, false
}

// userAt looks up user+detail@, user+*@, user@.
func (w *walker) userAt(mb mailbox) (int32, bool) {
	if i, ok := w.name(mb.user); ok {
		return i, true
	}
	if base, ok := plusBase(mb.local); ok {
		if i, ok := w.name(base + "+*@"); ok {
			return i, true
		}
		return w.name(base + "@")
	}
	return -1, false
}

// domainOf walks the domain of an address: a name and its parents, or an
// address literal and its networks in brackets ([1.2.3.4], [1.2.3], ...,
// as cf/README writes From:[1.2.4]).
func (w *walker) domainOf(domain string) (int32, bool) {
	if domain == "" {
		return -1, false
	}
	if domain[0] == '[' {
		if a, ok := parseLiteral(domain); ok {
			return w.network(true, a)
		}
		return w.name(domain)
	}
	return w.domain(domain)
}

// LookupAddr finds the entry for an envelope address under tag (From, To,
// any other tag, or "" for untagged keys only). addr may carry angle
// brackets; "" or "<>" is the null sender, looked up as the key "<>" (a
// Postern extension: sendmail accepts <> without a lookup).
//
// Keys are case-insensitive and a trailing dot on the domain is ignored.
// From and To try the tagged and then the untagged key at each step; other
// tags need the tag and fall back to the tag alone (an empty key). The
// order is sendmail's:
//
//   - From (check_mail): the full address (user+detail@domain,
//     user+*@domain, user@domain), then user@ (with the same +detail
//     variants), then the domain and its parents (sub.example.com,
//     example.com, com).
//   - To (check_rcpt with FEATURE(`blocklist_recipients')): as From for a
//     recipient in a local domain (full address, user@, domain); for other
//     domains sendmail skips user@. LookupAddr treats the domain as local;
//     LookupRcpt says which it is.
//
// An address literal domain ([192.0.2.1], [IPv6:2001:db8::1]) is looked up
// as bracketed network keys: [192.0.2.1], [192.0.2], [192.0], [192], and
// bracketed CIDR keys. A SKIP ends the component (address, user@ or domain
// search) where it is found.
func (m *Map) LookupAddr(tag string, addr string) (Entry, bool) {
	return m.lookupAddr(tag, addr, true)
}

// LookupRcpt looks a recipient up under To: in sendmail's check_rcpt order:
// the full address, then, only when local is true (the domain is one of
// this relay's own, sendmail's class {w}), user@, then the domain and its
// parents. So "bogus_user@ REJECT" refuses bogus_user at the local domains
// and never decides for a remote one.
func (m *Map) LookupRcpt(addr string, local bool) (Entry, bool) {
	return m.lookupAddr(TagTo, addr, local)
}

func (m *Map) lookupAddr(tag string, addr string, withUser bool) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	tagL := normTag(tag)
	w := m.newWalker(tagL, tagL == "from" || tagL == "to")
	mb := splitMailbox(addr)
	if mb.null {
		if tagL != "to" && w.step(w.name("<>")) {
			return w.result()
		}
	} else {
		done := w.step(w.fullAddr(mb))
		if !done && withUser {
			done = w.step(w.userAt(mb))
		}
		if !done {
			done = w.step(w.domainOf(mb.domain))
		}
		if done {
			return w.result()
		}
	}
	if tagL != "from" && tagL != "to" && tagL != "" {
		w.step(w.dflt())
	}
	return w.result()
}

// LookupDomain walks a domain and its parents (or an address literal and
// its bracketed networks) under tag, tagged then untagged for Connect,
// From and To. The relay check uses it for the recipient domain: a domain
// key covers its subdomains, as sendmail does without
// FEATURE(`relay_hosts_only').
func (m *Map) LookupDomain(tag string, domain string) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	tagL := normTag(tag)
	w := m.newWalker(tagL, tagL == "connect" || tagL == "from" || tagL == "to")
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	w.step(w.domainOf(d))
	return w.result()
}

// lookupClientIP is the address half of a Connect lookup; the relay check
// asks it separately from the host name, as sendmail's Relay_ok does.
func (m *Map) lookupClientIP(tag string, ip netip.Addr) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	tagL := normTag(tag)
	w := m.newWalker(tagL, tagL == "connect")
	w.step(w.network(false, ip.Unmap().WithZone("")))
	return w.result()
}

// lookupClientName is the host-name half of a Connect lookup.
func (m *Map) lookupClientName(tag string, hostname string, ip netip.Addr) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	tagL := normTag(tag)
	w := m.newWalker(tagL, tagL == "connect")
	w.step(w.host(hostname, ip.Unmap().WithZone("")))
	return w.result()
}

// Exact returns the entry with exactly this tag and key, without walking
// parents or networks; key is normalised as when parsing (case, network
// forms). It serves tags Postern does not interpret and tools.
func (m *Map) Exact(tag, key string) (Entry, bool) {
	if m == nil {
		return Entry{}, false
	}
	tagL := normTag(tag)
	t := m.tables[tagL]
	if t == nil {
		return Entry{}, false
	}
	if _, known := canonicalTag(tagL); !known && tagL != "" {
		i, ok := t.names[strings.ToLower(key)]
		if !ok {
			return Entry{}, false
		}
		return m.entries[i], true
	}
	ki, err := classifyKey(key)
	if err != "" {
		return Entry{}, false
	}
	var i int32
	var ok bool
	switch ki.kind {
	case kindName:
		i, ok = t.names[ki.norm]
	case kindNet:
		i, ok = t.nets.m[ki.pfx]
	case kindLiteral:
		i, ok = t.lits.m[ki.pfx]
	}
	if !ok {
		return Entry{}, false
	}
	return m.entries[i], true
}

// GreetPause returns how long to delay the banner for a client
// (GreetPause: values are milliseconds in sendmail: "GreetPause:host 5000"
// is 5 s). ok is false when no entry applies; the caller's own default
// (sendmail's FEATURE(`greet_pause', ms) argument) then holds. See
// LookupClient for the order.
func (m *Map) GreetPause(ip netip.Addr, hostname string) (time.Duration, bool) {
	e, ok := m.LookupClient(TagGreetPause, ip, hostname)
	if !ok || e.Action != ActionValue {
		return 0, false
	}
	return time.Duration(e.Number) * time.Millisecond, true
}

// ClientRate returns the most connections the client may open per rate
// window (sendmail's ConnectionRateWindowSize, 60 s by default); 0 means
// unlimited. Only the address is looked up, then the default
// "ClientRate: n", as sendmail's RateControl does.
func (m *Map) ClientRate(ip netip.Addr) (int, bool) {
	return m.number(TagClientRate, ip)
}

// ClientConn returns the most concurrent connections the client may hold;
// 0 means unlimited. Looked up like ClientRate.
func (m *Map) ClientConn(ip netip.Addr) (int, bool) {
	return m.number(TagClientConn, ip)
}

func (m *Map) number(tag string, ip netip.Addr) (int, bool) {
	e, ok := m.LookupClient(tag, ip, "")
	if !ok || e.Action != ActionValue {
		return 0, false
	}
	return int(e.Number), true
}
