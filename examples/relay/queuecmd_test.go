package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/termsafe"
	"github.com/postern/postern/queue"
)

// storeAnswers is a downstream that lost some users (450 4.1.1), has a
// full mailbox (452 4.2.2), a partner that does not answer, and a reply
// text with a terminal escape in it.
type storeAnswers struct{}

func (storeAnswers) Destination(rcpt string) string { return postern.AddrDomain(rcpt) }

func (storeAnswers) Deliver(_ context.Context, d *queue.Delivery) []queue.Result {
	var out []queue.Result
	for _, r := range d.Recipients {
		var rep postern.Reply
		switch {
		case strings.HasPrefix(r.Addr, "gone"):
			rep = postern.NewReply(450, postern.ESC(4, 1, 1), "<"+r.Addr+">: Recipient address rejected: User unknown\x1b[2J")
		case strings.HasPrefix(r.Addr, "full"):
			rep = postern.NewReply(452, postern.ESC(4, 2, 2), "Mailbox full")
		case postern.AddrDomain(r.Addr) == "partner.example":
			rep = postern.NewReply(451, postern.ESC(4, 4, 1), "connection refused")
		default:
			rep = postern.NewReply(250, postern.ESC(2, 0, 0), "ok")
		}
		out = append(out, queue.Result{Reply: rep})
	}
	return out
}

// stuckQueue opens a queue with messages that were tried once.
func stuckQueue(t *testing.T) (*queue.Queue, map[string]string) {
	t.Helper()
	q, err := queue.Open(queue.Config{Dir: filepath.Join(t.TempDir(), "spool"), Deliverer: storeAnswers{},
		Hostname: "relay.nix.co.jj", MinBackoff: time.Hour, MaxBackoff: 2 * time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	ids := map[string]string{}
	for _, m := range []struct {
		name, from string
		rcpts      []string
	}{
		{"A", "alice@nix.co.jj", []string{"gone1@nix.co.jj", "full@nix.co.jj", "bob@nix.co.jj"}},
		{"B", "carol@nix.co.jj", []string{"gone2@nix.co.jj", "down@partner.example"}},
		{"C", "", []string{"down@partner.example"}},
	} {
		env := queue.Envelope{ID: "MSG" + m.name, From: m.from}
		for _, r := range m.rcpts {
			env.Recipients = append(env.Recipients, queue.Recipient{Addr: r, Original: r})
		}
		id, err := q.Enqueue(context.Background(), env, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
		require.NoError(t, err)
		ids[m.name] = id
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	require.Eventually(t, func() bool {
		for _, info := range q.List(queue.ListFilter{}) {
			if info.State.Attempts == 0 || info.Active {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	return q, ids
}

func admin(q *queue.Queue, args ...string) (int, string) {
	var out bytes.Buffer
	code := adminRun(q, args[0], args[1:], &out)
	return code, out.String()
}

func pendingAddrs(t *testing.T, q *queue.Queue, id string) []string {
	t.Helper()
	info, err := q.Show(id)
	require.NoError(t, err)
	return pending(info)
}

func TestQueueDeleteByReply(t *testing.T) {
	q, ids := stuckQueue(t)
	code, out := admin(q, "queue", "list", "-reply", "User unknown")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "MSGA")
	assert.Contains(t, out, "MSGB")
	assert.NotContains(t, out, "MSGC")
	assert.Contains(t, out, "User unknown?[2J", "replies are escaped")
	assert.NotContains(t, out, "\x1b")
	assert.Regexp(t, `(?m)^MSGA\s+deferred\s`, out)

	// The dry run lists and changes nothing; flags may follow IDs.
	code, out = admin(q, "queue", "delete", "-reply", "4.1.1", "-dry-run")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "MSGA: <gone1@nix.co.jj> would be deleted  (450 4.1.1 <gone1@nix.co.jj>: Recipient address rejected: User unknown?[2J)")
	assert.Contains(t, out, "MSGB: <gone2@nix.co.jj> would be deleted")
	assert.Contains(t, out, "-- dry run: 2 recipient(s) in 2 message(s) would be deleted; nothing was changed")
	assert.Equal(t, []string{"gone1@nix.co.jj", "full@nix.co.jj"}, pendingAddrs(t, q, ids["A"]))
	code, out = admin(q, "queue", "delete", ids["A"], "-reply", "user unknown", "-dry-run")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "-- dry run: 1 recipient(s) in 1 message(s) would be deleted")

	code, out = admin(q, "queue", "delete", "-reply", "User unknown")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "MSGA: <gone1@nix.co.jj> deleted")
	assert.Contains(t, out, "-- 2 recipient(s) in 2 message(s) deleted")
	assert.Equal(t, []string{"full@nix.co.jj"}, pendingAddrs(t, q, ids["A"]), "the other recipients stay queued")
	assert.Equal(t, []string{"down@partner.example"}, pendingAddrs(t, q, ids["B"]))
	code, out = admin(q, "queue", "list", "-reply", "User unknown")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "-- 0 message(s), 0 held")
}

func TestQueueSelectByDomainAndBounce(t *testing.T) {
	q, ids := stuckQueue(t)
	code, out := admin(q, "queue", "list", "-rcpt-domain", "partner.example")
	require.Equal(t, 0, code, out)
	assert.NotContains(t, out, "MSGA")
	assert.Contains(t, out, "MSGB")
	assert.Contains(t, out, "MSGC")
	code, out = admin(q, "queue", "list", "-sender", "<>")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "-- 1 message(s)")
	assert.Contains(t, out, "MSGC")

	// Return one recipient to its sender: one notice naming only it.
	code, out = admin(q, "queue", "bounce", "-rcpt-domain", "partner.example", "-sender", "carol@", "-reason", "partner gone")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "MSGB: <down@partner.example> returned to the sender  (451 4.4.1 connection refused)")
	assert.Contains(t, out, "-- 1 recipient(s) in 1 message(s) returned to the sender")
	assert.Equal(t, []string{"gone2@nix.co.jj"}, pendingAddrs(t, q, ids["B"]))
	dsns := q.List(queue.ListFilter{Sender: "<>", Recipient: "carol@"})
	require.Len(t, dsns, 1)
	rc, err := q.Open(dsns[0].ID)
	require.NoError(t, err)
	b, _ := io.ReadAll(rc)
	rc.Close()
	assert.Contains(t, string(b), "Final-Recipient: rfc822; down@partner.example")
	assert.NotContains(t, string(b), "gone2@nix.co.jj")
	assert.Contains(t, string(b), "Status: 5.4.1")
	assert.Contains(t, string(b), "Diagnostic-Code: smtp; 550 5.4.1 partner gone (last answer: 451 4.4.1")

	// The rest of the domain, deleted: the double-bounce candidate goes
	// whole, as it had no other recipient.
	code, out = admin(q, "queue", "delete", "-rcpt-domain", "PARTNER.example")
	require.Equal(t, 0, code, out)
	_, err = q.Show(ids["C"])
	assert.ErrorIs(t, err, queue.ErrNotFound)
}

func TestQueueCommandErrors(t *testing.T) {
	q, ids := stuckQueue(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"queue", "delete"}, 2, "which message? give queue IDs, ALL, or a selection"},
		{[]string{"queue", "bounce", "-state", "corrupt"}, 2, `-state "corrupt" is not new, active, deferred or held`},
		{[]string{"queue", "delete", "-older", "soon"}, 2, `"soon" is not an age`},
		{[]string{"queue", "list", "MSGA"}, 2, "takes no queue IDs"},
		{[]string{"quarantine", "bounce"}, 2, "unknown command"},
		{[]string{"queue", "delete", "NOPE", "-dry-run"}, 1, "NOPE: queue: no such message"},
		{[]string{"queue", "delete", "-h"}, 2, "relay queue delete -reply '5.1.1' -dry-run"},
		{[]string{"queue", "hold", "-sender", "nobody@", "MSGA"}, 0, "MSGA: does not match the selection; left alone"},
		{[]string{"quarantine", "delete", "-reply", "4xx"}, 0, "-- 0 recipient(s) in 0 message(s) deleted"},
	} {
		code, out := admin(q, tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, out)
		assert.Contains(t, out, tc.want, tc.args)
	}
	code, out := admin(q, "queue", "delete", "ALL", "-dry-run")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "-- dry run: 3 message(s) would be deleted; nothing was changed")
	code, out = admin(q, "queue", "hold", "-state", "deferred", "-older", "0s")
	assert.Equal(t, 2, code, out)
	code, out = admin(q, "queue", "hold", "-state", "deferred", "-reason", "look")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "-- 3 message(s) held")
	code, out = admin(q, "quarantine", "list", "-sender", "alice")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "-- 1 message(s), 1 held")
	code, out = admin(q, "queue", "release", "-state", "held", ids["A"])
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "MSGA: released")
}

// FuzzAdminRun feeds arbitrary command lines to the queue commands (the
// control socket's payload): they never panic, exit 0, 1 or 2, and when
// the command line itself is printable so is everything they write,
// whatever the queued mail holds (replies and addresses with terminal
// escapes). Mutating commands run on the queue too; it is refilled when
// they empty it.
func FuzzAdminRun(f *testing.F) {
	for _, s := range []string{
		"queue list -reply User\tunknown",
		"queue delete -reply 4.1.1 -dry-run",
		"queue delete MSGA -rcpt-domain .nix.co.jj -dry-run",
		"queue bounce -rcpt gone -reason x",
		"queue hold -state deferred -older 1s -younger 3d",
		"quarantine list -sender <>",
		"queue show -body MSGB",
		"queue retry -dest partner.example",
		"queue delete ALL -dry-run",
		"queue release -- -x",
		"queue delete -reply \x1b[2J",
	} {
		f.Add(s)
	}
	q, err := queue.Open(queue.Config{Dir: filepath.Join(f.TempDir(), "spool"), Deliverer: storeAnswers{},
		Hostname: "relay.nix.co.jj", MinBackoff: time.Hour, MaxBackoff: 2 * time.Hour})
	require.NoError(f, err)
	defer q.Close()
	fill := func() {
		for _, m := range []struct{ id, from, rcpts string }{
			{"MSGA", "alice@nix.co.jj", "gone1@nix.co.jj full@nix.co.jj bob@nix.co.jj"},
			{"MSGB", "ev\u202eil@example.net", "gone2@nix.co.jj down@partner.example"},
		} {
			if _, err := q.Show(m.id); err == nil {
				continue
			}
			env := queue.Envelope{ID: m.id, From: m.from}
			for _, r := range strings.Fields(m.rcpts) {
				env.Recipients = append(env.Recipients, queue.Recipient{Addr: r})
			}
			q.Enqueue(context.Background(), env, strings.NewReader("Subject: \x1b[31mred\r\n\r\nbody\x07\r\n"))
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- q.Run(ctx) }()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if len(q.List(queue.ListFilter{Phase: queue.PhaseNew})) == 0 && len(q.List(queue.ListFilter{Phase: queue.PhaseActive})) == 0 {
				break
			}
		}
		cancel()
		<-done
	}
	f.Fuzz(func(t *testing.T, line string) {
		fill()
		args := strings.Split(line, " ")
		if args[0] != "queue" && args[0] != "quarantine" {
			args = append([]string{"queue"}, args...)
		}
		var out bytes.Buffer
		code := adminRun(q, args[0], args[1:], &out)
		if code < 0 || code > 2 {
			t.Fatalf("exit code %d", code)
		}
		printable := true
		for _, a := range args {
			printable = printable && termsafe.String(a) == a
		}
		if printable && termsafe.Text(out.String()) != out.String() {
			t.Fatalf("%q wrote unescaped output: %q", line, out.String())
		}
	})
}
