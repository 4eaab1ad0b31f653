package proxyproto

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse: any bytes give a header, a clear error or ErrShort, never a
// panic; a header read back from its own encoding is the same header, and
// a proper prefix of an encoding is ErrShort.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n", "PROXY TCP6 ::1 ::2 1 2\r\n", "PROXY UNKNOWN\r\n",
		string(v2(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 1, 0, 1, 0, 25, 1, 0, 1, 'h'})),
		string(v2(0, 0x00, nil)), string(v2(1, 0x11, []byte{192, 0, 2, 1, 198, 51, 100, 1, 0, 1, 0, 25, 4, 0, 4, 1, 2, 3, 4})),
		"EHLO x\r\n", "PROXY", "\r\n\r\n\x00\r\nQUIT\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			require.Zero(t, n)
			return
		}
		require.LessOrEqual(t, n, len(b))
		require.Positive(t, n)
		if h.Version == 1 {
			require.LessOrEqual(t, n, v1Max)
		}
		if h.Local {
			return
		}
		var enc []byte
		if h.Version == 1 {
			enc, err = h.AppendV1(nil)
		} else {
			enc, err = h.AppendV2(nil)
		}
		require.NoError(t, err)
		back, m, err := Parse(enc)
		require.NoError(t, err)
		require.Equal(t, len(enc), m)
		require.Equal(t, h.Source, back.Source)
		require.Equal(t, h.Dest, back.Dest)
		require.Equal(t, len(h.TLVs), len(back.TLVs))
		for i := 1; i < len(enc); i++ {
			_, _, err := Parse(enc[:i])
			require.ErrorIs(t, err, ErrShort, "prefix of %d bytes", i)
		}
	})
}

// FuzzV1V2: the two versions carry the same addresses alike (a
// differential target: one balancer may be set to either).
func FuzzV1V2(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, []byte{198, 51, 100, 1}, uint16(56324), uint16(25))
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, uint16(0), uint16(65535))
	f.Fuzz(func(t *testing.T, src, dst []byte, sp, dp uint16) {
		s, ok1 := netip.AddrFromSlice(src)
		d, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 || s.Is4() != d.Is4() {
			return
		}
		h := Header{Source: netip.AddrPortFrom(s, sp), Dest: netip.AddrPortFrom(d, dp)}
		e1, err := h.AppendV1(nil)
		require.NoError(t, err)
		e2, err := h.AppendV2(nil)
		require.NoError(t, err)
		h1, _, err := Parse(e1)
		require.NoError(t, err, "%q", e1)
		h2, _, err := Parse(e2)
		require.NoError(t, err)
		require.Equal(t, h1.Source, h2.Source)
		require.Equal(t, h1.Dest, h2.Dest)
		require.Equal(t, h.Source, h1.Source)
	})
}
