package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// ErrPacket is returned (wrapped) for a milter packet that is refused
// before it reaches go-milter: empty, larger than the limit, or shaped so
// that go-milter would misread it.
var ErrPacket = errors.New("milter: bad packet")

// DefaultMaxPacketBytes bounds one milter packet, either way: a body
// chunk of the largest data size the protocol negotiates (1 MiB) or a
// header field of DefaultMaxHeaderBytes fits, with room to spare.
const DefaultMaxPacketBytes = 2 << 20

// keepBuffer is the largest packet buffer a quiet connection keeps.
const keepBuffer = 64 << 10

// packetCheck validates one packet (code and data, without the length).
type packetCheck func(code byte, data []byte) error

// guardConn is the protocol edge of both the server and the client: it
// reads each milter packet (RFC-less, libmilter's framing: a 4-byte
// big-endian length, a command byte, data) whole, refuses one that is
// empty or over max, runs check on it, and only then lets go-milter read
// its bytes. go-milter allocates whatever length a packet claims (up to
// 512 MiB) and indexes some packets without checking their shape; the
// guard keeps a hostile peer from doing either: memory per connection
// is bounded by max, and a packet it refuses ends the connection.
type guardConn struct {
	net.Conn
	max   int
	check packetCheck
	// onPacket, if set, sees the code of each packet that passed.
	onPacket func(code byte)
	buf      []byte // the packet being served, length and all
	off      int
	err      error // sticky: once the stream is bad it stays bad
}

func newGuardConn(c net.Conn, max int, check packetCheck) *guardConn {
	return &guardConn{Conn: c, max: max, check: check}
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.off >= len(g.buf) {
		if cap(g.buf) > keepBuffer {
			g.buf = nil
		}
		if g.err != nil {
			return 0, g.err
		}
		if err := g.next(); err != nil {
			g.err, g.buf, g.off = err, g.buf[:0], 0
			return 0, err
		}
	}
	n := copy(p, g.buf[g.off:])
	g.off += n
	return n, nil
}

// next reads one whole packet into buf.
func (g *guardConn) next() error {
	quickAck(g.Conn)
	var hdr [4]byte
	if _, err := io.ReadFull(g.Conn, hdr[:]); err != nil {
		return err // io.EOF: the peer closed between packets
	}
	size, err := packetSize(hdr, g.max)
	if err != nil {
		return err
	}
	if cap(g.buf) < 4+size {
		g.buf = make([]byte, 0, 4+size)
	}
	g.buf = append(g.buf[:0], hdr[:]...)[:4+size]
	if _, err := io.ReadFull(g.Conn, g.buf[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	code, data := g.buf[4], g.buf[5:]
	if g.check != nil {
		if err := g.check(code, data); err != nil {
			return err
		}
	}
	if g.onPacket != nil {
		g.onPacket(code)
	}
	g.off = 0
	return nil
}

// packetSize reads a packet's length field: at least the command byte,
// at most max.
func packetSize(hdr [4]byte, max int) (int, error) {
	n := binary.BigEndian.Uint32(hdr[:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("%w: empty packet", ErrPacket)
	case uint64(n) > uint64(max):
		return 0, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrPacket, n, max)
	}
	return int(n), nil
}

// checkFromMTA is what the server requires of the packets an MTA sends,
// beyond what go-milter checks itself: the fields go-milter slices
// without looking must be there (SMFIC_CONNECT: host name, NUL, family;
// SMFIC_MAIL and SMFIC_RCPT: the address, NUL).
func checkFromMTA(code byte, data []byte) error {
	switch code {
	case 'C':
		i := bytes.IndexByte(data, 0)
		if i < 0 || i+1 >= len(data) {
			return fmt.Errorf("%w: connect packet without host name and family", ErrPacket)
		}
	case 'M', 'R':
		if bytes.IndexByte(data, 0) < 0 {
			return fmt.Errorf("%w: %c packet without a NUL-terminated address", ErrPacket, code)
		}
	}
	return nil
}
