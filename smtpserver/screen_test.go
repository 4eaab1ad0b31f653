package smtpserver

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// screenRecorder selects tests and records what Result hears.
type screenRecorder struct {
	mu      sync.Mutex
	results []ProtocolTest
}

func (r *screenRecorder) config(tests ProtocolTest) ProtocolTests {
	return ProtocolTests{
		Select: func(_ context.Context, c *postern.Conn) ProtocolTest {
			if c.Trusted {
				return 0
			}
			return tests
		},
		Result: func(_ context.Context, _ *postern.Conn, failed ProtocolTest) {
			r.mu.Lock()
			r.results = append(r.results, failed)
			r.mu.Unlock()
		},
	}
}

func (r *screenRecorder) heard() []ProtocolTest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ProtocolTest(nil), r.results...)
}

// Each deep test catches its violation with 421 4.7.0 and a disconnect,
// and Result hears which; a client that speaks SMTP properly is heard
// passing at its first MAIL.
func TestProtocolTests(t *testing.T) {
	all := ProtocolPipelining | ProtocolNonSMTP | ProtocolBareNewline
	for _, tc := range []struct {
		name   string
		tests  ProtocolTest
		dialog func(c *client)
		failed ProtocolTest // 0: passes
		reply  string
	}{
		{"pipelined with EHLO", all, func(c *client) {
			c.send("EHLO bot.test\r\nMAIL FROM:<a@b.test>\r\n")
		}, ProtocolPipelining, "421 4.7.0 mx.test Error: command pipelined before the EHLO reply, try again later"},
		{"pipelined with HELO", all, func(c *client) {
			c.send("HELO bot.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\n")
		}, ProtocolPipelining, "421 4.7.0 mx.test Error: command pipelined before the HELO reply"},
		{"HTTP request", all, func(c *client) {
			c.send("GET / HTTP/1.0\r\n")
		}, ProtocolNonSMTP, "421 4.7.0 mx.test Error: non-SMTP command"},
		{"open proxy probe after EHLO", all, func(c *client) {
			expect(c.t, c.cmd("EHLO bot.test"), "250")
			c.send("CONNECT 192.0.2.1:25 HTTP/1.1\r\n")
		}, ProtocolNonSMTP, "421 4.7.0"},
		{"header line", all, func(c *client) {
			c.send("Host: mx.test\r\n")
		}, ProtocolNonSMTP, "421 4.7.0"},
		{"TLS handshake on the plain port", all, func(c *client) {
			c.send("\x16\x03\x01\x00\xa5\x01\r\n")
		}, ProtocolNonSMTP, "421 4.7.0"},
		{"bare LF", all, func(c *client) {
			c.send("EHLO bot.test\n")
		}, ProtocolBareNewline, "421 4.7.0 mx.test Error: bare <LF> in command"},
		{"bare LF after MAIL", all, func(c *client) {
			expect(c.t, c.cmd("EHLO ok.test"), "250")
			expect(c.t, c.cmd("MAIL FROM:<a@b.test>"), "250")
			c.send("RCPT TO:<x@example.test>\n")
		}, ProtocolBareNewline, "421 4.7.0"},
		{"a proper client passes", all, func(c *client) {
			expect(c.t, c.cmd("EHLO ok.test"), "250")
			// Pipelining after the EHLO reply announced it is fine.
			c.send("MAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\n")
			expect(c.t, c.reply(), "250")
			expect(c.t, c.reply(), "250")
			expect(c.t, c.cmd("QUIT"), "221")
		}, 0, ""},
		{"tests not selected", ProtocolBareNewline, func(c *client) {
			c.send("EHLO ok.test\r\nNOOP\r\n")
			expect(c.t, c.reply(), "250")
			expect(c.t, c.reply(), "250")
			expect(c.t, c.cmd("GET / HTTP/1.0"), "500 5.5.2")
			expect(c.t, c.cmd("QUIT"), "221")
		}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &screenRecorder{}
			_, addr := startServer(t, Config{Handoff: &memHandoff{}, ProtocolTests: rec.config(tc.tests)})
			c := dial(t, addr)
			expect(t, c.reply(), "220")
			tc.dialog(c)
			if tc.reply == "" {
				if tc.tests == ProtocolBareNewline {
					assert.Empty(t, rec.heard(), "no MAIL, no verdict")
				} else {
					assert.Equal(t, []ProtocolTest{0}, rec.heard())
				}
				return
			}
			expect(t, c.reply(), tc.reply)
			assert.True(t, c.closed(), "disconnected")
			heard := rec.heard()
			require.NotEmpty(t, heard)
			assert.Equal(t, tc.failed, heard[len(heard)-1], "the failure is the last word: %v", heard)
		})
	}
}

// A session the tests are not selected for is not touched, whatever it
// sends; nor are the tests run without Select.
func TestProtocolTestsSkipped(t *testing.T) {
	rec := &screenRecorder{}
	trust := postern.ConnectFunc("trust", func(_ context.Context, c *postern.Conn) (postern.Verdict, error) {
		c.Trusted = true
		return postern.Pass, nil
	})
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Policy: trust, ProtocolTests: rec.config(ProtocolPipelining | ProtocolNonSMTP | ProtocolBareNewline)})
	c := dial(t, addr)
	expect(t, c.reply(), "220")
	c.send("EHLO trusted.test\r\nNOOP\r\n")
	expect(t, c.reply(), "250")
	expect(t, c.reply(), "250")
	assert.Empty(t, rec.heard())

	_, addr = startServer(t, Config{Handoff: &memHandoff{}})
	c = dial(t, addr)
	expect(t, c.reply(), "220")
	c.send("EHLO plain.test\r\nNOOP\n")
	expect(t, c.reply(), "250")
	expect(t, c.reply(), "250")
}

func TestProtocolTestString(t *testing.T) {
	assert.Equal(t, "pipelining+non-smtp+bare-newline", (ProtocolPipelining | ProtocolNonSMTP | ProtocolBareNewline).String())
	assert.Equal(t, "test(0)", ProtocolTest(0).String())
	assert.Equal(t, "non-smtp+test(64)", (ProtocolNonSMTP | 64).String())
}

func TestNonSMTPLines(t *testing.T) {
	for line, want := range map[string]bool{
		"EHLO x": false, "MAIL FROM:<a@b>": false, "rcpt to:<a@b>": false, "": false, "QUIT": false,
		"GET / HTTP/1.1": true, "post /x HTTP/1.0": true, "CONNECT a:25 HTTP/1.0": true, "USER bob": true,
		"Host: x": true, "User-Agent: curl": true, " EHLO x": true, "\x16\x03\x01": true, "1 2 3": true,
	} {
		assert.Equal(t, want, nonSMTP(line), "%q", line)
	}
}

// FuzzNonSMTP: the check never panics and never calls an SMTP verb
// non-SMTP.
func FuzzNonSMTP(f *testing.F) {
	for _, s := range []string{"EHLO x", "GET /", "Host: a", "\x16\x03", "MAIL FROM:<a:b@c>", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := nonSMTP(s)
		for _, v := range []string{"HELO ", "EHLO ", "MAIL ", "RCPT ", "DATA", "QUIT", "RSET", "NOOP", "STARTTLS", "AUTH "} {
			if len(s) >= len(v) && s[:len(v)] == v && (len(v) > 4 || len(s) == len(v) || s[len(v)] == ' ') &&
				!containsColonVerb(s) {
				if got {
					t.Fatalf("%q is SMTP", s)
				}
			}
		}
	})
}

// containsColonVerb: a first word with a colon is a header field, even
// when it starts like a verb ("MAIL:").
func containsColonVerb(s string) bool {
	for i := 0; i < len(s) && s[i] != ' '; i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}
