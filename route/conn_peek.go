//go:build linux || darwin || freebsd || netbsd || openbsd

package route

import "syscall"

// quiet reports whether nothing is waiting to be read on the connection
// and the peer has not closed it: a non-blocking peek at the socket (no
// round trip). Anything else — an EOF, a 421 sent before closing, bytes
// of a TLS record, a connection that is not a socket — is false, and the
// caller proves the connection with a command instead.
func (c *sessConn) quiet() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		quiet = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for the socket to become readable
	})
	return quiet
}
