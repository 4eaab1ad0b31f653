package testutil

import (
	"io"
	"net"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPipeListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewPipeListener("127.0.0.1:25")
		c, err := l.Dial()
		require.NoError(t, err)
		s, err := l.Accept()
		require.NoError(t, err)
		assert.Same(t, l.Server(0), s)
		assert.Equal(t, "127.0.0.1:25", s.LocalAddr().String())
		assert.Equal(t, c.LocalAddr(), s.RemoteAddr())
		assert.Equal(t, s.LocalAddr(), c.RemoteAddr())
		_, ok := s.RemoteAddr().(*net.TCPAddr)
		assert.True(t, ok, "TCP addresses, as on loopback")

		go func() { _, _ = c.Write([]byte("hello")); c.Close() }()
		b, err := io.ReadAll(s)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(b))

		require.NoError(t, l.Close())
		_, err = l.Accept()
		assert.ErrorIs(t, err, net.ErrClosed)
		_, err = l.Dial()
		assert.ErrorIs(t, err, net.ErrClosed)
	})
}
