package ratelimit

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestIPKey(t *testing.T) {
	network := Class{V4: 24, V6: 48}
	tests := []struct {
		name  string
		ip    string
		class Class
		want  string
	}{
		{"v4 host", "192.0.2.7", Class{}, "ip:192.0.2.7/32"},
		{"v4 /24", "192.0.2.7", network, "ip:192.0.2.0/24"},
		{"v4 /16", "192.0.2.7", Class{V4: 16}, "ip:192.0.0.0/16"},
		{"mapped v4 host", "::ffff:192.0.2.7", Class{}, "ip:192.0.2.7/32"},
		{"mapped v4 /24", "::ffff:192.0.2.7", network, "ip:192.0.2.0/24"},
		{"v6 default /64", "2001:db8:1:2:3:4:5:6", Class{}, "ip:2001:db8:1:2::/64"},
		{"v6 /48", "2001:db8:1:2:3:4:5:6", network, "ip:2001:db8:1::/48"},
		{"v6 /128", "2001:db8::1", Class{V6: 128}, "ip:2001:db8::1/128"},
		{"v6 zone dropped", "fe80::1%eth0", Class{}, "ip:fe80::/64"},
		{"v6 loopback", "::1", Class{}, "ip:::/64"},
		{"v4 loopback", "127.0.0.1", Class{}, "ip:127.0.0.1/32"},
		{"v4-compatible is v6", "::192.0.2.7", Class{}, "ip:::/64"},
		{"out of range clamped", "192.0.2.7", Class{V4: 99, V6: 999}, "ip:192.0.2.7/32"},
		{"negative means default", "2001:db8::1", Class{V4: -1, V6: -1}, "ip:2001:db8::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, IPKey(mustAddr(tt.ip), tt.class))
		})
	}
	assert.Empty(t, IPKey(netip.Addr{}, Class{}), "an invalid address has no key")
}

func TestIPKeySameAndDifferentClasses(t *testing.T) {
	network := Class{V4: 24, V6: 48}
	same := [][2]string{
		{"192.0.2.1", "192.0.2.254"},
		{"192.0.2.1", "::ffff:192.0.2.200"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
	}
	for _, p := range same {
		assert.Equal(t, IPKey(mustAddr(p[0]), network), IPKey(mustAddr(p[1]), network), p)
	}
	assert.Equal(t, IPKey(mustAddr("2001:db8:1:2::1"), Class{}), IPKey(mustAddr("2001:db8:1:2::99"), Class{}),
		"one /64 by default")
	differ := [][2]string{
		{"192.0.2.1", "192.0.3.1"},
		{"2001:db8:1::1", "2001:db8:2::1"},
		{"0.0.0.0", "::"},                   // IPv4 0/24 and IPv6 ::/48 never meet
		{"192.0.2.1", "2001:db8::c000:201"}, // the same low bits in the other family
	}
	for _, p := range differ {
		assert.NotEqual(t, IPKey(mustAddr(p[0]), network), IPKey(mustAddr(p[1]), network), p)
	}
	// The class is part of the key: a /32 count never shares a bucket with
	// a /24 count of the same address.
	assert.NotEqual(t, IPKey(mustAddr("192.0.2.0"), Class{}), IPKey(mustAddr("192.0.2.0"), network))
}

func TestTextKeys(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{SenderKey("Alice@Example.ORG"), "from:alice@example.org"},
		{SenderKey("<alice@example.org>"), "from:alice@example.org"},
		{SenderKey(""), "from:<>"},
		{SenderKey("<>"), "from:<>"},
		{UserKey("Alice"), "user:alice"},
		{UserKey(""), ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got)
	}
	long := SenderKey(string(make([]byte, 1000)) + "@example.org")
	assert.LessOrEqual(t, len(long), 64, "long keys are hashed")
	assert.Contains(t, long, "from:#")
	assert.NotEqual(t, long, SenderKey(string(make([]byte, 1001))+"@example.org"))
}

func TestKeyFuncs(t *testing.T) {
	c := conn("192.0.2.7")
	tx := &postern.Txn{From: "Bob@example.org"}
	assert.Equal(t, "ip:192.0.2.0/24", ByClient(Class{V4: 24})(c, tx))
	assert.Equal(t, "from:bob@example.org", BySender()(c, tx))
	assert.Equal(t, "", BySender()(c, nil))
	assert.Equal(t, "", ByUser()(c, tx), "not authenticated: not counted")
	assert.Equal(t, "ip:192.0.2.7/32", ByUserOrClient(Class{})(c, tx))
	c.AuthUser = "Carol"
	assert.Equal(t, "user:carol", ByUser()(c, tx))
	assert.Equal(t, "user:carol", ByUserOrClient(Class{})(c, tx))
}

func TestClassValidate(t *testing.T) {
	for _, c := range []Class{{V4: 33}, {V4: -1}, {V6: 129}, {V6: -5}} {
		require.ErrorIs(t, c.validate("test"), ErrConfig, c)
	}
	for _, c := range []Class{{}, {V4: 24, V6: 48}, {V4: 32, V6: 128}, {V4: 1, V6: 1}} {
		require.NoError(t, c.validate("test"), c)
	}
	assert.Equal(t, "/32,/64", Class{}.String())
}
