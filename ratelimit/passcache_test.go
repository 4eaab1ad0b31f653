package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newPassCache(t *testing.T, clk *clock, cfg PassCacheConfig) *PassCache {
	t.Helper()
	cfg.Now = clk.Now
	p, err := NewPassCache(cfg)
	require.NoError(t, err)
	return p
}

func known(t *testing.T, p *PassCache, ip string) bool {
	t.Helper()
	k, err := p.Known(context.Background(), mustAddr(ip))
	require.NoError(t, err)
	return k
}

// A client is known once it passed the greet pause and the DNS lists, for
// as long as both passes run: the DNS list's hour is the shorter.
func TestPassCacheKnownAfterBothTests(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	p := newPassCache(t, clk, PassCacheConfig{})
	ip := mustAddr("192.0.2.7")

	assert.False(t, known(t, p, "192.0.2.7"), "a stranger")
	require.NoError(t, p.Pass(ctx, ip, PassGreet))
	assert.False(t, known(t, p, "192.0.2.7"), "the DNS lists are required too")
	require.NoError(t, p.Pass(ctx, ip, PassDNSBL))
	assert.True(t, known(t, p, "192.0.2.7"))
	assert.False(t, known(t, p, "192.0.2.8"), "one address only for IPv4")

	clk.Advance(DefaultPassDNSBLTTL - time.Second)
	assert.True(t, known(t, p, "192.0.2.7"))
	clk.Advance(2 * time.Second)
	assert.False(t, known(t, p, "192.0.2.7"), "the DNSBL pass ran out after an hour")

	// A new DNSBL pass (a connection whose lookup was clean) within the
	// greet TTL makes it known again without another pause.
	require.NoError(t, p.Pass(ctx, ip, PassDNSBL))
	assert.True(t, known(t, p, "192.0.2.7"))
	clk.Advance(DefaultPassGreetTTL)
	assert.False(t, known(t, p, "192.0.2.7"), "the greet pass runs out after a day")

	st := p.Stats()
	assert.EqualValues(t, 3, st.Passes)
	assert.EqualValues(t, 3, st.Known)
}

// IPv6 clients are remembered by /64: a host may use any of its addresses.
func TestPassCacheIPv6By64(t *testing.T) {
	ctx := context.Background()
	p := newPassCache(t, newClock(), PassCacheConfig{Require: PassGreet})
	require.NoError(t, p.Pass(ctx, mustAddr("2001:db8:1:2::10"), PassGreet))
	assert.True(t, known(t, p, "2001:db8:1:2:abcd::99"))
	assert.False(t, known(t, p, "2001:db8:1:3::10"))
	// A dual-stack listener's mapped IPv4 is the IPv4 client.
	require.NoError(t, p.Pass(ctx, mustAddr("::ffff:192.0.2.9"), PassGreet))
	assert.True(t, known(t, p, "192.0.2.9"))
}

// A failure forgets the passes and blocks new ones for FailTTL: an early
// talker cannot earn a pass by waiting on its next connection.
func TestPassCacheFailure(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	p := newPassCache(t, clk, PassCacheConfig{FailTTL: 10 * time.Minute})
	ip := mustAddr("198.51.100.4")
	require.NoError(t, p.Pass(ctx, ip, PassGreet))
	require.NoError(t, p.Pass(ctx, ip, PassDNSBL))
	require.True(t, known(t, p, "198.51.100.4"))

	require.NoError(t, p.Fail(ctx, ip, PassDNSBL))
	assert.False(t, known(t, p, "198.51.100.4"), "a listed client is forgotten")
	e, err := p.Lookup(ctx, ip)
	require.NoError(t, err)
	assert.True(t, e.Failed)
	assert.Equal(t, PassTest(0), e.Passed)

	require.NoError(t, p.Pass(ctx, ip, PassGreet))
	require.NoError(t, p.Pass(ctx, ip, PassDNSBL))
	assert.False(t, known(t, p, "198.51.100.4"), "no pass while the failure is remembered")

	clk.Advance(10*time.Minute + time.Second)
	require.NoError(t, p.Pass(ctx, ip, PassGreet))
	require.NoError(t, p.Pass(ctx, ip, PassDNSBL))
	assert.True(t, known(t, p, "198.51.100.4"), "the failure is forgiven")
	assert.EqualValues(t, 1, p.Stats().Failures)
}

// Require chooses the tests; the deep protocol tests get their own TTL.
func TestPassCacheRequireProtocol(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	p := newPassCache(t, clk, PassCacheConfig{Require: PassGreet | PassProtocol, ProtocolTTL: 48 * time.Hour})
	ip := mustAddr("192.0.2.20")
	require.NoError(t, p.Pass(ctx, ip, PassGreet))
	assert.False(t, known(t, p, "192.0.2.20"))
	require.NoError(t, p.Pass(ctx, ip, PassProtocol))
	assert.True(t, known(t, p, "192.0.2.20"))
	passed, err := p.Passed(ctx, ip, PassProtocol)
	require.NoError(t, err)
	assert.True(t, passed)
	passed, err = p.Passed(ctx, ip, PassDNSBL)
	require.NoError(t, err)
	assert.False(t, passed)
	_, err = p.Passed(ctx, ip, PassGreet|PassDNSBL)
	assert.ErrorIs(t, err, ErrConfig)
	e, err := p.Lookup(ctx, ip)
	require.NoError(t, err)
	assert.Equal(t, PassGreet|PassProtocol, e.Passed)
	require.NoError(t, p.Fail(ctx, ip, PassGreet))
	require.NoError(t, p.Pass(ctx, ip, PassProtocol))
	passed, err = p.Passed(ctx, ip, PassProtocol)
	require.NoError(t, err)
	assert.False(t, passed, "not while failed")
	assert.Equal(t, 48*time.Hour, e.Left[2])
	assert.Equal(t, "greet+protocol", e.Passed.String())
}

func TestPassCacheErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []PassCacheConfig{
		{GreetTTL: -time.Second}, {FailTTL: -1}, {Require: 1 << 6}, {Class: Class{V4: 40}},
	} {
		_, err := NewPassCache(cfg)
		assert.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	p := newPassCache(t, newClock(), PassCacheConfig{})
	assert.ErrorIs(t, p.Pass(ctx, mustAddr("192.0.2.1"), PassGreet|PassDNSBL), ErrConfig)
	assert.ErrorIs(t, p.Fail(ctx, mustAddr("192.0.2.1"), 0), ErrConfig)

	// A client not on IP is never known and never recorded.
	k, err := p.Known(ctx, netip.Addr{})
	require.NoError(t, err)
	assert.False(t, k)
	require.NoError(t, p.Pass(ctx, netip.Addr{}, PassGreet))

	// A store that is down: unknown, and the error says so.
	buf := &logBuf{}
	down, err := NewPassCache(PassCacheConfig{Store: failingStore{}, Logger: buf.Logger()})
	require.NoError(t, err)
	k, err = down.Known(ctx, mustAddr("192.0.2.1"))
	assert.False(t, k)
	assert.True(t, errors.Is(err, ErrStoreUnavailable))
	assert.ErrorIs(t, down.Pass(ctx, mustAddr("192.0.2.1"), PassGreet), ErrStoreUnavailable)
	assert.ErrorIs(t, down.Fail(ctx, mustAddr("192.0.2.1"), PassGreet), ErrStoreUnavailable)
	assert.EqualValues(t, 3, down.Stats().StoreErrors)
	assert.Len(t, buf.Records(t, "rate-limit store failed"), 1, "one line per 10 s")
}
