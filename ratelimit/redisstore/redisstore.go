package redisstore

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/postern/postern/ratelimit"
)

// ErrConfig is returned (wrapped) by New for an invalid configuration.
var ErrConfig = errors.New("ratelimit: redis store: invalid config")

// Defaults. The timeouts are small on purpose: every SMTP command that is
// limited waits for Redis, and a dead Redis must cost a session a fraction
// of a second, not the five seconds go-redis would wait by default.
const (
	DefaultPrefix       = "postern:"
	DefaultDialTimeout  = 200 * time.Millisecond
	DefaultReadTimeout  = 200 * time.Millisecond
	DefaultWriteTimeout = 200 * time.Millisecond
	DefaultBreakAfter   = 3
	DefaultCooldown     = time.Second
)

// Config configures a Store. Addr (or Client) is required; the rest has
// defaults.
type Config struct {
	// Addr is the Redis server, "host:port".
	Addr string
	// Username, Password and DB select the account and database.
	Username string
	Password string
	DB       int
	// TLSConfig, if set, makes the connection use TLS.
	TLSConfig *tls.Config
	// PoolSize is the number of connections; 0 is go-redis's default
	// (10 per CPU).
	PoolSize int

	// Client, if set, is used instead of dialling Addr (a cluster or
	// sentinel client, say). Its own timeouts apply, so keep them small;
	// Close does not close it. Setting both Client and Addr is an error.
	Client redis.UniversalClient

	// Prefix starts every key, so several applications (or several
	// Postern fleets) can share a Redis; DefaultPrefix when empty.
	Prefix string

	// DialTimeout, ReadTimeout and WriteTimeout bound each network step;
	// 0 means the defaults above (200 ms each).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// BreakAfter consecutive connection errors open the circuit: for
	// Cooldown every call then fails at once with
	// ratelimit.ErrStoreUnavailable instead of waiting on a dead server.
	// After Cooldown the next call tries Redis again. 0 means
	// DefaultBreakAfter and DefaultCooldown.
	BreakAfter int
	Cooldown   time.Duration

	// Now is the clock of the circuit breaker; time.Now when nil. Buckets,
	// counters and holds use Redis's own clock (TIME and key expiry), so
	// relay instances with skewed clocks agree.
	Now func() time.Time
}

// Stats are a Store's counters.
type Stats struct {
	// Errors counts calls that failed talking to Redis.
	Errors uint64
	// ShortCircuited counts calls failed at once while the circuit was
	// open.
	ShortCircuited uint64
	// Open reports whether the circuit is open now.
	Open bool
}

// Store is a ratelimit.Store in Redis, shared by every relay instance
// that uses the same server and prefix. Each operation is one atomic
// command or Lua script on one key, so it also works with Redis Cluster.
// It is safe for concurrent use.
type Store struct {
	c          redis.UniversalClient
	own        bool
	prefix     string
	breakAfter int64
	cooldown   time.Duration
	now        func() time.Time

	consecutive atomic.Int64
	openUntil   atomic.Int64 // Unix nanoseconds; 0 when closed
	errs        atomic.Uint64
	shorted     atomic.Uint64

	// The scripts are sent by SHA (EVALSHA), falling back to EVAL once.
	incr, take *redis.Script
}

var _ ratelimit.Store = (*Store)(nil)

// New validates cfg and returns a Store. It does not connect: go-redis
// dials on first use, so a relay starts even while Redis is down (and
// fails open or closed as its filters say). Call Ping to check at start.
func New(cfg Config) (*Store, error) {
	switch {
	case cfg.Client == nil && cfg.Addr == "":
		return nil, fmt.Errorf("%w: Addr or Client is required", ErrConfig)
	case cfg.Client != nil && cfg.Addr != "":
		return nil, fmt.Errorf("%w: set Addr or Client, not both", ErrConfig)
	case cfg.DialTimeout < 0 || cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.Cooldown < 0:
		return nil, fmt.Errorf("%w: negative timeout", ErrConfig)
	case cfg.BreakAfter < 0 || cfg.PoolSize < 0:
		return nil, fmt.Errorf("%w: negative BreakAfter or PoolSize", ErrConfig)
	}
	s := &Store{c: cfg.Client, prefix: cfg.Prefix, breakAfter: int64(cfg.BreakAfter), cooldown: cfg.Cooldown, now: cfg.Now,
		incr: redis.NewScript(incrScript), take: redis.NewScript(takeScript)}
	s.prefix = cmp.Or(s.prefix, DefaultPrefix)
	s.breakAfter = cmp.Or(s.breakAfter, DefaultBreakAfter)
	s.cooldown = cmp.Or(s.cooldown, DefaultCooldown)
	if s.now == nil {
		s.now = time.Now
	}
	if s.c == nil {
		dial, read, write := cmp.Or(cfg.DialTimeout, DefaultDialTimeout), cmp.Or(cfg.ReadTimeout, DefaultReadTimeout),
			cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
		s.c = redis.NewClient(&redis.Options{
			Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: cfg.TLSConfig,
			PoolSize:              cfg.PoolSize,
			DialTimeout:           dial,
			ReadTimeout:           read,
			WriteTimeout:          write,
			PoolTimeout:           read + write,
			ContextTimeoutEnabled: true,
			// One try: retries and dial retries (five by default) multiply
			// the wait on a dead server; the breaker handles outages.
			MaxRetries:    -1,
			DialerRetries: 1,
			// Plain RESP2 and no CLIENT SETINFO or maintenance
			// notifications: fewer round trips on connect, and nothing a
			// plain or older Redis could refuse.
			Protocol:                 2,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		s.own = true
	}
	return s, nil
}

// Close closes the client if New created it.
func (s *Store) Close() error {
	if s.own {
		return s.c.Close()
	}
	return nil
}

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.prefix }

// Stats returns the counters.
func (s *Store) Stats() Stats {
	until := s.openUntil.Load()
	return Stats{Errors: s.errs.Load(), ShortCircuited: s.shorted.Load(),
		Open: until != 0 && s.now().UnixNano() < until}
}

// Ping checks that Redis answers (at start-up, or for a health check).
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, "PING", "", func(ctx context.Context) error { return s.c.Ping(ctx).Err() })
}

// do runs one Redis call through the circuit breaker and wraps its error.
func (s *Store) do(ctx context.Context, op, key string, call func(context.Context) error) error {
	if until := s.openUntil.Load(); until != 0 && s.now().UnixNano() < until {
		s.shorted.Add(1)
		return fmt.Errorf("%w: redis %s %s: circuit open after %d consecutive errors",
			ratelimit.ErrStoreUnavailable, op, key, s.consecutive.Load())
	}
	err := call(ctx)
	if err == nil {
		if s.consecutive.Load() != 0 {
			s.consecutive.Store(0)
			s.openUntil.Store(0)
		}
		return nil
	}
	s.errs.Add(1)
	var rerr redis.Error
	// An error reply means the server is up; a cancelled caller says
	// nothing about it. Neither counts towards opening the circuit.
	if !errors.As(err, &rerr) && !errors.Is(err, context.Canceled) {
		if s.consecutive.Add(1) >= s.breakAfter {
			s.openUntil.Store(s.now().Add(s.cooldown).UnixNano())
		}
	}
	return fmt.Errorf("%w: redis %s %s: %w", ratelimit.ErrStoreUnavailable, op, key, err)
}

// ms converts to whole milliseconds, rounding up, at least 1: Redis
// rejects a zero expiry.
func ms(d time.Duration) int64 {
	m := (d + time.Millisecond - 1) / time.Millisecond
	return max(int64(m), 1)
}

// incrScript is a fixed-window counter: the expiry is set by the first
// increment only (and repaired if a key somehow has none).
const incrScript = `
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`

// takeScript is GCRA (the generic cell rate algorithm), the token bucket
// kept as one number: the theoretical arrival time (TAT) of the next
// request, in microseconds of Redis's clock. A bucket of burst tokens
// refilling one per interval admits n tokens when TAT + n*interval -
// burst*interval is not in the future. It returns {allowed, remaining,
// retry_after_us}. The key expires when the bucket would be full again.
const takeScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local newtat = tat + n * interval
local allowat = newtat - burst * interval
if now < allowat then
  return {0, 0, math.ceil(allowat - now)}
end
local ttl = math.ceil((newtat - now) / 1000)
if ttl < 1 then ttl = 1 end
redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', ttl)
return {1, math.floor((now - allowat) / interval), 0}
`

// Take implements ratelimit.Store.
func (s *Store) Take(ctx context.Context, key string, r ratelimit.Rate, n int) (ratelimit.Result, error) {
	if r.Unlimited() {
		return ratelimit.Result{Allowed: true, Remaining: math.MaxInt}, nil
	}
	interval := float64(r.Per.Microseconds()) / float64(r.Count)
	var res ratelimit.Result
	k := s.prefix + key
	err := s.do(ctx, "take", k, func(ctx context.Context) error {
		vals, err := s.take.Run(ctx, s.c, []string{k},
			strconv.FormatFloat(interval, 'f', -1, 64), r.Count, n).Int64Slice()
		if err != nil {
			return err
		}
		if len(vals) != 3 {
			return fmt.Errorf("take script returned %d values", len(vals))
		}
		res = ratelimit.Result{Allowed: vals[0] == 1, Remaining: int(vals[1]),
			RetryAfter: time.Duration(vals[2]) * time.Microsecond}
		return nil
	})
	return res, err
}

// Incr implements ratelimit.Store.
func (s *Store) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	var n int64
	k := s.prefix + key
	err := s.do(ctx, "incr", k, func(ctx context.Context) error {
		var err error
		n, err = s.incr.Run(ctx, s.c, []string{k}, ms(window)).Int64()
		return err
	})
	return n, err
}

// Count implements ratelimit.Store.
func (s *Store) Count(ctx context.Context, key string) (int64, error) {
	var n int64
	k := s.prefix + key
	err := s.do(ctx, "count", k, func(ctx context.Context) error {
		v, err := s.c.Get(ctx, k).Int64()
		if errors.Is(err, redis.Nil) {
			return nil // no counter: 0
		}
		n = v
		return err
	})
	return n, err
}

// Hold implements ratelimit.Store.
func (s *Store) Hold(ctx context.Context, key string, ttl time.Duration) error {
	k := s.prefix + key
	return s.do(ctx, "hold", k, func(ctx context.Context) error {
		return s.c.Set(ctx, k, "1", time.Duration(ms(ttl))*time.Millisecond).Err()
	})
}

// Held implements ratelimit.Store.
func (s *Store) Held(ctx context.Context, key string) (bool, time.Duration, error) {
	var ttl time.Duration
	k := s.prefix + key
	err := s.do(ctx, "held", k, func(ctx context.Context) error {
		var err error
		ttl, err = s.c.PTTL(ctx, k).Result()
		return err
	})
	switch {
	case err != nil:
		return false, 0, err
	case ttl == -2: // no such key (go-redis passes -2 and -1 through unscaled)
		return false, 0, nil
	case ttl < 0: // no expiry: not one of ours, but a flag all the same
		return true, 0, nil
	}
	return true, ttl, nil
}

// Delete implements ratelimit.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	k := s.prefix + key
	return s.do(ctx, "delete", k, func(ctx context.Context) error { return s.c.Del(ctx, k).Err() })
}
