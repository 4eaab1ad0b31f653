package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"strconv"
)

// Errors of the parser. ErrShort is not a failure: the bytes so far are
// the start of a header that may still be valid.
var (
	// ErrShort: more bytes are needed.
	ErrShort = errors.New("proxyproto: incomplete header")
	// ErrNotProxy: the bytes do not start with a PROXY header at all.
	ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")
	// ErrInvalid: a PROXY header that breaks the specification.
	ErrInvalid = errors.New("proxyproto: invalid header")
)

// v1Prefix starts a version 1 header; v2Sig a version 2 one (the
// specification's §2.1 and §2.2).
var (
	v1Prefix = []byte("PROXY ")
	v2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const (
	// v1Max is the longest version 1 header, CRLF included (§2.1).
	v1Max = 107
	// v2Fixed is the fixed part of a version 2 header.
	v2Fixed = 16
	// crcTLV is PP2_TYPE_CRC32C, whose value is the CRC32c of the
	// whole header with the value zeroed (§2.2.5).
	crcTLV = 0x04
)

// Header is what a PROXY protocol header says of a connection.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Local is set for a connection the balancer made on its own behalf
	// (a health check: version 2's LOCAL command, version 1's UNKNOWN),
	// or one whose addresses are not TCP over IP (version 2's UNSPEC or
	// UNIX families): Source and Dest are then unset and the connection's
	// own addresses stand.
	Local bool
	// Source is the client's address and port, Dest the address and
	// port it connected to at the balancer.
	Source, Dest netip.AddrPort
	// TLVs are version 2's type-length-value fields, in order (ALPN, TLS
	// details, a cloud provider's endpoint ID ...). They are read and
	// bounds-checked, and a CRC32c field is verified; their meaning is
	// the caller's.
	TLVs []TLV
}

// TLV is one type-length-value field of a version 2 header.
type TLV struct {
	Type  byte
	Value []byte
}

// Parse reads one header from the start of b and returns it with the
// number of bytes it took. With ErrShort, b is the start of what may
// still be a valid header: read more (up to a bound) and call again.
// The returned TLV values alias b.
func Parse(b []byte) (Header, int, error) {
	switch {
	case hasPrefix(b, v1Prefix):
		return parseV1(b)
	case hasPrefix(b, v2Sig):
		return parseV2(b)
	}
	return Header{}, 0, ErrNotProxy
}

// hasPrefix reports whether b starts with prefix, or is a start of it
// (then a decision needs more bytes, which the parsers say with ErrShort).
func hasPrefix(b, prefix []byte) bool {
	n := min(len(b), len(prefix))
	return n > 0 && bytes.Equal(b[:n], prefix[:n])
}

// IsPrefix reports whether b begins a PROXY header (or could, when b is
// shorter than the signatures): what a listener checks in the first bytes
// of a client that may not send one.
func IsPrefix(b []byte) bool { return hasPrefix(b, v1Prefix) || hasPrefix(b, v2Sig) }

// parseV1 reads "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n".
func parseV1(b []byte) (Header, int, error) {
	if len(b) < len(v1Prefix) {
		return Header{}, 0, ErrShort
	}
	end := bytes.Index(b[:min(len(b), v1Max)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= v1Max {
			return Header{}, 0, fmt.Errorf("%w: version 1 header without CRLF in %d bytes", ErrInvalid, v1Max)
		}
		if bytes.IndexByte(b, '\n') >= 0 || bytes.IndexByte(b[:len(b)-1], '\r') >= 0 {
			return Header{}, 0, fmt.Errorf("%w: version 1 header ends without CRLF", ErrInvalid)
		}
		return Header{}, 0, ErrShort
	}
	line := string(b[len(v1Prefix):end])
	n := end + 2
	h := Header{Version: 1}
	proto, rest, _ := cutSpace(line)
	if proto == "UNKNOWN" {
		// The rest, if any, is to be ignored (§2.1).
		h.Local = true
		return h, n, nil
	}
	if proto != "TCP4" && proto != "TCP6" {
		return Header{}, 0, fmt.Errorf("%w: version 1 protocol %q", ErrInvalid, proto)
	}
	var f [4]string
	for i := range f {
		var ok bool
		if f[i], rest, ok = cutSpace(rest); !ok && i < 3 {
			return Header{}, 0, fmt.Errorf("%w: version 1 header %q has too few fields", ErrInvalid, line)
		}
	}
	if rest != "" {
		return Header{}, 0, fmt.Errorf("%w: version 1 header %q has too many fields", ErrInvalid, line)
	}
	src, err1 := v1Addr(f[0], proto)
	dst, err2 := v1Addr(f[1], proto)
	sp, err3 := v1Port(f[2])
	dp, err4 := v1Port(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Header{}, 0, fmt.Errorf("%w: version 1: %v", ErrInvalid, err)
	}
	h.Source, h.Dest = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, n, nil
}

// cutSpace splits at the first single space; ok is false when there is
// none. Fields are separated by exactly one space (§2.1).
func cutSpace(s string) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func v1Addr(s, proto string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, fmt.Errorf("address %q", s)
	case proto == "TCP4" && !a.Is4(), proto == "TCP6" && !a.Is6(), a.Zone() != "":
		return a, fmt.Errorf("address %q is not %s", s, proto)
	}
	return a, nil
}

func v1Port(s string) (uint16, error) {
	if s == "" || len(s) > 5 || s[0] == '0' && len(s) > 1 {
		return 0, fmt.Errorf("port %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q", s)
		}
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q", s)
	}
	return uint16(p), nil
}

// parseV2 reads the binary header (§2.2).
func parseV2(b []byte) (Header, int, error) {
	if len(b) < v2Fixed {
		return Header{}, 0, ErrShort
	}
	verCmd, famProto := b[12], b[13]
	if verCmd>>4 != 2 {
		return Header{}, 0, fmt.Errorf("%w: version 2 signature with version %d", ErrInvalid, verCmd>>4)
	}
	n := v2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return Header{}, 0, ErrShort
	}
	body := b[v2Fixed:n]
	h := Header{Version: 2}
	switch verCmd & 0xf {
	case 0x0:
		// LOCAL: the balancer's own connection; whatever follows is
		// to be skipped unread (§2.2).
		h.Local = true
		return h, n, nil
	case 0x1:
	default:
		return Header{}, 0, fmt.Errorf("%w: version 2 command %#x", ErrInvalid, verCmd&0xf)
	}
	var alen int
	switch famProto {
	case 0x00: // UNSPEC
		h.Local = true
	case 0x11: // TCP over IPv4
		alen = 12
	case 0x21: // TCP over IPv6
		alen = 36
	case 0x31: // stream over Unix sockets: no IP address to use
		alen = 216
		h.Local = true
	default:
		return Header{}, 0, fmt.Errorf("%w: version 2 family and protocol %#x (only TCP streams)", ErrInvalid, famProto)
	}
	if len(body) < alen {
		return Header{}, 0, fmt.Errorf("%w: version 2 address block of %d bytes, %d needed", ErrInvalid, len(body), alen)
	}
	if !h.Local {
		h.Source, h.Dest = v2Addrs(body[:alen])
	}
	tlvs, crcAt, err := parseTLVs(body[alen:])
	if err != nil {
		return Header{}, 0, err
	}
	if crcAt >= 0 {
		if err := checkCRC(b[:n], v2Fixed+alen+crcAt); err != nil {
			return Header{}, 0, err
		}
	}
	h.TLVs = tlvs
	return h, n, nil
}

func v2Addrs(a []byte) (src, dst netip.AddrPort) {
	if len(a) == 12 {
		s, _ := netip.AddrFromSlice(a[0:4])
		d, _ := netip.AddrFromSlice(a[4:8])
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(a[8:10])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(a[10:12]))
	}
	s, _ := netip.AddrFromSlice(a[0:16])
	d, _ := netip.AddrFromSlice(a[16:32])
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(a[32:34])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(a[34:36]))
}

// parseTLVs reads the TLV fields, which must fill b exactly; crcAt is
// the offset in b of a CRC32c field's value, -1 without one.
func parseTLVs(b []byte) (out []TLV, crcAt int, err error) {
	crcAt = -1
	for off := 0; off < len(b); {
		if len(b)-off < 3 {
			return nil, -1, fmt.Errorf("%w: version 2 TLV cut short", ErrInvalid)
		}
		typ, l := b[off], int(binary.BigEndian.Uint16(b[off+1:off+3]))
		if len(b)-off-3 < l {
			return nil, -1, fmt.Errorf("%w: version 2 TLV %#x of %d bytes overruns the header", ErrInvalid, typ, l)
		}
		if typ == crcTLV {
			if l != 4 || crcAt >= 0 {
				return nil, -1, fmt.Errorf("%w: CRC32c TLV of %d bytes, or twice", ErrInvalid, l)
			}
			crcAt = off + 3
		}
		out = append(out, TLV{Type: typ, Value: b[off+3 : off+3+l : off+3+l]})
		off += 3 + l
	}
	return out, crcAt, nil
}

// castagnoli is CRC32c's table; building it is cheap, keeping it would
// be package state.
func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// checkCRC verifies a PP2_TYPE_CRC32C field whose value is at off in
// hdr: the CRC32c of the whole header with the value zeroed (§2.2.5).
func checkCRC(hdr []byte, off int) error {
	want := binary.BigEndian.Uint32(hdr[off : off+4])
	c := crc32.New(castagnoli())
	c.Write(hdr[:off])
	c.Write([]byte{0, 0, 0, 0})
	c.Write(hdr[off+4:])
	if c.Sum32() != want {
		return fmt.Errorf("%w: CRC32c mismatch", ErrInvalid)
	}
	return nil
}

// AppendV1 appends h as a version 1 header: what a balancer sends
// (a test's client, a proxy of one's own). A Local header is "PROXY
// UNKNOWN"; otherwise Source and Dest must both be IPv4 or both IPv6.
func (h Header) AppendV1(dst []byte) ([]byte, error) {
	if h.Local {
		return append(dst, "PROXY UNKNOWN\r\n"...), nil
	}
	s, d := h.Source.Addr(), h.Dest.Addr()
	proto := "TCP4"
	switch {
	case s.Is4() && d.Is4():
	case s.Is6() && d.Is6() && s.Zone() == "" && d.Zone() == "":
		proto = "TCP6"
	default:
		return dst, fmt.Errorf("%w: addresses %v and %v are not one TCP family", ErrInvalid, h.Source, h.Dest)
	}
	dst = append(dst, "PROXY "+proto+" "...)
	dst = s.AppendTo(dst)
	dst = append(dst, ' ')
	dst = d.AppendTo(dst)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(h.Source.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(h.Dest.Port()), 10)
	return append(dst, "\r\n"...), nil
}

// AppendV2 appends h as a version 2 header with its TLVs. A Local header
// is the LOCAL command with no address.
func (h Header) AppendV2(dst []byte) ([]byte, error) {
	var addr []byte
	verCmd, fam := byte(0x21), byte(0)
	if h.Local {
		verCmd = 0x20
	} else {
		s, d := h.Source.Addr(), h.Dest.Addr()
		switch {
		case s.Is4() && d.Is4():
			fam = 0x11
			addr = append(append(addr, s.AsSlice()...), d.AsSlice()...)
		case s.Is6() && d.Is6():
			fam = 0x21
			addr = append(append(addr, s.AsSlice()...), d.AsSlice()...)
		default:
			return dst, fmt.Errorf("%w: addresses %v and %v are not one TCP family", ErrInvalid, h.Source, h.Dest)
		}
		addr = binary.BigEndian.AppendUint16(addr, h.Source.Port())
		addr = binary.BigEndian.AppendUint16(addr, h.Dest.Port())
	}
	for _, t := range h.TLVs {
		if len(t.Value) > 0xffff {
			return dst, fmt.Errorf("%w: TLV %#x of %d bytes", ErrInvalid, t.Type, len(t.Value))
		}
		addr = append(addr, t.Type)
		addr = binary.BigEndian.AppendUint16(addr, uint16(len(t.Value)))
		addr = append(addr, t.Value...)
	}
	if len(addr) > 0xffff {
		return dst, fmt.Errorf("%w: header of %d bytes", ErrInvalid, len(addr))
	}
	dst = append(dst, v2Sig...)
	dst = append(dst, verCmd, fam)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(addr)))
	return append(dst, addr...), nil
}
