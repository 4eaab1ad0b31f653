package milter

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The guard asks for quick ACKs before it reads each packet (the 40 ms
// stall with Postfix is in bench/'s milter section; here, that the
// option is set on the socket the guard reads).
func TestGuardAsksForQuickACK(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	mta, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer mta.Close()
	c, err := l.Accept()
	require.NoError(t, err)
	defer c.Close()
	quickAckMode := func() int {
		rc, err := c.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		v := -1
		require.NoError(t, rc.Control(func(fd uintptr) {
			v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
		}))
		require.NoError(t, err)
		return v
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		require.NoError(t, syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 0))
	}))
	require.Equal(t, 0, quickAckMode())

	g := newGuardConn(c, 1<<16, checkFromMTA)
	_, err = mta.Write([]byte{0, 0, 0, 1, 'A'}) // SMFIC_ABORT
	require.NoError(t, err)
	buf := make([]byte, 8)
	n, err := g.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Equal(t, 1, quickAckMode(), "set before the packet was read")
}
