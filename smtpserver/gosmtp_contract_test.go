package smtpserver

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The edge (edge.go) knows where the dialogue stands only from the bytes
// go-smtp writes, and hands go-smtp its input one command line at a time.
// That holds only while go-smtp (v0.26.0 today) behaves as the tests in
// this file say. Each subtest of TestGoSMTPContract drives go-smtp alone,
// configured by newGoSMTP exactly as New configures it, through a
// connection that records every Read and Write; it names one assumption
// and the edge code that rests on it. A go-smtp upgrade that changes one
// of them fails here, before the edge misreads a dialogue.

// wireIn is what one Read of the wire returns.
type wireIn struct {
	b   []byte
	err error
}

// wire is the connection go-smtp serves where the edge would be. Each
// element sent is what one Read returns (the edge returns one command
// line per Read); each Write is kept whole.
type wire struct {
	in      chan wireIn
	writes  chan []byte
	pending []byte
	pendErr error

	mu     sync.Mutex
	events []string // "R": go-smtp asks for input; "W": it wrote

	deadlines atomic.Int32 // Set*Deadline calls
	closed    chan struct{}
	once      sync.Once
}

func newWire() *wire {
	return &wire{in: make(chan wireIn), writes: make(chan []byte, 256), closed: make(chan struct{})}
}

func (w *wire) note(e string) {
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
}

func (w *wire) eventsSince(i int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.events[min(i, len(w.events)):]...)
}

func (w *wire) Read(p []byte) (int, error) {
	if len(w.pending) == 0 {
		if w.pendErr != nil {
			return 0, w.pendErr // a broken connection stays broken
		}
		w.note("R")
		select {
		case in := <-w.in:
			w.pending, w.pendErr = in.b, in.err
			if len(in.b) == 0 && in.err != nil {
				return 0, in.err
			}
		case <-w.closed:
			return 0, net.ErrClosed
		}
	}
	n := copy(p, w.pending)
	w.pending = w.pending[n:]
	return n, nil
}

func (w *wire) Write(p []byte) (int, error) {
	select {
	case <-w.closed:
		return 0, net.ErrClosed
	default:
	}
	w.note("W")
	w.writes <- append([]byte(nil), p...)
	return len(p), nil
}

func (w *wire) Close() error                     { w.once.Do(func() { close(w.closed) }); return nil }
func (w *wire) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (w *wire) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4321} }
func (w *wire) SetDeadline(time.Time) error      { w.deadlines.Add(1); return nil }
func (w *wire) SetReadDeadline(time.Time) error  { w.deadlines.Add(1); return nil }
func (w *wire) SetWriteDeadline(time.Time) error { w.deadlines.Add(1); return nil }
func (w *wire) isClosed() bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

// dataSeen is what one Data call read.
type dataSeen struct {
	msg string
	err error
}

// contractSession records what go-smtp calls.
type contractSession struct {
	mu      sync.Mutex
	calls   []string
	rcptErr error
	dataErr error
	started chan struct{}
	data    chan dataSeen
}

func (s *contractSession) note(c string) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

func (s *contractSession) called() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *contractSession) Reset()        { s.note("reset") }
func (s *contractSession) Logout() error { s.note("logout"); return nil }
func (s *contractSession) Mail(from string, _ *smtp.MailOptions) error {
	s.note("mail " + from)
	return nil
}

func (s *contractSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.note("rcpt " + to)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcptErr
}

func (s *contractSession) setRcptErr(err error) {
	s.mu.Lock()
	s.rcptErr = err
	s.mu.Unlock()
}

func (s *contractSession) Data(r io.Reader) error {
	s.note("data")
	s.started <- struct{}{}
	b, err := io.ReadAll(r)
	s.data <- dataSeen{string(b), err}
	if err != nil {
		return err
	}
	return s.dataErr
}

func (s *contractSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *contractSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user == "u" && pass == "p" {
			return nil
		}
		return smtp.ErrAuthFailed
	}), nil
}

type contractBackend struct {
	sess     *contractSession
	sessions atomic.Int32
	newErr   error
	mu       sync.Mutex
	conn     net.Conn // what Conn.Conn returned in NewSession
}

func (b *contractBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.sessions.Add(1)
	b.mu.Lock()
	b.conn = c.Conn()
	b.mu.Unlock()
	if b.newErr != nil {
		return nil, b.newErr
	}
	return b.sess, nil
}

// oneConnListener hands out one connection, then waits to be closed.
type oneConnListener struct {
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// watchedListener tells when Serve first calls Accept.
type watchedListener struct {
	oneConnListener
	accepting chan struct{}
	once      sync.Once
}

func (l *watchedListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepting) })
	return l.oneConnListener.Accept()
}

// bare is one go-smtp connection with no edge in front.
type bare struct {
	t    *testing.T
	w    *wire
	be   *contractBackend
	sess *contractSession
}

// contractConfig is the server configuration of the contract: New's
// defaults, with limits small enough to reach.
func contractConfig(t testing.TB) Config {
	cfg, err := (&Config{Hostname: "mx.test", Handoff: &memHandoff{}, MaxRecipients: 2, MaxMessageBytes: 64}).withDefaults()
	require.NoError(t, err)
	return cfg
}

func startBare(t *testing.T, change func(*contractBackend)) *bare {
	t.Helper()
	sess := &contractSession{started: make(chan struct{}, 8), data: make(chan dataSeen, 8)}
	be := &contractBackend{sess: sess}
	if change != nil {
		change(be)
	}
	gs := newGoSMTP(be, contractConfig(t))
	l := &oneConnListener{c: make(chan net.Conn, 1), done: make(chan struct{})}
	w := newWire()
	l.c <- w
	go gs.Serve(l)
	t.Cleanup(func() { w.Close(); gs.Close() })
	return &bare{t: t, w: w, be: be, sess: sess}
}

// seen returns what the next Data call read.
func (b *bare) seen() dataSeen {
	b.t.Helper()
	select {
	case d := <-b.sess.data:
		return d
	case <-time.After(5 * time.Second):
		b.t.Fatal("Data did not end")
		return dataSeen{}
	}
}

// started waits for a Data call to start.
func (b *bare) started() {
	b.t.Helper()
	select {
	case <-b.sess.started:
	case <-time.After(5 * time.Second):
		b.t.Fatal("Data was not called")
	}
}

// send hands go-smtp s in one Read.
func (b *bare) send(s string) {
	b.t.Helper()
	select {
	case b.w.in <- wireIn{b: []byte(s)}:
	case <-time.After(5 * time.Second):
		b.t.Fatalf("go-smtp did not read %q", s)
	}
}

// write returns go-smtp's next Write.
func (b *bare) write() string {
	b.t.Helper()
	select {
	case p := <-b.w.writes:
		return string(p)
	case <-time.After(5 * time.Second):
		b.t.Fatal("go-smtp wrote nothing")
		return ""
	}
}

var replyLineRE = regexp.MustCompile(`^[2-5][0-9][0-9][ -][^\r\n]*\r\n$`)

// reply reads Writes up to a reply's last line; each must be one whole
// line.
func (b *bare) reply() []string {
	b.t.Helper()
	var lines []string
	for {
		p := b.write()
		require.Regexp(b.t, replyLineRE, p, "one reply line per Write")
		lines = append(lines, strings.TrimRight(p, "\r\n"))
		if p[3] == ' ' {
			return lines
		}
	}
}

// cmd sends a command line and returns the last line of the reply.
func (b *bare) cmd(line string) string {
	b.t.Helper()
	b.send(line + "\r\n")
	r := b.reply()
	return r[len(r)-1]
}

// greet reads the banner and says EHLO.
func (b *bare) greet() {
	b.t.Helper()
	require.True(b.t, strings.HasPrefix(b.reply()[0], "220 "))
	require.True(b.t, strings.HasPrefix(b.cmd("EHLO client.test"), "250 "))
}

// openTxn greets and opens a transaction with one recipient.
func (b *bare) openTxn() {
	b.t.Helper()
	b.greet()
	require.Equal(b.t, "250 2.0.0 Roger, accepting mail from <a@x.test>", b.cmd("MAIL FROM:<a@x.test>"))
	require.Equal(b.t, "250 2.0.0 I'll make sure <b@y.test> gets this", b.cmd("RCPT TO:<b@y.test>"))
}

// idle waits until go-smtp is waiting for input and returns the index
// of the next event.
func (b *bare) idle() int {
	b.t.Helper()
	var n int
	require.Eventually(b.t, func() bool {
		ev := b.w.eventsSince(0)
		n = len(ev)
		return n > 0 && ev[n-1] == "R"
	}, 5*time.Second, time.Millisecond, "go-smtp waits for input")
	return n
}

// awaitRead waits until go-smtp asks for input again after index from
// (see idle) and returns the events since: its writes, then that read.
func (b *bare) awaitRead(from int) []string {
	b.t.Helper()
	var ev []string
	require.Eventually(b.t, func() bool {
		ev = b.w.eventsSince(from)
		return len(ev) > 0 && ev[len(ev)-1] == "R"
	}, 5*time.Second, time.Millisecond, "go-smtp asks for input again")
	return ev
}

func TestGoSMTPContract(t *testing.T) {
	// listener.go and session.go: go-smtp writes the banner before it
	// reads anything and calls NewSession only at HELO/EHLO, so the
	// connect stage runs in Listen before go-smtp gets the connection;
	// NewSession finds the edge as Conn.Conn (backend.NewSession).
	t.Run("banner first, session at EHLO, Conn is ours", func(t *testing.T) {
		b := startBare(t, nil)
		assert.Equal(t, "220 mx.test ESMTP Service Ready\r\n", b.write())
		b.awaitRead(0)
		assert.Equal(t, []string{"W", "R"}, b.w.eventsSince(0), "the banner comes before any read")
		assert.Zero(t, b.be.sessions.Load(), "no session before HELO")
		assert.Equal(t, "250 2.0.0 Hello client.test", b.cmd("HELO client.test"))
		assert.EqualValues(t, 1, b.be.sessions.Load())
		b.be.mu.Lock()
		assert.Same(t, b.w, b.be.conn, "Conn.Conn is the connection Serve accepted")
		b.be.mu.Unlock()
	})

	// edge.go, Write and replyCode: each Write is one reply line, so
	// the code and the last-line mark are at its start; the STARTTLS
	// line is inserted between two Writes. go-smtp writes a line through
	// a 4096-byte buffer, so this holds for lines that fit it: the
	// longest echo of a command (EHLO's name, under MaxCommandLineLimit)
	// does.
	t.Run("one reply line per Write", func(t *testing.T) {
		b := startBare(t, func(be *contractBackend) {
			be.sess.dataErr = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: strings.Repeat("x", 3000)}
		})
		b.write()
		name := strings.Repeat("h", MaxCommandLineLimit-len("EHLO \r\n"))
		b.send("EHLO " + name + "\r\n")
		assert.Equal(t, "250-Hello "+name+"\r\n", b.write(), "the longest echo in one Write")
		b.reply() // the rest of the EHLO reply, each line in its own Write
		for _, c := range []string{"NOOP", "VRFY a", "HELP", "EXPN a", "RSET", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"} {
			b.cmd(c)
		}
		b.send("x\r\n.\r\n")
		assert.Len(t, b.reply()[0], 3000+len("250 2.0.0 "), "a reply line of 3000 bytes in one Write")
	})

	// edge.go, the type comment and readCommand: when go-smtp asks for
	// the next line it has written every reply to the previous one, so
	// the edge's state (lastVerb, inTxn, saslLine, mode) is that of the
	// last reply written.
	t.Run("replies written before the next read", func(t *testing.T) {
		b := startBare(t, nil)
		b.write()
		dialog := []string{"EHLO client.test", "NOOP", "RSET", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"}
		for _, c := range dialog {
			from := b.idle()
			b.send(c + "\r\n")
			ev := b.awaitRead(from)
			require.GreaterOrEqual(t, len(ev), 2, c)
			for _, e := range ev[:len(ev)-1] {
				assert.Equal(t, "W", e, "%s: only writes before the next read: %v", c, ev)
			}
			lines := b.reply()
			assert.Len(t, lines, len(ev)-1, c)
		}
	})

	// edge.go, Write: the EHLO reply starts "250-Hello <name>" and has
	// more lines, so the edge adds "250-STARTTLS" after the first; go-smtp
	// adds no STARTTLS of its own (its TLSConfig is nil: newGoSMTP), and
	// offers AUTH on what it takes for plain text (AllowInsecureAuth; the
	// session decides). readCommand refuses control characters in the
	// HELO/EHLO name because go-smtp echoes it.
	t.Run("EHLO reply shape", func(t *testing.T) {
		b := startBare(t, nil)
		b.write()
		b.send("EHLO client.test\r\n")
		lines := b.reply()
		require.Greater(t, len(lines), 1)
		assert.Equal(t, "250-Hello client.test", lines[0])
		for _, l := range lines {
			assert.NotContains(t, l, "STARTTLS")
		}
		assert.Contains(t, lines, "250-AUTH PLAIN")
		assert.Regexp(t, `^250 `, lines[len(lines)-1])
		assert.Equal(t, "250 2.0.0 Hello a\x01b", b.cmd("HELO a\x01b"), "the name is echoed as sent")
	})

	// edge.go, readCommand (case HELO/EHLO) and startTLS: after the edge's
	// STARTTLS the client greets again; go-smtp, which never saw TLS,
	// resets the transaction at a second EHLO and keeps its session
	// (session.checkHelo runs the HELO stage again by sequence number).
	t.Run("EHLO again resets, same session", func(t *testing.T) {
		b := startBare(t, nil)
		b.openTxn()
		assert.Regexp(t, `^250 `, b.cmd("EHLO client.test"))
		assert.EqualValues(t, 1, b.be.sessions.Load(), "no second NewSession")
		assert.Contains(t, b.sess.called(), "reset")
		assert.Equal(t, "502 5.5.1 Missing MAIL FROM command.", b.cmd("RCPT TO:<b@y.test>"))
	})

	// edge.go, readCommand: the edge answers STARTTLS itself and never
	// passes a line whose verb is not one go-smtp implements; go-smtp
	// takes any line that starts with "STARTTLS" for STARTTLS and would
	// refuse it (no TLSConfig), so nothing reaches it.
	t.Run("STARTTLS is never go-smtp's", func(t *testing.T) {
		b := startBare(t, nil)
		b.greet()
		assert.Equal(t, "502 5.5.1 TLS not supported", b.cmd("STARTTLS"))
		assert.Equal(t, "502 5.5.1 TLS not supported", b.cmd("starttlsX"), "any line starting STARTTLS")
	})

	// edge.go, observeFinal: 354 is the one reply that starts DATA; the
	// edge then hands go-smtp canonical dot-stuffed text (dataDecoder),
	// which go-smtp's reader un-stuffs exactly and ends at "." CRLF; then
	// one final reply ends the transaction (awaitResult). A DATA refused
	// (502 without 354) leaves go-smtp in command mode.
	t.Run("354 starts DATA, one reply ends it", func(t *testing.T) {
		b := startBare(t, func(be *contractBackend) {
			be.sess.dataErr = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as Q1"}
		})
		b.greet()
		assert.Equal(t, "502 5.5.1 Missing RCPT TO command.", b.cmd("DATA"), "no 354: still commands")
		assert.Regexp(t, `^250 `, b.cmd("NOOP"))
		b.cmd("MAIL FROM:<a@x.test>")
		b.cmd("RCPT TO:<b@y.test>")
		assert.Equal(t, "354 Go ahead. End your data with <CR><LF>.<CR><LF>", b.cmd("DATA"))
		var d dataDecoder
		d.reset(true)
		canon, _, end := d.decode(nil, []byte("Subject: x\r\n.hidden\r\n..\r\n.\r\n"))
		require.True(t, end)
		from := b.idle()
		b.send(string(canon))
		assert.Equal(t, dataSeen{msg: "Subject: x\r\nhidden\r\n.\r\n"}, b.seen(), "un-stuffed, ended at the edge's end")
		assert.Equal(t, []string{"250 2.0.0 Ok: queued as Q1"}, b.reply(), "a 250 SMTPError from Data is the one reply")
		assert.Equal(t, []string{"W", "R"}, b.awaitRead(from), "one reply, then the next command")
		assert.Equal(t, "502 5.5.1 Missing MAIL FROM command.", b.cmd("RCPT TO:<b@y.test>"), "the transaction ended")
	})

	// session.go, apply and Data: only an unwrapped *smtp.SMTPError
	// becomes the reply as it is; anything else is 451 4.0.0 (RCPT) or
	// 554 5.0.0 (DATA) with the error's text, so the session converts
	// every verdict to an unwrapped SMTPError.
	t.Run("only an unwrapped SMTPError is the reply", func(t *testing.T) {
		refuse := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
		b := startBare(t, func(be *contractBackend) {
			be.sess.rcptErr = refuse
			be.sess.dataErr = fmt.Errorf("wrapped: %w", refuse)
		})
		b.greet()
		b.cmd("MAIL FROM:<a@x.test>")
		assert.Equal(t, "550 5.7.1 no", b.cmd("RCPT TO:<b@y.test>"))
		b.sess.setRcptErr(fmt.Errorf("wrapped: %w", refuse))
		assert.Equal(t, "451 4.0.0 wrapped: SMTP error 550: no", b.cmd("RCPT TO:<b@y.test>"))
		b.sess.setRcptErr(nil)
		b.cmd("RCPT TO:<b@y.test>")
		b.cmd("DATA")
		b.send("x\r\n.\r\n")
		b.seen()
		assert.Equal(t, []string{"554 5.0.0 Error: transaction failed: wrapped: SMTP error 550: no"}, b.reply())
	})

	// edge.go, parseBDAT and readCommand (case BDAT): go-smtp reads a
	// chunk exactly when the edge's parseBDAT accepts the arguments,
	// also when it refuses the command after parsing (no recipients,
	// over the size limit), so the edge skips the same bytes. The full
	// agreement is FuzzBDATArgs.
	t.Run("BDAT arguments and chunks", func(t *testing.T) {
		for _, arg := range []string{"5", "5 LAST", "5 last", " 5  LaSt ", "0", "0 LAST", "007", "4294967295",
			"4294967296", "-1", "+5", "5 LAST x", "", "5 MORE", "1e3", "0x10", "5\tLAST"} {
			n, _, ok := parseBDAT(arg)
			b := startBare(t, nil)
			b.greet()
			code := b.cmd("BDAT " + arg)[:3]
			if !ok {
				assert.Equal(t, "501", code, "%q: refused unread", arg)
				assert.Regexp(t, `^250 `, b.cmd("NOOP"), "%q: the next line is a command", arg)
				continue
			}
			assert.Equal(t, "502", code, "%q: parsed, then refused for want of recipients", arg)
			if n == 0 || n > 64 {
				continue // nothing, or too much, to send; parsed alike is what counts
			}
			// The chunk is read (and dropped) although the command was
			// refused: "NOOP" in it must not be a command.
			b.send(strings.Repeat("N", int(n)))
			assert.Equal(t, "250 2.0.0 I have successfully done nothing", b.cmd("NOOP"), "%q", arg)
		}

		b := startBare(t, nil)
		b.openTxn()
		b.send("BDAT 3\r\n")
		b.started() // Data runs while go-smtp reads more commands
		b.send("abc")
		assert.Equal(t, []string{"250 2.0.0 Continue"}, b.reply())
		b.send("BDAT 2\r\n")
		b.send("de")
		assert.Equal(t, []string{"250 2.0.0 Continue"}, b.reply())
		b.send("BDAT 3 LAST\r\n")
		b.send("f\r\n")
		assert.Equal(t, dataSeen{msg: "abcdef\r\n"}, b.seen())
		assert.Equal(t, []string{"250 2.0.0 OK: queued"}, b.reply(), "one reply after LAST")

		// Over MaxMessageBytes (64): refused, the chunk still read.
		b = startBare(t, nil)
		b.openTxn()
		b.send("BDAT 65 LAST\r\n")
		assert.Equal(t, []string{"552 5.3.4 Max message size exceeded"}, b.reply())
		b.send(strings.Repeat("N", 65))
		assert.Equal(t, "250 2.0.0 I have successfully done nothing", b.cmd("NOOP"))
	})

	// edge.go, readBDAT: go-smtp copies a chunk through an io.LimitReader,
	// which would take a plain EOF inside it for its end; the edge returns
	// io.ErrUnexpectedEOF there, and go-smtp must then fail the message,
	// not hand Data a complete one.
	t.Run("an error inside a chunk fails the message", func(t *testing.T) {
		b := startBare(t, nil)
		b.openTxn()
		b.send("BDAT 10 LAST\r\n")
		b.w.in <- wireIn{b: []byte("abc"), err: io.ErrUnexpectedEOF}
		seen := b.seen()
		assert.ErrorIs(t, seen.err, smtp.ErrDataReset, "Data's reader fails")
	})

	// session.go, Data (the snapshot of the transaction): with BDAT,
	// Data runs on its own goroutine while go-smtp goes on reading
	// commands; a RSET then calls Reset at once and Data's reader fails
	// with ErrDataReset, which the session returns without a reply.
	t.Run("RSET during BDAT", func(t *testing.T) {
		b := startBare(t, nil)
		b.openTxn()
		b.send("BDAT 3\r\n")
		b.started()
		b.send("abc")
		assert.Equal(t, []string{"250 2.0.0 Continue"}, b.reply())
		assert.Equal(t, "250 2.0.0 Session reset", b.cmd("RSET"))
		seen := b.seen()
		assert.ErrorIs(t, seen.err, smtp.ErrDataReset)
		assert.Contains(t, b.sess.called(), "reset")
	})

	// edge.go, observeFinal and readCommand (saslLine): after a final
	// 334 go-smtp reads the next line as a SASL response, whatever it
	// looks like, and "*" cancels (the edge sends "*" for a response
	// over saslLineMax).
	t.Run("334 means a SASL line follows", func(t *testing.T) {
		b := startBare(t, nil)
		b.greet()
		assert.Equal(t, "334 ", b.cmd("AUTH PLAIN"))
		assert.Equal(t, "454 4.7.0 Invalid base64 data", b.cmd("MAIL FROM:<a@x.test>"), "a response, not a command")
		assert.Equal(t, "334 ", b.cmd("AUTH PLAIN"))
		assert.Equal(t, "501 5.0.0 Negotiation cancelled", b.cmd("*"))
	})

	// edge.go, Write: a successful AUTH is "235 2.0.0 ..." from go-smtp,
	// which the edge rewrites to 2.7.0 (RFC 4954 §6), and observeFinal
	// marks the session authenticated (no STARTTLS after AUTH).
	t.Run("AUTH success is 235 2.0.0", func(t *testing.T) {
		b := startBare(t, nil)
		b.greet()
		ir := base64.StdEncoding.EncodeToString([]byte("\x00u\x00p"))
		b.send("AUTH PLAIN " + ir + "\r\n")
		assert.Equal(t, "235 2.0.0 Authentication succeeded\r\n", b.write())
		assert.Equal(t, "503 5.5.1 Already authenticated", b.cmd("AUTH PLAIN "+ir))
	})

	// newGoSMTP: go-smtp's line limit and timeouts are off, the edge's
	// are in force. A long command line reaches the session; go-smtp
	// sets no deadline.
	t.Run("go-smtp's own limits are off", func(t *testing.T) {
		b := startBare(t, nil)
		b.greet()
		long := strings.Repeat("a", 3000) + "@x.test" // over go-smtp's default limit of 2000
		assert.Equal(t, "250 2.0.0 Roger, accepting mail from <"+long+">", b.cmd("MAIL FROM:<"+long+">"))
		assert.Zero(t, b.w.deadlines.Load(), "no deadline set")
	})

	// edge.go, readCommand: go-smtp ends a session after four of its own
	// protocol errors (bad syntax, unknown verb), a fixed limit; the
	// edge answers those lines itself, under its own error limits, and
	// passes only verbs go-smtp implements, whose refusals go-smtp does
	// not count.
	t.Run("go-smtp's error limit only counts what the edge answers", func(t *testing.T) {
		b := startBare(t, nil)
		b.greet()
		for _, v := range []string{"HELO x", "EHLO x", "DATA", "BDAT x", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>",
			"RSET", "AUTH", "VRFY", "NOOP", "EXPN", "HELP", "SEND", "SOML", "SAML", "TURN"} {
			assert.NotContains(t, b.cmd(v), "unrecognized", v)
		}
		for range 10 {
			assert.Equal(t, "501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>", b.cmd("MAIL FROM:nobody"))
		}
		assert.False(t, b.w.isClosed(), "refusals of implemented verbs do not count")
		for range 4 {
			b.cmd("XYZZY")
		}
		assert.Equal(t, "500 5.5.1 Too many errors. Quiting now\r\n", b.write(), "an unknown verb counts")
	})

	// edge.go, overshootOnly: a recipient over MaxRecipients is "452
	// 4.5.3 ..." to RCPT, before the session sees it; session.go, Data:
	// over MaxMessageBytes the DATA reader fails with go-smtp's 552 5.3.4,
	// which the session returns as it is.
	t.Run("recipient and size limits", func(t *testing.T) {
		b := startBare(t, nil)
		b.openTxn()
		b.cmd("RCPT TO:<c@y.test>")
		assert.Equal(t, "452 4.5.3 Maximum limit of 2 recipients reached", b.cmd("RCPT TO:<d@y.test>"))
		assert.NotContains(t, b.sess.called(), "rcpt d@y.test")
		b.cmd("DATA")
		b.send(strings.Repeat("x", 100) + "\r\n.\r\n")
		seen := b.seen()
		var se *smtp.SMTPError
		require.ErrorAs(t, seen.err, &se)
		assert.Same(t, smtp.ErrDataTooLarge, se)
		assert.Equal(t, 552, se.Code)
		assert.Equal(t, smtp.EnhancedCode{5, 3, 4}, se.EnhancedCode)
	})

	// server.go, Serve: go-smtp's Serve returns nil once its Close or
	// Shutdown ended it, or the listener's error when the closed
	// listener is seen first; Serve turns both into ErrServerClosed.
	t.Run("Serve's return after Close", func(t *testing.T) {
		for _, stop := range []string{"Close", "Shutdown"} {
			gs := newGoSMTP(&contractBackend{}, contractConfig(t))
			l := &watchedListener{oneConnListener: oneConnListener{c: make(chan net.Conn), done: make(chan struct{})},
				accepting: make(chan struct{})}
			served := make(chan error, 1)
			go func() { served <- gs.Serve(l) }()
			<-l.accepting // Serve has the listener
			if stop == "Close" {
				require.NoError(t, gs.Close())
			} else {
				require.NoError(t, gs.Shutdown(t.Context()))
			}
			select {
			case err := <-served:
				if err != nil {
					assert.ErrorIs(t, err, net.ErrClosed, stop)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after " + stop)
			}
		}
	})

	// backend.NewSession: an error from NewSession (the HELO stage
	// refusing) is go-smtp's reply to HELO as it is.
	t.Run("NewSession's error is the reply", func(t *testing.T) {
		b := startBare(t, func(be *contractBackend) {
			be.newErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"}
		})
		b.write()
		assert.Equal(t, "550 5.7.1 go away", b.cmd("EHLO client.test"))
	})
}

// FuzzBDATArgs is the differential test of BDAT's arguments: for any
// argument text, go-smtp accepts it (and would read a chunk) exactly
// when the edge's parseBDAT does, and for the same size.
func FuzzBDATArgs(f *testing.F) {
	for _, s := range []string{"5", "5 LAST", "0 last", "4294967296", "-1", "+5", "5 LAST x", "", " 7\t", "5\u00a0LAST", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		if strings.ContainsAny(arg, "\r\n\x00") {
			return // the edge never passes such a line
		}
		n, _, ok := parseBDAT(arg)
		b := startBare(t, nil)
		b.greet()
		code := b.cmd("BDAT " + arg)[:3]
		if !ok {
			require.Equal(t, "501", code, "%q", arg)
			return
		}
		require.Equal(t, "502", code, "%q", arg)
		if n > 0 && n <= 256 {
			b.send(strings.Repeat("N", int(n)))
			require.Equal(t, "250 2.0.0 I have successfully done nothing", b.cmd("NOOP"), "%q: %d bytes read", arg, n)
		}
	})
}

// TestLongestEcho: at MaxCommandLineLimit the edge still inserts STARTTLS
// as a line of its own after go-smtp's "250-Hello <name>", because that
// line comes in one write; a longer limit is refused.
func TestLongestEcho(t *testing.T) {
	_, err := New(Config{Handoff: &memHandoff{}, MaxCommandLine: MaxCommandLineLimit + 1})
	require.ErrorIs(t, err, ErrConfig)

	_, addr := startServer(t, Config{Handoff: &memHandoff{}, MaxCommandLine: MaxCommandLineLimit,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}})
	c := dial(t, addr)
	expect(t, c.reply(), "220")
	name := strings.Repeat("h", MaxCommandLineLimit-len("EHLO \r\n"))
	r := c.cmd("EHLO " + name)
	require.Greater(t, len(r.Lines), 2)
	assert.Equal(t, "Hello "+name, r.Lines[0])
	assert.Equal(t, "STARTTLS", r.Lines[1])
}
