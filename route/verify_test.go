package route

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// storeSink is an internal mail store that knows some users.
func storeSink(t *testing.T, gate chan struct{}) *sink {
	return startSink(t, "127.0.0.1:0", storeConfig(gate))
}

// storeConfig makes a sink a mail store that knows alice and bob; each
// RCPT waits for gate, if set.
func storeConfig(gate chan struct{}) sinkConfig {
	return sinkConfig{rcpt: func(to string) error {
		if gate != nil {
			<-gate
		}
		switch strings.ToLower(strings.Split(to, "@")[0]) {
		case "alice", "bob":
			return nil
		case "busy":
			return smtpErr(450, [3]int{4, 2, 1}, "Mailbox busy")
		}
		return smtpErr(550, [3]int{5, 1, 1}, "User unknown")
	}}
}

func newTestVerifier(t *testing.T, table string, cfg VerifierConfig) *Verifier {
	t.Helper()
	if cfg.CallAhead {
		cfg.Transport = mtTransport(t, table, TransportConfig{})
	}
	v, err := NewVerifier(cfg)
	require.NoError(t, err)
	return v
}

func TestCallAhead(t *testing.T) {
	s := storeSink(t, nil)
	clock := testutil.NewClock()
	v := newTestVerifier(t, "nix.co.jj esmtp:"+hostPort(s.addr)+"\n", VerifierConfig{CallAhead: true, Now: clock.Now})

	r, err := v.Verify(bg, "alice@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusValid, r.Status)
	assert.False(t, r.Cached)
	assert.Equal(t, "callahead", r.Source)
	assert.Equal(t, "127.0.0.1", r.RemoteMTA)
	assert.True(t, r.Reply.IsZero())
	cmds := s.ln.commands()
	assert.Contains(t, cmds, "MAIL FROM:<> BODY=8BITMIME")
	assert.Contains(t, cmds, "RCPT TO:<alice@nix.co.jj>")
	assert.Contains(t, cmds, "QUIT")
	assert.NotContains(t, strings.Join(cmds, "\n"), "DATA")

	r, err = v.Verify(bg, "Alice@NIX.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusValid, r.Status)
	assert.True(t, r.Cached)
	assert.EqualValues(t, 1, s.accepts(), "answered from the cache")

	r, err = v.Verify(bg, "nobody@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusInvalid, r.Status)
	assert.Equal(t, "550 5.1.1 <nobody@nix.co.jj>: Recipient address rejected: User unknown", r.Reply.Error())
	assert.Equal(t, "550 5.1.1 User unknown", r.Remote.Error())
	r, err = v.Verify(bg, "nobody@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusInvalid, r.Status)
	assert.True(t, r.Cached)
	assert.Equal(t, 550, r.Reply.Code)
	assert.EqualValues(t, 2, s.accepts(), "negatively cached")

	// A temporary answer is not cached.
	for range 2 {
		r, err = v.Verify(bg, "busy@nix.co.jj")
		require.NoError(t, err)
		assert.Equal(t, StatusTempFail, r.Status)
		assert.Equal(t, 450, r.Reply.Code)
		assert.Equal(t, "4.1.1", r.Reply.Enhanced.String())
		assert.Contains(t, r.Reply.Text(), "Mailbox busy")
	}
	assert.EqualValues(t, 4, s.accepts())

	// The negative entry expires first.
	clock.Advance(DefaultNegativeTTL + time.Second)
	r, _ = v.Verify(bg, "nobody@nix.co.jj")
	assert.False(t, r.Cached)
	r, _ = v.Verify(bg, "alice@nix.co.jj")
	assert.True(t, r.Cached)
	clock.Advance(DefaultPositiveTTL)
	r, _ = v.Verify(bg, "alice@nix.co.jj")
	assert.False(t, r.Cached)
	assert.EqualValues(t, 6, s.accepts())

	// Postmaster is never refused and never asked.
	r, _ = v.Verify(bg, "PostMaster@nix.co.jj")
	assert.Equal(t, StatusValid, r.Status)
	assert.EqualValues(t, 6, s.accepts())
}

func TestCallAheadServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	table := "nix.co.jj esmtp:" + hostPort(addr) + "\n"
	v := newTestVerifier(t, table, VerifierConfig{CallAhead: true})
	r, err := v.Verify(bg, "alice@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusTempFail, r.Status)
	assert.Equal(t, 451, r.Reply.Code)
	assert.Equal(t, "4.4.1", r.Reply.Enhanced.String())
	assert.Contains(t, r.Reply.Text(), "Connection refused")

	v = newTestVerifier(t, table, VerifierConfig{CallAhead: true, OnError: postern.OnErrorAccept})
	r, err = v.Verify(bg, "alice@nix.co.jj")
	require.NoError(t, err)
	assert.Equal(t, StatusUnknown, r.Status)
	assert.True(t, r.Reply.IsZero())

	// Errors from the mailertable answer without asking anyone.
	v = newTestVerifier(t, "gone.example error:5.1.1:550 Nobody here\n", VerifierConfig{CallAhead: true})
	r, _ = v.Verify(bg, "x@gone.example")
	assert.Equal(t, StatusInvalid, r.Status)
	assert.Equal(t, "550 5.1.1 Nobody here", r.Reply.Error())
}

// Every OnError value, through the RCPT filter: a next hop that answers
// RCPT with 4xx, one that cannot be reached, and a mailertable error entry
// with a 4xx reply, which is configuration and answered as written.
func TestVerifierErrorPolicy(t *testing.T) {
	s := storeSink(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := l.Addr().String()
	require.NoError(t, l.Close())
	table := "nix.co.jj esmtp:" + hostPort(s.addr) + "\n" +
		"down.example esmtp:" + hostPort(down) + "\n" +
		"maint.example error:4.3.2:451 Down for maintenance\n"
	const (
		busyTemp = "450 4.1.1 <busy@nix.co.jj>: Recipient address rejected: unverified address: 127.0.0.1 said: 450 4.2.1 Mailbox busy"
		busyRej  = "550 5.1.1 <busy@nix.co.jj>: Recipient address rejected: unverified address: 127.0.0.1 said: 450 4.2.1 Mailbox busy"
		maint    = "451 4.3.2 Down for maintenance"
	)
	for _, tc := range []struct {
		policy postern.ErrorPolicy
		action postern.Action
		status Status
		busy   string
		down   string // prefix
	}{
		// The zero value fails closed, as it always has.
		{postern.OnErrorDefault, postern.TempFail, StatusTempFail, busyTemp, "451 4.4.1 <x@down.example>: Recipient address verification failed: "},
		{postern.OnErrorTempFail, postern.TempFail, StatusTempFail, busyTemp, "451 4.4.1 <x@down.example>: Recipient address verification failed: "},
		{postern.OnErrorAccept, postern.Continue, StatusUnknown, "no reply", "no reply"},
		{postern.OnErrorReject, postern.Reject, StatusInvalid, busyRej, "550 5.4.1 <x@down.example>: Recipient address verification failed: "},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			v := newTestVerifier(t, table, VerifierConfig{CallAhead: true, OnError: tc.policy})
			f, err := NewFilter(FilterConfig{Verifier: v, Domains: []string{"nix.co.jj", "down.example", "maint.example"}})
			require.NoError(t, err)
			check := func(addr string) (postern.Verdict, VerifyResult) {
				c := &postern.Conn{ID: "c1"}
				r := &postern.Rcpt{Addr: addr}
				verdict, err := f.CheckRcpt(bg, c, &postern.Txn{From: "a@b.example"}, r)
				require.NoError(t, err)
				res, ok := postern.GetValue(&r.Values, VerifyResultKey)
				require.True(t, ok)
				return verdict, res
			}
			for range 2 { // a failure is never cached, whatever the policy
				verdict, res := check("busy@nix.co.jj")
				assert.Equal(t, tc.action, verdict.Action)
				assert.Equal(t, tc.status, res.Status)
				assert.Equal(t, tc.busy, verdict.Reply.Error())
				assert.False(t, res.Cached)
			}
			verdict, res := check("x@down.example")
			assert.Equal(t, tc.action, verdict.Action)
			assert.Equal(t, tc.status, res.Status)
			assert.True(t, strings.HasPrefix(verdict.Reply.Error(), tc.down), verdict.Reply.Error())
			if tc.action != postern.Continue {
				assert.Equal(t, verdict.Reply, verdict.ReplyAt(postern.StageRcpt), "sent as is")
			}

			verdict, res = check("x@maint.example")
			assert.Equal(t, postern.TempFail, verdict.Action, "a configured 4xx is not a failure")
			assert.Equal(t, StatusTempFail, res.Status)
			assert.Equal(t, maint, verdict.Reply.Error())
		})
	}
	_, err = NewVerifier(VerifierConfig{CallAhead: true, Transport: mtTransport(t, table, TransportConfig{}),
		OnError: postern.OnErrorReject + 1})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestCallAheadSharedAndBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		s := startPipeSink(t, storeConfig(gate))
		v, err := NewVerifier(VerifierConfig{CallAhead: true, CacheSize: 2,
			Transport: mtTransport(t, "nix.co.jj esmtp:[127.0.0.1]:25\n", TransportConfig{Dialer: s.dial})})
		require.NoError(t, err)
		var wg sync.WaitGroup
		results := make([]VerifyResult, 5)
		for i := range results {
			wg.Go(func() {
				var err error
				results[i], err = v.Verify(bg, "bob@nix.co.jj")
				assert.NoError(t, err)
			})
		}
		ctx, cancel := context.WithCancel(bg)
		errc := make(chan error)
		go func() {
			_, err := v.Verify(ctx, "bob@nix.co.jj")
			errc <- err
		}()
		synctest.Wait()
		assert.Equal(t, 1, s.ln.count("RCPT TO:<bob@nix.co.jj>"), "one call-ahead, held at RCPT")
		// A caller that hangs up returns while the call-ahead goes on.
		cancel()
		assert.ErrorIs(t, <-errc, context.Canceled)
		close(gate)
		wg.Wait()
		for _, r := range results {
			assert.Equal(t, StatusValid, r.Status)
		}
		assert.Equal(t, 1, s.ln.count("RCPT TO:<bob@nix.co.jj>"), "one call-ahead for concurrent checks")

		for _, a := range []string{"alice@nix.co.jj", "x@nix.co.jj", "y@nix.co.jj"} {
			_, err := v.Verify(bg, a)
			require.NoError(t, err)
		}
		assert.Equal(t, 2, v.cache.len())

		// A caller that gave up gets ctx's error.
		_, err = v.Verify(ctx, "z@nix.co.jj")
		assert.ErrorIs(t, err, context.Canceled)
	})
}

func TestStaticList(t *testing.T) {
	list, err := ParseRecipients(strings.NewReader("alice@list.example\n<Bob@List.Example>  OK\n@catchall.example\n"), "recipients")
	require.NoError(t, err)
	v, err := NewVerifier(VerifierConfig{Recipients: list, RecipientDelimiter: "+"})
	require.NoError(t, err)
	tests := []struct {
		addr   string
		status Status
		source string
	}{
		{"alice@list.example", StatusValid, "list"},
		{"ALICE@list.example", StatusValid, "list"},
		{"bob@list.example", StatusValid, "list"},
		{"alice+news@list.example", StatusValid, "list"},
		{"carol@list.example", StatusInvalid, "list"},
		{"anyone@catchall.example", StatusValid, "list"},
		{"postmaster@list.example", StatusValid, "postmaster"},
		{"x@elsewhere.example", StatusUnknown, ""},
		{"nodomain", StatusInvalid, "syntax"},
	}
	for _, tt := range tests {
		r, err := v.Verify(bg, tt.addr)
		require.NoError(t, err)
		assert.Equal(t, tt.status, r.Status, tt.addr)
		assert.Equal(t, tt.source, r.Source, tt.addr)
	}
	r, _ := v.Verify(bg, "carol@list.example")
	assert.Equal(t, "550 5.1.1 <carol@list.example>: Recipient address rejected: User unknown in local recipient table", r.Reply.Error())
}

func TestVerifierConfig(t *testing.T) {
	_, err := NewVerifier(VerifierConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewVerifier(VerifierConfig{CallAhead: true})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewVerifier(VerifierConfig{Recipients: &Recipients{}, CacheSize: -1})
	assert.ErrorIs(t, err, ErrConfig)
	assert.Equal(t, "tempfail", StatusTempFail.String())
}

func TestFilter(t *testing.T) {
	s := storeSink(t, nil)
	v := newTestVerifier(t, "nix.co.jj esmtp:"+hostPort(s.addr)+"\n", VerifierConfig{CallAhead: true})
	var logs testutil.LogBuffer
	f, err := NewFilter(FilterConfig{Verifier: v, Domains: []string{"nix.co.jj", ".nix.co.jj"}, Logger: logs.Logger()})
	require.NoError(t, err)
	assert.Equal(t, FilterName, f.Name())
	c := &postern.Conn{ID: "C1", Remote: netip.MustParseAddrPort("192.0.2.1:4000")}
	txn := &postern.Txn{From: "a@sender.test"}
	tests := []struct {
		rcpt   string
		action postern.Action
		reply  string
	}{
		{"alice@nix.co.jj", postern.Continue, ""},
		{"nobody@nix.co.jj", postern.Reject, "550 5.1.1 <nobody@nix.co.jj>: Recipient address rejected: User unknown"},
		{"busy@nix.co.jj", postern.TempFail, "450 4.1.1"},
		{"anyone@other.example", postern.Continue, ""},
	}
	for _, tt := range tests {
		r := &postern.Rcpt{Addr: tt.rcpt, Original: tt.rcpt}
		verdict, err := f.CheckRcpt(bg, c, txn, r)
		require.NoError(t, err)
		assert.Equal(t, tt.action, verdict.Action, tt.rcpt)
		assert.True(t, strings.HasPrefix(verdict.Reply.Error(), tt.reply), verdict.Reply.Error())
		_, recorded := postern.GetValue(&r.Values, VerifyResultKey)
		assert.Equal(t, !strings.HasSuffix(tt.rcpt, "other.example"), recorded, tt.rcpt)
	}
	assert.Equal(t, 3, s.ln.count("QUIT"), "one call-ahead per local recipient")
	recs := logs.Records(t, "recipient verification")
	require.Len(t, recs, 2)
	assert.Equal(t, "reject", recs[0]["action"])
	assert.Equal(t, "C1", recs[0]["conn_id"])
	assert.EqualValues(t, 550, recs[0]["code"])

	_, err = NewFilter(FilterConfig{Domains: []string{"x"}})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewFilter(FilterConfig{Verifier: v})
	assert.ErrorIs(t, err, ErrConfig)
}

// fakeDirectory is a RecipientDirectory from a map; down makes it fail.
type fakeDirectory struct {
	domain string
	users  map[string]bool
	down   bool
	asked  []string
}

func (d *fakeDirectory) Covers(domain string) bool { return domain == d.domain }

func (d *fakeDirectory) RecipientExists(_ context.Context, addr string) (bool, error) {
	d.asked = append(d.asked, addr)
	if d.down {
		return false, errors.New("ldap: connection refused")
	}
	return d.users[addr], nil
}

func TestDirectory(t *testing.T) {
	list, err := ParseRecipients(strings.NewReader("static@list.example\n"), "recipients")
	require.NoError(t, err)
	dir := &fakeDirectory{domain: "dir.example", users: map[string]bool{"alice@dir.example": true}}
	var logs testutil.LogBuffer
	v, err := NewVerifier(VerifierConfig{Recipients: list, Directory: dir, RecipientDelimiter: "+", Logger: logs.Logger()})
	require.NoError(t, err)
	for _, tc := range []struct {
		addr   string
		status Status
		source string
		reply  string
	}{
		{"alice@dir.example", StatusValid, "directory", ""},
		{"alice+news@dir.example", StatusValid, "directory", ""},
		{"bob@dir.example", StatusInvalid, "directory", "550 5.1.1 <bob@dir.example>: Recipient address rejected: User unknown in the directory"},
		{"postmaster@dir.example", StatusValid, "postmaster", ""},
		{"static@list.example", StatusValid, "list", ""},
		{"x@elsewhere.example", StatusUnknown, "", ""},
	} {
		r, err := v.Verify(bg, tc.addr)
		require.NoError(t, err)
		assert.Equal(t, tc.status, r.Status, tc.addr)
		assert.Equal(t, tc.source, r.Source, tc.addr)
		assert.Equal(t, tc.reply, strings.TrimPrefix(r.Reply.Error(), "no reply"), tc.addr)
	}
	assert.NotContains(t, dir.asked, "x@elsewhere.example", "a domain it does not cover is not asked")

	// Down: 451 4.3.0, never 550; with accept, unverified.
	dir.down = true
	for _, addr := range []string{"alice@dir.example", "bob@dir.example"} {
		r, err := v.Verify(bg, addr)
		require.NoError(t, err)
		assert.Equal(t, StatusTempFail, r.Status)
		assert.Equal(t, "451 4.3.0 <"+addr+">: Recipient address verification failed: directory unavailable, try again later", r.Reply.Error())
	}
	assert.Len(t, logs.Records(t, "recipient directory unavailable"), 2)
	open, err := NewVerifier(VerifierConfig{Directory: dir, DirectoryOnError: postern.OnErrorAccept})
	require.NoError(t, err)
	r, err := open.Verify(bg, "bob@dir.example")
	require.NoError(t, err)
	assert.Equal(t, StatusUnknown, r.Status)
	_, err = NewVerifier(VerifierConfig{Directory: dir, DirectoryOnError: postern.OnErrorReject})
	assert.ErrorIs(t, err, ErrConfig, "an outage must never make recipients unknown")

	// Through the filter: 550 and 451 as verdicts.
	f, err := NewFilter(FilterConfig{Verifier: v, Domains: []string{"dir.example"}})
	require.NoError(t, err)
	c := &postern.Conn{ID: "C1", Remote: netip.MustParseAddrPort("192.0.2.1:4000")}
	vd, err := f.CheckRcpt(bg, c, &postern.Txn{}, &postern.Rcpt{Addr: "bob@dir.example"})
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, vd.Action)
	assert.Equal(t, "verify: directory", vd.Reason)
	dir.down = false
	vd, err = f.CheckRcpt(bg, c, &postern.Txn{}, &postern.Rcpt{Addr: "bob@dir.example"})
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, vd.Action)
}
