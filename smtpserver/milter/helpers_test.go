package milter

import (
	"errors"
	"io"
	"log"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func netipMust(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// waitGoroutines waits until no more goroutines run than before (a
// polling loop of its own: testify's Eventually runs goroutines too).
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	for range 500 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("goroutines left behind: %d, before %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
}

// quietGoMilter sends go-milter's warnings (the standard logger) nowhere
// for the test: a fuzz worker's output is a pipe that fills up.
func quietGoMilter(t testing.TB) {
	w := log.Writer()
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(w) })
}
