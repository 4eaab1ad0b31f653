package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sendmail's routing order with a mailertable loaded: the mailertable,
// then local delivery for the local domains it does not name, then the
// smart host, then MX (seed 001's gateway). A local domain missing from
// the mailertable is delivered here, not handed to the smart host.
func TestRoutingOrder(t *testing.T) {
	need(t, "python3")
	dist := startSink(t, "127.0.0.1:0")
	smart := startSink(t, "127.0.0.1:0")
	mt := writeFile(t, t.TempDir(), "mailertable", ".example.gr.jp esmtp:"+hostPort(dist.addr)+"\n")
	r := startRelay(t, "-listen", "127.0.0.1:0", "-greet-pause", "0", "-domains", "example.gr.jp,local.example.gr.jp,gw.example.gr.jp",
		"-mailertable", mt, "-smarthost", hostPort(smart.addr))
	for _, rcpt := range []string{"user@gw.example.gr.jp", "dept@a.example.gr.jp", "friend@remote.example"} {
		res := runDialog(t, r.addr, "127.0.0.1", "SEND alice@example.gr.jp "+rcpt)
		require.Equal(t, "SENT []", res[0], rcpt)
	}
	// gw.example.gr.jp is local, but ".example.gr.jp" names its
	// subdomains: the mailertable comes first, as in sendmail.
	got := dist.waitFor(t, 2, 20*time.Second)
	var rcpts []string
	for _, m := range got {
		rcpts = append(rcpts, m.Rcpts...)
	}
	assert.ElementsMatch(t, []string{"user@gw.example.gr.jp", "dept@a.example.gr.jp"}, rcpts)
	assert.Equal(t, []string{"friend@remote.example"}, smart.waitFor(t, 1, 20*time.Second)[0].Rcpts)

	// example.gr.jp itself is not named by ".example.gr.jp": local
	// delivery, not the smart host.
	res := runDialog(t, r.addr, "127.0.0.1", "SEND alice@example.gr.jp user@example.gr.jp")
	require.Equal(t, "SENT []", res[0])
	require.Eventually(t, func() bool {
		for _, f := range maildirFiles(t, r.maildir) {
			if strings.Contains(f, "example.gr.jp/user/new/") {
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "relay log:\n%s", r.logs())
	time.Sleep(500 * time.Millisecond)
	assert.Len(t, smart.received(), 1, "nothing local went to the smart host")
}
