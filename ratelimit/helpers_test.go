package ratelimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// clock is a manual clock: tests move time instead of sleeping.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock() }

// logBuf collects JSON log records.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the records whose message is msg.
func (l *logBuf) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func conn(ip string) *postern.Conn {
	return &postern.Conn{ID: "c1", Remote: netip.AddrPortFrom(mustAddr(ip), 40000)}
}

// failingStore fails every call, as a Redis that is down.
type failingStore struct{}

var errDown = errors.New("connection refused")

func (failingStore) Take(context.Context, string, Rate, int) (Result, error) {
	return Result{}, errors.Join(ErrStoreUnavailable, errDown)
}
func (failingStore) Incr(context.Context, string, time.Duration) (int64, error) {
	return 0, errors.Join(ErrStoreUnavailable, errDown)
}
func (failingStore) Hold(context.Context, string, time.Duration) error {
	return errors.Join(ErrStoreUnavailable, errDown)
}
func (failingStore) Held(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errors.Join(ErrStoreUnavailable, errDown)
}
func (failingStore) Delete(context.Context, string) error {
	return errors.Join(ErrStoreUnavailable, errDown)
}
