package smtpserver

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHopLimit: a message that has been round a loop is refused at the
// end of DATA; one at the limit passes and gets our Received on top.
func TestHopLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limit     int
		received  int
		delivered int
		want      string
	}{
		{"ours makes the limit", 0, DefaultMaxHops - 1, 0, "250 2.0.0"},
		{"limit reached before ours", 0, DefaultMaxHops, 0, "554 5.4.6 Too many hops"},
		{"Delivered-To counts", 0, DefaultMaxHops - 2, 2, "554 5.4.6 Too many hops"},
		{"configured", 3, 3, 0, "554 5.4.6 Too many hops"},
		{"configured, below it", 3, 1, 1, "250 2.0.0"},
		{"off", -1, 500, 0, "250 2.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &memHandoff{}
			_, addr := startServer(t, Config{Handoff: h, MaxHops: tc.limit, MaxHeaderBytes: 1 << 20})
			c := dial(t, addr)
			c.greet()
			expect(t, c.cmd("MAIL FROM:<a@example.net>"), "250")
			expect(t, c.cmd("RCPT TO:<b@example.test>"), "250")
			expect(t, c.cmd("DATA"), "354")
			var b strings.Builder
			for i := range tc.received {
				b.WriteString("Received: from hop" + string(rune('a'+i%26)) + ".example by x; Mon, 7 Dec 2026 10:00:00 +0000\r\n")
			}
			for range tc.delivered {
				b.WriteString("Delivered-To: b@example.test\r\n")
			}
			b.WriteString("Subject: loop\r\n\r\nbody\r\n.\r\n")
			c.send(b.String())
			expect(t, c.reply(), tc.want)
			if strings.HasPrefix(tc.want, "554") {
				assert.Empty(t, h.all())
				// The session goes on: the refusal ends the
				// transaction, not the connection.
				expect(t, c.cmd("NOOP"), "250")
				return
			}
			require.Len(t, h.all(), 1)
			assert.True(t, strings.HasPrefix(string(h.all()[0].data), "Received: from client.test"))
		})
	}
}
