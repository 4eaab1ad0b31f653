package auth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

const bindingFile = `# who may send as whom
alice: alice@example.com, Alice.Smith@Example.com
bob@example.org: @example.org @lists.example.org
admin: *
alice: sales@example.com
`

func TestSenderBindings(t *testing.T) {
	b, err := ParseSenderBindings(strings.NewReader(bindingFile), "senders")
	require.NoError(t, err)
	assert.Equal(t, 3, b.Len())
	tests := []struct {
		user, addr string
		want       bool
	}{
		{"alice", "alice@example.com", true},
		{"alice", "ALICE@EXAMPLE.COM.", true},
		{"alice", "alice.smith@example.com", true},
		{"alice", "sales@example.com", true},
		{"alice", "bob@example.com", false},
		{"alice", "alice@example.org", false},
		{"alice", "alice", false},
		{"alice", "", false},
		{"bob@example.org", "anyone@example.org", true},
		{"bob@example.org", "x@LISTS.example.org", true},
		{"bob@example.org", "x@sub.example.org", false},
		{"bob@example.org", "x@example.com", false},
		{"admin", "whoever@wherever.example", true},
		{"Alice", "alice@example.com", false},
		{"mallory", "alice@example.com", false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, b.Allowed(tc.user, tc.addr), "%s as %s", tc.user, tc.addr)
	}
	var none *SenderBindings
	assert.False(t, none.Allowed("alice", "alice@example.com"))
}

func TestSenderBindingErrors(t *testing.T) {
	for _, tc := range []struct {
		content string
		line    int
		msg     string
	}{
		{"alice alice@example.com\n", 1, "want"},
		{"\n: a@example.com\n", 2, "empty user"},
		{"al ice: a@example.com\n", 1, "white space"},
		{"alice:\n", 1, "no addresses"},
		{"alice: example.com\n", 1, "not an address"},
		{"alice: a@\n", 1, "not an address"},
		{"alice: @\n", 1, "not an address"},
		{"alice: a@b@\n", 1, "not an address"},
		{"alice: a@x..example\n", 1, "not an address"},
		{"ok: a@example.com\nalice: \x01@example.com\n", 2, "control"},
		{"alice: " + strings.Repeat("a", 70000) + "\n", 1, "longer than"},
	} {
		_, err := ParseSenderBindings(strings.NewReader(tc.content), "senders")
		require.ErrorIs(t, err, ErrSenderFile, "%q", tc.content)
		assert.Contains(t, err.Error(), fmt.Sprintf("senders:%d: ", tc.line), "%q", tc.content)
		assert.Contains(t, err.Error(), tc.msg)
	}
}

func TestSenderFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "senders")
	writeFile(t, path, bindingFile)
	sm, err := NewSenderMap(SenderMapConfig{Path: path, AllowOwnAddress: true})
	require.NoError(t, err)
	lb := &logBuf{newLogBuffer()}
	f, err := NewSenderFilter(SenderFilterConfig{Map: sm, Logger: lb.Logger()})
	require.NoError(t, err)
	assert.Equal(t, "sender-login", f.Name())

	authed := func(user string) *postern.Conn {
		c := newConn("192.0.2.1")
		c.AuthUser = user
		return c
	}
	tests := []struct {
		conn   *postern.Conn
		from   string
		action postern.Action
	}{
		{authed("alice"), "alice@example.com", postern.Continue},
		{authed("alice"), "bob@example.org", postern.Reject},
		{authed("alice"), "", postern.Reject},
		{authed("carol@example.net"), "carol@example.net", postern.Continue}, // her own address
		{authed("carol@example.net"), "dave@example.net", postern.Reject},
		{newConn("192.0.2.1"), "bob@example.org", postern.Continue}, // not authenticated: not our business
	}
	for _, tc := range tests {
		v, err := f.CheckMail(bg, tc.conn, &postern.Txn{From: tc.from})
		require.NoError(t, err)
		assert.Equal(t, tc.action, v.Action, "%s as <%s>", tc.conn.AuthUser, tc.from)
		if tc.action == postern.Reject {
			assert.Equal(t, "553 5.7.1 Sender address rejected: not owned by user", v.ReplyAt(postern.StageMail).Error())
		}
	}
	recs := lb.Records(t, "sender binding refused")
	require.Len(t, recs, 3)
	assert.Equal(t, "alice", recs[0]["user"])
	assert.EqualValues(t, 553, recs[0]["code"])

	// The From and Sender fields are checked too, by default; the reply
	// names the field.
	for _, tc := range []struct {
		header string
		reply  string // "" for accepted
	}{
		{"From: Alice <alice@example.com>\r\n", ""},
		{"From: alice@example.com, Sales <sales@example.com>\r\n", ""},
		{"From: Sales: alice@example.com, sales@example.com;\r\n", ""},
		{"From: =?utf-8?q?The_Boss?= <ALICE@EXAMPLE.COM>\r\nSender: sales@example.com\r\n", ""},
		{"From: The Boss <boss@example.com>\r\n", "553 5.7.1 From header rejected: <boss@example.com> not owned by user"},
		{"From: alice@example.com, boss@example.com\r\n", "553 5.7.1 From header rejected: <boss@example.com> not owned by user"},
		{"From: Team: alice@example.com, boss@example.com;\r\n", "553 5.7.1 From header rejected: <boss@example.com> not owned by user"},
		{"From: alice@example.com\r\nSender: boss@example.com\r\n", "553 5.7.1 Sender header rejected: <boss@example.com> not owned by user"},
		{"From: alice@example.com\r\nFrom: boss@example.com\r\n", "553 5.7.1 From header rejected: 2 fields, RFC 5322 allows one"},
		{"From: alice@example.com\r\nSender: alice@example.com\r\nsender: alice@example.com\r\n", "553 5.7.1 Sender header rejected: 2 fields, RFC 5322 allows one"},
		{"From: alice@example.com\r\nSender: alice@example.com, sales@example.com\r\n", "553 5.7.1 Sender header rejected: names more than one mailbox"},
		{"From: undisclosed-senders:;\r\n", "553 5.7.1 From header rejected: names no mailbox"},
		{"From: \"alice@example.com\"@evil.example\r\n", "553 5.7.1 From header rejected: <alice@example.com@evil.example> not owned by user"},
		{"From: Alice <@route.example:alice@example.com>\r\n", "553 5.7.1 From header rejected: cannot be parsed: mail: invalid string"},
		{"From: broken <<\r\n", "553 5.7.1 From header rejected: cannot be parsed: mail: invalid string"},
		{"From: alice@example.com\x1b[2J\r\n", "553 5.7.1 From header rejected: control character 0x1b"},
		{"Subject: no from\r\n", "553 5.7.1 Message has no From header"},
	} {
		m := newMessage(t, tc.header+"\r\nbody\r\n")
		v, err := f.CheckData(bg, authed("alice"), &postern.Txn{}, m)
		require.NoError(t, err)
		if tc.reply == "" {
			assert.False(t, v.Final(), tc.header)
			continue
		}
		assert.Equal(t, postern.Reject, v.Action, tc.header)
		assert.Equal(t, tc.reply, v.ReplyAt(postern.StageData).Error(), tc.header)
	}
	off, err := NewSenderFilter(SenderFilterConfig{Map: sm, IgnoreHeader: true})
	require.NoError(t, err)
	v, err := off.CheckData(bg, authed("alice"), &postern.Txn{}, newMessage(t, "From: boss@example.com\r\n\r\n"))
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v, "IgnoreHeader binds MAIL FROM only")
	// Unauthenticated mail is not looked at.
	v, err = f.CheckData(bg, newConn("192.0.2.1"), &postern.Txn{}, newMessage(t, "From: x@y.example\r\n\r\n"))
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)

	// Null sender when allowed; reload picks up new lines.
	f2, err := NewSenderFilter(SenderFilterConfig{Map: sm, AllowNullSender: true})
	require.NoError(t, err)
	v, err = f2.CheckMail(bg, authed("alice"), &postern.Txn{})
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	writeFile(t, path, "alice: @example.net\n")
	require.NoError(t, sm.Reload())
	assert.True(t, sm.Allowed("alice", "x@example.net"))
	assert.False(t, sm.Allowed("alice", "alice@example.com"))
	writeFile(t, path, "alice example.net\n")
	err = sm.Reload()
	require.ErrorIs(t, err, ErrSenderFile)
	assert.Contains(t, err.Error(), path+":1:")
	assert.True(t, sm.Allowed("alice", "x@example.net"), "old bindings kept")

	_, err = NewSenderFilter(SenderFilterConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewSenderMap(SenderMapConfig{})
	assert.ErrorIs(t, err, ErrConfig)
	_, err = NewSenderMap(SenderMapConfig{Path: path + ".missing"})
	assert.ErrorIs(t, err, ErrSenderFile)
}

// dirSenders is a SenderDirectory from a map; down makes it fail.
type dirSenders struct {
	owns map[string]string // address → user
	down bool
}

func (d *dirSenders) SenderAllowed(_ context.Context, user, addr string) (bool, error) {
	if d.down {
		return false, errors.New("directory: unavailable")
	}
	return d.owns[strings.ToLower(addr)] == user, nil
}

func TestSenderFilterDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "senders")
	writeFile(t, path, "alice: sales@example.com\n")
	sm, err := NewSenderMap(SenderMapConfig{Path: path})
	require.NoError(t, err)
	dir := &dirSenders{owns: map[string]string{"alice@example.com": "alice", "bob@example.com": "bob"}}
	f, err := NewSenderFilter(SenderFilterConfig{Map: sm, Directory: dir})
	require.NoError(t, err)
	c := newConn("192.0.2.1")
	c.AuthUser = "alice"
	for from, want := range map[string]postern.Action{
		"alice@example.com": postern.Continue, // the directory's
		"sales@example.com": postern.Continue, // the file's
		"bob@example.com":   postern.Reject,
	} {
		v, err := f.CheckMail(bg, c, &postern.Txn{From: from})
		require.NoError(t, err)
		assert.Equal(t, want, v.Action, from)
	}
	v, err := f.CheckData(bg, c, &postern.Txn{}, newMessage(t, "From: alice@example.com\r\nSender: sales@example.com\r\n\r\nx\r\n"))
	require.NoError(t, err)
	assert.False(t, v.Final())

	// Down: 451 4.3.0 at MAIL and at DATA, not a refusal; the file still
	// answers for what it has.
	dir.down = true
	v, err = f.CheckMail(bg, c, &postern.Txn{From: "alice@example.com"})
	require.NoError(t, err)
	assert.Equal(t, "451 4.3.0 Sender address binding unavailable, try again later", v.ReplyAt(postern.StageMail).Error())
	v, err = f.CheckMail(bg, c, &postern.Txn{From: "sales@example.com"})
	require.NoError(t, err)
	assert.Equal(t, postern.Pass, v)
	v, err = f.CheckData(bg, c, &postern.Txn{}, newMessage(t, "From: alice@example.com\r\n\r\nx\r\n"))
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
	open, err := NewSenderFilter(SenderFilterConfig{Directory: dir, OnDirectoryError: postern.OnErrorAccept})
	require.NoError(t, err)
	v, err = open.CheckData(bg, c, &postern.Txn{}, newMessage(t, "From: alice@example.com\r\n\r\nx\r\n"))
	require.NoError(t, err)
	assert.False(t, v.Final())
	_, err = NewSenderFilter(SenderFilterConfig{})
	assert.ErrorIs(t, err, ErrConfig)
}
