package testutil

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// RawUDP serves UDP on a loopback port until the test ends: each
// datagram gets reply(datagram) back, nothing when reply returns nil. It
// returns the address.
func RawUDP(t testing.TB, reply func(req []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(append([]byte(nil), buf[:n]...)); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// ReplayDNS is a DNS server for fuzzing a client: it answers every query
// with the bytes last given to set, the query's ID patched in, and
// nothing before set is called. It returns its address.
func ReplayDNS(t testing.TB) (addr string, set func([]byte)) {
	t.Helper()
	var answer atomic.Pointer[[]byte]
	addr = RawUDP(t, func(q []byte) []byte {
		p := answer.Load()
		if p == nil {
			return nil
		}
		out := append([]byte(nil), *p...)
		if len(out) >= 2 && len(q) >= 2 {
			out[0], out[1] = q[0], q[1]
		}
		return out
	})
	return addr, func(b []byte) {
		b = append([]byte(nil), b...)
		answer.Store(&b)
	}
}
