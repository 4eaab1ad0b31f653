package access

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// parse parses src as the file "access" and fails the test on error.
func parse(t testing.TB, src string) (*Map, []Warning) {
	t.Helper()
	m, warns, err := Parse(strings.NewReader(src), "access")
	require.NoError(t, err)
	return m, warns
}

func mustMap(t testing.TB, src string) *Map {
	t.Helper()
	m, _ := parse(t, src)
	return m
}

// newConn returns a connection from ip with the verified host name name.
func newConn(ip, name string) *postern.Conn {
	return &postern.Conn{
		ID:         "c1",
		Remote:     netip.AddrPortFrom(netip.MustParseAddr(ip), 40000),
		Local:      netip.MustParseAddrPort("192.0.2.25:25"),
		ClientName: name,
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

var bg = context.Background()

// warnMsgs returns the warnings as strings.
func warnMsgs(ws []Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.String()
	}
	return out
}
