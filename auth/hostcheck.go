package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern"
)

// HostFilterName is the host-check filter's name in chains and logs.
const HostFilterName = "host-checks"

// HostCheck is one optional check of a client's host name or HELO name.
// None is on by default: each refuses mail that some legitimate senders
// send (RFC 5321 §4.1.4 even says a server MUST NOT refuse a message
// because the HELO name does not match the client), so a site turns on
// what its mail allows, as with Postfix's reject_unknown_* restrictions.
type HostCheck uint8

const (
	// CheckHELOResolves refuses a HELO name that has no A, AAAA or MX
	// record (Postfix reject_unknown_helo_hostname), or that is not a
	// host name at all: 550 5.7.1, or 450 4.7.1 when DNS failed
	// temporarily. Address literals are left to CheckHELOLiteral.
	CheckHELOResolves HostCheck = 1 << iota
	// CheckHELONotUs refuses a HELO that claims to be this host: its host
	// name, one of its domains, "localhost" (from a client that is not
	// on a loopback address), or one of its addresses, as a literal or
	// bare: 550 5.7.1. Spam software greets with the name of the server
	// it connects to.
	CheckHELONotUs
	// CheckHELOLiteral refuses an address literal ([192.0.2.1],
	// [IPv6:2001:db8::1]) or bare address that is not the client's own
	// address: 550 5.7.1.
	CheckHELOLiteral
	// CheckClientPTR refuses a client whose address has no PTR record
	// (sendmail's FEATURE(`require_rdns'), Postfix
	// reject_unknown_reverse_client_hostname): 554 5.7.25 at connect, or
	// 421 4.7.25 when the lookup failed temporarily. A PTR name that does
	// not confirm is enough.
	CheckClientPTR
	// CheckClientName refuses a client without a verified host name
	// (Postfix reject_unknown_client_hostname): no PTR, or PTR names that
	// do not resolve back to the address, is 554 5.7.25 at connect; a
	// temporary failure 421 4.7.25.
	CheckClientName
)

var hostCheckNames = []struct {
	c    HostCheck
	name string
}{
	{CheckHELOResolves, "helo_resolves"},
	{CheckHELONotUs, "helo_not_us"},
	{CheckHELOLiteral, "helo_literal"},
	{CheckClientPTR, "client_ptr"},
	{CheckClientName, "client_name"},
}

// String returns the check's name as ParseHostCheck reads it.
func (h HostCheck) String() string {
	var out []string
	for _, n := range hostCheckNames {
		if h&n.c != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// ParseHostCheck reads a check by name: helo_resolves, helo_not_us,
// helo_literal, client_ptr or client_name (case does not matter).
func ParseHostCheck(name string) (HostCheck, error) {
	for _, n := range hostCheckNames {
		if strings.EqualFold(strings.TrimSpace(name), n.name) {
			return n.c, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown host check %q (want helo_resolves, helo_not_us, helo_literal, client_ptr or client_name)", ErrConfig, name)
}

// HostFilterConfig configures a HostFilter.
type HostFilterConfig struct {
	// Checks to apply; none is an error (there would be nothing to do).
	Checks HostCheck
	// Resolver answers CheckHELOResolves; nil is net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds the HELO lookup; default 10 s. Running out of time
	// is a temporary failure.
	Timeout time.Duration
	// OwnNames are this host's names for CheckHELONotUs: its host name
	// and the domains it receives mail for.
	OwnNames []string
	// OwnAddrs are this host's addresses for CheckHELONotUs; the address
	// the client connected to always counts.
	OwnAddrs []netip.Addr
	// Logger receives refusals (Info); nil discards.
	Logger *slog.Logger
}

// HostFilter applies HostChecks: the client checks at the connect stage
// (the reverse DNS outcome is in Conn.ClientResolve, set by the server
// before it), the HELO checks at the HELO stage. Trusted clients are not
// checked. Put it after the access filter, so a Connect: OK entry exempts
// a client from the client checks, as sendmail's check_relay does. It is
// safe for concurrent use.
type HostFilter struct {
	checks  HostCheck
	r       Resolver
	timeout time.Duration
	names   map[string]bool
	addrs   []netip.Addr
	log     *slog.Logger
}

var (
	_ postern.ConnectChecker = (*HostFilter)(nil)
	_ postern.HeloChecker    = (*HostFilter)(nil)
)

// NewHostFilter validates cfg and returns the filter.
func NewHostFilter(cfg HostFilterConfig) (*HostFilter, error) {
	if cfg.Checks == 0 {
		return nil, fmt.Errorf("%w: no host checks", ErrConfig)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative host check timeout", ErrConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultIPRevTimeout
	}
	f := &HostFilter{checks: cfg.Checks, r: orDefaultResolver(cfg.Resolver), timeout: cfg.Timeout,
		names: map[string]bool{}, log: orDiscard(cfg.Logger)}
	for _, n := range cfg.OwnNames {
		if h, ok := hostName(n); ok {
			f.names[h] = true
		}
	}
	for _, a := range cfg.OwnAddrs {
		f.addrs = append(f.addrs, a.Unmap().WithZone(""))
	}
	return f, nil
}

// Name returns "host-checks".
func (f *HostFilter) Name() string { return HostFilterName }

// CheckConnect applies CheckClientPTR and CheckClientName to the outcome
// of the server's reverse DNS lookup. A connection that was not looked up
// (ResolveNone) is not judged.
func (f *HostFilter) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	if c.Trusted || f.checks&(CheckClientPTR|CheckClientName) == 0 {
		return postern.Pass, nil
	}
	ip := c.RemoteAddr().String()
	// 554 and 421 are what RFC 5321 §3.1 lets a server say instead of
	// its banner; X.7.25 is "reverse DNS validation failed" (RFC 7372).
	var v postern.Verdict
	switch r := c.ClientResolve; {
	case r == postern.ResolveTemp:
		v = postern.TempFailed(421, postern.ESC(4, 7, 25), "Cannot find your host name now, try again later",
			"client "+ip+": reverse DNS failed temporarily")
	case r == postern.ResolveFail:
		v = postern.Rejected(554, postern.ESC(5, 7, 25), "Cannot find your host name: no PTR record for "+ip,
			"client "+ip+": no PTR record")
	case r == postern.ResolveForged && f.checks&CheckClientName != 0:
		// The name goes into the reply only when it is a host name: Conn
		// fields may come from elsewhere than IPRev.
		ptr, ok := hostName(c.ClientPTR)
		if !ok {
			ptr = "your PTR name"
		}
		v = postern.Rejected(554, postern.ESC(5, 7, 25), "Cannot find your host name: "+ptr+" does not resolve to "+ip,
			"client "+ip+": PTR "+ptr+" does not confirm")
	}
	f.logDecision(ctx, c, postern.StageConnect, v)
	return v, nil
}

// CheckHelo applies the HELO checks to c.HELO.
func (f *HostFilter) CheckHelo(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	if c.Trusted || f.checks&(CheckHELOResolves|CheckHELONotUs|CheckHELOLiteral) == 0 {
		return postern.Pass, nil
	}
	h := ParseHELO(c.HELO)
	v := f.heloVerdict(ctx, c, h)
	f.logDecision(ctx, c, postern.StageHelo, v)
	return v, nil
}

func (f *HostFilter) heloVerdict(ctx context.Context, c *postern.Conn, h HELO) postern.Verdict {
	client := c.RemoteAddr()
	refuse := func(text, why string) postern.Verdict {
		return postern.Rejected(550, postern.ESC(5, 7, 1), "Helo command rejected: "+text, "helo "+c.HELO+": "+why)
	}
	if h.Addr.IsValid() {
		if f.checks&CheckHELONotUs != 0 && h.Addr != client && f.isOwnAddr(c, h.Addr) {
			return refuse("you are not me", "one of our addresses")
		}
		if f.checks&CheckHELOLiteral != 0 && h.Addr != client {
			return refuse("address literal does not match your address "+client.String(),
				"address is not the client's "+client.String())
		}
		return postern.Pass
	}
	if f.checks&CheckHELONotUs != 0 && h.Name != "" &&
		(f.names[h.Name] || isLocalhostName(h.Name) && !client.IsLoopback()) {
		return refuse("you are not me", "claims to be this host")
	}
	if f.checks&CheckHELOResolves == 0 || isLocalhostName(h.Name) {
		// localhost names resolve, to loopback, without DNS (RFC 6761 §6.3).
		return postern.Pass
	}
	if h.Name == "" {
		return refuse("need a fully-qualified host name", "not a host name")
	}
	switch f.resolves(ctx, h.Name) {
	case postern.ResolveFail:
		return refuse("Host not found", "no A, AAAA or MX record")
	case postern.ResolveTemp:
		return postern.TempFailed(450, postern.ESC(4, 7, 1), "Helo command rejected: Host not found, try again later",
			"helo "+c.HELO+": DNS failed temporarily")
	}
	return postern.Pass
}

func (f *HostFilter) isOwnAddr(c *postern.Conn, a netip.Addr) bool {
	if c.Local.IsValid() && c.Local.Addr().Unmap() == a {
		return true
	}
	for _, o := range f.addrs {
		if o == a {
			return true
		}
	}
	return false
}

// resolves asks for the name's addresses, then its MX: ResolveOK when
// either exists, ResolveFail when neither does, ResolveTemp when DNS could
// not say.
func (f *HostFilter) resolves(ctx context.Context, name string) postern.ClientResolve {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	addrs, err := f.r.LookupIPAddr(ctx, fqdn(name))
	if len(addrs) > 0 {
		return postern.ResolveOK
	}
	temp := dnsTemporary(err)
	mx, err := f.r.LookupMX(ctx, fqdn(name))
	if len(mx) > 0 {
		return postern.ResolveOK
	}
	if temp || dnsTemporary(err) {
		return postern.ResolveTemp
	}
	return postern.ResolveFail
}

func (f *HostFilter) logDecision(ctx context.Context, c *postern.Conn, st postern.Stage, v postern.Verdict) {
	if !v.Final() {
		return
	}
	f.log.LogAttrs(ctx, slog.LevelInfo, "host check refused", slog.String("conn_id", c.ID),
		slog.String("remote_ip", c.RemoteAddr().String()), slog.String("stage", st.String()),
		slog.String("filter", HostFilterName), slog.String("action", v.Action.String()),
		slog.Int("code", v.Reply.Code), slog.String("reason", v.Reason))
}

// HELO is a HELO/EHLO argument taken apart.
type HELO struct {
	// Addr is the address of an address literal ([192.0.2.1],
	// [IPv6:2001:db8::1]) or of a bare address (192.0.2.1, which RFC 5321
	// does not allow but clients send), unmapped; the zero Addr otherwise.
	Addr netip.Addr
	// Literal is true for the bracketed form.
	Literal bool
	// Name is the argument as a host name (lower case, no trailing dot),
	// "" when it is an address or not a host name.
	Name string
}

// ParseHELO takes a HELO/EHLO argument apart (RFC 5321 §4.1.1.1: a domain
// or an address literal).
func ParseHELO(arg string) HELO {
	s := strings.TrimSpace(arg)
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		in := s[1 : len(s)-1]
		six := len(in) >= 5 && strings.EqualFold(in[:5], "IPv6:")
		if six {
			in = in[5:]
		}
		a, err := netip.ParseAddr(in)
		if err != nil || a.Zone() != "" || six != a.Is6() {
			return HELO{Literal: true}
		}
		return HELO{Addr: a.Unmap(), Literal: true}
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return HELO{Addr: a.Unmap()}
	}
	if n, ok := hostName(s); ok {
		return HELO{Name: n}
	}
	return HELO{}
}
