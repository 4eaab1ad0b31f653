package milter

import (
	"encoding/binary"
	"net"
	"sync"
)

// pkt encodes one milter packet: length, code, data.
func pkt(code byte, data ...string) []byte {
	var body []byte
	for _, d := range data {
		body = append(body, d...)
	}
	b := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(b, uint32(1+len(body)))
	b[4] = code
	return append(b, body...)
}

// optneg is an MTA's SMFIC_OPTNEG: version 6, every action, every
// protocol step.
func optneg() []byte {
	d := make([]byte, 12)
	binary.BigEndian.PutUint32(d, 6)
	binary.BigEndian.PutUint32(d[4:], 0x1ff)
	binary.BigEndian.PutUint32(d[8:], 0x1fffff)
	return pkt('O', string(d))
}

// conversation is what an MTA sends for one message, as Postfix does.
func conversation(body string) []byte {
	var b []byte
	for _, p := range [][]byte{
		optneg(),
		pkt('D', "C", "j\x00mx.example.test\x00{daemon_name}\x00smtpd\x00"),
		pkt('C', "client.example.net\x00", "4", "\x9c\x40", "192.0.2.7\x00"),
		pkt('H', "client.example.net\x00"),
		pkt('D', "M", "i\x00ABC123\x00"),
		pkt('M', "<alice@example.net>\x00", "SIZE=100\x00", "BODY=8BITMIME\x00"),
		pkt('R', "<bob@example.test>\x00", "NOTIFY=FAILURE\x00"),
		pkt('T'),
		pkt('L', "From\x00", " alice@example.net\x00"),
		pkt('L', "Subject\x00", " hello\n\tworld\x00"),
		pkt('N'),
		pkt('B', body),
		pkt('E'),
		pkt('Q'),
	} {
		b = append(b, p...)
	}
	return b
}

// chanListener is a net.Listener fed by a channel (net.Pipe ends).
type chanListener struct {
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
