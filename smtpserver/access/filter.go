package access

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/postern/postern"
)

// FilterName and RelayFilterName are the filters' names in chains and
// logs.
const (
	FilterName      = "access"
	RelayFilterName = "relay"
)

// ConnMark records a Connect: DISCARD or QUARANTINE: the whole connection
// is affected, but the message exists only from MAIL on, so the Mail stage
// applies the mark to every transaction.
type ConnMark struct {
	// Action is ActionDiscard or ActionQuarantine.
	Action Action
	// Reason is the quarantine reason.
	Reason string
	// Entry is the entry that matched.
	Entry Entry
}

// ConnMarkKey is where the connect stage stores a ConnMark in Conn.Values.
var ConnMarkKey = postern.NewKey[ConnMark]("access.conn-mark")

// FilterConfig configures a Filter.
type FilterConfig struct {
	// Map supplies the map in force: a *Map, a *Watcher or any MapSource.
	// Required.
	Map MapSource
	// LocalDomains are this relay's own domains (sendmail's class {w}, the
	// same list as RelayConfig.LocalDomains). Only for recipients there is
	// a "user@" key consulted, as sendmail's check_rcpt does.
	LocalDomains []string
	// Logger receives decisions; nil discards.
	Logger *slog.Logger
}

// Filter applies an access map at the connect, MAIL and RCPT stages with
// sendmail's semantics (see the package documentation for the table). It
// is safe for concurrent use.
type Filter struct {
	src    MapSource
	locals localDomains
	log    *slog.Logger
}

var (
	_ postern.ConnectChecker = (*Filter)(nil)
	_ postern.MailChecker    = (*Filter)(nil)
	_ postern.RcptChecker    = (*Filter)(nil)
	_ postern.RcptChecker    = (*RelayControl)(nil)
)

// NewFilter returns the access filter.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	if cfg.Map == nil {
		return nil, fmt.Errorf("%w: filter needs a map source", ErrConfig)
	}
	locals, err := newLocalDomains(cfg.LocalDomains)
	if err != nil {
		return nil, err
	}
	return &Filter{src: cfg.Map, locals: locals, log: cmp.Or(cfg.Logger, postern.DiscardLogger())}, nil
}

// Name returns "access".
func (f *Filter) Name() string { return FilterName }

func reasonOf(e Entry) string { return "access: " + e.String() }

// replyVerdict turns an ERROR: entry into Reject or TempFail by its code.
func replyVerdict(rep postern.Reply, reason string) postern.Verdict {
	if rep.Temporary() {
		return postern.Verdict{Action: postern.TempFail, Reply: rep, Reason: reason}
	}
	return postern.Verdict{Action: postern.Reject, Reply: rep, Reason: reason}
}

// CheckConnect looks the client up under Connect: (host name, then
// address; tagged, then untagged). OK accepts and ends the stage, so later
// connect checks such as DNSBLs are skipped (cf/README: "Connect:10.1 OK"
// to exempt a network from blocklists). RELAY does the same and marks the
// connection trusted to relay. REJECT answers 554 5.7.1. DISCARD and
// QUARANTINE accept and leave a ConnMark that the MAIL stage applies to
// every transaction. ERROR: answers with its reply. SKIP or no entry
// continues.
func (f *Filter) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	e, ok := f.src.Current().LookupClient(TagConnect, c.RemoteAddr(), c.ClientName)
	if !ok {
		return postern.Pass, nil
	}
	reason := reasonOf(e)
	var v postern.Verdict
	switch e.Action {
	case ActionOK:
		v = postern.Accepted(reason)
	case ActionRelay:
		c.Trusted = true
		v = postern.Accepted(reason)
	case ActionReject:
		v = postern.Rejected(554, postern.ESC(5, 7, 1), "Access denied", reason)
	case ActionDiscard, ActionQuarantine:
		postern.SetValue(&c.Values, ConnMarkKey, ConnMark{Action: e.Action, Reason: e.Reason, Entry: e})
		v = postern.Accepted(reason)
	case ActionError:
		v = replyVerdict(e.Reply, reason)
	default:
		v = postern.Verdict{Reason: reason}
	}
	f.logDecision(ctx, c, postern.StageConnect, v)
	return v, nil
}

// CheckMail first applies a ConnMark from the connect stage to t, then
// looks the sender up under From: (the null sender as "<>"). OK accepts
// and ends the stage. RELAY acts as OK: it does not permit relaying, which
// sendmail allows only with FEATURE(`relay_mail_from') because a sender
// address is trivially forged. REJECT answers 550 5.7.1 "Sender address
// rejected: Access denied". DISCARD sets t.Discard, QUARANTINE sets
// t.Quarantine, and both accept. ERROR: answers with its reply.
func (f *Filter) CheckMail(ctx context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	var markReason string
	if mark, ok := postern.GetValue(&c.Values, ConnMarkKey); ok {
		markTxn(t, mark.Action, mark.Reason)
		markReason = "access: connection marked by " + mark.Entry.String()
	}
	e, ok := f.src.Current().LookupAddr(TagFrom, t.From)
	if !ok {
		return postern.Verdict{Reason: markReason}, nil
	}
	reason := reasonOf(e)
	var v postern.Verdict
	switch e.Action {
	case ActionOK, ActionRelay:
		v = postern.Accepted(reason)
	case ActionReject:
		v = postern.Rejected(550, postern.ESC(5, 7, 1), "Sender address rejected: Access denied", reason)
	case ActionDiscard, ActionQuarantine:
		markTxn(t, e.Action, e.Reason)
		v = postern.Accepted(reason)
	case ActionError:
		v = replyVerdict(e.Reply, reason)
	default:
		v = postern.Verdict{Reason: reason}
	}
	f.logDecision(ctx, c, postern.StageMail, v)
	return v, nil
}

// markTxn applies a DISCARD or QUARANTINE to the transaction; the first
// quarantine reason stays.
func markTxn(t *postern.Txn, a Action, reason string) {
	switch a {
	case ActionDiscard:
		t.Discard = true
	case ActionQuarantine:
		if t.Quarantine == "" {
			t.Quarantine = reason
		}
	}
}

// CheckRcpt looks the recipient up under To: (Map.LookupRcpt: user@ keys
// only for LocalDomains). REJECT answers 550 5.2.1 "Mailbox disabled for
// this recipient", as sendmail's check_rcpt does; ERROR: answers with its
// reply. DISCARD sets t.Discard and accepts: the recipient is answered 250
// and, as in sendmail's check_rcpt, the WHOLE message is discarded, not
// only this recipient (cf/README; only check_compat discards one
// recipient). QUARANTINE sets t.Quarantine and continues.
//
// OK and RELAY continue (with the entry as reason) rather than accept:
// in sendmail's check_rcpt an OK or RELAY recipient is only "not
// blocklisted" and the other recipient checks still run, so recipient
// verification and the harvest guard after this filter still see
// recipients of "To:example.com RELAY" domains. Relaying itself is decided
// by RelayControl.
func (f *Filter) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	e, ok := f.src.Current().LookupRcpt(r.Addr, f.locals.has(r.Domain()))
	if !ok {
		return postern.Pass, nil
	}
	reason := reasonOf(e)
	var v postern.Verdict
	switch e.Action {
	case ActionReject:
		v = postern.Rejected(550, postern.ESC(5, 2, 1), "Mailbox disabled for this recipient", reason)
	case ActionDiscard:
		markTxn(t, e.Action, e.Reason)
		v = postern.Accepted(reason)
	case ActionQuarantine:
		markTxn(t, e.Action, e.Reason)
		v = postern.Verdict{Reason: reason}
	case ActionError:
		v = replyVerdict(e.Reply, reason)
	default: // OK, RELAY, SKIP
		v = postern.Verdict{Reason: reason}
	}
	f.logDecision(ctx, c, postern.StageRcpt, v, slog.String("rcpt", r.Addr))
	return v, nil
}

func (f *Filter) logDecision(ctx context.Context, c *postern.Conn, st postern.Stage, v postern.Verdict, extra ...slog.Attr) {
	logDecision(ctx, f.log, FilterName, c, st, v, extra...)
}

func logDecision(ctx context.Context, l *slog.Logger, filter string, c *postern.Conn, st postern.Stage, v postern.Verdict, extra ...slog.Attr) {
	// Refusals are logged at Info by whoever answers the client (the
	// smtpserver session); what is not visible there, a Discard or
	// Quarantine decided at RCPT or connect, is logged here.
	level := slog.LevelDebug
	switch v.Action {
	case postern.Discard, postern.Quarantine:
		level = slog.LevelInfo
	}
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("conn_id", c.ID),
		slog.String("remote_ip", c.RemoteAddr().String()),
		slog.String("stage", st.String()),
		slog.String("filter", filter),
		slog.String("action", v.Action.String()),
	}
	if v.Reply.Code != 0 {
		attrs = append(attrs, slog.Int("code", v.Reply.Code))
	}
	attrs = append(attrs, extra...)
	attrs = append(attrs, slog.String("reason", v.Reason))
	l.LogAttrs(ctx, level, "access decision", attrs...)
}

// RelayConfig configures a RelayControl. The zero value allows relaying
// for authenticated and trusted sessions only.
type RelayConfig struct {
	// Map, if set, supplies Connect: RELAY clients and To: RELAY domains.
	Map MapSource
	// LocalDomains are the domains (and address literals such as
	// "[192.0.2.25]") this relay accepts mail for. Matching is exact and
	// case-insensitive, like sendmail's class {w}; list subdomains
	// separately, or use "To:.example.com RELAY" in the map.
	LocalDomains []string
	// RelaySubdomains lets a "To:example.com RELAY" entry (or an
	// untagged one) cover the subdomains of example.com too, as sendmail
	// does without FEATURE(`relay_hosts_only'). By default it covers
	// example.com alone: a subdomain is relayed when it has an entry of
	// its own, or under a dotted key ("To:.example.com RELAY", sendmail's
	// FEATURE(`lookupdotdomain') form) that names the subdomains
	// deliberately. Mail for a subdomain nobody routes is otherwise
	// accepted, then bounced to a sender who is often forged.
	RelaySubdomains bool
	// TrustedNets may relay to anywhere (Postfix's mynetworks). Loopback is
	// NOT implied: sendmail trusts 127.0.0.1 always, but behind a local
	// proxy every client would look local. List it here or in the map
	// ("127.0.0.1 RELAY").
	TrustedNets []netip.Prefix
	// Logger receives refusals; nil discards.
	Logger *slog.Logger
}

// RelayControl refuses to relay: placed first in the RCPT stage, it
// rejects recipients this relay may not send on and otherwise continues,
// so later filters still apply. It is never an open relay: see
// CheckRcpt. Safe for concurrent use.
type RelayControl struct {
	src     MapSource
	locals  localDomains
	trusted []netip.Prefix
	subs    bool
	log     *slog.Logger
}

// localDomains is sendmail's class {w}: names and address literals.
type localDomains struct {
	names map[string]bool
	lits  map[netip.Addr]bool
}

func newLocalDomains(list []string) (localDomains, error) {
	l := localDomains{names: make(map[string]bool), lits: make(map[netip.Addr]bool)}
	for _, d := range list {
		n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if strings.HasPrefix(n, "[") {
			a, ok := parseLiteral(n)
			if !ok {
				return l, fmt.Errorf("%w: local domain %q is not an address literal", ErrConfig, d)
			}
			l.lits[a] = true
			continue
		}
		if !validDomain(n) {
			return l, fmt.Errorf("%w: local domain %q", ErrConfig, d)
		}
		l.names[n] = true
	}
	return l, nil
}

// has reports whether domain (lower case, no trailing dot) is local.
func (l localDomains) has(domain string) bool {
	if strings.HasPrefix(domain, "[") {
		a, ok := parseLiteral(domain)
		return ok && l.lits[a]
	}
	return l.names[domain]
}

// NewRelayControl validates cfg and returns the relay check.
func NewRelayControl(cfg RelayConfig) (*RelayControl, error) {
	locals, err := newLocalDomains(cfg.LocalDomains)
	if err != nil {
		return nil, err
	}
	rc := &RelayControl{src: cfg.Map, locals: locals, subs: cfg.RelaySubdomains, log: cmp.Or(cfg.Logger, postern.DiscardLogger())}
	for _, p := range cfg.TrustedNets {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid trusted network %v", ErrConfig, p)
		}
		rc.trusted = append(rc.trusted, unmapPrefix(p.Masked()))
	}
	return rc, nil
}

// Name returns "relay".
func (rc *RelayControl) Name() string { return RelayFilterName }

// The replies are built per call: a Reply holds a slice, and a shared
// one could be changed by any filter downstream.
func relayDenied() postern.Reply {
	return postern.NewReply(550, postern.ESC(5, 7, 1), "Relay access denied")
}

func badSyntax() postern.Reply {
	return postern.NewReply(550, postern.ESC(5, 1, 3), "Bad recipient address syntax")
}

// CheckRcpt decides whether the recipient may be accepted as far as
// relaying goes.
//
// For every client: a recipient without a domain is local (RFC 5321
// §4.5.1) and accepted only if it is "postmaster" in any case; others, and
// an empty or malformed domain, are refused 550 5.1.3.
//
// A client may relay anywhere when the session is authenticated, the
// connection is trusted (Conn.Trusted, set for instance by a Connect:
// RELAY entry; a Trust first in the chain keeps it current across
// reloads), its address is in TrustedNets, or the map has Connect: (or
// untagged) RELAY for its address or verified host name.
//
// Otherwise the recipient must be ours: its domain (after the last '@',
// case-insensitive, one trailing dot ignored, so "NIX.CO.JJ." is local and
// "remote.example." is not) is in LocalDomains or has To: (or untagged)
// RELAY in the map for the domain or a parent domain. And whatever the
// domain, an untrusted client may not use the old routing tricks, which
// hand the message on after the local domain is stripped: a local part
// with '%' (user%remote@local), '!' (remote!user@local) or '@' (more than
// one '@': go-smtp hands "u@remote"@local over unquoted as
// u@remote@local); and an address literal ([192.0.2.1]) is accepted only
// if it is listed in LocalDomains or has To: RELAY. Source routes
// (@a,@b:u@remote) reach us stripped to u@remote and are judged as such.
// All of these are refused 550 5.7.1 "Relay access denied".
func (rc *RelayControl) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	v := rc.decide(c, r.Addr)
	if v.Final() {
		logDecision(ctx, rc.log, RelayFilterName, c, postern.StageRcpt, v, slog.String("rcpt", r.Addr))
	}
	return v, nil
}

func (rc *RelayControl) decide(c *postern.Conn, addr string) postern.Verdict {
	addr = strings.TrimSpace(addr)
	if len(addr) >= 2 && addr[0] == '<' && addr[len(addr)-1] == '>' {
		addr = addr[1 : len(addr)-1]
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		if strings.EqualFold(addr, "postmaster") {
			return postern.Verdict{Reason: "relay: postmaster without domain is local (RFC 5321 §4.5.1)"}
		}
		return postern.Verdict{Action: postern.Reject, Reply: badSyntax(), Reason: "relay: recipient " + addr + " has no domain"}
	}
	local := addr[:at]
	domain := strings.TrimSuffix(strings.ToLower(addr[at+1:]), ".")
	lit, isLit := netip.Addr{}, false
	if strings.HasPrefix(domain, "[") {
		lit, isLit = parseLiteral(domain)
		if !isLit {
			return postern.Verdict{Action: postern.Reject, Reply: badSyntax(), Reason: "relay: malformed address literal " + domain}
		}
	} else if !validDomain(domain) {
		return postern.Verdict{Action: postern.Reject, Reply: badSyntax(), Reason: "relay: malformed domain " + strings.ToLower(addr[at+1:])}
	}
	if local == "" {
		return postern.Verdict{Action: postern.Reject, Reply: badSyntax(), Reason: "relay: empty local part"}
	}
	m := rc.current()
	if why, ok := rc.clientMayRelay(c, m); ok {
		return postern.Verdict{Reason: "relay: " + why}
	}
	deny := func(why string) postern.Verdict {
		return postern.Verdict{Action: postern.Reject, Reply: relayDenied(), Reason: "relay: " + why}
	}
	switch {
	case strings.ContainsRune(local, '@'):
		return deny("more than one @ in " + addr + " (quoted local part with @)")
	case strings.ContainsRune(local, '%'):
		return deny("% in local part of " + addr + " (percent hack)")
	case strings.ContainsRune(local, '!'):
		return deny("! in local part of " + addr + " (bang path)")
	}
	if isLit && rc.locals.lits[lit] {
		return postern.Verdict{Reason: "relay: address literal " + domain + " is local"}
	} else if !isLit && rc.locals.names[domain] {
		return postern.Verdict{Reason: "relay: domain " + domain + " is local"}
	}
	if selfDomain(domain, lit, isLit) {
		// sendmail has localhost in class {w} and delivers it locally; a
		// relay has no local mailboxes there, so the only thing such a
		// recipient can do is loop. "localhost RELAY" names the client.
		return deny(domain + " names this host; only local_domains may make it a destination")
	}
	if e, ok := m.LookupDomain(TagTo, domain); ok && e.Action == ActionRelay {
		if !rc.subs && !keyCovers(e.Key, domain) {
			return deny("client may not relay and " + domain + " is a subdomain of " + e.String() + " (an entry of its own, or To:." + strings.TrimPrefix(strings.ToLower(e.Key), ".") + ", relays it)")
		}
		return postern.Verdict{Reason: "relay: recipient domain has " + e.String()}
	}
	if isLit {
		return deny("address literal " + domain + " is not local")
	}
	return deny("client may not relay and " + domain + " is not ours")
}

func (rc *RelayControl) current() *Map {
	if rc.src == nil {
		return nil
	}
	return rc.src.Current()
}

// clientMayRelay mirrors sendmail's Relay_ok: the address is looked up
// first, then the verified host name; a name is never taken from an
// unresolved client ("[a.b.c.d]").
func (rc *RelayControl) clientMayRelay(c *postern.Conn, m *Map) (string, bool) {
	if c.Authenticated() {
		return "authenticated as " + c.AuthUser, true
	}
	if c.Trusted {
		return "trusted connection", true
	}
	ip := c.RemoteAddr()
	for _, p := range rc.trusted {
		if p.Contains(ip) {
			return "client in trusted network " + p.String(), true
		}
	}
	if e, ok := m.lookupClientIP(TagConnect, ip); ok && e.Action == ActionRelay {
		return "client has " + e.String(), true
	}
	if c.ClientName != "" {
		if e, ok := m.lookupClientName(TagConnect, c.ClientName, ip); ok && e.Action == ActionRelay {
			return "client has " + e.String(), true
		}
	}
	return "", false
}

// keyCovers reports whether a To: key names domain itself, or its
// subdomains by a leading dot; a parent-domain key ("example.com" for
// sub.example.com) does not.
func keyCovers(key, domain string) bool {
	k := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(key)), ".")
	if k == domain {
		return true
	}
	return strings.HasPrefix(k, ".") && strings.HasSuffix(domain, k)
}

// selfDomain reports whether a recipient domain names the local host
// whatever machine it is said to: localhost and the .localhost names
// (RFC 6761 §6.3), localhost.localdomain, and address literals of
// loopback or unspecified addresses (connecting to 0.0.0.0 reaches the
// local host).
func selfDomain(domain string, lit netip.Addr, isLit bool) bool {
	if isLit {
		return lit.IsLoopback() || lit.IsUnspecified()
	}
	return domain == "localhost" || strings.HasSuffix(domain, ".localhost") || domain == "localhost.localdomain"
}

// validDomain checks a dot-separated name of non-empty labels of letters,
// digits, '-' and '_' (UTF-8 allowed for SMTPUTF8 domains).
func validDomain(d string) bool {
	if d == "" || len(d) > 255 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c >= 0x80:
			default:
				return false
			}
		}
	}
	return true
}
