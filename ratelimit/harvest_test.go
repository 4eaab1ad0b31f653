package ratelimit

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// unknownUser is what a recipient check answers for a name that does not
// exist.
func unknownUser(c *postern.Conn) postern.Decision {
	return postern.Decision{Stage: postern.StageRcpt, Filter: "verify", Conn: c, Txn: &postern.Txn{},
		Rcpt:    &postern.Rcpt{Addr: "nobody@example.test"},
		Verdict: postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", "no such user")}
}

func rcptAction(t *testing.T, g *Guard, c *postern.Conn) postern.Verdict {
	t.Helper()
	v, err := g.CheckRcpt(context.Background(), c, &postern.Txn{}, &postern.Rcpt{Addr: "x@example.test"})
	require.NoError(t, err)
	return v
}

func TestGuardThresholdHoldRecovery(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	var logs logBuf
	g, err := NewGuard(GuardConfig{Threshold: 10, Window: 10 * time.Minute, HoldTime: 30 * time.Minute,
		Logger: logs.Logger(), Now: clk.Now})
	require.NoError(t, err)
	assert.Equal(t, "harvest-guard", g.Name())

	// Nine unknown users, across connections: still served.
	for i := range 9 {
		c := conn("192.0.2.7")
		c.ID = "c" + string(rune('a'+i))
		g.Observe(ctx, unknownUser(c))
		clk.Advance(time.Minute)
	}
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.2.7")).Action)

	// The tenth within ten minutes starts the hold.
	g.Observe(ctx, unknownUser(conn("192.0.2.7")))
	v := rcptAction(t, g, conn("192.0.2.7"))
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 Too many unknown recipients from 192.0.2.7, try again later", v.Reply.Error())
	assert.Contains(t, v.Reason, "ip:192.0.2.7/32 held for 30m0s more after 10 unknown recipients within 10m0s")

	// Other sources are not affected; MAIL and connect are not checked by
	// default.
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.2.8")).Action)
	vm, _ := g.CheckMail(ctx, conn("192.0.2.7"), &postern.Txn{})
	assert.Equal(t, postern.Continue, vm.Action)
	vc, _ := g.CheckConnect(ctx, conn("192.0.2.7"))
	assert.Equal(t, postern.Continue, vc.Action)

	held, left, err := g.Held(ctx, mustAddr("192.0.2.7"))
	require.NoError(t, err)
	assert.True(t, held)
	assert.Equal(t, 30*time.Minute, left)

	// Still held just before the hold ends, served again after, with no
	// one's help.
	clk.Advance(30*time.Minute - time.Second)
	assert.Equal(t, postern.TempFail, rcptAction(t, g, conn("192.0.2.7")).Action)
	clk.Advance(time.Second)
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.2.7")).Action)

	st := g.Stats()
	assert.Equal(t, uint64(10), st.Unknown)
	assert.Equal(t, uint64(1), st.Holds)
	assert.Equal(t, uint64(2), st.Refused)

	recs := logs.Records(t, "directory harvest suspected: holding source")
	require.Len(t, recs, 1)
	assert.Equal(t, "WARN", recs[0]["level"])
	assert.Equal(t, "192.0.2.7", recs[0]["remote_ip"])
	assert.Equal(t, "c1", recs[0]["conn_id"])
	assert.Equal(t, "ip:192.0.2.7/32", recs[0]["source"])
	assert.Equal(t, "harvest-guard", recs[0]["filter"])
	assert.Equal(t, "hold", recs[0]["action"])
}

func TestGuardWindow(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	g, err := NewGuard(GuardConfig{Threshold: 3, Window: 10 * time.Minute, Now: clk.Now})
	require.NoError(t, err)
	ip := mustAddr("192.0.2.7")
	// A slow prober (one per 6 minutes) never fills a 10-minute window.
	for range 10 {
		require.NoError(t, g.RecordUnknown(ctx, ip))
		clk.Advance(6 * time.Minute)
	}
	held, _, _ := g.Held(ctx, ip)
	assert.False(t, held)
	assert.Zero(t, g.Stats().Holds)
}

func TestGuardClassAndMapped(t *testing.T) {
	ctx := context.Background()
	g, err := NewGuard(GuardConfig{Threshold: 2, Class: Class{V4: 24, V6: 48}})
	require.NoError(t, err)
	// A harvester spreading over its /24, seen through a dual-stack
	// socket as mapped addresses.
	g.Observe(ctx, unknownUser(conn("::ffff:192.0.2.10")))
	g.Observe(ctx, unknownUser(conn("192.0.2.200")))
	assert.Equal(t, postern.TempFail, rcptAction(t, g, conn("192.0.2.99")).Action)
	assert.Equal(t, "451 4.7.1 Too many unknown recipients from 192.0.2.99, try again later",
		rcptAction(t, g, conn("::ffff:192.0.2.99")).Reply.Error())
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.3.1")).Action)

	require.NoError(t, g.RecordUnknown(ctx, mustAddr("2001:db8:1:2::1")))
	require.NoError(t, g.RecordUnknown(ctx, mustAddr("2001:db8:1:ffff::1")))
	assert.Equal(t, postern.TempFail, rcptAction(t, g, conn("2001:db8:1::5")).Action, "one /48")
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("2001:db8:2::5")).Action)
	assert.NoError(t, g.RecordUnknown(ctx, netip.Addr{}), "no address: nothing to count")
}

func TestGuardExempt(t *testing.T) {
	ctx := context.Background()
	g, err := NewGuard(GuardConfig{Threshold: 1})
	require.NoError(t, err)

	trusted := conn("192.0.2.7")
	trusted.Trusted = true
	auth := conn("192.0.2.7")
	auth.AuthUser = "alice"
	// Their unknown users are not counted …
	g.Observe(ctx, unknownUser(trusted))
	g.Observe(ctx, unknownUser(auth))
	assert.Zero(t, g.Stats().Unknown)
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.2.7")).Action)

	// … and a held address does not hold them.
	g.Observe(ctx, unknownUser(conn("192.0.2.7")))
	assert.Equal(t, postern.TempFail, rcptAction(t, g, conn("192.0.2.7")).Action)
	assert.Equal(t, postern.Continue, rcptAction(t, g, trusted).Action)
	assert.Equal(t, postern.Continue, rcptAction(t, g, auth).Action)
}

func TestGuardObserveCountsOnlyUnknownUser(t *testing.T) {
	g, err := NewGuard(GuardConfig{})
	require.NoError(t, err)
	c := conn("192.0.2.7")
	base := unknownUser(c)
	with := func(f func(d *postern.Decision)) postern.Decision {
		d := base
		f(&d)
		return d
	}
	tests := []struct {
		name string
		d    postern.Decision
		want bool
	}{
		{"550 5.1.1", base, true},
		{"551 5.1.1", with(func(d *postern.Decision) { d.Verdict.Reply.Code = 551 }), true},
		{"553 5.1.1", with(func(d *postern.Decision) { d.Verdict.Reply.Code = 553 }), true},
		{"554 5.1.1", with(func(d *postern.Decision) { d.Verdict.Reply.Code = 554 }), false},
		{"550 5.1.0", with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.ESC(5, 1, 0) }), false},
		{"550 5.1.2 no such domain", with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.ESC(5, 1, 2) }), false},
		{"550 5.1.3 bad syntax", with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.ESC(5, 1, 3) }), false},
		{"550 5.2.1 disabled", with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.ESC(5, 2, 1) }), false},
		{"550 5.7.1 relay denied", with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.ESC(5, 7, 1) }), false},
		{"550 without enhanced code", with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.EnhancedCode{} }), false},
		{"default reply", with(func(d *postern.Decision) { d.Verdict.Reply = postern.Reply{} }), false},
		{"450 4.1.1 tempfail", with(func(d *postern.Decision) {
			d.Verdict = postern.TempFailed(450, postern.ESC(4, 1, 1), "unverified", "")
		}), false},
		{"at MAIL", with(func(d *postern.Decision) { d.Stage = postern.StageMail }), false},
		{"at DATA", with(func(d *postern.Decision) { d.Stage = postern.StageData }), false},
		{"accepted", with(func(d *postern.Decision) { d.Verdict = postern.Accepted("ok") }), false},
		{"continue", with(func(d *postern.Decision) { d.Verdict = postern.Pass }), false},
		{"our own 451", with(func(d *postern.Decision) {
			d.Verdict = postern.TempFailed(451, postern.ESC(4, 7, 1), "held", "")
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, g.IsUnknownRecipient(tt.d))
		})
	}

	// Observe counts exactly those.
	for _, tt := range tests {
		g.Observe(context.Background(), tt.d)
	}
	assert.Equal(t, uint64(3), g.Stats().Unknown)
	g.Observe(context.Background(), postern.Decision{Stage: postern.StageRcpt, Verdict: base.Verdict}) // no Conn
	assert.Equal(t, uint64(3), g.Stats().Unknown)

	// Other codes can be chosen.
	g2, err := NewGuard(GuardConfig{UnknownCodes: []postern.EnhancedCode{postern.ESC(5, 1, 1), postern.ESC(5, 1, 10)}})
	require.NoError(t, err)
	assert.True(t, g2.IsUnknownRecipient(with(func(d *postern.Decision) { d.Verdict.Reply.Enhanced = postern.ESC(5, 1, 10) })))
	_, err = NewGuard(GuardConfig{UnknownCodes: []postern.EnhancedCode{postern.ESC(4, 1, 1)}})
	assert.ErrorIs(t, err, ErrConfig)
}

// The whole loop through a Chain: a recipient check answers 5.1.1, the
// chain's observer feeds the guard, and the guard, placed before the
// check, stops the harvester from learning more.
func TestGuardInChain(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	g, err := NewGuard(GuardConfig{Threshold: 3, HoldTime: time.Hour, AtMail: true, AtConnect: true, Now: clk.Now})
	require.NoError(t, err)
	asked := 0
	verify := postern.RcptFunc("verify", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
		asked++
		if r.Addr == "postmaster@example.test" {
			return postern.Pass, nil
		}
		return postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", "no such user"), nil
	})
	ch, err := postern.NewChain(postern.ChainConfig{
		Entries:  []postern.Entry{{Filter: g}, {Filter: verify}},
		Observer: g.Observe,
	})
	require.NoError(t, err)

	c := conn("198.51.100.23")
	tx := &postern.Txn{}
	for _, name := range []string{"a", "b", "c"} {
		v, _ := ch.CheckRcpt(ctx, c, tx, &postern.Rcpt{Addr: name + "@example.test"})
		assert.Equal(t, "550 5.1.1 User unknown", v.Reply.Error())
	}
	v, _ := ch.CheckRcpt(ctx, c, tx, &postern.Rcpt{Addr: "postmaster@example.test"})
	assert.Equal(t, "451 4.7.1 Too many unknown recipients from 198.51.100.23, try again later", v.Reply.Error())
	assert.Equal(t, 3, asked, "the held source's RCPT never reached the recipient check")

	v, _ = ch.CheckMail(ctx, conn("198.51.100.23"), tx)
	assert.Equal(t, "451 4.7.1 Too many unknown recipients from 198.51.100.23, try again later", v.Reply.Error())
	v, _ = ch.CheckConnect(ctx, conn("198.51.100.23"))
	assert.Equal(t, "421 4.7.1 Too many unknown recipients from 198.51.100.23, try again later", v.Reply.Error())

	clk.Advance(time.Hour)
	v, _ = ch.CheckRcpt(ctx, conn("198.51.100.23"), tx, &postern.Rcpt{Addr: "postmaster@example.test"})
	assert.Equal(t, postern.Continue, v.Action, "recovered by itself")
}

func TestGuardRelease(t *testing.T) {
	ctx := context.Background()
	g, err := NewGuard(GuardConfig{Threshold: 2})
	require.NoError(t, err)
	ip := mustAddr("192.0.2.7")
	require.NoError(t, g.RecordUnknown(ctx, ip))
	require.NoError(t, g.RecordUnknown(ctx, ip))
	assert.Equal(t, postern.TempFail, rcptAction(t, g, conn("192.0.2.7")).Action)
	require.NoError(t, g.Release(ctx, ip))
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.2.7")).Action)
	require.NoError(t, g.RecordUnknown(ctx, ip))
	assert.Equal(t, postern.Continue, rcptAction(t, g, conn("192.0.2.7")).Action, "the count was forgotten too")
}

func TestGuardStoreDown(t *testing.T) {
	ctx := context.Background()
	var logs logBuf
	g, err := NewGuard(GuardConfig{Store: failingStore{}, AtConnect: true, Logger: logs.Logger()})
	require.NoError(t, err)
	c := conn("192.0.2.7")
	for range 10 {
		assert.Equal(t, postern.Continue, rcptAction(t, g, c).Action)
		g.Observe(ctx, unknownUser(c))
	}
	err = g.RecordUnknown(ctx, mustAddr("192.0.2.7"))
	assert.ErrorIs(t, err, ErrStoreUnavailable)
	assert.Equal(t, uint64(21), g.Stats().StoreErrors)
	assert.Len(t, logs.Records(t, "rate-limit store failed"), 1)

	gc, err := NewGuard(GuardConfig{Store: failingStore{}, OnError: postern.OnErrorTempFail, AtConnect: true})
	require.NoError(t, err)
	assert.Equal(t, "451 4.3.0 Temporary local problem, try again later", rcptAction(t, gc, c).Reply.Error())
	v, _ := gc.CheckConnect(ctx, c)
	assert.Equal(t, "421 4.3.0 Temporary local problem, try again later", v.Reply.Error())
}
