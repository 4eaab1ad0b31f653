package smtpserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/postern/postern"
)

// errProtocolTest ends the read of a session that failed a protocol test.
var errProtocolTest = errors.New("smtpserver: protocol test failed")

// ProtocolTest names one of postscreen's "deep protocol" tests, which the
// edge runs on the sessions Config.ProtocolTests selects. Each catches
// what a real MTA never does and much spamware does.
type ProtocolTest uint8

// The tests.
const (
	// ProtocolPipelining: the client sent another command together with
	// HELO or EHLO, before the server's reply to it. RFC 2920 §3.1 lets
	// a client pipeline only once the EHLO reply announced PIPELINING,
	// and never after HELO.
	ProtocolPipelining ProtocolTest = 1 << iota
	// ProtocolNonSMTP: a line that is no SMTP command: an HTTP or proxy
	// request (CONNECT, GET, POST and the other methods), a POP or FTP
	// login (USER, PASS), a header field ("Host: ...", "Subject: ...")
	// or a line that does not start with a letter (a TLS handshake on a
	// plain port). Postfix's postscreen_forbidden_commands.
	ProtocolNonSMTP
	// ProtocolBareNewline: a command line ending in a bare LF instead of
	// CRLF (RFC 5321 §2.3.8).
	ProtocolBareNewline

	allProtocolTests = ProtocolPipelining | ProtocolNonSMTP | ProtocolBareNewline
)

// String names the tests in t: "pipelining", "non-smtp", "bare-newline",
// joined with "+".
func (t ProtocolTest) String() string {
	var parts []string
	for _, n := range []struct {
		t    ProtocolTest
		name string
	}{{ProtocolPipelining, "pipelining"}, {ProtocolNonSMTP, "non-smtp"}, {ProtocolBareNewline, "bare-newline"}} {
		if t&n.t != 0 {
			parts = append(parts, n.name)
		}
	}
	if rest := t &^ allProtocolTests; rest != 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("test(%d)", uint8(rest)))
	}
	return strings.Join(parts, "+")
}

// ProtocolTests configures the deep protocol tests. They are off unless
// Select is set: they cost nothing on a session they do not run on.
//
// A client that fails a test is told "421 4.7.0 <host> Error: <what>,
// try again later" and disconnected: a temporary refusal, so a real MTA
// that trips on a test only waits, and its mail is not lost.
type ProtocolTests struct {
	// Select returns the tests to run on a connection, asked once when
	// its connect stage has passed (Conn.Trusted and the connect stage's
	// values are set); 0 runs none. Return 0 for trusted clients and for
	// clients that passed the tests recently (ratelimit.PassCache).
	Select func(ctx context.Context, c *postern.Conn) ProtocolTest
	// Result, if set, hears how a tested session did: 0 when it gave its
	// first MAIL command without failing a test (it spoke SMTP through
	// the start of a transaction), or the test it failed. A session may
	// be heard passing and then failing (a bare LF in a later command):
	// the failure is the last word. It runs on the session's goroutine.
	Result func(ctx context.Context, c *postern.Conn, failed ProtocolTest)
}

// selectTests asks Config.ProtocolTests which tests a connection gets.
func (s *Server) selectTests(ctx context.Context, c *postern.Conn) ProtocolTest {
	if s.cfg.ProtocolTests.Select == nil {
		return 0
	}
	return s.cfg.ProtocolTests.Select(ctx, c) & allProtocolTests
}

// forbiddenVerbs are commands no SMTP client sends: HTTP methods and
// proxy requests (an open-proxy probe), POP and FTP logins.
var forbiddenVerbs = map[string]bool{
	"CONNECT": true, "GET": true, "POST": true, "HEAD": true, "PUT": true, "DELETE": true,
	"OPTIONS": true, "TRACE": true, "PATCH": true, "USER": true, "PASS": true,
}

// nonSMTP reports whether a command line (without its line end) is not
// SMTP. An empty line is left to the ordinary syntax error.
func nonSMTP(text string) bool {
	if text == "" {
		return false
	}
	if c := text[0]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
		return true
	}
	verb, _, _ := strings.Cut(text, " ")
	if strings.IndexByte(verb, ':') >= 0 {
		return true // a header field: "Host:", "Subject:"
	}
	return forbiddenVerbs[strings.ToUpper(verb)]
}

// screenCommand runs the selected tests on a command line: stop is true
// when the client failed one and was sent away (err says how the read
// ends).
func (e *edgeConn) screenCommand(line []byte) (stop bool, err error) {
	text := strings.TrimRight(string(line), "\r\n")
	verb, _, _ := strings.Cut(text, " ")
	verb = strings.ToUpper(verb)
	switch {
	case e.screen&ProtocolBareNewline != 0 && bareLF(line):
		return true, e.screenFail(ProtocolBareNewline, "bare <LF> in command")
	case e.screen&ProtocolNonSMTP != 0 && nonSMTP(text):
		return true, e.screenFail(ProtocolNonSMTP, "non-SMTP command")
	case e.screen&ProtocolPipelining != 0 && (verb == "HELO" || verb == "EHLO") && e.br.Buffered() > 0:
		// The bytes after the greeting command came with it, before
		// the reply was even written.
		return true, e.screenFail(ProtocolPipelining, "command pipelined before the "+verb+" reply")
	case verb == "MAIL" && !e.screenPassed:
		e.screenPassed = true
		if r := e.srv.cfg.ProtocolTests.Result; r != nil {
			r(context.Background(), e.st.conn, 0)
		}
	}
	return false, nil
}

// screenFail answers a failed test 421 and closes the connection.
func (e *edgeConn) screenFail(t ProtocolTest, what string) error {
	e.st.conn.Logger().Info("protocol test failed", "stage", "smtp", "action", "disconnect", "code", 421,
		"test", t.String(), "detail", what)
	if r := e.srv.cfg.ProtocolTests.Result; r != nil {
		r(context.Background(), e.st.conn, t)
	}
	e.writeReply(421, "4.7.0", e.srv.cfg.Hostname+" Error: "+what+", try again later")
	e.Close()
	return errProtocolTest
}
