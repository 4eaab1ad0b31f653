// Package redisstore keeps Postern's rate-limit state in Redis, so that
// several relay instances share it: the message and recipient buckets,
// the AUTH-failure counters and, most of all, the directory-harvest
// guard — a harvester that collects "User unknown" answers from one MX is
// then answered 451 by all of them.
//
// Store implements ratelimit.Store with one atomic operation per call:
//
//   - Take is GCRA (a token bucket kept as one timestamp) in a Lua script
//     that reads Redis's own clock, so instances with skewed clocks agree;
//   - Incr is INCR with PEXPIRE set by the first increment (a fixed
//     window), in a Lua script;
//   - Hold is SET PX, Held is PTTL, Delete is DEL.
//
// Each touches a single key, so a Redis Cluster client works too. Every
// key starts with Config.Prefix ("postern:" by default), e.g.
// "postern:harvest:hold:ip:192.0.2.7/32".
//
// # When Redis is away
//
// A rate limiter must not stall mail. Dial, read and write timeouts are
// 200 ms by default, go-redis retries are off, and after BreakAfter (3)
// consecutive connection errors a circuit opens: for Cooldown (1 s) every
// call fails at once with an error wrapping ratelimit.ErrStoreUnavailable,
// then the next call tries Redis again. The filters using the store
// decide what such an error means: by default they fail open (the mail
// flows, unlimited), log at most one line per 10 s, and count the error
// in their Stats().StoreErrors; with OnError postern.OnErrorTempFail they
// answer 451 4.3.0.
//
// # Example
//
//	store, err := redisstore.New(redisstore.Config{Addr: "10.0.0.5:6379", Prefix: "postern:"})
//	if err != nil { … }
//	defer store.Close()
//	guard, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: store, Logger: log})
package redisstore
