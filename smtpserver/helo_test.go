package smtpserver

import "testing"

// TestHeloControlCharacters: go-smtp echoes the HELO name in its reply,
// so a name with control characters is refused rather than reflected.
func TestHeloControlCharacters(t *testing.T) {
	_, addr := startServer(t, Config{Handoff: &memHandoff{}})
	c := dial(t, addr)
	expect(t, c.reply(), "220")
	expect(t, c.cmd("EHLO ev\x1b]0;pwned\x07il"), "501 5.5.2")
	expect(t, c.cmd("HELO a\x7fb"), "501 5.5.2")
	expect(t, c.cmd("MAIL FROM:<a@example.net>"), "502 5.5.1") // go-smtp: no HELO yet
	expect(t, c.cmd("EHLO fine.example"), "250")
	expect(t, c.cmd("MAIL FROM:<a@example.net>"), "250")
}
