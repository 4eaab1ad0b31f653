package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/auth"
)

// replaceFile writes content beside path and renames it over path, as an
// administrator's tool does.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

// A broken credentials file, in the running relay: logged once however
// often the watcher looks at it (auth's own reloader logged it at every
// look), logins go on against the previous version, and the next good
// file is taken. The credentials are watched by internal/filewatch like
// every other file the relay names.
func TestSubmissionCredentialsBrokenFile(t *testing.T) {
	s := startSubmissionRelay(t)
	const broken = `credentials not reloaded, previous version stays in force`
	replaceFile(t, s.creds, "# edited by hand\nalice@example.test $2a$10$broken\n")
	require.Eventually(t, func() bool { return strings.Contains(s.logs(), broken) }, 30*time.Second, 50*time.Millisecond)
	assert.Regexp(t, `msg="`+broken+`" file=\S+credentials error=".*credentials:2: want user:hash" line=2`, s.logs())
	out, err := s.swaks(t)
	require.NoError(t, err, "the previous credentials stay in force: %s", out)

	// The watcher looks every 5 s: give it two more looks at the broken
	// file before counting.
	time.Sleep(11 * time.Second)
	assert.Equal(t, 1, strings.Count(s.logs(), broken), "logged once, not at every look")

	hash, err := auth.HashPassword(auth.HashBcrypt, "carol's pass")
	require.NoError(t, err)
	replaceFile(t, s.creds, "carol@example.test:"+hash+"\n")
	require.Eventually(t, func() bool { return strings.Count(s.logs(), `msg="credentials loaded"`) >= 2 },
		30*time.Second, 50*time.Millisecond, "loaded at start, then the repaired file")
	out, err = s.swaks(t, "--auth-user", "carol@example.test", "--auth-password", "carol's pass", "--from", "carol@example.test")
	require.NoError(t, err, "the repaired file is in force: %s", out)
	out, err = s.swaks(t)
	require.Error(t, err, "alice left with the repaired file: %s", out)
	assert.Contains(t, out, "535 5.7.8")
	assert.Equal(t, 1, strings.Count(s.logs(), broken))
}
