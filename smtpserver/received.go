package smtpserver

import (
	"crypto/tls"
	"strings"
	"time"

	"github.com/postern/postern"
)

// received builds the value of our Received header (RFC 5321 §4.4), with
// the with-protocol keywords of RFC 3848 and RFC 6531 (ESMTPSA: ESMTP with
// TLS and AUTH) and a comment naming the TLS version and cipher.
func (s *session) received(t *postern.Txn) string {
	c := s.conn
	var b strings.Builder
	b.WriteString("from ")
	b.WriteString(sanitizeHelo(c.HELO))
	b.WriteString(" (")
	writeClient(&b, c)
	b.WriteString(")")
	if c.TLS != nil {
		b.WriteString("\r\n\t(using ")
		b.WriteString(tls.VersionName(c.TLS.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(c.TLS.CipherSuite))
		b.WriteString(")")
	}
	b.WriteString("\r\n\tby ")
	b.WriteString(s.srv.cfg.Hostname)
	b.WriteString(" (Postern) with ")
	b.WriteString(withProtocol(c, t))
	b.WriteString(" id ")
	b.WriteString(t.ID)
	if len(t.Rcpts) == 1 {
		// Only for one recipient, so Bcc recipients are not disclosed.
		b.WriteString("\r\n\tfor <")
		b.WriteString(postern.WireAddr(t.Rcpts[0].Addr)) // a Mailbox (RFC 5321 §4.4): "a;b"@… stays one
		b.WriteString(">")
	}
	b.WriteString("; ")
	b.WriteString(s.srv.cfg.Now().Format(time.RFC1123Z)) // RFC 5322 §3.3 date-time
	return b.String()
}

// writeClient writes the client as sendmail's $_ does: "name [ip]" for a
// verified name, "name [ip] (may be forged)" for a PTR name that does not
// resolve back to the address, "[ip]" without a name. The address is an
// RFC 5321 §4.1.3 literal.
func writeClient(b *strings.Builder, c *postern.Conn) {
	name, forged := c.ClientName, false
	if name == "" && c.ClientResolve == postern.ResolveForged && c.ClientPTR != "" {
		name, forged = c.ClientPTR, true
	}
	if name != "" {
		b.WriteString(sanitizeHelo(name))
		b.WriteString(" ")
	}
	b.WriteString("[")
	ip := c.RemoteAddr()
	if ip.Is6() {
		b.WriteString("IPv6:")
	}
	b.WriteString(ip.String())
	b.WriteString("]")
	if forged {
		b.WriteString(" (may be forged)")
	}
}

func withProtocol(c *postern.Conn, t *postern.Txn) string {
	p := "SMTP"
	if c.ESMTP {
		p = "ESMTP"
	}
	if t.Mail.SMTPUTF8 {
		p = "UTF8SMTP"
	}
	if c.TLS != nil {
		p += "S"
	}
	if c.Authenticated() {
		p += "A"
	}
	return p
}

// sanitizeHelo keeps a hostile HELO from breaking the header: it is text
// chosen by the client.
func sanitizeHelo(h string) string {
	if h == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' {
			return '?'
		}
		return r
	}, h)
}
