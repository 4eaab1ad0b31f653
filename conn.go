package postern

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Conn describes one client connection. It lives from accept to close and
// survives STARTTLS; the server updates HELO, TLS and AuthUser as the
// dialogue goes on. Filters read it and keep per-connection results in
// Values.
type Conn struct {
	ID     string
	Remote netip.AddrPort
	Local  netip.AddrPort
	// Started is when the connection was accepted.
	Started time.Time
	// ClientName is the client's verified host name (forward-confirmed
	// reverse DNS: a PTR name whose A/AAAA records hold the client
	// address), lower case without a trailing dot; "" when unknown. It is
	// set with ClientPTR and ClientResolve before the connect stage when
	// the server has a reverse resolver (smtpserver.Config.ReverseDNS), and
	// only ClientResolve OK sets it: policy may trust it. An embedding
	// program may set it itself.
	ClientName string
	// ClientPTR is the first name the client address's PTR records gave,
	// verified or not ("" when there was none or no lookup). Write it in
	// logs and trace fields, never match policy against it: whoever holds
	// the address's reverse zone chooses it.
	ClientPTR string
	// ClientResolve is the outcome of that lookup (sendmail's
	// ${client_resolve}); ResolveNone when no lookup was made.
	ClientResolve ClientResolve
	// HELO is the argument of the last HELO/EHLO, "" before it.
	HELO string
	// ESMTP is true after EHLO (not HELO).
	ESMTP bool
	// TLS is the state after STARTTLS or implicit TLS, nil before.
	TLS *tls.ConnectionState
	// AuthUser is the SMTP AUTH identity, "" when not authenticated.
	AuthUser string
	// AuthMech is the SASL mechanism used.
	AuthMech string
	// Trusted marks a client whose network is trusted to relay (a "mynetworks"
	// or Connect:RELAY client).
	Trusted bool
	// Log is tagged with conn_id and remote_ip. Never nil when made by the
	// server; use Logger to be safe.
	Log *slog.Logger
	// Values carries results between filters for the whole connection.
	Values Values
}

// SetClientHost records the outcome of a reverse DNS lookup in
// ClientName, ClientPTR and ClientResolve. ClientName is set only for a
// verified name (ResolveOK).
func (c *Conn) SetClientHost(h ClientHost) {
	c.ClientResolve, c.ClientPTR, c.ClientName = h.Resolve, h.PTR, ""
	if h.Resolve == ResolveOK {
		c.ClientName = h.Name
	}
}

// ClientResolve is the outcome of the forward-confirmed reverse DNS lookup
// of a client address: the four values of sendmail's ${client_resolve},
// which are also the results of RFC 8601 §3's "iprev" method, plus
// ResolveNone for no lookup.
type ClientResolve uint8

const (
	// ResolveNone: no lookup was made (a trusted client, lookups off).
	ResolveNone ClientResolve = iota
	// ResolveOK: a PTR name of the address has A/AAAA records holding
	// the address; it is the client's verified name (iprev "pass").
	ResolveOK
	// ResolveFail: the address has no PTR record (NXDOMAIN or no
	// answer; iprev "permerror").
	ResolveFail
	// ResolveForged: PTR names exist but none of them resolves back to
	// the address; sendmail writes "(may be forged)" (iprev "fail").
	ResolveForged
	// ResolveTemp: a query failed temporarily (timeout, SERVFAIL), so
	// the name is unknown for now (iprev "temperror").
	ResolveTemp
)

var resolveNames = [...]string{"none", "OK", "FAIL", "FORGED", "TEMP"}

// String returns sendmail's spelling: OK, FAIL, FORGED, TEMP ("none" for
// ResolveNone).
func (r ClientResolve) String() string {
	if int(r) < len(resolveNames) {
		return resolveNames[r]
	}
	return fmt.Sprintf("resolve(%d)", uint8(r))
}

// ClientHost is what a reverse DNS lookup found for one address.
type ClientHost struct {
	Resolve ClientResolve
	// Name is the verified host name (ResolveOK only), lower case without
	// a trailing dot.
	Name string
	// PTR is the first PTR name, verified or not; "" when there was none.
	PTR string
}

// Logger returns c.Log, or a discarding logger when c or c.Log is nil.
func (c *Conn) Logger() *slog.Logger {
	if c == nil || c.Log == nil {
		return DiscardLogger()
	}
	return c.Log
}

// RemoteAddr returns the client IP, unmapped from IPv4-in-IPv6.
func (c *Conn) RemoteAddr() netip.Addr { return c.Remote.Addr().Unmap() }

// Authenticated reports whether the client completed SMTP AUTH.
func (c *Conn) Authenticated() bool { return c.AuthUser != "" }

// DiscardLogger returns a logger that drops everything.
func DiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// MailParams are the ESMTP parameters of MAIL FROM.
type MailParams struct {
	// Size is the SIZE the client declared (RFC 1870), 0 if none.
	Size int64
	// Body is "7BIT", "8BITMIME" or "BINARYMIME" (RFC 6152, RFC 3030), "" if
	// not given.
	Body string
	// SMTPUTF8 is set for RFC 6531 transactions.
	SMTPUTF8 bool
	// RequireTLS is the RFC 8689 REQUIRETLS flag.
	RequireTLS bool
	// Ret is the RFC 3461 RET parameter: "FULL", "HDRS" or "".
	Ret string
	// EnvID is the RFC 3461 ENVID, decoded from xtext.
	EnvID string
	// Auth is the RFC 4954 AUTH= mailbox, nil if not given; "" means <>.
	Auth *string
}

// Rcpt is one recipient of a transaction.
type Rcpt struct {
	// Addr is where the message goes, in canonical form (see Address: the
	// local part unquoted); filters may rewrite it, keeping that form.
	Addr string
	// Original is the address as the client gave it, in canonical form. It
	// never changes.
	Original string
	// Notify is the RFC 3461 NOTIFY list (upper case), nil if not given.
	Notify []string
	// ORcptType and ORcpt are the RFC 3461 ORCPT parameter.
	ORcptType string
	ORcpt     string
	// Values carries per-recipient results between filters.
	Values Values
}

// Domain returns the domain of Addr, lower-cased, without a trailing dot.
func (r *Rcpt) Domain() string { return AddrDomain(r.Addr) }

// Txn is one mail transaction, from MAIL FROM to the end of DATA.
type Txn struct {
	// ID identifies the transaction in logs; the queue ID is given at
	// hand-off.
	ID string
	// From is the reverse path in canonical form (see Address), "" for the
	// null sender <>.
	From  string
	Mail  MailParams
	Rcpts []*Rcpt
	// Discard is set when a filter decided to drop the whole message while
	// claiming delivery (sendmail's DISCARD).
	Discard bool
	// Quarantine holds the reason when a filter decided to hold the message.
	Quarantine string
	// Values carries results between filters for this transaction.
	Values Values
}

// Clone returns a deep copy of t: recipients and value bags are copied, so
// the DATA stage can work on a snapshot that a concurrent RSET (go-smtp BDAT)
// cannot change. Values themselves are shared.
func (t *Txn) Clone() *Txn {
	c := &Txn{ID: t.ID, From: t.From, Mail: t.Mail, Discard: t.Discard, Quarantine: t.Quarantine}
	c.Rcpts = make([]*Rcpt, len(t.Rcpts))
	for i, r := range t.Rcpts {
		c.Rcpts[i] = &Rcpt{Addr: r.Addr, Original: r.Original, Notify: append([]string(nil), r.Notify...),
			ORcptType: r.ORcptType, ORcpt: r.ORcpt}
		r.Values.copyTo(&c.Rcpts[i].Values)
	}
	t.Values.copyTo(&c.Values)
	return c
}

// AddrDomain returns the domain of an address (text after the last '@'),
// lower-cased and without a trailing dot; "" if there is none.
func AddrDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[i+1:]), ".")
}

// AddrLocal returns the local part of an address (text before the last '@'),
// or the whole address when it has no '@'.
func AddrLocal(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr
	}
	return addr[:i]
}
