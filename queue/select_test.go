package queue

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestReplyPattern(t *testing.T) {
	unknown := postern.NewReply(450, postern.ESC(4, 1, 1), "<bob@example.org>: Recipient address rejected: User unknown")
	full := postern.NewReply(452, postern.ESC(4, 2, 2), "Mailbox full")
	bare := postern.NewReply(550, postern.EnhancedCode{}, "no such user here")
	for _, tc := range []struct {
		pattern string
		desc    string
		match   []postern.Reply
		miss    []postern.Reply
	}{
		{"450", "reply code 450", []postern.Reply{unknown}, []postern.Reply{full, bare}},
		{"4xx", "reply code 4xx", []postern.Reply{unknown, full}, []postern.Reply{bare}},
		{"45X", "reply code 45x", []postern.Reply{unknown, full}, []postern.Reply{bare}},
		{"5.1.1", "enhanced status code 5.1.1", nil, []postern.Reply{unknown, full, bare}},
		{"4.1.1", "enhanced status code 4.1.1", []postern.Reply{unknown}, []postern.Reply{full, bare}},
		{"4.x.x", "enhanced status code 4.x.x", []postern.Reply{unknown, full}, []postern.Reply{bare}},
		{"4.2.X", "enhanced status code 4.2.x", []postern.Reply{full}, []postern.Reply{unknown}},
		{" user UNKNOWN ", `reply containing "user unknown"`, []postern.Reply{unknown}, []postern.Reply{full, bare}},
		{"450 4.1.1", `reply containing "450 4.1.1"`, []postern.Reply{unknown}, []postern.Reply{full}},
		{"@example.org", `reply containing "@example.org"`, []postern.Reply{unknown}, []postern.Reply{full}},
		// Not codes: the first digit is not a reply class, too many
		// digits, an x in the class.
		{"150", `reply containing "150"`, nil, []postern.Reply{unknown}},
		{"4500", `reply containing "4500"`, nil, []postern.Reply{unknown}},
		{"x50", `reply containing "x50"`, nil, []postern.Reply{unknown}},
		{"3.1.1", `reply containing "3.1.1"`, nil, []postern.Reply{unknown}},
		{"x.1.1", `reply containing "x.1.1"`, nil, []postern.Reply{unknown}},
		{"4.1.1000", `reply containing "4.1.1000"`, nil, []postern.Reply{unknown}},
		{"", "no reply", nil, []postern.Reply{unknown, full, bare}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			p := ParseReplyPattern(tc.pattern)
			assert.Equal(t, tc.desc, p.String())
			for _, r := range tc.match {
				assert.True(t, p.Match(r), "%q should match %q", tc.pattern, r.Error())
			}
			for _, r := range append(tc.miss, postern.Reply{}) {
				assert.False(t, p.Match(r), "%q should not match %q", tc.pattern, r.Error())
			}
		})
	}
}

func TestParsePhase(t *testing.T) {
	for in, want := range map[string]Phase{"new": PhaseNew, "Incoming": PhaseNew, "active": PhaseActive,
		"deferred": PhaseDeferred, "held": PhaseHeld, "hold": PhaseHeld} {
		got, ok := ParsePhase(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	_, ok := ParsePhase("corrupt")
	assert.False(t, ok)
}

// stuck answers as a downstream that lost some users: 450 4.1.1 for
// those, 452 4.2.2 for a full mailbox, 250 for the rest.
func stuck(_ *Delivery, r Recipient) Result {
	switch {
	case strings.HasPrefix(r.Addr, "gone"):
		return Result{Reply: postern.NewReply(450, postern.ESC(4, 1, 1), "<"+r.Addr+">: Recipient address rejected: User unknown"), RemoteMTA: "store.example.org"}
	case strings.HasPrefix(r.Addr, "full"):
		return Result{Reply: postern.NewReply(452, postern.ESC(4, 2, 2), "Mailbox full"), RemoteMTA: "store.example.org"}
	case strings.HasPrefix(r.Addr, "down"):
		return Result{Reply: postern.NewReply(451, postern.ESC(4, 4, 1), "connection refused")}
	}
	return ok()
}

// attempted runs the queue until every message was tried once.
func (h *harness) attempted(ids ...string) {
	h.runUntil(func() bool {
		for _, id := range ids {
			info, err := h.q.Show(id)
			if err != nil {
				continue // delivered
			}
			if info.Active || info.State.Attempts == 0 {
				return false
			}
		}
		return true
	})
}

func ids(in []Info) []string {
	var out []string
	for _, i := range in {
		out = append(out, i.ID)
	}
	return out
}

func TestListSelection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.del.answer = stuck
		old := h.enqueue("alice@example.org", "gone1@example.org", "bob@example.org", "full@example.org")
		h.clock.Advance(3 * time.Hour)
		mixed := h.enqueue("carol@example.net", "gone2@example.org", "down@partner.example", "down2@sub.partner.example")
		h.clock.Advance(time.Second) // one order: by arrival
		bounce := h.enqueue("", "down@partner.example")
		h.attempted(old, mixed, bounce)
		h.clock.Advance(time.Hour)
		fresh := h.enqueue("dave@example.net", "gone3@example.org")
		h.clock.Advance(time.Second)
		held := h.enqueueHeld("spam", "gone4@example.org")

		for _, tc := range []struct {
			name string
			f    ListFilter
			want []string
		}{
			{"all", ListFilter{}, []string{old, mixed, bounce, fresh, held}},
			{"reply text", ListFilter{Reply: "user unknown"}, []string{old, mixed}},
			{"reply code", ListFilter{Reply: "450"}, []string{old, mixed}},
			{"reply class", ListFilter{Reply: "4xx"}, []string{old, mixed, bounce}},
			{"enhanced code", ListFilter{Reply: "4.2.2"}, []string{old}},
			{"enhanced code wildcard", ListFilter{Reply: "4.4.x"}, []string{mixed, bounce}},
			{"recipient domain", ListFilter{RcptDomain: "partner.example"}, []string{mixed, bounce}},
			{"recipient domain, case and @", ListFilter{RcptDomain: "@PARTNER.example"}, []string{mixed, bounce}},
			{"subdomains", ListFilter{RcptDomain: ".partner.example"}, []string{mixed}},
			{"recipient domain and reply together", ListFilter{RcptDomain: "partner.example", Reply: "user unknown"}, nil},
			{"sender", ListFilter{Sender: "CAROL@"}, []string{mixed}},
			{"null sender", ListFilter{Sender: "<>"}, []string{bounce}},
			{"older", ListFilter{OlderThan: 30 * time.Minute}, []string{old, mixed, bounce}},
			{"younger", ListFilter{YoungerThan: 30 * time.Minute}, []string{fresh, held}},
			{"age range", ListFilter{OlderThan: 30 * time.Minute, YoungerThan: 2 * time.Hour}, []string{mixed, bounce}},
			{"deferred", ListFilter{Phase: PhaseDeferred}, []string{old, mixed, bounce}},
			{"new", ListFilter{Phase: PhaseNew}, []string{fresh}},
			{"held", ListFilter{Phase: PhaseHeld}, []string{held}},
			{"held and reply", ListFilter{Phase: PhaseHeld, Reply: "user unknown"}, nil},
			{"recipient", ListFilter{Recipient: "gone"}, []string{old, mixed, fresh, held}},
		} {
			assert.Equal(t, tc.want, ids(h.q.List(tc.f)), tc.name)
		}
		// Delivered recipients are no longer the message's: bob was
		// delivered, so he does not select it.
		assert.Empty(t, h.q.List(ListFilter{Recipient: "bob@"}))
		info, err := h.q.Show(old)
		require.NoError(t, err)
		assert.Equal(t, PhaseDeferred, info.Phase())
	})
}

func TestSelectRecipients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.del.answer = stuck
		id := h.enqueue("alice@example.org", "gone1@example.org", "bob@example.org", "full@example.org", "down@partner.example")
		h.attempted(id)
		info, err := h.q.Show(id)
		require.NoError(t, err)
		picked := func(f ListFilter) []string {
			pick := h.q.SelectRecipients(f)
			var out []string
			for i, r := range info.Envelope.Recipients {
				if pick(r, info.State.Rcpts[i]) {
					out = append(out, r.Addr)
				}
			}
			return out
		}
		assert.Equal(t, []string{"gone1@example.org", "full@example.org", "down@partner.example"}, picked(ListFilter{}),
			"no criteria: every pending recipient, not the delivered one")
		assert.Equal(t, []string{"gone1@example.org"}, picked(ListFilter{Reply: "4.1.1"}))
		assert.Equal(t, []string{"down@partner.example"}, picked(ListFilter{Destination: "partner.example"}))
		assert.Equal(t, []string{"gone1@example.org", "full@example.org"}, picked(ListFilter{RcptDomain: "example.org", Sender: "nobody"}),
			"message criteria play no part")
		assert.True(t, ListFilter{Reply: "x"}.HasRecipientCriteria())
		assert.False(t, ListFilter{Sender: "x", OlderThan: time.Hour, Phase: PhaseHeld}.HasRecipientCriteria())
	})
}

func TestRetryDestinationUsesSelection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, nil)
		h.del.answer = stuck
		a := h.enqueue("alice@example.org", "down@partner.example")
		b := h.enqueue("alice@example.org", "gone@example.org")
		h.attempted(a, b)
		assert.Equal(t, 1, h.q.RetryDestination("partner.example"))
		info, err := h.q.Show(a)
		require.NoError(t, err)
		assert.Equal(t, h.clock.Now(), info.State.NextAttempt)
		info, err = h.q.Show(b)
		require.NoError(t, err)
		assert.True(t, info.State.NextAttempt.After(h.clock.Now()), "the other destination waits")
	})
}
