package integration

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Site 000 (seed 1, a company's sendmail Mail-Relay review): the relay in
// front of the mail store, rebuilt from the site's own files
// (examples/relay/migration: greet pause 10 s with GreetPause:ADDR 0 for
// its own hosts, Connect:<store> RELAY, To:<own domain> RELAY,
// To:postmaster@<own domain> DISCARD, the mailertable sending the own
// domain to the store, queuewarn 4h and queuereturn 3d, 10 MB, a
// fallback relay for outgoing mail). As the site ran it, the relay does
// not ask the store about recipients (the migration example adds
// call-ahead; the site's sendmail did not), so mail for users the store
// no longer knows sits in the queue: the store answers 450 4.1.1 "User
// unknown". The operator used to run "mailq | awk" and remove files; here
// the queue commands select and delete those recipients, bounce one, and
// clear a dead partner domain, while everything else stays queued.
func TestSite000QueueSelection(t *testing.T) {
	need(t, "python3")
	outside := outsideAddr(t)
	relay2Addr := freeAddr(t) // the second line's relay: down for now
	r, store := migrationRelay(t, freeAddr(t), "-callahead=false", "-fallback-relay", hostPort(relay2Addr))

	// The store: some accounts are gone (450 4.1.1, as Postfix with
	// unknown_local_recipient_reject_code = 450), one mailbox is full.
	var mu sync.Mutex
	tried := map[string]int{}
	store.setRcpt(func(to string) *smtp.SMTPError {
		mu.Lock()
		tried[to]++
		mu.Unlock()
		switch strings.SplitN(to, "@", 2)[0] {
		case "gone1", "gone2":
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 1, 1},
				Message: "<" + to + ">: Recipient address rejected: User unknown in local recipient table"}
		case "erin":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
		}
		return nil
	})
	attempts := func(to string) int {
		mu.Lock()
		defer mu.Unlock()
		return tried[to]
	}
	admin := func(args ...string) string {
		t.Helper()
		out, code := r.admin(t, append(args, "-spool", r.spool)...)
		require.Equal(t, 0, code, "%v: %s", args, out)
		return out
	}

	// The site's greet pause: a stranger that talks first is refused, the
	// site's own host (GreetPause:127.0.0.1 0) is not.
	early := dialFrom(t, outside, r.addr)
	_, err := early.Write([]byte("EHLO impatient.example\r\n"))
	require.NoError(t, err)
	assert.Regexp(t, `^554 5\.5\.1 `, readAll(early, 30*time.Second))
	own := dialFrom(t, "127.0.0.1", r.addr)
	_, err = own.Write([]byte("EHLO store.nix.co.jj\r\nQUIT\r\n"))
	require.NoError(t, err)
	greeting := readAll(own, 30*time.Second)
	assert.Regexp(t, `^220 `, greeting)
	assert.Contains(t, greeting, "SIZE 10485760", "10 MB, as the site had it")

	// Mail from the Internet (after the pause) for three users, one of
	// them gone; the site's own mail for a gone user, a full mailbox and
	// a partner; outgoing mail for two partners (DNS is dead and the
	// fallback relay down, so it waits).
	got := runDialog(t, r.addr, outside, "SEND stranger@example.net gone1@nix.co.jj,erin@nix.co.jj,dave@nix.co.jj")
	require.Equal(t, "SENT []", got[0])
	for _, send := range []string{
		"SEND alice@nix.co.jj gone2@nix.co.jj,erin@nix.co.jj,partner@busy.example",
		"SEND alice@nix.co.jj a@busy.example,b@other.example",
		"SEND bob@nix.co.jj c@busy.example",
		"SEND alice@nix.co.jj postmaster@nix.co.jj", // To:postmaster@nix.co.jj DISCARD
	} {
		got := runDialog(t, r.addr, "127.0.0.1", send)
		require.Equal(t, "SENT []", got[0], send)
	}
	store.waitFor(t, 1, 30*time.Second) // dave
	idRE := regexp.MustCompile(`(?m)^([0-9A-Za-z_-]{6,})\s+(new|active|deferred|held)\s`)
	ids := func(out string) []string {
		var out2 []string
		for _, m := range idRE.FindAllStringSubmatch(out, -1) {
			out2 = append(out2, m[1])
		}
		return out2
	}
	var stuck []string
	require.Eventually(t, func() bool {
		stuck = ids(admin("queue", "list", "-reply", "User unknown"))
		return len(stuck) == 2
	}, 30*time.Second, 200*time.Millisecond, "both messages deferred by the store: %s", r.logs())
	all := ids(admin("queue", "list"))
	require.Len(t, all, 4, "the message to postmaster was discarded")

	// The dry run lists the recipients and deletes nothing.
	dry := admin("queue", "delete", "-reply", "User unknown", "-dry-run")
	assert.Regexp(t, `: <gone1@nix\.co\.jj> would be deleted  \(450 4\.1\.1 .*User unknown in local recipient table\)`, dry)
	assert.Contains(t, dry, "<gone2@nix.co.jj> would be deleted")
	assert.Contains(t, dry, "-- dry run: 2 recipient(s) in 2 message(s) would be deleted; nothing was changed")
	assert.Equal(t, stuck, ids(admin("queue", "list", "-reply", "4.1.1")))

	// Deleted for real: only those recipients; erin stays queued in both
	// messages, and the store never hears of gone1 and gone2 again.
	del := admin("queue", "delete", "-reply", "User unknown")
	assert.Contains(t, del, "<gone1@nix.co.jj> deleted")
	assert.Contains(t, del, "-- 2 recipient(s) in 2 message(s) deleted")
	assert.Contains(t, admin("queue", "list", "-reply", "User unknown"), "-- 0 message(s)")
	assert.Equal(t, stuck, ids(admin("queue", "list", "-rcpt", "erin@")), "the other recipients stay queued")
	before := map[string]int{"gone1@nix.co.jj": attempts("gone1@nix.co.jj"), "gone2@nix.co.jj": attempts("gone2@nix.co.jj")}
	erin := attempts("erin@nix.co.jj")
	require.Eventually(t, func() bool { return attempts("erin@nix.co.jj") >= erin+2 }, 30*time.Second, 100*time.Millisecond,
		"erin is still retried")
	for addr, n := range before {
		assert.Equal(t, n, attempts(addr), "%s was deleted: never tried again", addr)
	}

	// Bounce per recipient: erin of alice's message goes back to alice in
	// one notice that names only erin; the partner recipient stays.
	bounce := admin("queue", "bounce", "-reply", "Mailbox full", "-sender", "alice@nix.co.jj", "-reason", "mailbox full for days")
	assert.Contains(t, bounce, "<erin@nix.co.jj> returned to the sender  (452 4.2.2 Mailbox full)")
	assert.Contains(t, bounce, "-- 1 recipient(s) in 1 message(s) returned to the sender")
	var notice sunk
	require.Eventually(t, func() bool {
		for _, m := range store.received() {
			if m.From == "" {
				notice = m
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the notice reaches alice at the store")
	assert.Equal(t, []string{"alice@nix.co.jj"}, notice.Rcpts)
	dsn := string(notice.Data)
	assert.Contains(t, dsn, "Final-Recipient: rfc822; erin@nix.co.jj")
	assert.Contains(t, dsn, "Status: 5.2.2")
	assert.Contains(t, dsn, "mailbox full for days")
	for _, other := range []string{"gone2@nix.co.jj", "partner@busy.example"} {
		assert.NotContains(t, dsn, "Final-Recipient: rfc822; "+other)
	}
	assert.Len(t, ids(admin("queue", "list", "-rcpt", "erin@")), 1, "the stranger's message still has erin")

	// A partner domain that closed: its recipients are selected by
	// domain and deleted; a message with another recipient keeps it, one
	// with none left goes.
	busy := ids(admin("queue", "list", "-rcpt-domain", "busy.example"))
	assert.Len(t, busy, 3)
	dryBusy := admin("queue", "delete", "-rcpt-domain", "busy.example", "-dry-run")
	assert.Contains(t, dryBusy, "-- dry run: 3 recipient(s) in 3 message(s) would be deleted")
	admin("queue", "delete", "-rcpt-domain", "busy.example")
	var left string
	require.Eventually(t, func() bool {
		left = admin("queue", "list")
		return strings.Contains(left, "-- 2 message(s)") // the notice to alice may still be finishing
	}, 30*time.Second, 200*time.Millisecond, "the stranger's (erin) and alice's (other.example)")
	assert.NotContains(t, left, "busy.example")
	assert.Contains(t, left, "b@other.example")

	// The second line comes back: what is left for the Internet goes
	// through the fallback relay, and nothing for the deleted domain.
	relay2 := startSink(t, relay2Addr)
	admin("queue", "retry")
	out := relay2.waitFor(t, 1, 30*time.Second)
	assert.Equal(t, []string{"b@other.example"}, out[0].Rcpts)
	assert.Eventually(t, func() bool {
		return strings.Contains(admin("queue", "list"), "-- 1 message(s)")
	}, 30*time.Second, 200*time.Millisecond)
	for _, m := range relay2.received() {
		for _, rc := range m.Rcpts {
			assert.NotContains(t, rc, "busy.example")
		}
	}
	assert.Contains(t, r.logs(), `action=deleted`)
}
