package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/ratelimit/redisstore"
)

func newStore(t *testing.T, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConfig(t *testing.T) {
	_, err := redisstore.New(redisstore.Config{})
	assert.ErrorIs(t, err, redisstore.ErrConfig)
	_, err = redisstore.New(redisstore.Config{Addr: "127.0.0.1:1", ReadTimeout: -1})
	assert.ErrorIs(t, err, redisstore.ErrConfig)
	_, err = redisstore.New(redisstore.Config{Addr: "127.0.0.1:1", BreakAfter: -1})
	assert.ErrorIs(t, err, redisstore.ErrConfig)
	s, err := redisstore.New(redisstore.Config{Addr: "127.0.0.1:1"})
	require.NoError(t, err, "New does not connect")
	assert.Equal(t, "postern:", s.Prefix())
	require.NoError(t, s.Close())
}

func TestStoreOperations(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, redisstore.Config{Addr: srv.Addr, Prefix: "test:"})
	require.NoError(t, s.Ping(ctx))
	rc := srv.client(t)

	// Incr: a fixed window whose expiry the first increment sets.
	for want := int64(1); want <= 3; want++ {
		n, err := s.Incr(ctx, "c", time.Hour)
		require.NoError(t, err)
		assert.Equal(t, want, n)
	}
	n, err := s.Count(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "Count reads the counter")
	n, err = s.Count(ctx, "c")
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "without changing it")
	n, err = s.Count(ctx, "none")
	require.NoError(t, err)
	assert.Zero(t, n)
	ttl, err := rc.PTTL(ctx, "test:c").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "the prefix is applied and the window set")

	// A short real window must pass in Redis.
	n, err = s.Incr(ctx, "short", 150*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	require.Eventually(t, func() bool {
		n, err := rc.Exists(ctx, "test:short").Result()
		return err == nil && n == 0
	}, 3*time.Second, 20*time.Millisecond)
	n, err = s.Incr(ctx, "short", 150*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "a new window after expiry")

	// Hold / Held / Delete.
	held, _, err := s.Held(ctx, "h")
	require.NoError(t, err)
	assert.False(t, held)
	require.NoError(t, s.Hold(ctx, "h", time.Minute))
	held, left, err := s.Held(ctx, "h")
	require.NoError(t, err)
	assert.True(t, held)
	assert.InDelta(t, time.Minute.Seconds(), left.Seconds(), 2)
	require.NoError(t, s.Delete(ctx, "h"))
	held, _, err = s.Held(ctx, "h")
	require.NoError(t, err)
	assert.False(t, held)

	// A key without expiry (not one of ours) reads as held.
	require.NoError(t, rc.Set(ctx, "test:forever", "1", 0).Err())
	held, left, err = s.Held(ctx, "forever")
	require.NoError(t, err)
	assert.True(t, held)
	assert.Zero(t, left)

	keys, err := rc.Keys(ctx, "*").Result()
	require.NoError(t, err)
	sort.Strings(keys)
	assert.Equal(t, []string{"test:c", "test:forever", "test:short"}, keys, "every key carries the prefix")
}

func TestStoreTakeGCRA(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	s := newStore(t, redisstore.Config{Addr: srv.Addr})
	r := ratelimit.Rate{Count: 3, Per: time.Hour} // a token every 20 minutes

	for want := 2; want >= 0; want-- {
		res, err := s.Take(ctx, "b", r, 1)
		require.NoError(t, err)
		assert.True(t, res.Allowed)
		assert.Equal(t, want, res.Remaining)
	}
	res, err := s.Take(ctx, "b", r, 1)
	require.NoError(t, err)
	assert.False(t, res.Allowed)
	assert.InDelta(t, (20 * time.Minute).Seconds(), res.RetryAfter.Seconds(), 2)
	res, err = s.Take(ctx, "b", r, 1)
	require.NoError(t, err)
	assert.False(t, res.Allowed, "a refused take took nothing, and nothing came back")

	ttl, err := srv.client(t).PTTL(ctx, "postern:b").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "the key lives until the bucket is full again")

	// Taking several at once, and more than there can ever be.
	res, err = s.Take(ctx, "multi", r, 2)
	require.NoError(t, err)
	assert.Equal(t, ratelimit.Result{Allowed: true, Remaining: 1}, res)
	res, err = s.Take(ctx, "multi", r, 2)
	require.NoError(t, err)
	assert.False(t, res.Allowed)
	res, err = s.Take(ctx, "huge", r, 4)
	require.NoError(t, err)
	assert.False(t, res.Allowed)

	res, err = s.Take(ctx, "free", ratelimit.Rate{}, 1)
	require.NoError(t, err)
	assert.True(t, res.Allowed, "unlimited needs no Redis")

	// A fast bucket refills in real time.
	fast := ratelimit.Rate{Count: 2, Per: 200 * time.Millisecond}
	for range 2 {
		res, err := s.Take(ctx, "fast", fast, 1)
		require.NoError(t, err)
		require.True(t, res.Allowed)
	}
	res, err = s.Take(ctx, "fast", fast, 1)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	assert.LessOrEqual(t, res.RetryAfter, 100*time.Millisecond)
	time.Sleep(res.RetryAfter + 5*time.Millisecond) // Redis's clock must move
	res, err = s.Take(ctx, "fast", fast, 1)
	require.NoError(t, err)
	assert.True(t, res.Allowed)
}

// The memory store and the Redis store give the same answers (the Redis
// side on its own clock, so only where timing cannot matter).
func TestStoresAgree(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	rs := newStore(t, redisstore.Config{Addr: srv.Addr})
	ms, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	r := ratelimit.Rate{Count: 5, Per: 24 * time.Hour}
	for i := range 8 {
		n := 1 + i%3
		a, err := ms.Take(ctx, "k", r, n)
		require.NoError(t, err)
		b, err := rs.Take(ctx, "k", r, n)
		require.NoError(t, err)
		assert.Equal(t, a.Allowed, b.Allowed, "take %d of %d", i, n)
		assert.Equal(t, a.Remaining, b.Remaining, "take %d of %d", i, n)
		assert.InDelta(t, a.RetryAfter.Seconds(), b.RetryAfter.Seconds(), 1, "take %d of %d", i, n)
	}
}

func TestConcurrentTakesAreAtomic(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	// Two "instances" with their own clients.
	a := newStore(t, redisstore.Config{Addr: srv.Addr})
	b := newStore(t, redisstore.Config{Addr: srv.Addr})
	r := ratelimit.Rate{Count: 50, Per: time.Hour}
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for i := range 8 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range 20 {
				res, err := s.Take(ctx, "shared", r, 1)
				if err == nil && res.Allowed {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				_, _ = s.Incr(ctx, "counter", time.Hour)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 50, allowed, "exactly Count tokens across 160 takes from two clients")
	n, err := a.Incr(ctx, "counter", time.Hour)
	require.NoError(t, err)
	assert.Equal(t, int64(161), n)
}

// unknownUser is the decision a recipient check makes for a guessed name.
func unknownUser(c *postern.Conn) postern.Decision {
	return postern.Decision{Stage: postern.StageRcpt, Filter: "verify", Conn: c, Txn: &postern.Txn{},
		Rcpt:    &postern.Rcpt{Addr: "guess@example.test"},
		Verdict: postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", "no such user")}
}

// Two relay instances share one Redis: the harvester collects its
// "User unknown" answers on instance A and is answered 451 on B; after
// the hold it is served again by both.
func TestTwoGuardsShareRedis(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	const hold = 1500 * time.Millisecond // Redis expiry is real time
	guard := func() *ratelimit.Guard {
		st := newStore(t, redisstore.Config{Addr: srv.Addr})
		g, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: st, Threshold: 5, Window: time.Minute, HoldTime: hold})
		require.NoError(t, err)
		return g
	}
	a, b := guard(), guard()

	harvester := func() *postern.Conn {
		return &postern.Conn{ID: "h", Remote: netip.MustParseAddrPort("198.51.100.23:40000")}
	}
	rcptB := func() postern.Verdict {
		v, err := b.CheckRcpt(ctx, harvester(), &postern.Txn{}, &postern.Rcpt{Addr: "alice@example.test"})
		require.NoError(t, err)
		return v
	}

	for range 4 {
		a.Observe(ctx, unknownUser(harvester()))
	}
	assert.Equal(t, postern.Continue, rcptB().Action, "below the threshold")
	a.Observe(ctx, unknownUser(harvester()))
	start := time.Now()

	v := rcptB()
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 Too many unknown recipients from 198.51.100.23, try again later", v.Reply.Error())
	held, left, err := b.Held(ctx, netip.MustParseAddr("198.51.100.23"))
	require.NoError(t, err)
	assert.True(t, held)
	assert.LessOrEqual(t, left, hold)
	// Another source is untouched.
	other := &postern.Conn{ID: "o", Remote: netip.MustParseAddrPort("198.51.100.24:40000")}
	vo, _ := b.CheckRcpt(ctx, other, &postern.Txn{}, &postern.Rcpt{})
	assert.Equal(t, postern.Continue, vo.Action)

	// It recovers on its own, on both instances.
	require.Eventually(t, func() bool { return rcptB().Action == postern.Continue }, 5*time.Second, 50*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), hold-100*time.Millisecond, "not before the hold time")
	va, _ := a.CheckRcpt(ctx, harvester(), &postern.Txn{}, &postern.Rcpt{})
	assert.Equal(t, postern.Continue, va.Action)

	assert.Equal(t, uint64(5), a.Stats().Unknown)
	assert.Equal(t, uint64(1), a.Stats().Holds)
	assert.GreaterOrEqual(t, b.Stats().Refused, uint64(1))
}

// Message limits and AUTH blocks are shared the same way.
func TestSharedFilterAndAuth(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	sa := newStore(t, redisstore.Config{Addr: srv.Addr})
	sb := newStore(t, redisstore.Config{Addr: srv.Addr})
	fa, err := ratelimit.NewFilter(ratelimit.FilterConfig{Store: sa, Messages: ratelimit.Rate{Count: 2, Per: time.Hour}})
	require.NoError(t, err)
	fb, err := ratelimit.NewFilter(ratelimit.FilterConfig{Store: sb, Messages: ratelimit.Rate{Count: 2, Per: time.Hour}})
	require.NoError(t, err)
	c := &postern.Conn{ID: "c", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
	for _, f := range []*ratelimit.Filter{fa, fb} {
		v, _ := f.CheckMail(ctx, c, &postern.Txn{})
		assert.Equal(t, postern.Continue, v.Action)
	}
	v, _ := fa.CheckMail(ctx, c, &postern.Txn{})
	assert.Equal(t, "450 4.7.1 Error: too much mail from 192.0.2.7", v.Reply.Error())

	aa, err := ratelimit.NewAuthLimiter(ratelimit.AuthConfig{Store: sa, MaxUserFailures: 2})
	require.NoError(t, err)
	ab, err := ratelimit.NewAuthLimiter(ratelimit.AuthConfig{Store: sb, MaxUserFailures: 2})
	require.NoError(t, err)
	require.NoError(t, aa.RecordAuthFailure(ctx, ratelimit.UserKey("alice")))
	require.NoError(t, ab.RecordAuthFailure(ctx, ratelimit.UserKey("alice")))
	assert.Equal(t, "454 4.7.0 Too many failed authentication attempts, try again later",
		aa.CheckAuth(ctx, ratelimit.UserKey("alice")).Reply.Error())
}

// Redis vanishes mid-run: the filters fail open without a panic, log one
// line rather than one per call, and count the errors; the circuit opens
// so calls stop waiting on the dead server; a fail-closed guard answers
// 451 4.3.0.
func TestRedisVanishes(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	var logs logBuf
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	st := newStore(t, redisstore.Config{Addr: srv.Addr})
	open, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: st, Threshold: 2, Logger: log})
	require.NoError(t, err)
	closed, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: st, Threshold: 2, OnError: postern.OnErrorTempFail})
	require.NoError(t, err)
	flow, err := ratelimit.NewFilter(ratelimit.FilterConfig{Store: st, Recipients: ratelimit.Rate{Count: 1000, Per: time.Minute}, Logger: log})
	require.NoError(t, err)

	c := &postern.Conn{ID: "c9", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
	rcpt := func(f postern.RcptChecker) postern.Verdict {
		v, err := f.CheckRcpt(ctx, c, &postern.Txn{}, &postern.Rcpt{Addr: "x@example.test"})
		require.NoError(t, err, "store errors never reach the chain")
		return v
	}
	assert.Equal(t, postern.Continue, rcpt(open).Action)
	assert.Equal(t, postern.Continue, rcpt(flow).Action)
	require.Zero(t, open.Stats().StoreErrors)

	srv.Kill()
	start := time.Now()
	const calls = 50
	for range calls {
		assert.Equal(t, postern.Continue, rcpt(open).Action, "fail open")
		assert.Equal(t, postern.Continue, rcpt(flow).Action, "fail open")
		open.Observe(ctx, unknownUser(c))
	}
	elapsed := time.Since(start)
	assert.Less(t, elapsed, 2*time.Second, "a dead Redis does not stall the session")

	assert.Equal(t, uint64(2*calls), open.Stats().StoreErrors)
	assert.Equal(t, uint64(calls), flow.Stats().StoreErrors)
	recs := logs.Records(t, "rate-limit store failed")
	assert.Len(t, recs, 2, "one line per component, not one per call")
	for _, r := range recs {
		assert.Equal(t, "WARN", r["level"])
		assert.Equal(t, "continue", r["action"])
		assert.Equal(t, "accept", r["on_error"])
		assert.Equal(t, "192.0.2.7", r["remote_ip"])
		assert.Equal(t, "c9", r["conn_id"])
	}
	stats := st.Stats()
	assert.True(t, stats.Open, "the circuit opened")
	assert.Greater(t, stats.ShortCircuited, uint64(100), "most calls did not wait on the network")
	assert.GreaterOrEqual(t, stats.Errors, uint64(3))

	v := rcpt(closed)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.3.0 Temporary local problem, try again later", v.Reply.Error())
	assert.Contains(t, v.Reason, "; on error: tempfail")

	err = open.RecordUnknown(ctx, netip.MustParseAddr("192.0.2.7"))
	assert.ErrorIs(t, err, ratelimit.ErrStoreUnavailable)
	_, err = st.Take(ctx, "k", ratelimit.Rate{Count: 1, Per: time.Second}, 1)
	assert.ErrorIs(t, err, ratelimit.ErrStoreUnavailable)
}

// The circuit closes again once Redis is back.
func TestCircuitRecovers(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	now := time.Now()
	var mu sync.Mutex
	clk := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	// A store pointed at a port where nothing listens (yet).
	dead := startRedis(t)
	addr := dead.Addr
	dead.Kill()
	time.Sleep(50 * time.Millisecond) // let the process go
	st := newStore(t, redisstore.Config{Addr: addr, BreakAfter: 2, Cooldown: time.Second, Now: clk})
	for range 2 {
		require.Error(t, st.Ping(ctx))
	}
	require.True(t, st.Stats().Open)
	err := st.Ping(ctx)
	require.ErrorIs(t, err, ratelimit.ErrStoreUnavailable)
	assert.Contains(t, err.Error(), "circuit open")
	assert.Equal(t, uint64(1), st.Stats().ShortCircuited)

	// After the cooldown one call tries again; it fails and reopens.
	advance(time.Second)
	require.Error(t, st.Ping(ctx))
	require.True(t, st.Stats().Open)

	// A store on a live server: errors from the server (a reply) do not
	// open the circuit.
	live := newStore(t, redisstore.Config{Addr: srv.Addr, BreakAfter: 1, Now: clk})
	require.NoError(t, srv.client(t).Set(ctx, "postern:str", "not a number", 0).Err())
	for range 3 {
		_, err := live.Incr(ctx, "str", time.Minute)
		require.Error(t, err)
		assert.True(t, errors.Is(err, ratelimit.ErrStoreUnavailable))
	}
	assert.False(t, live.Stats().Open)
	require.NoError(t, live.Ping(ctx))
}

// Two relay instances share the pass cache and the greylist through one
// real Redis: a client that passed at A is known at B, and a triplet
// greylisted at A passes at B after the delay (Redis's clock keeps the
// time of the first attempt).
func TestPassCacheAndGreylistShared(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	client := netip.MustParseAddr("198.51.100.40")
	cache := func() *ratelimit.PassCache {
		p, err := ratelimit.NewPassCache(ratelimit.PassCacheConfig{Store: newStore(t, redisstore.Config{Addr: srv.Addr})})
		require.NoError(t, err)
		return p
	}
	pa, pb := cache(), cache()
	require.NoError(t, pa.Pass(ctx, client, ratelimit.PassGreet))
	require.NoError(t, pa.Pass(ctx, client, ratelimit.PassDNSBL))
	known, err := pb.Known(ctx, client)
	require.NoError(t, err)
	assert.True(t, known, "B knows the client A passed")
	e, err := pb.Lookup(ctx, client)
	require.NoError(t, err)
	assert.InDelta(t, ratelimit.DefaultPassGreetTTL.Seconds(), e.Left[0].Seconds(), 5)
	require.NoError(t, pb.Fail(ctx, client, ratelimit.PassGreet))
	known, err = pa.Known(ctx, client)
	require.NoError(t, err)
	assert.False(t, known, "a failure at B is seen at A")

	const delay = 800 * time.Millisecond
	grey := func() *ratelimit.Greylist {
		g, err := ratelimit.NewGreylist(ratelimit.GreylistConfig{Store: newStore(t, redisstore.Config{Addr: srv.Addr}),
			MinDelay: delay, RetryWindow: time.Minute})
		require.NoError(t, err)
		return g
	}
	ga, gb := grey(), grey()
	c := &postern.Conn{ID: "g", Remote: netip.MustParseAddrPort("198.51.100.40:40000")}
	try := func(g *ratelimit.Greylist) postern.Verdict {
		v, err := g.CheckRcpt(ctx, c, &postern.Txn{From: "s@sender.example"}, &postern.Rcpt{Addr: "bob@example.test"})
		require.NoError(t, err)
		return v
	}
	first := time.Now()
	require.Equal(t, postern.TempFail, try(ga).Action)
	require.Equal(t, postern.TempFail, try(gb).Action, "B sees the first attempt: still too early")
	time.Sleep(time.Until(first.Add(delay + 200*time.Millisecond)))
	assert.Equal(t, postern.Continue, try(gb).Action, "the retry passes at B")
	assert.Equal(t, postern.Continue, try(ga).Action, "and the triplet is known at A")
	d, err := ga.Day(ctx, time.Now())
	require.NoError(t, err)
	assert.EqualValues(t, 1, d.Greylisted)
	assert.EqualValues(t, 1, d.Passed)
}
