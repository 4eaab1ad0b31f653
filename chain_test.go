package postern_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// recorder collects the filter calls and observed decisions of a test.
type recorder struct {
	mu        sync.Mutex
	calls     []string
	decisions []postern.Decision
}

func (r *recorder) call(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recorder) observe(_ context.Context, d postern.Decision) {
	r.mu.Lock()
	r.decisions = append(r.decisions, d)
	r.mu.Unlock()
}

func (r *recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *recorder) Decisions() []postern.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]postern.Decision(nil), r.decisions...)
}

// summary renders the observed decisions as "stage/filter=action" (plus
// "!" when the decision carried an error).
func (r *recorder) summary() []string {
	var out []string
	for _, d := range r.Decisions() {
		s := fmt.Sprintf("%s/%s=%s", d.Stage, d.Filter, d.Verdict.Action)
		if d.Err != nil {
			s += "!"
		}
		out = append(out, s)
	}
	return out
}

// allStages is a filter of every stage that answers v (and err) and records
// each call as "stage:name".
type allStages struct {
	name string
	rec  *recorder
	v    postern.Verdict
	err  error
}

func (f *allStages) Name() string { return f.name }
func (f *allStages) do(st string) (postern.Verdict, error) {
	f.rec.call(st + ":" + f.name)
	return f.v, f.err
}
func (f *allStages) CheckConnect(context.Context, *postern.Conn) (postern.Verdict, error) {
	return f.do("connect")
}
func (f *allStages) CheckHelo(context.Context, *postern.Conn) (postern.Verdict, error) {
	return f.do("helo")
}
func (f *allStages) CheckMail(context.Context, *postern.Conn, *postern.Txn) (postern.Verdict, error) {
	return f.do("mail")
}
func (f *allStages) CheckRcpt(context.Context, *postern.Conn, *postern.Txn, *postern.Rcpt) (postern.Verdict, error) {
	return f.do("rcpt")
}
func (f *allStages) CheckData(context.Context, *postern.Conn, *postern.Txn, *postern.Message) (postern.Verdict, error) {
	return f.do("data")
}

// connectAndData implements two stages only (no embedding: that would
// promote the other stages too).
type connectAndData struct{ f *allStages }

func (f *connectAndData) Name() string { return f.f.name }
func (f *connectAndData) CheckConnect(ctx context.Context, c *postern.Conn) (postern.Verdict, error) {
	return f.f.CheckConnect(ctx, c)
}
func (f *connectAndData) CheckData(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	return f.f.CheckData(ctx, c, t, m)
}

// nameOnly implements no stage.
type nameOnly struct{}

func (nameOnly) Name() string { return "name-only" }

// session is the arguments a server would pass.
type session struct {
	conn *postern.Conn
	txn  *postern.Txn
	rcpt *postern.Rcpt
	msg  *postern.Message
}

func newSession(t testing.TB) session {
	msg := newMessage(t, "Subject: x\r\n\r\nbody\r\n", 0)
	return session{
		conn: &postern.Conn{ID: "c1", HELO: "client.test"},
		txn:  &postern.Txn{ID: "t1", From: "a@example.test"},
		rcpt: &postern.Rcpt{Addr: "b@example.test", Original: "b@example.test"},
		msg:  msg,
	}
}

// runStage runs one stage of c.
func (s session) runStage(ctx context.Context, c *postern.Chain, st postern.Stage) (postern.Verdict, error) {
	switch st {
	case postern.StageConnect:
		return c.CheckConnect(ctx, s.conn)
	case postern.StageHelo:
		return c.CheckHelo(ctx, s.conn)
	case postern.StageMail:
		return c.CheckMail(ctx, s.conn, s.txn)
	case postern.StageRcpt:
		return c.CheckRcpt(ctx, s.conn, s.txn, s.rcpt)
	case postern.StageData:
		return c.CheckData(ctx, s.conn, s.txn, s.msg)
	}
	panic("bad stage")
}

var allStageList = []postern.Stage{postern.StageConnect, postern.StageHelo, postern.StageMail, postern.StageRcpt, postern.StageData}

func mustChain(t testing.TB, cfg postern.ChainConfig) *postern.Chain {
	t.Helper()
	c, err := postern.NewChain(cfg)
	require.NoError(t, err)
	return c
}

func rcptFilter(rec *recorder, name string, v postern.Verdict, err error) postern.RcptChecker {
	return postern.RcptFunc(name, func(context.Context, *postern.Conn, *postern.Txn, *postern.Rcpt) (postern.Verdict, error) {
		rec.call(name)
		return v, err
	})
}

func TestChainOrder(t *testing.T) {
	rec := &recorder{}
	c := mustChain(t, postern.ChainConfig{Entries: []postern.Entry{
		{Filter: rcptFilter(rec, "a", postern.Pass, nil)},
		{Filter: rcptFilter(rec, "b", postern.Pass, nil)},
		{Filter: rcptFilter(rec, "c", postern.Pass, nil)},
	}})
	s := newSession(t)
	v, err := c.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	assert.Equal(t, []string{"a", "b", "c"}, rec.Calls())
	assert.Equal(t, "chain", c.Name())
	assert.Equal(t, 3, c.Len())
}

func TestChainFirstFinalVerdictEndsStage(t *testing.T) {
	verdicts := []postern.Verdict{
		postern.Accepted("allow-listed"),
		postern.Rejected(550, postern.ESC(5, 7, 1), "denied", "listed"),
		postern.TempFailed(451, postern.ESC(4, 7, 1), "later", "greylisted"),
		postern.Discarded("drop"),
		postern.Quarantined("hold"),
		{Action: postern.Reject}, // zero Reply: the server fills it in
	}
	for _, want := range verdicts {
		t.Run(want.Action.String(), func(t *testing.T) {
			rec := &recorder{}
			c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
				{Filter: rcptFilter(rec, "a", postern.Pass, nil)},
				{Filter: rcptFilter(rec, "b", want, nil)},
				{Filter: rcptFilter(rec, "c", postern.Rejected(550, postern.ESC(5, 0, 0), "late", ""), nil)},
			}})
			s := newSession(t)
			got, err := c.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.Equal(t, []string{"a", "b"}, rec.Calls())
			assert.Equal(t, []string{"rcpt/a=continue", "rcpt/b=" + want.Action.String()}, rec.summary())
		})
	}
}

func TestChainCallsOnlyImplementedStages(t *testing.T) {
	rec := &recorder{}
	mailOnly := postern.MailFunc("mail-only", func(context.Context, *postern.Conn, *postern.Txn) (postern.Verdict, error) {
		rec.call("mail:mail-only")
		return postern.Pass, nil
	})
	two := &connectAndData{&allStages{name: "two", rec: rec}}
	all := &allStages{name: "all", rec: rec}
	c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
		{Filter: mailOnly}, {Filter: two}, {Filter: all},
	}})
	s := newSession(t)
	for _, st := range allStageList {
		v, err := s.runStage(context.Background(), c, st)
		require.NoError(t, err)
		assert.Equal(t, postern.Pass, v)
	}
	assert.Equal(t, []string{
		"connect:two", "connect:all",
		"helo:all",
		"mail:mail-only", "mail:all",
		"rcpt:all",
		"data:two", "data:all",
	}, rec.Calls())
	// Filters that were not called are not observed.
	assert.Equal(t, []string{
		"connect/two=continue", "connect/all=continue",
		"helo/all=continue",
		"mail/mail-only=continue", "mail/all=continue",
		"rcpt/all=continue",
		"data/two=continue", "data/all=continue",
	}, rec.summary())
}

func TestChainFuncAdapters(t *testing.T) {
	s := newSession(t)
	ctx := context.Background()
	reject := postern.Rejected(550, postern.ESC(5, 7, 1), "no", "")
	var got []string
	c := mustChain(t, postern.ChainConfig{Entries: []postern.Entry{
		{Filter: postern.ConnectFunc("connect", func(_ context.Context, c *postern.Conn) (postern.Verdict, error) {
			got = append(got, "connect "+c.ID)
			return postern.Pass, nil
		})},
		{Filter: postern.HeloFunc("helo", func(_ context.Context, c *postern.Conn) (postern.Verdict, error) {
			got = append(got, "helo "+c.HELO)
			return postern.Pass, nil
		})},
		{Filter: postern.MailFunc("mail", func(_ context.Context, _ *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
			got = append(got, "mail "+t.From)
			return postern.Pass, nil
		})},
		{Filter: postern.RcptFunc("rcpt", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
			got = append(got, "rcpt "+r.Addr)
			return postern.Pass, nil
		})},
		{Filter: postern.DataFunc("data", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, m *postern.Message) (postern.Verdict, error) {
			got = append(got, "data "+m.Header().Get("Subject"))
			return reject, nil
		})},
	}})
	for _, st := range allStageList {
		v, err := s.runStage(ctx, c, st)
		require.NoError(t, err)
		if st == postern.StageData {
			assert.Equal(t, reject, v)
		} else {
			assert.Equal(t, postern.Pass, v)
		}
	}
	assert.Equal(t, []string{"connect c1", "helo client.test", "mail a@example.test", "rcpt b@example.test", "data x"}, got)
}

func TestChainSkip(t *testing.T) {
	rec := &recorder{}
	type skipArgs struct {
		conn *postern.Conn
		txn  *postern.Txn
	}
	var seen []skipArgs
	all := &allStages{name: "skipped-when-trusted", rec: rec, v: postern.Rejected(550, postern.ESC(5, 7, 1), "no", "")}
	c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
		{Filter: all, Skip: func(c *postern.Conn, t *postern.Txn) bool {
			seen = append(seen, skipArgs{c, t})
			return c.Trusted
		}},
		{Filter: &allStages{name: "next", rec: rec}},
	}})
	s := newSession(t)
	s.conn.Trusted = true
	for _, st := range allStageList {
		v, err := s.runStage(context.Background(), c, st)
		require.NoError(t, err)
		assert.Equal(t, postern.Pass, v, "%s", st)
	}
	assert.Equal(t, []string{"connect:next", "helo:next", "mail:next", "rcpt:next", "data:next"}, rec.Calls())
	assert.Equal(t, []string{"connect/next=continue", "helo/next=continue", "mail/next=continue", "rcpt/next=continue", "data/next=continue"}, rec.summary())
	require.Len(t, seen, 5)
	for i, a := range seen {
		assert.Same(t, s.conn, a.conn)
		if allStageList[i] == postern.StageConnect || allStageList[i] == postern.StageHelo {
			assert.Nil(t, a.txn, "%s", allStageList[i])
		} else {
			assert.Same(t, s.txn, a.txn, "%s", allStageList[i])
		}
	}

	// Not skipped: the filter decides.
	s.conn.Trusted = false
	v, err := c.CheckMail(context.Background(), s.conn, s.txn)
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action)
}

// waitForCancel blocks until its context ends. If the chain did not apply
// the timeout, the test's own deadline ends it (and the test fails on the
// Accept it then returns).
func waitForCancel(rec *recorder, name string, thenErr bool) postern.RcptChecker {
	return postern.RcptFunc(name, func(ctx context.Context, _ *postern.Conn, _ *postern.Txn, _ *postern.Rcpt) (postern.Verdict, error) {
		rec.call(name)
		select {
		case <-ctx.Done():
		case <-time.After(time.Minute):
			return postern.Accepted("timeout not applied"), nil
		}
		if thenErr {
			return postern.Pass, ctx.Err()
		}
		return postern.Pass, nil // gives up without saying so
	})
}

func TestChainTimeout(t *testing.T) {
	for _, thenErr := range []bool{true, false} {
		t.Run(fmt.Sprintf("returns error %v", thenErr), func(t *testing.T) {
			t.Run("fail closed", func(t *testing.T) {
				rec := &recorder{}
				c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
					{Filter: waitForCancel(rec, "slow", thenErr), Timeout: time.Millisecond},
					{Filter: rcptFilter(rec, "next", postern.Pass, nil)},
				}})
				s := newSession(t)
				v, err := c.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
				require.NoError(t, err)
				assert.Equal(t, postern.TempFail, v.Action)
				assert.Equal(t, "451 4.3.0 Temporary local problem, try again later", v.Reply.Error())
				assert.Equal(t, []string{"slow"}, rec.Calls())
				d := rec.Decisions()
				require.Len(t, d, 1)
				assert.ErrorIs(t, d[0].Err, context.DeadlineExceeded)
				assert.Equal(t, v, d[0].Verdict)
			})
			t.Run("fail open", func(t *testing.T) {
				rec := &recorder{}
				c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
					{Filter: waitForCancel(rec, "slow", thenErr), Timeout: time.Millisecond, OnError: postern.OnErrorAccept},
					{Filter: rcptFilter(rec, "next", postern.Pass, nil)},
				}})
				s := newSession(t)
				v, err := c.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
				require.NoError(t, err)
				assert.Equal(t, postern.Pass, v)
				assert.Equal(t, []string{"slow", "next"}, rec.Calls())
				assert.Equal(t, []string{"rcpt/slow=continue!", "rcpt/next=continue"}, rec.summary())
				assert.ErrorIs(t, rec.Decisions()[0].Err, context.DeadlineExceeded)
			})
		})
	}
}

func TestChainContextExpiredBeforeCall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := &recorder{}
	reject := postern.Rejected(550, postern.ESC(5, 7, 1), "no", "")
	s := newSession(t)

	// Continue after the context ended is not a pass.
	c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
		{Filter: rcptFilter(rec, "silent", postern.Pass, nil)},
		{Filter: rcptFilter(rec, "next", postern.Pass, nil)},
	}})
	v, err := c.CheckRcpt(ctx, s.conn, s.txn, s.rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, []string{"silent"}, rec.Calls())
	assert.ErrorIs(t, rec.Decisions()[0].Err, context.Canceled)

	// A final verdict stands even so.
	rec = &recorder{}
	c = mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
		{Filter: rcptFilter(rec, "decided", reject, nil)},
	}})
	v, err = c.CheckRcpt(ctx, s.conn, s.txn, s.rcpt)
	require.NoError(t, err)
	assert.Equal(t, reject, v)
	assert.NoError(t, rec.Decisions()[0].Err)
}

func TestChainErrorPolicy(t *testing.T) {
	errDNS := errors.New("dns down")
	tempMid := "451 4.3.0 Temporary local problem, try again later"
	tempConnect := "421 4.3.0 Temporary local problem, try again later"
	cases := []struct {
		policy postern.ErrorPolicy
		action postern.Action
		// replies by stage; "" for a pass
		connect, helo, mail, rcpt, data string
	}{
		// The zero value fails closed, as it always has.
		{postern.OnErrorDefault, postern.TempFail, tempConnect, tempMid, tempMid, tempMid, tempMid},
		{postern.OnErrorTempFail, postern.TempFail, tempConnect, tempMid, tempMid, tempMid, tempMid},
		{postern.OnErrorAccept, postern.Continue, "", "", "", "", ""},
		{postern.OnErrorReject, postern.Reject,
			"554 5.3.0 Local problem, mail refused", "550 5.3.0 Local problem, mail refused",
			"550 5.3.0 Local problem, mail refused", "550 5.3.0 Local problem, mail refused",
			"554 5.3.0 Local problem, mail refused"},
	}
	for _, tc := range cases {
		want := map[postern.Stage]string{postern.StageConnect: tc.connect, postern.StageHelo: tc.helo,
			postern.StageMail: tc.mail, postern.StageRcpt: tc.rcpt, postern.StageData: tc.data}
		for _, st := range allStageList {
			t.Run(tc.policy.String()+"/"+st.String(), func(t *testing.T) {
				s := newSession(t)
				rec := &recorder{}
				c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
					// The verdict returned with an error is not used.
					{Filter: &allStages{name: "broken", rec: rec, v: postern.Accepted("ignored"), err: errDNS}, OnError: tc.policy},
					{Filter: &allStages{name: "next", rec: rec}},
				}})
				v, err := s.runStage(context.Background(), c, st)
				require.NoError(t, err)
				d := rec.Decisions()
				require.NotEmpty(t, d)
				assert.ErrorIs(t, d[0].Err, errDNS)
				assert.Equal(t, tc.action, d[0].Verdict.Action)
				assert.Contains(t, d[0].Verdict.Reason, "broken")
				assert.Contains(t, d[0].Verdict.Reason, "dns down")
				assert.Contains(t, d[0].Verdict.Reason, "on error: "+tc.policy.Or(postern.OnErrorTempFail).String())
				if tc.action == postern.Continue {
					assert.Equal(t, postern.Pass, v, "the next filter decides")
					assert.Equal(t, []string{st.String() + ":broken", st.String() + ":next"}, rec.Calls())
					require.Len(t, d, 2)
					assert.NoError(t, d[1].Err)
					return
				}
				assert.Equal(t, tc.action, v.Action)
				assert.Equal(t, want[st], v.Reply.Error())
				assert.Equal(t, want[st], v.ReplyAt(st).Error(), "the server sends the reply as is")
				assert.NotContains(t, v.Reply.Error(), "dns down", "the reason never goes to the client")
				assert.Equal(t, []string{st.String() + ":broken"}, rec.Calls())
				require.Len(t, d, 1)
			})
		}
	}
	assert.Equal(t, postern.OnErrorDefault, postern.Entry{}.OnError)
}

func TestChainPanic(t *testing.T) {
	panics := map[string]func(){
		"string": func() { panic("boom") },
		"error":  func() { panic(errors.New("boom")) },
		"nil":    func() { panic(nil) },
		"index": func() {
			var s []int
			_ = s[3]
		},
	}
	for name, p := range panics {
		for _, policy := range []postern.ErrorPolicy{postern.OnErrorDefault, postern.OnErrorAccept} {
			t.Run(name+"/"+policy.String(), func(t *testing.T) {
				rec := &recorder{}
				c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
					{Filter: postern.MailFunc("panicky", func(context.Context, *postern.Conn, *postern.Txn) (postern.Verdict, error) {
						rec.call("panicky")
						p()
						return postern.Accepted("unreachable"), nil
					}), OnError: policy},
					{Filter: postern.MailFunc("next", func(context.Context, *postern.Conn, *postern.Txn) (postern.Verdict, error) {
						rec.call("next")
						return postern.Pass, nil
					})},
				}})
				s := newSession(t)
				var v postern.Verdict
				var err error
				require.NotPanics(t, func() { v, err = c.CheckMail(context.Background(), s.conn, s.txn) })
				require.NoError(t, err)
				d := rec.Decisions()
				require.NotEmpty(t, d)
				assert.ErrorIs(t, d[0].Err, postern.ErrFilterPanic)
				assert.Contains(t, d[0].Err.Error(), "panicky")
				assert.Equal(t, "panicky", d[0].Filter)
				if policy == postern.OnErrorDefault {
					assert.Equal(t, postern.TempFail, v.Action)
					assert.Equal(t, 451, v.Reply.Code)
					assert.Equal(t, []string{"panicky"}, rec.Calls())
				} else {
					assert.Equal(t, postern.Continue, v.Action)
					assert.Equal(t, []string{"panicky", "next"}, rec.Calls())
				}
			})
		}
	}
}

func TestChainObserver(t *testing.T) {
	rec := &recorder{}
	var tick int
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { // a fake clock: each reading is one second later
		tick++
		return base.Add(time.Duration(tick) * time.Second)
	}
	errScanner := errors.New("scanner unreachable")
	reject := postern.Rejected(550, postern.ESC(5, 1, 1), "no such user", "unknown")
	c := mustChain(t, postern.ChainConfig{Name: "inbound", Observer: rec.observe, Now: now, Entries: []postern.Entry{
		{Filter: &allStages{name: "pass", rec: rec}},
		{Filter: &allStages{name: "flaky", rec: rec, err: errScanner}, OnError: postern.OnErrorAccept},
		{Filter: postern.RcptFunc("verify", func(context.Context, *postern.Conn, *postern.Txn, *postern.Rcpt) (postern.Verdict, error) {
			return reject, nil
		})},
	}})
	s := newSession(t)
	ctx := context.Background()
	for _, st := range allStageList {
		_, err := s.runStage(ctx, c, st)
		require.NoError(t, err)
	}
	assert.Equal(t, []string{
		"connect/pass=continue", "connect/flaky=continue!",
		"helo/pass=continue", "helo/flaky=continue!",
		"mail/pass=continue", "mail/flaky=continue!",
		"rcpt/pass=continue", "rcpt/flaky=continue!", "rcpt/verify=reject",
		"data/pass=continue", "data/flaky=continue!",
	}, rec.summary())
	for _, d := range rec.Decisions() {
		assert.Equal(t, "inbound", d.Chain)
		assert.Same(t, s.conn, d.Conn)
		assert.Equal(t, time.Second, d.Elapsed, "measured with the configured clock")
		switch d.Stage {
		case postern.StageConnect, postern.StageHelo:
			assert.Nil(t, d.Txn)
			assert.Nil(t, d.Rcpt)
		case postern.StageRcpt:
			assert.Same(t, s.txn, d.Txn)
			assert.Same(t, s.rcpt, d.Rcpt)
		default:
			assert.Same(t, s.txn, d.Txn)
			assert.Nil(t, d.Rcpt)
		}
		if d.Filter == "flaky" {
			assert.ErrorIs(t, d.Err, errScanner)
		}
		if d.Filter == "verify" {
			assert.Equal(t, reject, d.Verdict)
		}
	}
}

func TestChainNested(t *testing.T) {
	rec := &recorder{}
	inner := mustChain(t, postern.ChainConfig{Name: "inner", Observer: rec.observe, Entries: []postern.Entry{
		{Filter: rcptFilter(rec, "inner-a", postern.Pass, nil)},
		{Filter: rcptFilter(rec, "inner-allow", postern.Accepted("allow-listed"), nil)},
		{Filter: rcptFilter(rec, "inner-c", postern.Pass, nil)},
	}})
	outer := mustChain(t, postern.ChainConfig{Name: "outer", Observer: rec.observe, Entries: []postern.Entry{
		{Filter: rcptFilter(rec, "outer-a", postern.Pass, nil)},
		{Filter: inner},
		{Filter: rcptFilter(rec, "outer-reject", postern.Rejected(550, postern.ESC(5, 7, 1), "no", ""), nil)},
	}})
	s := newSession(t)
	v, err := outer.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Accept, v.Action, "an Accept in the inner chain ends the outer stage")
	assert.Equal(t, []string{"outer-a", "inner-a", "inner-allow"}, rec.Calls())
	var got []string
	for _, d := range rec.Decisions() {
		got = append(got, d.Chain+":"+d.Filter+"="+d.Verdict.Action.String())
	}
	assert.Equal(t, []string{
		"outer:outer-a=continue",
		"inner:inner-a=continue",
		"inner:inner-allow=accept",
		"outer:inner=accept",
	}, got)

	// The inner chain answers at stages none of its filters implement, and
	// its error policy is applied inside it.
	rec2 := &recorder{}
	flaky := mustChain(t, postern.ChainConfig{Name: "flaky", Entries: []postern.Entry{
		{Filter: postern.MailFunc("dns", func(context.Context, *postern.Conn, *postern.Txn) (postern.Verdict, error) {
			return postern.Pass, errors.New("servfail")
		}), OnError: postern.OnErrorAccept},
	}})
	outer = mustChain(t, postern.ChainConfig{Observer: rec2.observe, Entries: []postern.Entry{
		{Filter: flaky},
		{Filter: rcptFilter(rec2, "after", postern.Pass, nil)},
	}})
	v, err = outer.CheckMail(context.Background(), s.conn, s.txn)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	assert.Equal(t, []string{"mail/flaky=continue"}, rec2.summary())
	v, err = outer.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	assert.Equal(t, []string{"after"}, rec2.Calls())
}

func TestNewChainValidation(t *testing.T) {
	ok := rcptFilter(&recorder{}, "ok", postern.Pass, nil)
	tests := []struct {
		name    string
		entries []postern.Entry
		msg     string
	}{
		{"nil filter", []postern.Entry{{Filter: ok}, {Filter: nil}}, "entry 1"},
		{"no stage", []postern.Entry{{Filter: nameOnly{}}}, "name-only"},
		{"negative timeout", []postern.Entry{{Filter: ok, Timeout: -time.Second}}, "negative timeout"},
		// Not read as fail closed (or open): refused.
		{"unknown error policy", []postern.Entry{{Filter: ok, OnError: postern.OnErrorReject + 1}}, "unknown error policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := postern.NewChain(postern.ChainConfig{Entries: tt.entries})
			require.Error(t, err)
			assert.ErrorIs(t, err, postern.ErrChainConfig)
			assert.Contains(t, err.Error(), tt.msg)
			assert.Nil(t, c)
		})
	}

	// An empty chain passes everything.
	c := mustChain(t, postern.ChainConfig{Name: "empty"})
	assert.Equal(t, "empty", c.Name())
	assert.Equal(t, 0, c.Len())
	s := newSession(t)
	for _, st := range allStageList {
		v, err := s.runStage(context.Background(), c, st)
		require.NoError(t, err)
		assert.Equal(t, postern.Pass, v)
	}
}

func TestNewChainCopiesEntries(t *testing.T) {
	rec := &recorder{}
	entries := []postern.Entry{{Filter: rcptFilter(rec, "a", postern.Pass, nil)}}
	c := mustChain(t, postern.ChainConfig{Entries: entries})
	entries[0] = postern.Entry{Filter: rcptFilter(rec, "changed", postern.Pass, nil)}
	s := newSession(t)
	_, err := c.CheckRcpt(context.Background(), s.conn, s.txn, s.rcpt)
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, rec.Calls())
}

func TestChainConcurrentUse(t *testing.T) {
	rec := &recorder{}
	key := postern.NewKey[int]("n")
	c := mustChain(t, postern.ChainConfig{Observer: rec.observe, Entries: []postern.Entry{
		{Filter: postern.RcptFunc("count", func(_ context.Context, _ *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
			n, _ := postern.GetValue(&t.Values, key)
			postern.SetValue(&t.Values, key, n+1)
			if strings.HasPrefix(r.Addr, "bad") {
				return postern.Rejected(550, postern.ESC(5, 1, 1), "no", ""), nil
			}
			return postern.Pass, nil
		}), Timeout: time.Minute},
	}})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			conn := &postern.Conn{ID: fmt.Sprint(i)}
			txn := &postern.Txn{}
			for j := range 20 {
				addr := "good@example.test"
				if j%2 == 1 {
					addr = "bad@example.test"
				}
				v, err := c.CheckRcpt(context.Background(), conn, txn, &postern.Rcpt{Addr: addr})
				assert.NoError(t, err)
				assert.Equal(t, j%2 == 1, v.Action == postern.Reject)
			}
			n, _ := postern.GetValue(&txn.Values, key)
			assert.Equal(t, 20, n)
		})
	}
	wg.Wait()
	assert.Len(t, rec.Decisions(), 160)
}
