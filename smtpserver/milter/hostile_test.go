package milter

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// replies reads what the server answers until it closes the connection
// or goes quiet; closed reports a close.
func replies(c net.Conn, wait time.Duration) (codes string, closed bool) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			var ne net.Error
			if errorsAs(err, &ne) && ne.Timeout() {
				return codes, false
			}
			return codes, true
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			return codes, true
		}
		codes += string(body[0])
	}
}

// A hostile or broken MTA: oversized packets, events out of order, an
// empty packet, a connect packet go-milter would index past its end,
// and a close in the middle of a packet. Each ends its connection and
// nothing else: the server stays up, memory stays bounded, and no
// goroutine is left behind.
func TestHostilePeer(t *testing.T) {
	pol := postern.DataFunc("pass", func(context.Context, *postern.Conn, *postern.Txn, *postern.Message) (postern.Verdict, error) {
		return postern.Pass, nil
	})
	srv, err := New(Config{Policy: pol, MaxPacketBytes: 64 << 10})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	before := runtime.NumGoroutine()

	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, 0x7fffffff)
	cases := []struct {
		name  string
		input []byte
	}{
		{"packet claims 2 GiB", append(optneg(), huge...)},
		{"packet over the limit", append(optneg(), pkt('B', strings.Repeat("x", 70<<10))...)},
		{"oversized negotiation", pkt('O', strings.Repeat("x", 1<<20))},
		{"empty packet", append(optneg(), 0, 0, 0, 0)},
		{"connect without NUL", append(optneg(), pkt('C', "hostname-without-nul")...)},
		{"connect without family", append(optneg(), pkt('C', "host\x00")...)},
		{"mail without NUL", append(append(optneg(), pkt('C', "h\x00", "U")...), pkt('M', "<a@b>")...)},
		{"header before MAIL", append(append(optneg(), pkt('C', "h\x00", "U")...), pkt('L', "Subject\x00", "x\x00")...)},
		{"body before header", append(append(optneg(), pkt('C', "h\x00", "U")...), pkt('B', "x")...)},
		{"end of message first", append(optneg(), pkt('E')...)},
		{"negotiation twice", append(optneg(), optneg()...)},
		{"close mid-packet", append(optneg(), 0, 0, 1, 0, 'B', 'x')},
		{"unknown command", append(optneg(), pkt('Z', "x")...)},
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	alloc := ms.TotalAlloc
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			_, _ = c.Write(tc.input)
			if tc.name == "close mid-packet" {
				c.(*net.TCPConn).CloseWrite()
			}
			_, closed := replies(c, 5*time.Second)
			assert.True(t, closed, "the server ends the connection")
		})
	}
	runtime.ReadMemStats(&ms)
	assert.Less(t, ms.TotalAlloc-alloc, uint64(32<<20), "no packet claimed a large allocation")

	// The server still serves a well-behaved MTA.
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	_, err = c.Write(conversation("hello\r\n"))
	require.NoError(t, err)
	codes, _ := replies(c, 5*time.Second)
	assert.Contains(t, codes, "a", "accept at end of message")
	c.Close()

	waitGoroutines(t, before)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	require.NoError(t, <-served)
}
