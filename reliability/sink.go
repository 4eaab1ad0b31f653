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
// everything and counts the messages it gets by Message-ID.
type sink struct {
	addr string
	srv  *smtp.Server

	mu    sync.Mutex
	total int
	ids   map[string]int
	last  time.Time // when the last message arrived
}

// startSink listens on addr ("127.0.0.1:0" for any port).
func (s *suite) startSink(addr string) (*sink, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	k := &sink{addr: l.Addr().String(), ids: map[string]int{}}
	k.srv = smtp.NewServer(k)
	k.srv.Domain = "sink.test"
	k.srv.MaxMessageBytes = 64 << 20
	k.srv.MaxRecipients = 10000
	k.srv.MaxLineLength = 16 << 20 // what the relay accepts, the sink takes
	k.srv.EnableSMTPUTF8 = true
	k.srv.EnableDSN = true
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

type sinkSession struct{ k *sink }

func (ss *sinkSession) AuthMechanisms() []string             { return nil }
func (ss *sinkSession) Auth(string) (any, error)             { return nil, smtp.ErrAuthUnsupported }
func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Reset()                               {}
func (ss *sinkSession) Logout() error                        { return nil }

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
	ss.k.mu.Unlock()
	return nil
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
