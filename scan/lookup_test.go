package scan

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// mapLookup is a PolicyLookup from a map; down makes it fail.
type mapLookup struct {
	pols map[string]RcptPolicy
	down bool
}

func (l *mapLookup) LookupPolicy(_ context.Context, rcpt string) (RcptPolicy, bool, error) {
	if l.down {
		return RcptPolicy{}, false, errors.New("directory: unavailable")
	}
	p, ok := l.pols[rcpt]
	return p, ok, nil
}

// The directory's policy wins over the file's; a recipient it does not
// know gets the file's; when it is down, 451 4.3.0 unless told to go on.
func TestFilterPolicyLookup(t *testing.T) {
	pol, err := ParsePolicy(strings.NewReader("@example.com deny=sender@example.org\n"), "policy")
	require.NoError(t, err)
	lk := &mapLookup{pols: map[string]RcptPolicy{
		"alice@example.com": {Key: "uid=alice", Source: "ldap", Spam: SpamOff},
		"bob@example.com":   {Key: "uid=bob", Source: "ldap", Allow: []string{"sender@example.org"}},
	}}
	sa := spam(9)
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sa}}, Policy: pol, Lookup: lk, TagScore: 5})
	c, txn := session()
	txn.From = "sender@example.org"
	ctx := context.Background()
	for rcpt, want := range map[string]postern.Action{
		"bob@example.com":   postern.Continue, // the directory's allow list, not the file's deny
		"carol@example.com": postern.Reject,   // unknown to the directory: the file's entry
	} {
		v, err := f.CheckRcpt(ctx, c, txn, &postern.Rcpt{Addr: rcpt})
		require.NoError(t, err)
		assert.Equal(t, want, v.Action, rcpt)
	}

	_, txn = session("alice@example.com", "bob@example.com")
	txn.From = "sender@example.org"
	v, err := f.CheckData(ctx, c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Zero(t, sa.calls.Load(), "spam off and allowed: nobody needs the scorer")
	rep, _ := postern.GetValue(&txn.Values, ReportKey)
	assert.Equal(t, SpamFilterOff, rep.Rcpts[0].Decision)
	assert.Equal(t, SpamAllowed, rep.Rcpts[1].Decision)

	lk.down = true
	v, err = f.CheckRcpt(ctx, c, txn, &postern.Rcpt{Addr: "bob@example.com"})
	require.NoError(t, err)
	assert.Equal(t, "451 4.3.0 Recipient's spam policy unavailable, try again later", v.Reply.Error())
	v, err = f.CheckData(ctx, c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, "451 4.3.0 Recipient's spam policy unavailable, try again later", v.Reply.Error())

	open := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sa}}, Policy: pol, Lookup: lk, TagScore: 5,
		OnLookupError: postern.OnErrorAccept})
	v, err = open.CheckRcpt(ctx, c, txn, &postern.Rcpt{Addr: "bob@example.com"})
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action, "the file's deny entry applies while the directory is down")

	_, err = NewFilter(FilterConfig{Lookup: lk, OnLookupError: 9})
	assert.ErrorIs(t, err, ErrConfig)
}
