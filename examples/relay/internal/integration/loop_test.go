package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// migrationRelay runs the migration example unchanged but for the
// sockets, the spool and the DNS server; the mail store is a sink.
func migrationRelay(t *testing.T, dns string, extra ...string) (*relay, *sink) {
	t.Helper()
	store := startSink(t, "127.0.0.1:0")
	dir := t.TempDir()
	for _, f := range []string{"relay.toml", "access", "mailertable"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "migration", f))
		require.NoError(t, err)
		writeFile(t, dir, f, strings.ReplaceAll(string(b), "esmtp:[192.168.1.1]", "esmtp:"+hostPort(store.addr)))
	}
	args := append([]string{"-config", filepath.Join(dir, "relay.toml"), "-listen", "127.0.0.1:0",
		"-spool", filepath.Join(dir, "spool"), "-dns-resolver", dns, "-metrics-listen", "",
		"-min-backoff", "1s", "-max-backoff", "2s"}, extra...)
	r := startRelay(t, args...)
	r.spool = filepath.Join(dir, "spool")
	return r, store
}

var queuedLineRE = regexp.MustCompile(`msg=message .*action=queued`)

// The reported loop: the migration example, user@localhost. A stranger
// is refused at RCPT; the site's own host (127.0.0.1 RELAY) may send it,
// and then it fails once, 5.4.6, instead of coming back to the relay
// again and again; the sender gets one notice.
func TestLocalhostLoopsBackToMyself(t *testing.T) {
	need(t, "python3")
	src := outsideAddr(t)
	dns := startDNS(t, map[string]string{"localhost": "127.0.0.1", "loop.example": "127.0.0.1"})
	r, store := migrationRelay(t, dns.addr, "-greet-pause", "0")

	got := runDialog(t, r.addr, src, "MAIL FROM:<spammer@outside.example>", "RCPT TO:<user@localhost>",
		"RCPT TO:<user@sub.nix.co.jj>", "RCPT TO:<user@[127.0.0.1]>")
	for _, l := range got[1:] {
		assert.Regexp(t, `^550 5\.7\.1 `, l)
	}

	for _, rcpt := range []string{"user@localhost", "user@loop.example", "user@[127.0.0.1]"} {
		res := runDialog(t, r.addr, "127.0.0.1", "SEND alice@nix.co.jj "+rcpt)
		require.Equal(t, "SENT []", res[0], rcpt)
	}
	notices := store.waitFor(t, 3, 30*time.Second)
	time.Sleep(2 * time.Second) // anything more would arrive now
	require.Len(t, store.received(), 3, "one notice per message, nothing else")
	for _, n := range notices {
		assert.Equal(t, "", n.From, "a delivery status notification")
		assert.Equal(t, []string{"alice@nix.co.jj"}, n.Rcpts)
		assert.Contains(t, string(n.Data), "Status: 5.4.6")
		assert.Contains(t, string(n.Data), "loops back to myself")
	}
	assert.Len(t, queuedLineRE.FindAllString(r.logs(), -1), 3, "each message entered the relay once")
}

// Two relays whose mailertables point at each other: the message goes
// round until the hop limit stops it, and its sender gets one notice.
func TestLoopBetweenRelays(t *testing.T) {
	need(t, "python3")
	senders := startSink(t, "127.0.0.1:0")
	aAddr, bAddr := freeAddr(t), freeAddr(t)
	relayTo := func(peer string) []string {
		mt := writeFile(t, t.TempDir(), "mailertable", "loop.example esmtp:"+hostPort(peer)+"\n"+
			"sender.example esmtp:"+hostPort(senders.addr)+"\n")
		return []string{"-listen", "", "-greet-pause", "0", "-mailertable", mt, "-max-hops", "20",
			"-min-backoff", "1s", "-max-backoff", "2s"}
	}
	argsA, argsB := relayTo(bAddr), relayTo(aAddr)
	argsA[1], argsB[1] = aAddr, bAddr
	a := startRelay(t, argsA...)
	b := startRelay(t, argsB...)

	res := runDialog(t, a.addr, "127.0.0.1", "SEND alice@sender.example user@loop.example")
	require.Equal(t, "SENT []", res[0])
	notices := senders.waitFor(t, 1, 60*time.Second)
	time.Sleep(2 * time.Second)
	require.Len(t, senders.received(), 1, "one notice; relay A log:\n%s\nrelay B log:\n%s", a.logs(), b.logs())
	n := notices[0]
	assert.Equal(t, "", n.From)
	assert.Equal(t, []string{"alice@sender.example"}, n.Rcpts)
	assert.Contains(t, string(n.Data), "Status: 5.4.6")
	assert.Contains(t, string(n.Data), "Too many hops")

	hops := len(queuedLineRE.FindAllString(a.logs(), -1)) + len(queuedLineRE.FindAllString(b.logs(), -1))
	t.Logf("the looping message was accepted %d times (limit 20)", hops)
	assert.LessOrEqual(t, hops, 20)
	assert.GreaterOrEqual(t, hops, 19)
	// The returned header shows how far it went.
	assert.LessOrEqual(t, strings.Count(string(n.Data), "\nReceived: "), 20)
}
