package ratelimit

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestAuthLimiter(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	var logs logBuf
	a, err := NewAuthLimiter(AuthConfig{MaxFailures: 3, MaxUserFailures: 3, Window: 10 * time.Minute, Block: 15 * time.Minute,
		Logger: logs.Logger(), Now: clk.Now})
	require.NoError(t, err)
	ipKey := IPKey(mustAddr("192.0.2.7"), Class{})
	userKey := UserKey("alice")

	for range 2 {
		assert.Equal(t, postern.Continue, a.CheckAuth(ctx, ipKey, userKey).Action)
		require.NoError(t, a.RecordAuthFailure(ctx, ipKey, userKey))
		clk.Advance(time.Minute)
	}
	assert.Equal(t, postern.Continue, a.CheckAuth(ctx, ipKey, userKey).Action)
	// The third failure within the window blocks both keys.
	require.NoError(t, a.RecordAuthFailure(ctx, ipKey, userKey, ""))
	v := a.CheckAuth(ctx, ipKey)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "454 4.7.0 Too many failed authentication attempts, try again later", v.Reply.Error())
	assert.Contains(t, v.Reason, "ip:192.0.2.7/32 blocked for 15m0s more after 3 failures within 10m0s")
	assert.Equal(t, postern.TempFail, a.CheckAuth(ctx, UserKey("ALICE")).Action, "user keys are case-insensitive")
	assert.Equal(t, postern.Continue, a.CheckAuth(ctx, UserKey("bob"), IPKey(mustAddr("192.0.2.8"), Class{})).Action)

	blocked, left, err := a.Blocked(ctx, ipKey)
	require.NoError(t, err)
	assert.True(t, blocked)
	assert.Equal(t, 15*time.Minute, left)

	clk.Advance(15 * time.Minute)
	assert.Equal(t, postern.Continue, a.CheckAuth(ctx, ipKey, userKey).Action, "the block ends by itself")

	st := a.Stats()
	assert.Equal(t, uint64(6), st.Failures)
	assert.Equal(t, uint64(2), st.Blocks)
	assert.Equal(t, uint64(2), st.Refused)
	recs := logs.Records(t, "too many AUTH failures: blocking AUTH")
	require.Len(t, recs, 2)
	assert.Equal(t, "auth", recs[0]["stage"])
	assert.Equal(t, "block", recs[0]["action"])

	// Release ends a block early.
	for range 3 {
		require.NoError(t, a.RecordAuthFailure(ctx, userKey))
	}
	assert.Equal(t, postern.TempFail, a.CheckAuth(ctx, userKey).Action)
	require.NoError(t, a.Release(ctx, userKey, ""))
	assert.Equal(t, postern.Continue, a.CheckAuth(ctx, userKey).Action)
}

func TestAuthLimiterWindow(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, err := NewAuthLimiter(AuthConfig{Now: clk.Now}) // 5 in 10 min
	require.NoError(t, err)
	key := UserKey("alice")
	// A user mistyping now and then is never blocked.
	for range 20 {
		require.NoError(t, a.RecordAuthFailure(ctx, key))
		clk.Advance(3 * time.Minute)
	}
	assert.Equal(t, postern.Continue, a.CheckAuth(ctx, key).Action)
}

func TestAuthLimiterStoreDown(t *testing.T) {
	ctx := context.Background()
	a, err := NewAuthLimiter(AuthConfig{Store: failingStore{}})
	require.NoError(t, err)
	v := a.CheckAuth(ctx, "user:alice")
	assert.Equal(t, postern.Continue, v.Action)
	assert.Contains(t, v.Reason, "; on error: accept")
	assert.ErrorIs(t, a.RecordAuthFailure(ctx, "user:alice"), ErrStoreUnavailable)
	assert.Equal(t, uint64(2), a.Stats().StoreErrors)

	c, err := NewAuthLimiter(AuthConfig{Store: failingStore{}, OnError: postern.OnErrorTempFail})
	require.NoError(t, err)
	assert.Equal(t, "454 4.3.0 Temporary authentication failure", c.CheckAuth(ctx, "user:alice").Reply.Error())
}

// One account guessed at from many networks: each network is blocked
// after MaxFailures, the account after MaxUserFailures in all, and then
// even the right password from a new network is refused, for a known and
// an unknown account alike, until the block ends. The answer carries how
// long that is.
func TestAuthLimiterAccount(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a, err := NewAuthLimiter(AuthConfig{Now: clk.Now}) // 5 per network, 10 per account
	require.NoError(t, err)
	for _, user := range []string{"alice@example.test", "nobody@example.test"} {
		failures := 0
		for _, ip := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"} {
			for range 5 {
				keys := a.LoginKeys(mustAddr(ip), user)
				if a.CheckAuth(ctx, keys...).Action != postern.Continue {
					continue // blocked: not even asked
				}
				require.NoError(t, a.RecordAuthFailure(ctx, keys...))
				failures++
			}
		}
		assert.Equal(t, 10, failures, user)
		v, left := a.Check(ctx, a.LoginKeys(mustAddr("192.0.2.6"), user)...)
		assert.Equal(t, "454 4.7.0 Too many failed authentication attempts, try again later", v.Reply.Error(), user)
		assert.Contains(t, v.Reason, "after 10 failures")
		assert.Equal(t, DefaultAuthBlock, left)
		assert.Equal(t, postern.Continue, a.CheckAuth(ctx, a.LoginKeys(mustAddr("192.0.2.6"), "carol")...).Action,
			"other accounts from a fresh network go on")
	}
	clk.Advance(DefaultAuthBlock)
	assert.Equal(t, postern.Continue, a.CheckAuth(ctx, a.LoginKeys(mustAddr("192.0.2.6"), "alice@example.test")...).Action)
}

func TestAuthLimiterLoginKeys(t *testing.T) {
	a, err := NewAuthLimiter(AuthConfig{})
	require.NoError(t, err)
	assert.Equal(t, []string{"ip:2001:db8:1:2::/64", "user:alice"}, a.LoginKeys(mustAddr("2001:db8:1:2::99"), "Alice"))
	assert.Equal(t, a.LoginKeys(mustAddr("2001:db8:1:2::99"), "alice"), a.LoginKeys(mustAddr("2001:db8:1:2:ffff::1"), "alice"),
		"one IPv6 /64 is one client")
	assert.Equal(t, []string{"ip:192.0.2.7/32", "user:alice"}, a.LoginKeys(mustAddr("::ffff:192.0.2.7"), "alice"))
	assert.Equal(t, []string{"ip:192.0.2.7/32"}, a.LoginKeys(mustAddr("192.0.2.7"), ""))
	assert.Equal(t, []string{"user:alice"}, a.LoginKeys(netip.Addr{}, "alice"))

	wide, err := NewAuthLimiter(AuthConfig{Class: Class{V4: 24, V6: 48}, MaxUserFailures: -1})
	require.NoError(t, err)
	assert.Equal(t, []string{"ip:192.0.2.0/24"}, wide.LoginKeys(mustAddr("192.0.2.7"), "alice"), "account counting off")
	require.NoError(t, wide.RecordAuthFailure(context.Background(), "user:alice"))
	assert.Zero(t, wide.Stats().Failures)

	_, err = NewAuthLimiter(AuthConfig{Class: Class{V4: 33}})
	assert.ErrorIs(t, err, ErrConfig)
}
