package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/postern/postern"
)

const benchKeys = 100_000

// benchRate never runs dry, and a bucket takes 3.4 s to get a token back,
// so all 100,000 keys stay live (not full) for the whole run and the
// idle sweep leaves them alone.
var benchRate = Rate{Count: 1 << 30, Per: 1_000_000 * time.Hour}

func benchKeyList() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = IPKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Class{})
	}
	return keys
}

// BenchmarkRateLimiterAllow is the reference: one x/time/rate limiter, no
// keys. The keyed benchmarks are quoted as ratios to it.
func BenchmarkRateLimiterAllow(b *testing.B) {
	lim := rate.NewLimiter(rate.Inf, 1)
	for b.Loop() {
		lim.Allow()
	}
}

// BenchmarkLimitersAllow100k is Allow on a table holding 100,000 keys,
// each call on another key.
func BenchmarkLimitersAllow100k(b *testing.B) {
	l, _ := NewLimiters(LimitersConfig{MaxKeys: 2 * benchKeys})
	keys := benchKeyList()
	r := benchRate
	for _, k := range keys {
		l.Allow(k, r)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i%benchKeys], r)
		i++
	}
	if l.Len() != benchKeys {
		b.Fatalf("%d keys", l.Len())
	}
}

func BenchmarkLimitersAllow100kParallel(b *testing.B) {
	l, _ := NewLimiters(LimitersConfig{MaxKeys: 2 * benchKeys})
	keys := benchKeyList()
	r := benchRate
	for _, k := range keys {
		l.Allow(k, r)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		for pb.Next() {
			l.Allow(keys[i%benchKeys], r)
			i++
		}
	})
	if l.Len() != benchKeys {
		b.Fatalf("%d keys", l.Len())
	}
}

// BenchmarkLimitersChurn inserts a new key on every call into a full
// table: the cost of eviction.
func BenchmarkLimitersChurn(b *testing.B) {
	l, _ := NewLimiters(LimitersConfig{MaxKeys: benchKeys})
	keys := make([]string, 4*benchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("ip:10.%d.%d.%d/32", i>>16, (i>>8)&255, i&255)
	}
	r := Rate{Count: 10, Per: time.Minute}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(keys[i%len(keys)], r)
		i++
	}
}

// BenchmarkGuardCheckRcpt is the harvest guard's RCPT check on the memory
// store with 100,000 sources, some held.
func BenchmarkGuardCheckRcpt(b *testing.B) {
	ctx := context.Background()
	g, _ := NewGuard(GuardConfig{Threshold: 1})
	conns := make([]*postern.Conn, 1024)
	for i := range benchKeys {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%10 == 0 {
			_ = g.RecordUnknown(ctx, ip)
		}
		if i < len(conns) {
			conns[i] = &postern.Conn{ID: "b", Remote: netip.AddrPortFrom(ip, 25)}
		}
	}
	tx, rc := &postern.Txn{}, &postern.Rcpt{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = g.CheckRcpt(ctx, conns[i%len(conns)], tx, rc)
		i++
	}
}

// BenchmarkFilterCheckRcpt is the recipient rate check on the memory store.
func BenchmarkFilterCheckRcpt(b *testing.B) {
	ctx := context.Background()
	f, _ := NewFilter(FilterConfig{Recipients: Rate{Count: 1 << 30, Per: time.Second}})
	conns := make([]*postern.Conn, 1024)
	for i := range conns {
		conns[i] = &postern.Conn{ID: "b", Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 25)}
	}
	tx, rc := &postern.Txn{}, &postern.Rcpt{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = f.CheckRcpt(ctx, conns[i%len(conns)], tx, rc)
		i++
	}
}

func BenchmarkIPKey(b *testing.B) {
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")
	b.ReportAllocs()
	for b.Loop() {
		_ = IPKey(v4, Class{V4: 24})
		_ = IPKey(v6, Class{})
	}
}
