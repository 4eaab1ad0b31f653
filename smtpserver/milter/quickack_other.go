//go:build !linux

package milter

import "net"

// quickAck is Linux's TCP_QUICKACK; elsewhere the kernel's own ACK timing
// is left alone.
func quickAck(net.Conn) {}
