package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/postern/postern"
)

// Class says how much of a client's address names the source that is
// counted: an IPv4 and an IPv6 prefix length. The zero value is /32 for
// IPv4 (one host) and /64 for IPv6 (one subnet: a host may use any
// address of its /64, so counting single IPv6 addresses counts nothing).
// Class{V4: 24, V6: 48} counts networks: a typical small provider
// allocation on each side.
type Class struct {
	// V4 is the IPv4 prefix length, 1-32; 0 means 32.
	V4 int
	// V6 is the IPv6 prefix length, 1-128; 0 means 64.
	V6 int
}

// bits returns the effective prefix lengths; out-of-range values are
// clamped so key building never fails (New validates them).
func (c Class) bits() (v4, v6 int) {
	v4, v6 = c.V4, c.V6
	if v4 <= 0 {
		v4 = 32
	}
	if v4 > 32 {
		v4 = 32
	}
	if v6 <= 0 {
		v6 = 64
	}
	if v6 > 128 {
		v6 = 128
	}
	return v4, v6
}

func (c Class) validate(what string) error {
	if c.V4 < 0 || c.V4 > 32 || c.V6 < 0 || c.V6 > 128 {
		return fmt.Errorf("%w: %s: class /%d,/%d out of range (IPv4 1-32, IPv6 1-128, 0 for the default)",
			ErrConfig, what, c.V4, c.V6)
	}
	return nil
}

// String returns the effective lengths, e.g. "/32,/64".
func (c Class) String() string {
	v4, v6 := c.bits()
	return fmt.Sprintf("/%d,/%d", v4, v6)
}

// Prefix returns the network of ip in this class. An IPv4-mapped IPv6
// address (::ffff:192.0.2.1, what a dual-stack socket reports for an IPv4
// client) is unmapped first and counts as IPv4; an IPv6 zone is dropped.
// The zero Prefix is returned for an invalid address.
func (c Class) Prefix(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	v4, v6 := c.bits()
	b := v6
	if ip.Is4() {
		b = v4
	}
	p, err := ip.Prefix(b)
	if err != nil {
		return netip.Prefix{} // not reached: b is within the address length
	}
	return p
}

// IPKey returns the counting key of ip's network in class c, such as
// "ip:192.0.2.0/24" or "ip:2001:db8:1:2::/64". Addresses of one network
// share a key; the prefix length is part of the key, so classes never
// collide. It returns "" for an invalid address (a client that is not on
// IP, such as a Unix socket): callers do not count those.
func IPKey(ip netip.Addr, c Class) string { return prefixedIPKey("", ip, c) }

// prefixedIPKey is prefix+IPKey(ip, c) in one allocation, or "".
func prefixedIPKey(prefix string, ip netip.Addr, c Class) string {
	p := c.Prefix(ip)
	if !p.IsValid() {
		return ""
	}
	var buf [96]byte
	b := append(buf[:0], prefix...)
	return string(p.AppendTo(append(b, "ip:"...)))
}

// maxKeyLen bounds keys made of client-supplied text; longer ones are
// hashed so a hostile client cannot make the store hold long strings.
const maxKeyLen = 200

func textKey(kind, s string) string {
	if len(s) > maxKeyLen {
		sum := sha256.Sum256([]byte(s))
		return kind + "#" + hex.EncodeToString(sum[:16])
	}
	return kind + s
}

// SenderKey returns the key of an envelope sender: "from:" and the address
// in lower case, without angle brackets; "from:<>" for the null sender.
// Senders are trivially forged, so count by sender only where they are
// known (authenticated submission) or together with another key.
func SenderKey(addr string) string {
	addr = strings.TrimSpace(addr)
	if len(addr) >= 2 && addr[0] == '<' && addr[len(addr)-1] == '>' {
		addr = addr[1 : len(addr)-1]
	}
	if addr == "" {
		return "from:<>"
	}
	return textKey("from:", strings.ToLower(addr))
}

// userKeyPrefix starts every UserKey.
const userKeyPrefix = "user:"

// UserKey returns the key of an SMTP AUTH identity: "user:" and the name
// in lower case; "" for the empty name (not authenticated).
func UserKey(user string) string {
	if user == "" {
		return ""
	}
	return textKey(userKeyPrefix, strings.ToLower(user))
}

// KeyFunc picks what a Filter counts for a transaction. "" means the
// transaction is not counted. t is never nil at the MAIL and RCPT stages.
type KeyFunc func(c *postern.Conn, t *postern.Txn) string

// ByClient counts per client network in class cl (Postfix's per-client
// smtpd_client_message_rate_limit).
func ByClient(cl Class) KeyFunc {
	return func(c *postern.Conn, _ *postern.Txn) string { return IPKey(c.RemoteAddr(), cl) }
}

// ByUser counts per authenticated user; unauthenticated sessions are not
// counted.
func ByUser() KeyFunc {
	return func(c *postern.Conn, _ *postern.Txn) string { return UserKey(c.AuthUser) }
}

// BySender counts per envelope sender.
func BySender() KeyFunc {
	return func(_ *postern.Conn, t *postern.Txn) string {
		if t == nil {
			return ""
		}
		return SenderKey(t.From)
	}
}

// ByUserOrClient counts authenticated sessions per user (a user who
// roams between networks is one source; a shared NAT address is not one
// user) and the others per client network. It is the Filter's default.
func ByUserOrClient(cl Class) KeyFunc {
	return func(c *postern.Conn, _ *postern.Txn) string {
		if c.Authenticated() {
			return UserKey(c.AuthUser)
		}
		return IPKey(c.RemoteAddr(), cl)
	}
}

// ByOutbound counts the site's own senders, what an outbound limit
// watches (a worm on a campus PC, a stolen password): authenticated
// sessions per user, wherever they connect from, and trusted clients
// (Conn.Trusted: own networks, "Connect: RELAY" hosts) per client
// network in class cl. Other sessions are not counted: an inbound Filter
// counts those. Use it with FilterConfig.LimitTrusted.
func ByOutbound(cl Class) KeyFunc {
	return func(c *postern.Conn, _ *postern.Txn) string {
		switch {
		case c.Authenticated():
			return UserKey(c.AuthUser)
		case c.Trusted:
			return IPKey(c.RemoteAddr(), cl)
		}
		return ""
	}
}
