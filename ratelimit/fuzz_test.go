package ratelimit

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzKey builds IP keys from arbitrary bytes (as a raw address and as
// text) and arbitrary, even out-of-range, classes: it must never panic,
// addresses of one network must share a key, and anything else must not.
func FuzzKey(f *testing.F) {
	f.Add([]byte{192, 0, 2, 7}, int8(24), int16(48), uint16(3))
	f.Add([]byte{192, 0, 2, 7}, int8(0), int16(0), uint16(31))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7}, int8(24), int16(64), uint16(100))
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1}, int8(32), int16(48), uint16(47))
	f.Add([]byte("fe80::1%eth0"), int8(-5), int16(200), uint16(0))
	f.Add([]byte("::ffff:10.1.2.3"), int8(33), int16(129), uint16(127))
	f.Add([]byte{}, int8(0), int16(0), uint16(0))
	f.Fuzz(func(t *testing.T, raw []byte, v4 int8, v6 int16, flip uint16) {
		c := Class{V4: int(v4), V6: int(v6)}
		_ = c.validate("fuzz")
		_ = c.String()
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			if ip, _ = netip.ParseAddr(string(raw)); !ip.IsValid() {
				if k := IPKey(ip, c); k != "" {
					t.Fatalf("invalid address got key %q", k)
				}
				return
			}
		}
		key := IPKey(ip, c)
		u := ip.Unmap().WithZone("")
		if !strings.HasPrefix(key, "ip:") {
			t.Fatalf("IPKey(%v, %v) = %q", ip, c, key)
		}
		p, err := netip.ParsePrefix(strings.TrimPrefix(key, "ip:"))
		if err != nil || !p.Contains(u) || p != p.Masked() {
			t.Fatalf("IPKey(%v, %v) = %q: not the network of the address (%v)", ip, c, key, err)
		}
		v4b, v6b := c.bits()
		bits := v6b
		if u.Is4() {
			bits = v4b
		}
		if p.Bits() != bits {
			t.Fatalf("IPKey(%v, %v) = %q, want /%d", ip, c, key, bits)
		}

		// A mapped IPv4 address is the IPv4 address.
		if u.Is4() {
			if k := IPKey(netip.AddrFrom16(u.As16()), c); k != key {
				t.Fatalf("mapped %v: key %q, unmapped %q", u, k, key)
			}
		}

		// Flip one bit: inside the network part the key changes, outside
		// it stays.
		b := u.AsSlice()
		i := int(flip) % (len(b) * 8)
		b[i/8] ^= 0x80 >> (i % 8)
		other, _ := netip.AddrFromSlice(b)
		ko := IPKey(other, c)
		// Unless the flip turned an IPv6 address into an IPv4-mapped one,
		// which is keyed as IPv4 (another family, not a bit of this one).
		if !other.Is4In6() && (i < bits) == (ko == key) {
			t.Fatalf("%v and %v (bit %d flipped) in class /%d: keys %q and %q", u, other, i, bits, key, ko)
		}

		// Another prefix length is another key, even for the same bits.
		alt := c
		if u.Is4() {
			alt.V4 = bits%32 + 1
		} else {
			alt.V6 = bits%128 + 1
		}
		if IPKey(ip, alt) == key {
			t.Fatalf("classes %v and %v share key %q", c, alt, key)
		}
	})
}
