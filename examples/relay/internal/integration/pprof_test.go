package integration

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Go's profiles are served on the metrics listener only when
// metrics.pprof asks for them.
func TestProfilesOnlyWhenAsked(t *testing.T) {
	get := func(url string) (int, []byte) {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}

	off := startRelay(t, "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0")
	code, _ := get("http://" + off.metricsAddr(t) + "/debug/pprof/")
	assert.Equal(t, http.StatusNotFound, code, "no profiles by default")

	on := startRelay(t, "-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0", "-metrics-pprof")
	base := "http://" + on.metricsAddr(t)
	code, body := get(base + "/debug/pprof/profile?seconds=1")
	require.Equal(t, http.StatusOK, code, string(body))
	assert.True(t, bytes.HasPrefix(body, []byte{0x1f, 0x8b}), "a gzipped CPU profile")
	code, _ = get(base + "/healthz")
	assert.Equal(t, http.StatusOK, code, "the metrics listener's own pages stay")
}
