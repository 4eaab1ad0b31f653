package scan

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/clamav"
)

// busyClamd is a clamd that reads a zINSTREAM and answers an ERROR.
func busyClamd(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := br.ReadString(0); err != nil {
					return
				}
				for {
					var n uint32
					if binary.Read(br, binary.BigEndian, &n) != nil {
						return
					}
					if n == 0 {
						break
					}
					if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
						return
					}
				}
				_, _ = io.WriteString(conn, "Can't allocate memory ERROR\x00")
			}()
		}
	}()
	return ln.Addr().String()
}

// TestScannerFailureReason: the verdict's reason says once which scanner
// and which server failed, and how, for an adapter's error; a scanner of
// one's own that returns a bare error gets its name put before it.
func TestScannerFailureReason(t *testing.T) {
	addr := busyClamd(t)
	av, err := clamav.New(clamav.Config{Addrs: []string{addr}})
	require.NoError(t, err)
	f := newFilter(t, FilterConfig{Virus: []ScannerEntry{{Scanner: av}, {Scanner: failing("own")}}})
	c, txn := session("user@example.com")
	v, err := f.CheckData(context.Background(), c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	require.Equal(t, postern.TempFail, v.Action)
	assert.True(t, strings.HasPrefix(v.Reason, "scan: "), v.Reason)
	assert.Contains(t, v.Reason, `clamav: `+addr+`: server error: "Can't allocate memory"`)
	assert.Contains(t, v.Reason, "own: connection refused")
	assert.Equal(t, 1, strings.Count(v.Reason, "clamav"), v.Reason)
	assert.Equal(t, 1, strings.Count(v.Reason, addr), v.Reason)
}
