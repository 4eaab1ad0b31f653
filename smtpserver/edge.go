package smtpserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// saslLineMax bounds a SASL response line (RFC 4954 §4 asks servers to take
// at least 12288 octets).
const saslLineMax = 12288 + 2

// errSessionLimit ends a session whose total time ran out.
var errSessionLimit = errors.New("smtpserver: session time limit reached")

type edgeMode uint8

const (
	modeCommand edgeMode = iota
	modeData
	modeBDAT
)

// edgeConn sits between the socket and go-smtp. go-smtp reads through it
// one command line at a time, so when it asks for the next line every reply
// to the previous one has been written and the edge knows the protocol state
// exactly. That lets it:
//   - enforce command line length, NUL bytes and unknown verbs with proper
//     enhanced status codes, under our soft/hard error limits (go-smtp has a
//     fixed limit of 3);
//   - own STARTTLS (so the connection keeps one wrapper across TLS);
//   - set per-command, per-data-block and whole-session deadlines;
//   - decide alone where DATA ends, with bare CR and LF normalised or
//     refused, and hand go-smtp canonical text (see dataDecoder): no SMTP
//     smuggling;
//   - not count recipients over the limit as errors (up to an overshoot
//     limit, as Postfix).
type edgeConn struct {
	raw net.Conn // the accepted connection
	nc  net.Conn // current transport: raw, or a *tls.Conn over it
	br  *bufio.Reader
	srv *Server
	st  *connState

	// Written only by the go-smtp connection goroutine (Read/Write).
	mode        edgeMode
	pending     []byte // bytes for go-smtp, a window into pbuf
	pbuf        []byte
	bdatLeft    int64
	dec         dataDecoder // in DATA: where the message ends
	overshoot   int         // 452 4.5.3 replies in this transaction
	lastVerb    string
	ehloInsert  bool // add STARTTLS to the EHLO reply being written
	awaitResult bool // the next final reply ends a transaction
	needHelo    bool // STARTTLS done, EHLO not yet repeated
	saslLine    bool // a 334 was sent: the next line is a SASL response
	inTxn       bool // between a 250 to MAIL and the end of the transaction
	authed      bool
	errors      int
	deadline    time.Time // whole-session deadline
	readArmed   time.Time // when the read deadline was last set, and for
	readArmedD  time.Duration
	writeArmed  time.Time // when the write deadline was last set

	// Replies not yet written (RFC 2920 §3.1: a server may hold the
	// replies to pipelined commands until it would wait for input).
	// One write per group instead of one per reply line; guarded by wmu
	// because Close, which flushes, may come from another goroutine.
	wmu sync.Mutex
	out []byte

	// The deep protocol tests this session runs (screen.go), and whether
	// its first MAIL was reported.
	screen       ProtocolTest
	screenPassed bool

	closeOnce sync.Once
	mu        sync.Mutex // guards shutting, idle, closed
	shutting  bool
	idle      bool // blocked waiting for a command outside a transaction
	closed    bool
}

func newEdge(raw net.Conn, nc net.Conn, srv *Server, st *connState) *edgeConn {
	e := &edgeConn{raw: raw, nc: nc, srv: srv, st: st, screen: st.screen}
	e.br = bufio.NewReaderSize(nc, 4096)
	if srv.cfg.SessionTimeout > 0 {
		e.deadline = st.conn.Started.Add(srv.cfg.SessionTimeout)
	}
	return e
}

func (e *edgeConn) LocalAddr() net.Addr  { return e.raw.LocalAddr() }
func (e *edgeConn) RemoteAddr() net.Addr { return e.raw.RemoteAddr() }

// The edge owns deadlines; go-smtp's are ignored (its timeouts are off).
func (e *edgeConn) SetDeadline(time.Time) error      { return nil }
func (e *edgeConn) SetReadDeadline(time.Time) error  { return nil }
func (e *edgeConn) SetWriteDeadline(time.Time) error { return nil }

func (e *edgeConn) Close() error {
	var err error
	e.closeOnce.Do(func() {
		_ = e.flush() // a 221 or 421 written just before
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		err = e.nc.Close()
		e.srv.connClosed(e)
	})
	return err
}

// shutdown asks an idle session to end: a session waiting for a command
// outside a transaction is told 421 at once; one inside a transaction
// finishes it first.
func (e *edgeConn) shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shutting = true
	if e.idle && !e.closed {
		// Wake the blocked Read; readCommand then answers 421. The reader
		// takes e.mu right after its read returns, so the next armRead sees
		// that the deadline must be set again.
		_ = e.nc.SetReadDeadline(time.Now())
		e.readArmed = time.Time{}
	}
}

func (e *edgeConn) isShutting() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.shutting
}

// rearmSlack is how stale a deadline may get before it is set again: an
// eighth of the timeout, at most a second. Setting one is a timer update in
// the runtime; doing it for every command and reply costs measurable
// throughput, and a timeout that fires a little early does not matter.
func rearmSlack(d time.Duration) time.Duration { return min(d/8, time.Second) }

func (e *edgeConn) armRead(d time.Duration) error {
	now := time.Now()
	if d == e.readArmedD && now.Sub(e.readArmed) < rearmSlack(d) {
		return nil
	}
	e.readArmed, e.readArmedD = now, d
	t := time.Time{}
	if d > 0 {
		t = now.Add(d)
	}
	if !e.deadline.IsZero() && (t.IsZero() || e.deadline.Before(t)) {
		t = e.deadline
	}
	return e.nc.SetReadDeadline(t)
}

func (e *edgeConn) armWrite() error {
	now := time.Now()
	if now.Sub(e.writeArmed) < rearmSlack(e.srv.cfg.CommandTimeout) {
		return nil
	}
	e.writeArmed = now
	return e.nc.SetWriteDeadline(now.Add(e.srv.cfg.CommandTimeout))
}

// Read hands go-smtp at most one command line per call in command mode, and
// DATA or BDAT bytes otherwise.
func (e *edgeConn) Read(p []byte) (int, error) {
	for {
		if len(e.pending) > 0 {
			n := copy(p, e.pending)
			e.pending = e.pending[n:]
			return n, nil
		}
		var err error
		switch e.mode {
		case modeBDAT:
			return e.readBDAT(p)
		case modeData:
			err = e.readData(p)
		default:
			err = e.readCommand()
		}
		if err != nil {
			return 0, err
		}
	}
}

func (e *edgeConn) readBDAT(p []byte) (int, error) {
	if err := e.armRead(e.srv.cfg.DataTimeout); err != nil {
		return 0, err
	}
	if e.br.Buffered() == 0 {
		if err := e.flush(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > e.bdatLeft {
		p = p[:e.bdatLeft]
	}
	n, err := e.br.Read(p)
	e.bdatLeft -= int64(n)
	if e.bdatLeft == 0 {
		e.mode = modeCommand
	}
	if err == io.EOF && e.bdatLeft > 0 {
		// The client went away inside a chunk. go-smtp copies chunks
		// through an io.LimitReader, which would take this EOF for the
		// chunk's end and hand a truncated message on as complete.
		err = io.ErrUnexpectedEOF
	}
	return n, e.readErr(err)
}

// readErr turns a deadline into the session limit when that is what ran out.
func (e *edgeConn) readErr(err error) error {
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && !e.deadline.IsZero() && !time.Now().Before(e.deadline) {
		e.writeReply(421, "4.4.2", e.srv.cfg.Hostname+" Error: session time limit exceeded")
		e.Close()
		return errSessionLimit
	}
	return err
}

// readData moves decoded DATA text into e.pending. The decoder alone
// decides where the message ends (see dataDecoder); go-smtp gets canonical
// text whose end it reads the same way. The bytes after the end stay
// buffered for the next command.
func (e *edgeConn) readData(p []byte) error {
	if err := e.armRead(e.srv.cfg.DataTimeout); err != nil {
		return err
	}
	buf := e.pbuf[:0]
	for len(buf) < len(p) && e.mode == modeData {
		if e.br.Buffered() == 0 {
			if len(buf) > 0 {
				break // do not block while holding bytes for go-smtp
			}
			if err := e.flush(); err != nil {
				return err
			}
			if _, err := e.br.Peek(1); err != nil {
				return e.readErr(err)
			}
		}
		in, _ := e.br.Peek(min(e.br.Buffered(), len(p)))
		out, used, end := e.dec.decode(buf, in)
		buf = out
		_, _ = e.br.Discard(used)
		if end {
			e.mode = modeCommand
			e.awaitResult = true
			e.st.setBareNewline(e.dec.bare)
		}
	}
	e.pbuf, e.pending = buf, buf
	return nil
}

// readCommand reads one command line; it either answers it itself or puts
// it in e.pending for go-smtp.
func (e *edgeConn) readCommand() error {
	line, tooLong, stop, err := e.nextLine()
	if stop {
		return err
	}
	switch {
	case tooLong && e.saslLine:
		// Cancel the exchange (RFC 4954 §4); go-smtp answers 501.
		e.saslLine = false
		e.setPending("*")
		return nil
	case tooLong:
		return e.refuse(500, "5.5.2", "Error: command line too long")
	}
	if e.screen != 0 && !e.saslLine {
		if stop, err := e.screenCommand(line); stop {
			return err
		}
	}
	if bytes.IndexByte(line, 0) >= 0 {
		return e.refuse(500, "5.5.2", "Error: NUL character in command")
	}
	text := strings.TrimRight(string(line), "\r\n")
	if e.saslLine {
		// A SASL response, not a command: go-smtp reads it itself.
		e.saslLine = false
		e.setPending(text)
		return nil
	}
	if e.srv.cfg.BareNewline == BareNewlineReject && bareLF(line) {
		return e.refuse(550, "5.5.2", "Error: bare <LF> received")
	}
	return e.command(text)
}

// nextLine waits for the next line from the client. stop says that
// readCommand returns err at once: the session is shutting down (err nil
// when the loop is to answer 421) or the read failed.
func (e *edgeConn) nextLine() (line []byte, tooLong, stop bool, err error) {
	if !e.lineBuffered() {
		// About to wait for the client: it may be waiting for us.
		if err := e.flush(); err != nil {
			return nil, false, true, err
		}
	}
	// Arm the deadline and mark the session idle under the lock, so a
	// concurrent shutdown either sees the mark and wakes the Read or is seen
	// here.
	e.mu.Lock()
	if e.shutting && !e.inTxn {
		e.mu.Unlock()
		e.writeReply(421, "4.3.2", e.srv.cfg.Hostname+" Service shutting down, closing transmission channel")
		e.Close()
		return nil, false, true, net.ErrClosed
	}
	if err := e.armRead(e.srv.cfg.CommandTimeout); err != nil {
		e.mu.Unlock()
		return nil, false, true, err
	}
	e.idle = !e.inTxn && e.br.Buffered() == 0
	e.mu.Unlock()
	max := e.srv.cfg.MaxCommandLine
	if e.saslLine {
		max = saslLineMax
	}
	line, tooLong, err = e.readLine(max)
	e.mu.Lock()
	e.idle = false
	e.mu.Unlock()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && e.isShutting() && !e.inTxn && len(line) == 0 {
			return nil, false, true, nil // woken by shutdown: the loop answers 421
		}
		if len(line) == 0 || !errors.Is(err, io.EOF) {
			return nil, false, true, e.readErr(err)
		}
	}
	return line, tooLong, false, nil
}

// refuse answers a command the edge refuses itself; it returns an error
// when the error limit closed the connection.
func (e *edgeConn) refuse(code int, esc, text string) error {
	e.writeReply(code, esc, text)
	return e.checkClosed()
}

// command follows the protocol state through a command line, refuses
// what go-smtp must not see, and hands go-smtp the rest.
func (e *edgeConn) command(text string) error {
	verb, arg, _ := strings.Cut(text, " ")
	verb = strings.ToUpper(verb)
	e.lastVerb = verb
	switch verb {
	case "":
		return e.refuse(500, "5.5.2", "Error: bad syntax")
	case "HELO", "EHLO":
		if hasControl(arg) {
			// go-smtp echoes the name in its reply ("250-Hello <name>"):
			// a reply must not carry control characters (RFC 5321
			// §4.2), and no domain or address literal has them.
			return e.refuse(501, "5.5.2", "Error: invalid characters in "+verb+" argument")
		}
		e.needHelo = false
		e.inTxn = false
		e.ehloInsert = verb == "EHLO" && e.srv.tlsConfig != nil && e.st.tlsState() == nil
		e.st.setGreeting(strings.TrimSpace(arg), verb == "EHLO")
	case "MAIL", "RCPT", "DATA", "AUTH", "VRFY":
		if e.needHelo {
			return e.refuse(503, "5.5.1", "Error: send HELO/EHLO first")
		}
	case "BDAT":
		if e.needHelo {
			return e.refuse(503, "5.5.1", "Error: send HELO/EHLO first")
		}
		e.startBDAT(arg)
	case "RSET":
		e.inTxn = false
	case "QUIT", "NOOP":
	case "STARTTLS":
		return e.startTLS(arg)
	case "EXPN", "HELP", "SEND", "SOML", "SAML", "TURN":
		// go-smtp answers 502 5.5.1, which is right.
	default:
		return e.refuse(500, "5.5.2", "Error: command not recognized")
	}
	// go-smtp's DATA reader switches on its own after our 354; the edge
	// follows when it sees that reply.
	e.setPending(text)
	return nil
}

// startBDAT sets the edge up to pass a chunk's bytes to go-smtp.
func (e *edgeConn) startBDAT(arg string) {
	// The session finds bare line ends in BDAT text itself; what the last
	// DATA recorded must not be taken for them (a DATA refused before its
	// end leaves it untaken).
	e.st.setBareNewline(0)
	if n, last, ok := parseBDAT(arg); ok {
		e.bdatLeft = n
		if n > 0 {
			e.mode = modeBDAT
		}
		if last {
			e.awaitResult = true
		}
	}
}

func (e *edgeConn) setPending(line string) {
	e.pbuf = append(append(e.pbuf[:0], line...), '\r', '\n')
	e.pending = e.pbuf
}

// readLine reads one line of at most max bytes; a longer line is drained and
// reported, without holding more than max bytes.
func (e *edgeConn) readLine(max int) ([]byte, bool, error) {
	var out []byte
	tooLong := false
	for {
		frag, err := e.br.ReadSlice('\n')
		if !tooLong {
			if len(out)+len(frag) > max {
				tooLong = true
				out = nil
			} else {
				out = append(out, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return out, tooLong, err
	}
}

// bareLF reports whether a command line ends in LF without CR.
func bareLF(line []byte) bool {
	n := len(line)
	return n > 0 && line[n-1] == '\n' && (n < 2 || line[n-2] != '\r')
}

// checkClosed returns an error when the error limit closed the connection.
func (e *edgeConn) checkClosed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return net.ErrClosed
	}
	return nil
}

func parseBDAT(arg string) (n int64, last, ok bool) {
	// Mirror go-smtp's checks exactly: it reads the chunk only when these
	// pass, and the edge must skip the same bytes.
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	u, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0, false, false
	}
	return int64(u), last, true
}

// startTLS performs RFC 3207 STARTTLS on behalf of go-smtp.
func (e *edgeConn) startTLS(arg string) error {
	switch {
	case strings.TrimSpace(arg) != "":
		return e.refuse(501, "5.5.4", "Syntax: STARTTLS")
	case e.srv.tlsConfig == nil:
		return e.refuse(502, "5.5.1", "Error: STARTTLS not supported")
	case e.st.tlsState() != nil:
		return e.refuse(503, "5.5.1", "Error: TLS already active")
	case e.inTxn:
		return e.refuse(503, "5.5.1", "Error: STARTTLS not allowed during a mail transaction")
	case e.authed:
		return e.refuse(503, "5.5.1", "Error: STARTTLS not allowed after AUTH")
	}
	e.writeReply(220, "2.0.0", "Ready to start TLS")
	if err := e.flush(); err != nil {
		e.Close()
		return err
	}
	// Anything the client sent after STARTTLS in the clear is dropped
	// (CVE-2011-0411: plaintext command injection).
	e.br.Discard(e.br.Buffered())
	tc := tls.Server(e.raw, e.srv.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), e.srv.cfg.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		e.st.conn.Logger().Info("tls handshake failed", "stage", "starttls", "error", err)
		e.Close()
		return fmt.Errorf("smtpserver: STARTTLS handshake: %w", err)
	}
	e.nc = tc
	e.br.Reset(tc)
	cs := tc.ConnectionState()
	e.st.setTLS(&cs)
	// RFC 3207 §4.2: the client must greet again; go-smtp resets its
	// transaction state at that EHLO.
	e.needHelo = true
	return nil
}

// Write forwards go-smtp's reply lines, watching them to follow the
// protocol and count errors.
func (e *edgeConn) Write(p []byte) (int, error) {
	code, final := replyCode(p)
	out := p
	if code == 235 && bytes.HasPrefix(out, []byte("235 2.0.0 ")) {
		// RFC 4954 §6 gives successful authentication 2.7.0; go-smtp
		// says 2.0.0.
		out = append([]byte("235 2.7.0 "), out[len("235 2.0.0 "):]...)
	}
	if _, err := e.writeCounted(out, code, final); err != nil {
		return 0, err
	}
	if e.ehloInsert && code == 250 && !final {
		e.ehloInsert = false
		if _, err := e.writeCounted([]byte("250-STARTTLS\r\n"), 250, false); err != nil {
			return 0, err
		}
	}
	if final {
		e.observeFinal(code)
	}
	return len(p), nil
}

func (e *edgeConn) observeFinal(code int) {
	e.ehloInsert = false
	switch {
	case code == 354:
		e.mode = modeData
		e.dec.reset(true)
	case code == 235:
		e.authed = true
	case code == 334:
		e.saslLine = true
	case e.lastVerb == "MAIL" && code == 250:
		e.inTxn = true
		e.overshoot = 0
	}
	if e.awaitResult && code != 354 {
		e.awaitResult = false
		e.inTxn = false
		if code >= 200 && code < 300 {
			e.errors = 0 // Postfix counts errors "without delivering mail"
		}
	}
}

func (e *edgeConn) writeReply(code int, esc, text string) {
	line := fmt.Sprintf("%d %s %s\r\n", code, esc, text)
	_, _ = e.writeCounted([]byte(line), code, true)
}

// writeCounted writes one reply line. Errors (4xx/5xx final lines) past the
// soft limit are delayed; at the hard limit the client is told 421 and
// disconnected (Postfix smtpd_soft_error_limit / smtpd_hard_error_limit).
func (e *edgeConn) writeCounted(p []byte, code int, final bool) (int, error) {
	cfg := &e.srv.cfg
	isErr := final && code >= 400 && code < 600 && !e.overshootOnly(code, p)
	if isErr {
		e.errors++
		if e.errors > cfg.SoftErrorLimit && cfg.ErrorSleep > 0 {
			time.Sleep(cfg.ErrorSleep)
		}
	}
	e.wmu.Lock()
	e.out = append(e.out, p...)
	full := len(e.out) >= maxHeldReplies
	e.wmu.Unlock()
	if full {
		if err := e.flush(); err != nil {
			return 0, err
		}
	}
	if isErr && e.errors >= cfg.HardErrorLimit {
		e.st.conn.Logger().Info("too many errors", "stage", "smtp", "action", "disconnect", "code", 421, "errors", e.errors)
		e.wmu.Lock()
		e.out = append(e.out, "421 4.7.0 "+cfg.Hostname+" Error: too many errors\r\n"...)
		e.wmu.Unlock()
		e.Close()
	}
	return len(p), nil
}

// maxHeldReplies bounds the replies held for a pipelining client: a
// flood of commands in one read is answered in pieces of this size.
const maxHeldReplies = 4096

// flush writes the replies held since the last flush, in one write.
func (e *edgeConn) flush() error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if len(e.out) == 0 {
		return nil
	}
	if err := e.armWrite(); err != nil {
		return err
	}
	_, err := e.nc.Write(e.out)
	e.out = e.out[:0]
	return err
}

// lineBuffered reports whether a whole command line is already read
// from the client, so reading it will not wait.
func (e *edgeConn) lineBuffered() bool {
	b, _ := e.br.Peek(e.br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// overshootOnly reports whether p refuses a recipient over the
// per-message limit that is not to be counted as an error: Postfix counts
// such recipients only past smtpd_recipient_overshoot_limit, as a sender
// with a long list (RFC 5321 §4.5.3.1.10) simply sends the rest in another
// transaction.
func (e *edgeConn) overshootOnly(code int, p []byte) bool {
	if code != 452 || e.lastVerb != "RCPT" || !bytes.HasPrefix(p, []byte("452 4.5.3 ")) {
		return false
	}
	e.overshoot++
	return e.overshoot <= e.srv.cfg.RecipientOvershootLimit
}

// replyCode reads the code of a reply line and whether it is the last line.
func replyCode(p []byte) (int, bool) {
	if len(p) < 4 {
		return 0, false
	}
	c, err := strconv.Atoi(string(p[:3]))
	if err != nil {
		return 0, false
	}
	return c, p[3] == ' ' || p[3] == '\r'
}

// hasControl reports an ASCII control character (tab excepted) or DEL.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}
