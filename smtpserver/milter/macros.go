package milter

import (
	"crypto/tls"
	"net/netip"
	"strconv"
	"strings"

	"github.com/d--j/go-milter"

	"github.com/postern/postern"
)

// MTA is what the MTA tells about itself in its macros, kept in
// Conn.Values under MTAKey by the server.
type MTA struct {
	// Hostname is the MTA's own name (macro j).
	Hostname string
	// DaemonName names the MTA's listener ({daemon_name}: Postfix's
	// service name, sendmail's DaemonPortOptions Name=), so one milter
	// can tell port 25 from submission.
	DaemonName string
	// Version is the MTA's version (macro v, "Postfix 3.7.11" or
	// "8.17.1").
	Version string
}

// MTAKey holds the MTA (a value, not a pointer) in Conn.Values.
var MTAKey = postern.NewKey[MTA]("milter.mta")

// Macros the server asks the MTA for, by stage, with SMFIF_SETSYMLIST
// (Postfix and sendmail 8.14 and later send exactly these then, whatever
// their milter_*_macros or Milter.macros.* say). docs/milter-postfix.md
// lists them for an MTA that does not honour the request.
var (
	connectMacros = []string{"j", "v", "_", "{daemon_name}", "{daemon_addr}", "{daemon_port}",
		"{client_ptr}", "{client_resolve}"}
	heloMacros = []string{"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}"}
	mailMacros = []string{"i", "{auth_type}", "{auth_authen}", "{tls_version}", "{cipher}"}
	eomMacros  = []string{"i"}
)

// connFromMTA fills c from the connect event: the client's address and
// port (none for a Unix or unknown client), the MTA's own address
// ({daemon_addr}, {daemon_port}), what the MTA found of the client's
// name, and the MTA's self-description.
func connFromMTA(c *postern.Conn, host, family string, port uint16, addr string, m milter.Macros) {
	if family == "tcp4" || family == "tcp6" {
		if ip, err := netip.ParseAddr(addr); err == nil {
			c.Remote = netip.AddrPortFrom(ip.Unmap(), port)
		}
	}
	if ip, err := netip.ParseAddr(strings.Trim(m.Get("{daemon_addr}"), "[]")); err == nil {
		p, _ := strconv.ParseUint(m.Get("{daemon_port}"), 10, 16)
		c.Local = netip.AddrPortFrom(ip.Unmap(), uint16(p))
	}
	c.SetClientHost(clientHost(host, m))
	postern.SetValue(&c.Values, MTAKey, MTA{Hostname: m.Get("j"), DaemonName: m.Get("{daemon_name}"), Version: m.Get("v")})
}

// clientHost reads what the MTA found of the client's name. Postfix
// passes the verified name or "unknown" (and the PTR name in
// {client_ptr}); sendmail passes the PTR name or "[addr]", and says in
// {client_resolve} (when asked) or in "_" ("(may be forged)") whether it
// verified. Only a name the MTA verified becomes ClientName.
func clientHost(host string, m milter.Macros) postern.ClientHost {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "unknown" || strings.HasPrefix(name, "[") || !plausibleHost(name) {
		name = ""
	}
	ptr := strings.ToLower(strings.TrimSuffix(m.Get("{client_ptr}"), "."))
	if ptr == "unknown" || !plausibleHost(ptr) {
		ptr = ""
	}
	if r, ok := m.GetEx("{client_resolve}"); ok {
		h := postern.ClientHost{PTR: ptr}
		if h.PTR == "" {
			h.PTR = name
		}
		switch strings.ToUpper(r) {
		case "OK":
			if name == "" {
				return postern.ClientHost{Resolve: postern.ResolveFail}
			}
			h.Resolve, h.Name = postern.ResolveOK, name
		case "FORGED":
			h.Resolve = postern.ResolveForged
		case "FAIL":
			h.Resolve = postern.ResolveFail
		case "TEMP":
			h.Resolve = postern.ResolveTemp
		default:
			return postern.ClientHost{}
		}
		return h
	}
	switch {
	case name != "" && strings.Contains(m.Get("_"), "may be forged"):
		return postern.ClientHost{Resolve: postern.ResolveForged, PTR: name}
	case name != "":
		return postern.ClientHost{Resolve: postern.ResolveOK, Name: name, PTR: name}
	case ptr != "":
		// Postfix: a PTR name that does not resolve back.
		return postern.ClientHost{Resolve: postern.ResolveForged, PTR: ptr}
	case m.Get("{client_ptr}") != "":
		// Postfix says "unknown": no PTR (or no answer; it does not tell).
		return postern.ClientHost{Resolve: postern.ResolveFail}
	}
	return postern.ClientHost{}
}

// plausibleHost reports whether s looks like a host name (letters,
// digits, '-', '_', '.'), so an MTA's odd spellings never reach policy.
func plausibleHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// tlsFromMTA returns the TLS state the MTA's macros describe, nil without
// TLS. Only the version and the cipher suite (when its name is one Go
// knows) are known; the handshake was the MTA's.
func tlsFromMTA(m milter.Macros) *tls.ConnectionState {
	v := m.Get("{tls_version}")
	if v == "" {
		return nil
	}
	cs := &tls.ConnectionState{HandshakeComplete: true}
	switch strings.ToUpper(strings.ReplaceAll(v, " ", "")) {
	case "TLSV1.3":
		cs.Version = tls.VersionTLS13
	case "TLSV1.2":
		cs.Version = tls.VersionTLS12
	case "TLSV1.1":
		cs.Version = tls.VersionTLS11
	case "TLSV1", "TLSV1.0":
		cs.Version = tls.VersionTLS10
	}
	name := m.Get("{cipher}")
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.Name == name {
			cs.CipherSuite = s.ID
		}
	}
	return cs
}

// authFromMTA sets the SMTP AUTH identity the MTA reports at MAIL
// ({auth_authen}, {auth_type}); an MTA that does not send them leaves
// the connection unauthenticated.
func authFromMTA(c *postern.Conn, m milter.Macros) {
	c.AuthUser, c.AuthMech = m.Get("{auth_authen}"), m.Get("{auth_type}")
	if c.AuthUser == "" {
		c.AuthMech = ""
	}
}
