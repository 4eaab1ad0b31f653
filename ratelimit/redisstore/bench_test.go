package redisstore_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/ratelimit/redisstore"
)

func benchStore(b *testing.B) *redisstore.Store {
	srv := startRedis(b)
	s, err := redisstore.New(redisstore.Config{Addr: srv.Addr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := s.Ping(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRedisPing is the reference: one round trip to the local Redis.
func BenchmarkRedisPing(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for b.Loop() {
		if err := s.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisTake is one GCRA script call (EVALSHA).
func BenchmarkRedisTake(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	r := ratelimit.Rate{Count: 1 << 30, Per: time.Hour}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Take(ctx, "bench", r, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisGuardCheckRcpt is the harvest guard's RCPT check on
// Redis: one PTTL round trip.
func BenchmarkRedisGuardCheckRcpt(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	g, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	c := &postern.Conn{ID: "b", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
	tx, rc := &postern.Txn{}, &postern.Rcpt{}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := g.CheckRcpt(ctx, c, tx, rc); v.Final() {
			b.Fatal(v)
		}
	}
	if g.Stats().StoreErrors != 0 {
		b.Fatal("store errors")
	}
}

// BenchmarkRedisGuardCheckRcptParallel is the same check from many
// sessions at once.
func BenchmarkRedisGuardCheckRcptParallel(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	g, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &postern.Conn{ID: "b", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
		tx, rc := &postern.Txn{}, &postern.Rcpt{}
		for pb.Next() {
			_, _ = g.CheckRcpt(ctx, c, tx, rc)
		}
	})
	if g.Stats().StoreErrors != 0 {
		b.Fatal("store errors")
	}
}
