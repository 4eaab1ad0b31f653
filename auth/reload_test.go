package auth

import (
	"context"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watched is one of the files auth reloads, seen through what it
// decides: whether the content of version v is in force.
type watched struct {
	name, what string
	good       func(t *testing.T, v string) string // a file whose version is v
	broken     string                              // a file that does not parse at line 2
	start      func(path string, lb *logBuf) (run func(context.Context) error, inForce func(v string) bool, err error)
}

var watchedFiles = []watched{
	{
		name: "credentials", what: "credentials",
		good:   func(t *testing.T, v string) string { return "alice:" + cheapArgon2(t, v) + "\n" },
		broken: "# users\nalice $argon2id$broken\n",
		start: func(path string, lb *logBuf) (func(context.Context) error, func(string) bool, error) {
			c, err := NewCredentials(CredentialsConfig{Path: path, Interval: 10 * time.Millisecond, Logger: lb.Logger()})
			if err != nil {
				return nil, nil, err
			}
			return c.Run, func(v string) bool { return c.CheckPassword(bg, nil, "alice", v) == nil }, nil
		},
	},
	{
		name: "senders", what: "sender bindings",
		good:   func(_ *testing.T, v string) string { return "alice: alice@" + v + ".example\n" },
		broken: "# bindings\nalice alice@example.org\n",
		start: func(path string, lb *logBuf) (func(context.Context) error, func(string) bool, error) {
			m, err := NewSenderMap(SenderMapConfig{Path: path, Interval: 10 * time.Millisecond, Logger: lb.Logger()})
			if err != nil {
				return nil, nil, err
			}
			return m.Run, func(v string) bool { return m.Allowed("alice", "alice@"+v+".example") }, nil
		},
	},
}

// TestWatchedFileReload: the credentials and senders files reload
// through filewatch. A change takes effect; a broken file is logged once
// however often it is looked at (auth's own reloader logged it at every
// look: 30 times in 300 ms), the previous version stays in force, and
// the next good version is taken. Time is synctest's, so "300 ms" is 30
// looks, exactly.
func TestWatchedFileReload(t *testing.T) {
	for _, wf := range watchedFiles {
		t.Run(wf.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), wf.name)
				writeFile(t, path, wf.good(t, "one"))
				lb := &logBuf{newLogBuffer()}
				run, inForce, err := wf.start(path, lb)
				require.NoError(t, err)
				require.True(t, inForce("one"))
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				go func() { done <- run(ctx) }()
				settle := func() {
					time.Sleep(50 * time.Millisecond) // five looks: the change, then stable
					synctest.Wait()
				}

				writeFile(t, path, wf.good(t, "two"))
				settle()
				assert.True(t, inForce("two"), "a change is taken")
				assert.False(t, inForce("one"))

				writeFile(t, path, wf.broken)
				time.Sleep(300 * time.Millisecond)
				synctest.Wait()
				failed := lb.Records(t, wf.what+" not reloaded, previous version stays in force")
				require.Len(t, failed, 1, "logged once in 30 looks")
				assert.Equal(t, path, failed[0]["file"])
				assert.EqualValues(t, 2, failed[0]["line"])
				assert.True(t, inForce("two"), "the previous version stays in force")

				writeFile(t, path, wf.good(t, "three"))
				settle()
				assert.True(t, inForce("three"), "recovers at the next good version")
				assert.Len(t, lb.Records(t, wf.what+" loaded"), 3, "the first load, two, three")

				writeFile(t, path, wf.broken)
				settle()
				assert.Len(t, lb.Records(t, wf.what+" not reloaded, previous version stays in force"), 2,
					"broken again after a good version: logged again")
				cancel()
				assert.ErrorIs(t, <-done, context.Canceled)
			})
		})
	}
}
