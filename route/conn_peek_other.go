//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package route

// quiet cannot look at the socket here: every reuse proves the
// connection with RSET.
func (c *sessConn) quiet() bool { return false }
