package auth

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingResolver answers TXT queries from a table and counts them.
type countingResolver struct {
	Resolver
	asked   atomic.Int32
	answers map[string][]string
	fail    map[string]*net.DNSError
	gate    chan struct{} // when set, queries wait for it
}

func (c *countingResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	c.asked.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if e, ok := c.fail[name]; ok {
		return nil, e
	}
	return c.answers[name], nil
}

func TestCachingResolver(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	inner := &countingResolver{answers: map[string][]string{"example.org": {"v=spf1 -all"}},
		fail: map[string]*net.DNSError{
			"none.example":  {Err: "no such host", Name: "none.example", IsNotFound: true},
			"flaky.example": {Err: "server misbehaving", Name: "flaky.example", IsTemporary: true},
		}}
	r := NewCachingResolver(inner, CacheConfig{TTL: time.Minute, Clock: clock})
	ctx := context.Background()

	for range 3 {
		txt, err := r.LookupTXT(ctx, "example.org")
		require.NoError(t, err)
		assert.Equal(t, []string{"v=spf1 -all"}, txt)
	}
	assert.Equal(t, int32(1), inner.asked.Load(), "asked once within the TTL")
	txt, _ := r.LookupTXT(ctx, "example.org.")
	txt[0] = "changed by the caller"
	txt, _ = r.LookupTXT(ctx, "example.org")
	assert.Equal(t, "v=spf1 -all", txt[0], "callers get copies")
	assert.Equal(t, int32(1), inner.asked.Load(), "the root label names the same record")

	now = now.Add(61 * time.Second)
	_, err := r.LookupTXT(ctx, "example.org")
	require.NoError(t, err)
	assert.Equal(t, int32(2), inner.asked.Load(), "asked again after the TTL")

	for range 2 {
		_, err = r.LookupTXT(ctx, "none.example")
		assert.True(t, dnsNotFound(err))
	}
	assert.Equal(t, int32(3), inner.asked.Load(), "no such record is an answer too")
	for range 2 {
		_, err = r.LookupTXT(ctx, "flaky.example")
		require.Error(t, err)
	}
	assert.Equal(t, int32(5), inner.asked.Load(), "a temporary failure is asked again")
}

func TestCachingResolverSharesMisses(t *testing.T) {
	inner := &countingResolver{answers: map[string][]string{"example.org": {"x"}}, gate: make(chan struct{})}
	r := NewCachingResolver(inner, CacheConfig{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			txt, err := r.LookupTXT(context.Background(), "example.org")
			assert.NoError(t, err)
			assert.Equal(t, []string{"x"}, txt)
		})
	}
	require.Eventually(t, func() bool { return inner.asked.Load() >= 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // let the others queue behind the first
	close(inner.gate)
	wg.Wait()
	assert.Equal(t, int32(1), inner.asked.Load())
}

func TestCachingResolverBounded(t *testing.T) {
	inner := &countingResolver{answers: map[string][]string{}}
	r := NewCachingResolver(inner, CacheConfig{MaxEntries: 100}).(*cachingResolver)
	for i := range 1000 {
		_, err := r.LookupTXT(context.Background(), string(rune('a'+i%26))+time.Duration(i).String()+".example")
		require.NoError(t, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.LessOrEqual(t, len(r.m), 100)
}
