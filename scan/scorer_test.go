package scan

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// rspamdLike answers with an rspamd action and what comes with it.
func rspamdLike(action string, mod func(*Result)) *stubScanner {
	s := &stubScanner{name: "rspamd", res: Result{Scanner: "rspamd", Scored: true, Score: 1, Threshold: 15, Action: action,
		Spam: action == "add header" || action == "rewrite subject" || action == "reject"}}
	if mod != nil {
		mod(&s.res)
	}
	return s
}

// "greylist" and "soft reject" are answered 451 4.7.1 with rspamd's
// message, made fit for a reply; the site's own senders are not delayed.
func TestFilterSoftActions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, action, message, want string
	}{
		{"greylist with message", "greylist", "Try again later, greylisted", "451 4.7.1 Try again later, greylisted"},
		{"greylist without", "greylist", "", "451 4.7.1 Greylisted, please try again later"},
		{"soft reject", "soft reject", "Rate limit exceeded", "451 4.7.1 Rate limit exceeded"},
		{"hostile message", "soft reject", "later\r\n250 ok\r\n\x00 \xff" + strings.Repeat("x", 300),
			"451 4.7.1 later 250 ok ? ?" + strings.Repeat("x", 120-len("later 250 ok ? ?")-3) + "..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: rspamdLike(tc.action, func(r *Result) { r.Message = tc.message })}}})
			c, txn := session("user@example.com")
			v, err := f.CheckData(ctx, c, txn, spool(t, plainMsg))
			require.NoError(t, err)
			require.Equal(t, postern.TempFail, v.Action)
			assert.Equal(t, tc.want, v.Reply.Error())
			assert.Contains(t, v.Reason, "rspamd action "+tc.action)

			c.Trusted = true
			v, err = f.CheckData(ctx, c, &postern.Txn{ID: "Q2", Rcpts: txn.Rcpts}, spool(t, plainMsg))
			require.NoError(t, err)
			assert.Equal(t, postern.Continue, v.Action, "a trusted client is not delayed")
		})
	}
}

// SoftGreylist hands the decision to Postern's greylisting; SoftAccept
// goes on.
func TestFilterSoftGreylistAndAccept(t *testing.T) {
	ctx := context.Background()
	defer_ := true
	var asked int
	grey := func(_ context.Context, _ *postern.Conn, txn *postern.Txn) postern.Verdict {
		asked++
		if defer_ {
			return postern.TempFailed(451, postern.ESC(4, 7, 1), "Greylisted, please try again in 300 seconds", "greylist: new")
		}
		return postern.Pass
	}
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: rspamdLike("greylist", nil)}}, OnGreylist: SoftGreylist, Greylist: grey})
	c, txn := session("user@example.com")
	v, err := f.CheckData(ctx, c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	require.Equal(t, postern.TempFail, v.Action)
	assert.Equal(t, "451 4.7.1 Greylisted, please try again in 300 seconds", v.Reply.Error())
	assert.Equal(t, "scan: rspamd action greylist: greylist: new", v.Reason)
	defer_ = false
	v, err = f.CheckData(ctx, c, &postern.Txn{ID: "Q2", Rcpts: txn.Rcpts}, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action, "the retry passes greylisting")
	assert.Equal(t, 2, asked)

	buf := &testutil.LogBuffer{}
	f = newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: rspamdLike("soft reject", nil)}}, OnSoftReject: SoftAccept, Logger: buf.Logger()})
	v, err = f.CheckData(ctx, c, &postern.Txn{ID: "Q3", Rcpts: txn.Rcpts}, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.NotEmpty(t, buf.Records(t, "scan decision"))

	_, err = NewFilter(FilterConfig{OnGreylist: SoftGreylist})
	assert.ErrorIs(t, err, ErrConfig, "SoftGreylist needs Greylist")
	_, err = NewFilter(FilterConfig{OnSoftReject: SoftAction(9)})
	assert.ErrorIs(t, err, ErrConfig)
	a, err := ParseSoftAction("greylist")
	require.NoError(t, err)
	assert.Equal(t, SoftGreylist, a)
	_, err = ParseSoftAction("drop")
	assert.ErrorIs(t, err, ErrConfig)
}

// The scorer's header changes reach the message, in order, checked: a
// bad name or value and the removal of a trace field are skipped.
func TestFilterScorerHeaders(t *testing.T) {
	ctx := context.Background()
	msg := "Received: from a by b\r\nFrom: s@example.org\r\nX-Remove: 1\r\nX-Remove: 2\r\nX-Remove: 3\r\nSubject: hi\r\n\r\nbody\r\n"
	sc := rspamdLike("no action", func(r *Result) {
		r.AddHeaders = []HeaderField{
			{Name: "ARC-Seal", Value: "i=1; a=rsa-sha256; b=seal"},
			{Name: "DKIM-Signature", Value: "v=1; a=rsa-sha256;\r\n\tb=sig"},
			{Name: "X-Evil\r\nBcc", Value: "x"},
			{Name: "X-Nul", Value: "a\x00b"},
			{Name: "X-Spamd-Result", Value: "default: False [1.00 / 15.00]"},
		}
		r.RemoveHeaders = []HeaderRemoval{{Name: "X-Remove", Index: -1}, {Name: "X-Remove", Index: 1}, {Name: "Received"}}
	})
	buf := &testutil.LogBuffer{}
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sc}}, Logger: buf.Logger()})
	c, txn := session("user@example.com")
	m := spool(t, msg)
	v, err := f.CheckData(ctx, c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	out := render(t, m)
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	assert.Equal(t, "ARC-Seal: i=1; a=rsa-sha256; b=seal\r\n"+
		"DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=sig\r\n"+
		"X-Spamd-Result: default: False [1.00 / 15.00]\r\n"+
		"Received: from a by b\r\nFrom: s@example.org\r\nX-Remove: 2\r\nSubject: hi", head)
	recs := buf.Records(t, "scorer header changes skipped")
	require.Len(t, recs, 1)
	assert.Equal(t, "remove Received, add X-Nul, add X-Evil??Bcc", recs[0]["skipped"])

	f = newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sc}}, IgnoreScorerHeaders: true})
	m = spool(t, msg)
	_, err = f.CheckData(ctx, c, &postern.Txn{ID: "Q2", Rcpts: txn.Rcpts}, m)
	require.NoError(t, err)
	assert.Equal(t, msg, render(t, m), "ignored")
}

// "rewrite subject" without a SubjectPrefix of the site's own takes the
// scorer's Subject (encoded when it is not ASCII); with one, the prefix.
func TestFilterRewriteSubject(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, subject, prefix, want string
	}{
		{"scorer's", "***SPAM*** hi", "", "***SPAM*** hi"},
		{"scorer's, not ASCII", "***SPAM*** grüße", "", "***SPAM*** grüße"},
		{"site's prefix wins", "***SPAM*** hi", "[SPAM]", "[SPAM] hi"},
		{"hostile", "x\r\nBcc: evil@example.org", "", "x Bcc: evil@example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: rspamdLike("rewrite subject",
				func(r *Result) { r.Subject = tc.subject })}}, SubjectPrefix: tc.prefix})
			c, txn := session("user@example.com")
			m := spool(t, "From: s@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
			_, err := f.CheckData(ctx, c, txn, m)
			require.NoError(t, err)
			out := spool(t, render(t, m))
			assert.Equal(t, tc.want, decodeSubject(out))
			assert.Len(t, out.Header().Values("Subject"), 1)
			assert.NotContains(t, out.Header(), "Bcc")
		})
	}
}
