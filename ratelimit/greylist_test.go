package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func newGreylist(t *testing.T, clk *clock, cfg GreylistConfig) *Greylist {
	t.Helper()
	cfg.Now = clk.Now
	if cfg.Store == nil {
		st, err := NewMemoryStore(MemoryConfig{Now: clk.Now})
		require.NoError(t, err)
		cfg.Store = st
	}
	g, err := NewGreylist(cfg)
	require.NoError(t, err)
	return g
}

// rcpt runs one RCPT of from → to from ip.
func rcpt(t *testing.T, g *Greylist, ip, from, to string) postern.Verdict {
	t.Helper()
	v, err := g.CheckRcpt(context.Background(), conn(ip), &postern.Txn{From: from}, &postern.Rcpt{Addr: to})
	require.NoError(t, err)
	return v
}

// The life of a triplet: 451 with a hint, 451 again when retried too
// early (with the time left), accepted after the delay, then known.
func TestGreylistTriplet(t *testing.T) {
	clk := newClock()
	var events []GreyEvent
	g := newGreylist(t, clk, GreylistConfig{Observer: func(e GreyEvent) { events = append(events, e) }})

	v := rcpt(t, g, "198.51.100.7", "alice@sender.example", "bob@example.test")
	require.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 Greylisted, please try again in 300 seconds", v.Reply.Error())

	clk.Advance(2 * time.Minute)
	v = rcpt(t, g, "198.51.100.7", "alice@sender.example", "bob@example.test")
	require.Equal(t, postern.TempFail, v.Action)
	assert.Contains(t, v.Reply.Error(), "try again in 180 seconds")

	// The sender's other server in the same /24 retries after the delay.
	clk.Advance(3 * time.Minute)
	v = rcpt(t, g, "198.51.100.99", "Alice@sender.example", "bob@example.test")
	assert.Equal(t, postern.Continue, v.Action, "%v", v)

	// Later mail of the triplet passes at once; another recipient waits.
	clk.Advance(24 * time.Hour)
	assert.Equal(t, postern.Continue, rcpt(t, g, "198.51.100.7", "alice@sender.example", "bob@example.test").Action)
	assert.Equal(t, postern.TempFail, rcpt(t, g, "198.51.100.7", "alice@sender.example", "carol@example.test").Action)
	// Another network is another triplet.
	assert.Equal(t, postern.TempFail, rcpt(t, g, "203.0.113.7", "alice@sender.example", "bob@example.test").Action)

	var outcomes []string
	for _, e := range events {
		outcomes = append(outcomes, e.Outcome.String())
	}
	assert.Equal(t, []string{"greylisted", "early", "passed", "known", "greylisted", "greylisted"}, outcomes)
	assert.Equal(t, 5*time.Minute, events[2].Waited)
	assert.Equal(t, "198.51.100.0/24", events[2].Client.String())
	st := g.Stats()
	assert.EqualValues(t, 3, st.Outcomes[GreyNew])
	assert.EqualValues(t, 1, st.Outcomes[GreyPassed])
}

// A retry after the retry window starts again; a passed triplet is
// forgotten PassTTL after it was last seen, not after it first passed.
func TestGreylistWindows(t *testing.T) {
	clk := newClock()
	g := newGreylist(t, clk, GreylistConfig{MinDelay: time.Minute, RetryWindow: 4 * time.Hour, PassTTL: 10 * 24 * time.Hour})
	from, to := "news@sender.example", "bob@example.test"
	require.Equal(t, postern.TempFail, rcpt(t, g, "192.0.2.1", from, to).Action)
	clk.Advance(4*time.Hour + time.Second)
	v := rcpt(t, g, "192.0.2.1", from, to)
	require.Equal(t, postern.TempFail, v.Action, "too late: new again")
	assert.Contains(t, v.Reply.Error(), "in 60 seconds")
	clk.Advance(time.Minute)
	require.Equal(t, postern.Continue, rcpt(t, g, "192.0.2.1", from, to).Action)

	// Seen every 6 days, the triplet stays; the refresh is at most daily.
	for range 4 {
		clk.Advance(6 * 24 * time.Hour)
		require.Equal(t, postern.Continue, rcpt(t, g, "192.0.2.1", from, to).Action)
	}
	clk.Advance(10*24*time.Hour + time.Second)
	assert.Equal(t, postern.TempFail, rcpt(t, g, "192.0.2.1", from, to).Action, "forgotten after PassTTL unseen")
}

// After AutoAllow passes a client network mails anyone at once.
func TestGreylistAutoAllow(t *testing.T) {
	clk := newClock()
	g := newGreylist(t, clk, GreylistConfig{AutoAllow: 2})
	for _, to := range []string{"a@example.test", "b@example.test"} {
		require.Equal(t, postern.TempFail, rcpt(t, g, "192.0.2.1", "s@sender.example", to).Action)
	}
	clk.Advance(6 * time.Minute)
	for _, to := range []string{"a@example.test", "b@example.test"} {
		require.Equal(t, postern.Continue, rcpt(t, g, "192.0.2.1", "s@sender.example", to).Action)
	}
	assert.Equal(t, postern.Continue, rcpt(t, g, "192.0.2.200", "other@elsewhere.example", "z@example.test").Action)
	assert.EqualValues(t, 1, g.Stats().Outcomes[GreyAllowed])
	assert.Equal(t, postern.TempFail, rcpt(t, g, "192.0.3.1", "other@elsewhere.example", "z@example.test").Action)

	never := newGreylist(t, clk, GreylistConfig{AutoAllow: -1})
	for range 3 {
		rcpt(t, never, "192.0.2.1", "s@sender.example", "a@example.test")
		clk.Advance(6 * time.Minute)
	}
	assert.Equal(t, postern.TempFail, rcpt(t, never, "192.0.2.1", "s@sender.example", "new@example.test").Action)
}

// Trusted and authenticated clients, the Exempt hook and the pass cache's
// known clients are not greylisted.
func TestGreylistExemptions(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	pc := newPassCache(t, clk, PassCacheConfig{Require: PassGreet})
	require.NoError(t, pc.Pass(ctx, mustAddr("203.0.113.9"), PassGreet))
	var reasons []string
	g := newGreylist(t, clk, GreylistConfig{PassCache: pc,
		Exempt: func(c *postern.Conn, tx *postern.Txn) string {
			if postern.AddrDomain(tx.From) == "bank.example" {
				return "spf pass: bank.example"
			}
			return ""
		},
		Observer: func(e GreyEvent) {
			if e.Outcome == GreyExempt {
				reasons = append(reasons, e.Reason)
			}
		}})
	trusted := conn("192.0.2.1")
	trusted.Trusted = true
	authed := conn("192.0.2.2")
	authed.AuthUser = "alice"
	for _, c := range []*postern.Conn{trusted, authed} {
		v, err := g.CheckRcpt(ctx, c, &postern.Txn{From: "x@y.example"}, &postern.Rcpt{Addr: "b@example.test"})
		require.NoError(t, err)
		assert.Equal(t, postern.Continue, v.Action)
	}
	assert.Equal(t, postern.Continue, rcpt(t, g, "192.0.2.3", "info@bank.example", "b@example.test").Action)
	known := conn("203.0.113.9")
	v, err := g.CheckRcpt(ctx, known, &postern.Txn{From: "x@y.example"}, &postern.Rcpt{Addr: "b@example.test"})
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Equal(t, []string{"trusted", "authenticated", "spf pass: bank.example", "pass cache"}, reasons)
	assert.Equal(t, postern.TempFail, rcpt(t, g, "192.0.2.3", "info@shop.example", "b@example.test").Action)
}

// At DATA every triplet of the message is checked: one new recipient
// defers the message, and all triplets are then pending together.
func TestGreylistAtData(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	g := newGreylist(t, clk, GreylistConfig{At: postern.StageData})
	c := conn("192.0.2.5")
	tx := &postern.Txn{From: "s@sender.example", Rcpts: []*postern.Rcpt{{Addr: "a@example.test"}, {Addr: "b@example.test"}}}
	v, err := g.CheckRcpt(ctx, c, tx, tx.Rcpts[0])
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action, "nothing at RCPT")
	v, err = g.CheckData(ctx, c, tx, nil)
	require.NoError(t, err)
	require.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, 451, v.ReplyAt(postern.StageData).Code)
	clk.Advance(5 * time.Minute)
	v, err = g.CheckData(ctx, c, tx, nil)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	tx.Rcpts = append(tx.Rcpts, &postern.Rcpt{Addr: "new@example.test"})
	v, err = g.CheckData(ctx, c, tx, nil)
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action, "one new recipient defers the message")
	assert.Contains(t, v.Reason, "1 of 3 triplets")
}

// The day figures: greylisted, passed (by the day of the first attempt)
// and, once the retry window closed, never retried.
func TestGreylistDay(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	g := newGreylist(t, clk, GreylistConfig{RetryWindow: 24 * time.Hour})
	day := clk.Now()
	for _, to := range []string{"a@example.test", "b@example.test", "c@example.test"} {
		rcpt(t, g, "192.0.2.1", "s@sender.example", to)
	}
	clk.Advance(10 * time.Minute)
	rcpt(t, g, "192.0.2.1", "s@sender.example", "a@example.test")
	d, err := g.Day(ctx, day)
	require.NoError(t, err)
	assert.EqualValues(t, 3, d.Greylisted)
	assert.EqualValues(t, 1, d.Passed)
	assert.False(t, d.Final)
	assert.Zero(t, d.NeverRetried)

	clk.Advance(48 * time.Hour)
	d, err = g.Day(ctx, day)
	require.NoError(t, err)
	assert.True(t, d.Final)
	assert.EqualValues(t, 2, d.NeverRetried)
	assert.Equal(t, "2026-11-25", d.Day.Format(time.DateOnly))
}

// A store that cannot be asked: open by default, 451 4.3.0 under tempfail.
func TestGreylistStoreDown(t *testing.T) {
	clk := newClock()
	open := newGreylist(t, clk, GreylistConfig{Store: failingStore{}})
	assert.Equal(t, postern.Continue, rcpt(t, open, "192.0.2.1", "s@x.example", "a@example.test").Action)
	assert.EqualValues(t, 1, open.Stats().Outcomes[GreyError])
	closed := newGreylist(t, clk, GreylistConfig{Store: failingStore{}, OnError: postern.OnErrorTempFail})
	v := rcpt(t, closed, "192.0.2.1", "s@x.example", "a@example.test")
	require.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, postern.ESC(4, 3, 0), v.ReplyAt(postern.StageRcpt).Enhanced)
	_, err := open.Day(context.Background(), clk.Now())
	assert.ErrorIs(t, err, ErrStoreUnavailable)
}

func TestGreylistConfigErrors(t *testing.T) {
	for _, cfg := range []GreylistConfig{
		{MinDelay: -1}, {RetryWindow: time.Minute, MinDelay: time.Hour}, {At: postern.StageMail},
		{Class: Class{V6: 200}}, {OnError: postern.ErrorPolicy(99)},
	} {
		_, err := NewGreylist(cfg)
		assert.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
}

func TestGreySender(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"Alice@Example.ORG":                     "alice@example.org",
		"prvs=1234abcd=user@example.org":        "user@example.org",
		"msprvs1=19887abcd=user@example.org":    "user@example.org",
		"btv1==0123abc==user@example.org":       "user@example.org",
		"list-bounces-4711@example.org":         "list-bounces-#@example.org",
		"bounce-12-34_x@example.org":            "bounce-#-34_x@example.org",
		"user1@example.org":                     "user1@example.org",
		"1234@example.org":                      "#@example.org",
		"srs0=abcd=2x=example.com=joe@fwd.test": "srs0=abcd=2x=example.com=joe@fwd.test",
		"prvs=@example.org":                     "prvs=@example.org",
		"no-at-sign":                            "no-at-sign",
		"a.1.b@example.org":                     "a.#.b@example.org",
		"\"a 1\"@example.org":                   "\"a #\"@example.org",
	} {
		assert.Equal(t, want, GreySender(in), in)
	}
}
