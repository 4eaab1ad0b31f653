package main

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sink is the downstream server: a go-smtp server on loopback that accepts
// everything and counts the messages it gets by Message-ID. A recording
// sink (startRecordingSink) also keeps every message with its envelope
// and every byte its clients sent, and can refuse recipients.
type sink struct {
	addr   string
	srv    *smtp.Server
	record bool

	mu    sync.Mutex
	total int
	ids   map[string]int
	last  time.Time // when the last message arrived
	msgs  []sunk
	wires []*bytes.Buffer                   // per connection, as read
	rcpt  func(addr string) *smtp.SMTPError // nil: accept
}

// sunk is a message a recording sink received: the envelope as go-smtp
// parsed it and the message text.
type sunk struct {
	From  string
	Rcpts []string
	Data  []byte
}

// startSink listens on addr ("127.0.0.1:0" for any port).
func (s *suite) startSink(addr string) (*sink, error) { return s.newSink(addr, false, true) }

// startRecordingSink is startSink that keeps what it gets.
func (s *suite) startRecordingSink() (*sink, error) { return s.newSink("127.0.0.1:0", true, true) }

// startRecordingSinkNoDSN is a recording sink that does not offer DSN
// (RFC 3461): a relay handing it a message with NOTIFY=SUCCESS must
// send the success notice itself (Action: relayed).
func (s *suite) startRecordingSinkNoDSN() (*sink, error) {
	return s.newSink("127.0.0.1:0", true, false)
}

func (s *suite) newSink(addr string, record, dsn bool) (*sink, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	k := &sink{addr: l.Addr().String(), ids: map[string]int{}, record: record}
	if record {
		l = tapListener{Listener: l, k: k}
	}
	k.srv = smtp.NewServer(k)
	k.srv.Domain = "sink.test"
	k.srv.MaxMessageBytes = 64 << 20
	k.srv.MaxRecipients = 10000
	k.srv.MaxLineLength = 16 << 20 // what the relay accepts, the sink takes
	k.srv.EnableSMTPUTF8 = true
	k.srv.EnableDSN = dsn
	k.srv.EnableBINARYMIME = true
	// Killed relays leave broken connections behind: expected here.
	k.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = k.srv.Serve(l) }()
	s.onClose(k.stop)
	return k, nil
}

func (k *sink) stop() { _ = k.srv.Close() }

// count returns how many messages arrived and how many distinct
// Message-IDs they carried.
func (k *sink) count() (total, distinct int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.total, len(k.ids)
}

// copies returns how often each Message-ID arrived.
func (k *sink) copies() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.ids))
	for id, n := range k.ids {
		out[id] = n
	}
	return out
}

// quietFor tells whether no message arrived for d.
func (k *sink) quietFor(d time.Duration) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return time.Since(k.last) >= d
}

func (k *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{k: k}, nil }

type sinkSession struct {
	k   *sink
	cur sunk
}

func (ss *sinkSession) AuthMechanisms() []string { return nil }
func (ss *sinkSession) Auth(string) (any, error) { return nil, smtp.ErrAuthUnsupported }
func (ss *sinkSession) Reset()                   { ss.cur = sunk{} }
func (ss *sinkSession) Logout() error            { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.cur = sunk{From: from}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.k.mu.Lock()
	refuse := ss.k.rcpt
	ss.k.mu.Unlock()
	if refuse != nil {
		if err := refuse(to); err != nil {
			return err
		}
	}
	ss.cur.Rcpts = append(ss.cur.Rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	id := messageID(b)
	ss.k.mu.Lock()
	ss.k.total++
	ss.k.ids[id]++
	ss.k.last = time.Now()
	if ss.k.record {
		ss.cur.Data = b
		ss.k.msgs = append(ss.k.msgs, ss.cur)
	}
	ss.k.mu.Unlock()
	return nil
}

// refuseRcpt makes the sink answer RCPT with the error f returns (nil
// accepts).
func (k *sink) refuseRcpt(f func(addr string) *smtp.SMTPError) {
	k.mu.Lock()
	k.rcpt = f
	k.mu.Unlock()
}

// received returns the messages a recording sink got so far.
func (k *sink) received() []sunk {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sunk(nil), k.msgs...)
}

// wire returns, per connection, the bytes a recording sink read so far,
// exactly as the client sent them (commands, dot-stuffing, line ends).
func (k *sink) wire() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([][]byte, 0, len(k.wires))
	for _, w := range k.wires {
		out = append(out, bytes.Clone(w.Bytes()))
	}
	return out
}

// tapListener records what a recording sink reads.
type tapListener struct {
	net.Listener
	k *sink
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &bytes.Buffer{}
	l.k.mu.Lock()
	l.k.wires = append(l.k.wires, w)
	l.k.mu.Unlock()
	return tapConn{Conn: c, k: l.k, w: w}, nil
}

type tapConn struct {
	net.Conn
	k *sink
	w *bytes.Buffer
}

func (c tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.k.mu.Lock()
	c.w.Write(p[:n])
	c.k.mu.Unlock()
	return n, err
}

// messageID returns the Message-ID field of a message's header (RFC 5322
// §3.6.4), "" if there is none or the header cannot be read.
func messageID(msg []byte) string {
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return ""
	}
	return strings.TrimSpace(h.Get("Message-Id"))
}
