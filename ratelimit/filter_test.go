package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestFilterMessagesAndRecipients(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f, err := NewFilter(FilterConfig{
		Messages:   Rate{Count: 2, Per: time.Minute},
		Recipients: Rate{Count: 3, Per: time.Minute},
		Now:        clk.Now,
	})
	require.NoError(t, err)
	c := conn("192.0.2.7")
	tx := &postern.Txn{From: "a@example.org"}
	rc := &postern.Rcpt{Addr: "b@example.test"}

	type step struct {
		advance time.Duration
		stage   postern.Stage
		ip      string
		want    string // "" for pass, else the reply
	}
	tooMuch := "450 4.7.1 Error: too much mail from 192.0.2.7"
	tooMany := "450 4.7.1 Error: too many recipients from 192.0.2.7"
	steps := []step{
		{0, postern.StageMail, "192.0.2.7", ""},
		{0, postern.StageRcpt, "192.0.2.7", ""},
		{0, postern.StageRcpt, "192.0.2.7", ""},
		{0, postern.StageRcpt, "192.0.2.7", ""},
		{0, postern.StageRcpt, "192.0.2.7", tooMany},
		{0, postern.StageMail, "192.0.2.7", ""},
		{0, postern.StageMail, "192.0.2.7", tooMuch},
		{0, postern.StageMail, "192.0.2.8", ""}, // another client
		{20 * time.Second, postern.StageRcpt, "192.0.2.7", ""},
		{0, postern.StageRcpt, "192.0.2.7", tooMany},
		{9 * time.Second, postern.StageMail, "192.0.2.7", tooMuch}, // 29 s after the bucket ran dry
		{time.Second, postern.StageMail, "192.0.2.7", ""},          // one message per 30 s
		{0, postern.StageMail, "192.0.2.7", tooMuch},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		c.Remote = conn(s.ip).Remote
		var v postern.Verdict
		if s.stage == postern.StageMail {
			v, err = f.CheckMail(ctx, c, tx)
		} else {
			v, err = f.CheckRcpt(ctx, c, tx, rc)
		}
		require.NoError(t, err)
		if s.want == "" {
			assert.Equal(t, postern.Continue, v.Action, "step %d: %s", i, v.Reason)
			continue
		}
		assert.Equal(t, postern.TempFail, v.Action, "step %d", i)
		assert.Equal(t, s.want, v.Reply.Error(), "step %d", i)
		assert.Contains(t, v.Reason, "ratelimit: ", "step %d", i)
	}
	st := f.Stats()
	assert.Equal(t, uint64(3), st.MessagesLimited)
	assert.Equal(t, uint64(2), st.RecipientsLimited)
}

func TestFilterKeysAndExemptions(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f, err := NewFilter(FilterConfig{Messages: Rate{Count: 1, Per: time.Hour}, Now: clk.Now})
	require.NoError(t, err)
	tx := &postern.Txn{}

	mail := func(c *postern.Conn) postern.Action {
		v, err := f.CheckMail(ctx, c, tx)
		require.NoError(t, err)
		return v.Action
	}
	// Authenticated: counted per user, wherever the user connects from.
	alice := conn("192.0.2.7")
	alice.AuthUser = "alice"
	assert.Equal(t, postern.Continue, mail(alice))
	alice2 := conn("198.51.100.1")
	alice2.AuthUser = "ALICE"
	assert.Equal(t, postern.TempFail, mail(alice2), "same user from elsewhere")
	assert.Equal(t, postern.Continue, mail(conn("192.0.2.7")), "the address itself has its own count")

	// Trusted clients are exempt by default …
	trusted := conn("10.0.0.1")
	trusted.Trusted = true
	for range 5 {
		assert.Equal(t, postern.Continue, mail(trusted))
	}
	// … unless LimitTrusted.
	g, err := NewFilter(FilterConfig{Name: "strict", Messages: Rate{Count: 1, Per: time.Hour}, LimitTrusted: true, Now: clk.Now})
	require.NoError(t, err)
	assert.Equal(t, "strict", g.Name())
	v, _ := g.CheckMail(ctx, trusted, tx)
	assert.Equal(t, postern.Continue, v.Action)
	v, _ = g.CheckMail(ctx, trusted, tx)
	assert.Equal(t, postern.TempFail, v.Action)

	// A key function that returns "" leaves the transaction uncounted.
	h, err := NewFilter(FilterConfig{Messages: Rate{Count: 1, Per: time.Hour}, Key: ByUser(), Now: clk.Now})
	require.NoError(t, err)
	for range 3 {
		v, _ := h.CheckMail(ctx, conn("192.0.2.9"), tx)
		assert.Equal(t, postern.Continue, v.Action)
	}
	// Recipients unlimited: RCPT is not counted.
	v, _ = h.CheckRcpt(ctx, alice, tx, &postern.Rcpt{})
	assert.Equal(t, postern.Continue, v.Action)
}

// Two filters on one store with different names never share buckets.
func TestFilterNamesSeparateBuckets(t *testing.T) {
	ctx := context.Background()
	store, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	a, _ := NewFilter(FilterConfig{Name: "a", Store: store, Messages: Rate{Count: 1, Per: time.Hour}})
	b, _ := NewFilter(FilterConfig{Name: "b", Store: store, Messages: Rate{Count: 1, Per: time.Hour}})
	c := conn("192.0.2.7")
	va, _ := a.CheckMail(ctx, c, &postern.Txn{})
	vb, _ := b.CheckMail(ctx, c, &postern.Txn{})
	assert.Equal(t, postern.Continue, va.Action)
	assert.Equal(t, postern.Continue, vb.Action)
}

func TestFilterStoreDown(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	var logs logBuf
	open, err := NewFilter(FilterConfig{Store: failingStore{}, Messages: Rate{Count: 1, Per: time.Minute},
		Recipients: Rate{Count: 1, Per: time.Minute}, Logger: logs.Logger(), Now: clk.Now})
	require.NoError(t, err)
	c := conn("192.0.2.7")
	for range 100 {
		v, err := open.CheckMail(ctx, c, &postern.Txn{})
		require.NoError(t, err, "a store error is never passed to the chain")
		assert.Equal(t, postern.Continue, v.Action, "fail open")
		assert.Contains(t, v.Reason, "; on error: accept")
	}
	assert.Equal(t, uint64(100), open.Stats().StoreErrors)
	recs := logs.Records(t, "rate-limit store failed")
	require.Len(t, recs, 1, "one log line, not one per call")
	assert.Equal(t, "WARN", recs[0]["level"])
	assert.Equal(t, "continue", recs[0]["action"])
	assert.Equal(t, "accept", recs[0]["on_error"])
	assert.Equal(t, "c1", recs[0]["conn_id"])
	assert.Equal(t, "192.0.2.7", recs[0]["remote_ip"])
	assert.Equal(t, "mail", recs[0]["stage"])
	assert.Contains(t, recs[0]["error"], "connection refused")

	// Ten seconds on, the next error is logged with the count it skipped.
	clk.Advance(storeErrorLogInterval)
	_, _ = open.CheckRcpt(ctx, c, &postern.Txn{}, &postern.Rcpt{})
	recs = logs.Records(t, "rate-limit store failed")
	require.Len(t, recs, 2)
	assert.EqualValues(t, 99, recs[1]["suppressed"])
	assert.Equal(t, "rcpt", recs[1]["stage"])

	closed, err := NewFilter(FilterConfig{Store: failingStore{}, Messages: Rate{Count: 1, Per: time.Minute},
		Recipients: Rate{Count: 1, Per: time.Minute}, OnError: postern.OnErrorTempFail, Now: clk.Now})
	require.NoError(t, err)
	v, err := closed.CheckMail(ctx, c, &postern.Txn{})
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.3.0 Temporary local problem, try again later", v.Reply.Error())
	v, _ = closed.CheckRcpt(ctx, c, &postern.Txn{}, &postern.Rcpt{})
	assert.Equal(t, "451 4.3.0 Temporary local problem, try again later", v.Reply.Error())
	assert.Equal(t, uint64(2), closed.Stats().StoreErrors)
}

// Through a Chain the verdicts reach the client as they are.
func TestFilterInChain(t *testing.T) {
	ctx := context.Background()
	f, err := NewFilter(FilterConfig{Recipients: Rate{Count: 1, Per: time.Hour}})
	require.NoError(t, err)
	ch, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{{Filter: f}}})
	require.NoError(t, err)
	c := conn("2001:db8::1")
	v, _ := ch.CheckRcpt(ctx, c, &postern.Txn{}, &postern.Rcpt{})
	assert.Equal(t, postern.Continue, v.Action)
	c.Remote = conn("2001:db8::2").Remote // same /64
	v, _ = ch.CheckRcpt(ctx, c, &postern.Txn{}, &postern.Rcpt{})
	assert.Equal(t, "450 4.7.1 Error: too many recipients from 2001:db8::2", v.Reply.Error())
}

// An outbound filter counts the site's own senders: trusted clients per
// address and authenticated users per user, each on its own bucket, and
// leaves strangers to the inbound limit.
func TestFilterOutbound(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f, err := NewFilter(FilterConfig{Name: "outbound-ratelimit", Messages: Rate{Count: 2, Per: time.Hour},
		Key: ByOutbound(Class{}), LimitTrusted: true, Now: clk.Now})
	require.NoError(t, err)
	mail := func(c *postern.Conn) postern.Verdict {
		v, err := f.CheckMail(ctx, c, &postern.Txn{})
		require.NoError(t, err)
		return v
	}
	pc := conn("10.1.2.3")
	pc.Trusted = true
	alice := conn("203.0.113.5")
	alice.AuthUser, alice.AuthMech = "alice", "PLAIN"
	stranger := conn("198.51.100.9")
	for range 2 {
		assert.Equal(t, postern.Continue, mail(pc).Action)
		assert.Equal(t, postern.Continue, mail(alice).Action)
	}
	v := mail(pc)
	require.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "450 4.7.1 Error: too much mail from 10.1.2.3", v.Reply.Error())
	assert.Contains(t, v.Reason, "outbound-ratelimit: message rate 2/1h0m0s exceeded (ip:10.1.2.3/32)")
	v = mail(alice)
	require.Equal(t, postern.TempFail, v.Action)
	assert.Contains(t, v.Reason, "(user:alice)", "the user is named in the log")
	// Alice from a trusted PC is still alice: counted per user.
	alicePC := conn("10.9.9.9")
	alicePC.Trusted, alicePC.AuthUser, alicePC.AuthMech = true, "Alice", "PLAIN"
	assert.Equal(t, postern.TempFail, mail(alicePC).Action)
	for range 5 {
		assert.Equal(t, postern.Continue, mail(stranger).Action, "not the outbound filter's business")
	}
	assert.Equal(t, uint64(3), f.Stats().MessagesLimited)
}

func TestByOutboundKeys(t *testing.T) {
	k := ByOutbound(Class{V4: 24})
	c := conn("10.1.2.3")
	assert.Empty(t, k(c, nil), "neither trusted nor authenticated")
	c.Trusted = true
	assert.Equal(t, "ip:10.1.2.0/24", k(c, nil))
	c.AuthUser, c.AuthMech = "Bob@Example.TEST", "PLAIN"
	assert.Equal(t, "user:bob@example.test", k(c, nil))
}
