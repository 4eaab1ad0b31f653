package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// clock is a manual clock: tests move time instead of sleeping.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock() }

// logBuf collects JSON log records.
type logBuf = testutil.LogBuffer

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
func (failingStore) Count(context.Context, string) (int64, error) {
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
