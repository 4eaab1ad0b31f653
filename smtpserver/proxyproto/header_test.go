package proxyproto

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseV1(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Header
		n    int
		err  error
	}{
		{"PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\nEHLO", Header{Version: 1, Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.1:25")}, 44, nil},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n", Header{Version: 1, Source: ap("[2001:db8::1]:65535"), Dest: ap("[2001:db8::2]:0")}, 44, nil},
		{"PROXY UNKNOWN\r\n", Header{Version: 1, Local: true}, 15, nil},
		{"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header{Version: 1, Local: true}, 35, nil},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 56324", Header{}, 0, ErrShort},
		{"PRO", Header{}, 0, ErrShort},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\rX", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP6 192.0.2.1 2001:db8::2 1 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1 65536\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 01 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 +1 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1  198.51.100.1 1 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1 25 9\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n", Header{}, 0, ErrInvalid},
		{"PROXY UDP4 192.0.2.1 198.51.100.1 1 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 25\r\n", Header{}, 0, ErrInvalid},
		{"PROXY " + string(bytes.Repeat([]byte("A"), 120)), Header{}, 0, ErrInvalid},
		{"EHLO client.example\r\n", Header{}, 0, ErrNotProxy},
		{"", Header{}, 0, ErrNotProxy},
	} {
		h, n, err := Parse([]byte(tc.in))
		if tc.err != nil {
			assert.ErrorIs(t, err, tc.err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, h, "%q", tc.in)
		assert.Equal(t, tc.n, n, "%q", tc.in)
	}
}

// v2 builds a version 2 header by hand: signature, version and command,
// family, length, body.
func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), v2Sig...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func TestParseV2(t *testing.T) {
	h := Header{Version: 2, Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.1:25"),
		TLVs: []TLV{{Type: 0x01, Value: []byte("smtp")}, {Type: 0xEA, Value: []byte("vpce-0123")}}}
	b, err := h.AppendV2(nil)
	require.NoError(t, err)
	got, n, err := Parse(append(b, "EHLO x\r\n"...))
	require.NoError(t, err)
	assert.Equal(t, h, got)
	assert.Equal(t, len(b), n)
	for i := 1; i < len(b); i++ {
		_, _, err := Parse(b[:i])
		assert.ErrorIs(t, err, ErrShort, "a header cut at %d bytes", i)
	}

	h6 := Header{Version: 2, Source: ap("[2001:db8::1]:1"), Dest: ap("[2001:db8::2]:25")}
	b, err = h6.AppendV2(nil)
	require.NoError(t, err)
	got, _, err = Parse(b)
	require.NoError(t, err)
	assert.Equal(t, h6, got)

	// LOCAL (a health check), UNSPEC and UNIX keep the connection's own
	// addresses; LOCAL's body is skipped unread.
	for _, raw := range [][]byte{
		v2(0, 0x11, []byte("anything at all")), v2(1, 0x00, nil), v2(1, 0x31, make([]byte, 216)),
	} {
		got, n, err := Parse(raw)
		require.NoError(t, err)
		assert.True(t, got.Local)
		assert.Equal(t, len(raw), n)
	}

	for name, raw := range map[string][]byte{
		"version 3":                append(append([]byte(nil), v2Sig...), 0x31, 0x11, 0, 0),
		"command 2":                v2(2, 0x11, make([]byte, 12)),
		"UDP":                      v2(1, 0x12, make([]byte, 12)),
		"short address block":      v2(1, 0x21, make([]byte, 20)),
		"TLV overruns":             v2(1, 0x11, append(make([]byte, 12), 0x01, 0x00, 0x09, 'x')),
		"TLV cut short":            v2(1, 0x11, append(make([]byte, 12), 0x01, 0x00)),
		"CRC32c of the wrong size": v2(1, 0x11, append(make([]byte, 12), 0x04, 0x00, 0x02, 0, 0)),
	} {
		_, _, err := Parse(raw)
		assert.ErrorIs(t, err, ErrInvalid, name)
	}
}

// A CRC32c TLV is checked: right passes, one flipped bit fails.
func TestParseV2CRC(t *testing.T) {
	body := []byte{192, 0, 2, 1, 198, 51, 100, 1, 0, 1, 0, 25, crcTLV, 0, 4, 0, 0, 0, 0}
	raw := v2(1, 0x11, body)
	sum := crc32.Checksum(raw, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(raw[len(raw)-4:], sum)
	h, _, err := Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, ap("192.0.2.1:1"), h.Source)
	raw[16] ^= 1
	_, _, err = Parse(raw)
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestAppendErrors(t *testing.T) {
	mixed := Header{Source: ap("192.0.2.1:1"), Dest: ap("[2001:db8::1]:25")}
	_, err := mixed.AppendV1(nil)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = mixed.AppendV2(nil)
	assert.ErrorIs(t, err, ErrInvalid)
	b, err := Header{Local: true}.AppendV1(nil)
	require.NoError(t, err)
	assert.Equal(t, "PROXY UNKNOWN\r\n", string(b))
}

func TestIsPrefix(t *testing.T) {
	for in, want := range map[string]bool{
		"P": true, "PROXY T": true, "\r\n\r\n": true, "\r\n\r\n\x00\r\nQUIT\n\x21": true,
		"EHLO": false, "\r\n\r\nX": false, "PX": false, "": false,
	} {
		assert.Equal(t, want, IsPrefix([]byte(in)), "%q", in)
	}
}
