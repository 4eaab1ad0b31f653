package access

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join("testdata", name), []byte(got), *update)
}

func TestParseFormat(t *testing.T) {
	src := "\ufeff# comment\r\n" +
		"\r\n" +
		"   \t\n" +
		"  # indented comment\n" +
		"Example.COM\t\t OK  \r\n" +
		"To:User@Example.NET    ERROR:550 Go   away  \n" +
		"   late.example REJECT\n" +
		"last.example DISCARD" // no final newline
	m, warns := parse(t, src)
	require.Equal(t, 3, m.Len())
	es := m.Entries()
	assert.Equal(t, Entry{Key: "Example.COM", Action: ActionOK, File: "access", Line: 5, Raw: "OK"}, es[0])
	assert.Equal(t, "To", es[1].Tag)
	assert.Equal(t, "User@Example.NET", es[1].Key, "the key is kept as written for messages")
	assert.Equal(t, "ERROR:550 Go   away", es[1].Raw)
	assert.Equal(t, "550 Go   away", es[1].Reply.Error())
	assert.Equal(t, 8, es[2].Line)
	assert.Equal(t, []string{"access:7: line starts with white space and is ignored (makemap skips it too)"}, warnMsgs(warns))

	e, ok := m.LookupAddr("to", "user@EXAMPLE.net")
	require.True(t, ok)
	assert.Equal(t, 6, e.Line)
	assert.Equal(t, "To:User@Example.NET ERROR:550 Go   away (access:6)", e.String())
}

func TestParseActions(t *testing.T) {
	for _, tc := range []struct {
		value  string
		action Action
		reply  string
		reason string
	}{
		{"OK", ActionOK, "", ""},
		{"ok", ActionOK, "", ""},
		{"Relay", ActionRelay, "", ""},
		{"REJECT", ActionReject, "", ""},
		{"DISCARD", ActionDiscard, "", ""},
		{"SKIP", ActionSkip, "", ""},
		{"ERROR:550 Bogus host", ActionError, "550 Bogus host", ""},
		{`ERROR:"550 Bogus host"`, ActionError, "550 Bogus host", ""},
		{`ERROR:550 "We don't accept mail from spammers"`, ActionError, "550 We don't accept mail from spammers", ""},
		{"ERROR:5.7.1:551 Relay denied", ActionError, "551 5.7.1 Relay denied", ""},
		{`ERROR:5.7.1:"550 Relay denied"`, ActionError, "550 5.7.1 Relay denied", ""},
		{"ERROR:4.2.2:450 mailbox full", ActionError, "450 4.2.2 mailbox full", ""},
		{"ERROR:550 5.7.1 text with code", ActionError, "550 5.7.1 text with code", ""},
		{"ERROR:450 5.7.1 class differs, kept as text", ActionError, "450 5.7.1 class differs, kept as text", ""},
		{"error:550", ActionError, "550", ""},
		{"550 legacy form", ActionError, "550 legacy form", ""},
		{`"550 quoted legacy form"`, ActionError, "550 quoted legacy form", ""},
		{"421 go away", ActionError, "421 go away", ""},
		{"QUARANTINE:suspicious sender", ActionQuarantine, "", "suspicious sender"},
		{`quarantine:"held for review"`, ActionQuarantine, "", "held for review"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			m := mustMap(t, "example.com "+tc.value+"\n")
			e, ok := m.Exact("", "example.com")
			require.True(t, ok)
			assert.Equal(t, tc.action, e.Action)
			if tc.reply == "" {
				assert.True(t, e.Reply.IsZero())
			} else {
				assert.Equal(t, tc.reply, e.Reply.Error())
			}
			assert.Equal(t, tc.reason, e.Reason)
			assert.Equal(t, tc.value, e.Raw)
		})
	}
}

func TestParseNumbers(t *testing.T) {
	m, warns := parse(t, `GreetPause:mail.example.com 5000
GreetPause: 10000
ClientRate:10.1.2.3 4
ClientRate:127.0.0.1 0
ClientRate: 10
ClientConn:10.1.2.3 2
ClientConn: 25
`)
	assert.Empty(t, warns)
	d, ok := m.GreetPause(ip("192.0.2.1"), "mail.example.com")
	require.True(t, ok)
	assert.Equal(t, "5s", d.String(), "GreetPause: values are milliseconds")
	d, ok = m.GreetPause(ip("192.0.2.1"), "other.example")
	require.True(t, ok)
	assert.Equal(t, "10s", d.String(), "the tag alone is the default")

	n, ok := m.ClientRate(ip("10.1.2.3"))
	assert.Equal(t, 4, n)
	assert.True(t, ok)
	n, ok = m.ClientRate(ip("127.0.0.1"))
	assert.Equal(t, 0, n, "0 means unlimited")
	assert.True(t, ok)
	n, _ = m.ClientRate(ip("198.51.100.1"))
	assert.Equal(t, 10, n)
	n, _ = m.ClientConn(ip("10.1.2.3"))
	assert.Equal(t, 2, n)
	n, _ = m.ClientConn(ip("2001:db8::1"))
	assert.Equal(t, 25, n)
}

func TestParseErrorsGolden(t *testing.T) {
	f, err := os.Open("testdata/errors.access")
	require.NoError(t, err)
	defer f.Close()
	m, _, err := Parse(f, "errors.access")
	require.Error(t, err)
	assert.Nil(t, m)
	assert.ErrorIs(t, err, ErrSyntax)
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "errors.access", pe.File)
	assert.Equal(t, 3, pe.Line)

	// One error per wrong line, each naming file and line.
	lines := strings.Split(err.Error(), "\n")
	assert.Len(t, lines, 25)
	for _, l := range lines {
		assert.True(t, strings.HasPrefix(l, "errors.access:"), l)
	}
	golden(t, "errors.golden", err.Error()+"\n")
}

func TestParseWarningsGolden(t *testing.T) {
	f, err := os.Open("testdata/warnings.access")
	require.NoError(t, err)
	defer f.Close()
	m, warns, err := Parse(f, "warnings.access")
	require.NoError(t, err, "warnings never stop a load")
	golden(t, "warnings.golden", strings.Join(warnMsgs(warns), "\n")+"\n")

	// The duplicates did not replace the first entries.
	e, ok := m.Exact("", "example.com")
	require.True(t, ok)
	assert.Equal(t, ActionOK, e.Action)
	e, ok = m.LookupClient("Connect", ip("192.168.3.9"), "")
	require.True(t, ok)
	assert.Equal(t, ActionOK, e.Action)
	// Trailing dot taken away.
	e, ok = m.LookupAddr("From", "a@example.org")
	require.True(t, ok)
	assert.Equal(t, "example.org.", e.Key)
}

func TestParseSingleError(t *testing.T) {
	_, _, err := Parse(strings.NewReader("ok.example OK\nbad.example NOPE\n"), "access")
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, &ParseError{File: "access", Line: 2, Msg: `bad.example: unknown action "NOPE" (want OK, RELAY, REJECT, DISCARD, SKIP, ERROR:..., QUARANTINE:... or a 4xx/5xx reply)`}, pe)
	assert.Equal(t, `access:2: bad.example: unknown action "NOPE" (want OK, RELAY, REJECT, DISCARD, SKIP, ERROR:..., QUARANTINE:... or a 4xx/5xx reply)`, err.Error())
	assert.True(t, errors.Is(err, ErrSyntax))
}

func TestParseTooManyErrors(t *testing.T) {
	src := strings.Repeat("x.example NOPE\n", 500)
	_, _, err := Parse(strings.NewReader(src), "access")
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	assert.Len(t, lines, maxErrors+1)
	assert.Equal(t, "access:100: too many errors, stopped", lines[len(lines)-1])
}

func TestParseLongLine(t *testing.T) {
	src := "a.example OK\nb.example ERROR:550 " + strings.Repeat("x", maxLine) + "\n"
	_, _, err := Parse(strings.NewReader(src), "access")
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 2, pe.Line)
}

func TestParseDuplicates(t *testing.T) {
	m, warns := parse(t, "Connect:10.1 OK\nconnect:10.1.0.0/16 REJECT\nTo:a@b.example OK\nTO:A@B.EXAMPLE REJECT\n")
	assert.Equal(t, []string{
		"access:2: duplicate key Connect:10.1.0.0/16: the entry at access:1 wins, this one is ignored (as with makemap)",
		"access:4: duplicate key To:A@B.EXAMPLE: the entry at access:3 wins, this one is ignored (as with makemap)",
	}, warnMsgs(warns))
	assert.Equal(t, 2, m.Len())
	e, _ := m.LookupClient("Connect", ip("10.1.5.5"), "")
	assert.Equal(t, ActionOK, e.Action)
}

func TestParseUnknownTags(t *testing.T) {
	m, warns := parse(t, "Spam:abuse@ FRIEND\nSrv_Features: V\nTLS_Clt:laptop.example.com PERM+VERIFY:112\nQGRP:example.com 12\nCompat:a<@>b DISCARD\n")
	assert.Equal(t, []string{
		"access:1: tag Spam: not used by postern (entry kept)",
		"access:2: tag Srv_Features: not used by postern (entry kept)",
		"access:3: tag TLS_Clt: not used by postern (entry kept)",
		"access:4: tag QGRP: not used by postern (entry kept)",
		"access:5: tag Compat: not used by postern (entry kept)",
	}, warnMsgs(warns))
	assert.Equal(t, 5, m.Len())
	e, ok := m.Exact("spam", "ABUSE@")
	require.True(t, ok)
	assert.Equal(t, Entry{Tag: "Spam", Key: "abuse@", File: "access", Line: 1, Raw: "FRIEND"}, e)
	e, ok = m.Exact("QGRP:", "example.com")
	require.True(t, ok)
	assert.Equal(t, ActionValue, e.Action)
	assert.Equal(t, int64(12), e.Number)
	e, ok = m.Exact("Compat", "a<@>b")
	require.True(t, ok)
	assert.Equal(t, ActionDiscard, e.Action)
	// Other tags are looked up like sendmail's srv_features: the tag is
	// required and the tag alone is the default.
	e, ok = m.LookupClient("Srv_Features", ip("192.0.2.1"), "host.example")
	require.True(t, ok)
	assert.Equal(t, "V", e.Raw)
	// They never leak into interpreted lookups.
	_, ok = m.LookupAddr("To", "abuse@example.com")
	assert.False(t, ok)
}

func TestParseIPv6Keys(t *testing.T) {
	m, warns := parse(t, `Connect:IPv6:2002:c0a8:02c7 RELAY
Connect:IPv6:2002:c0a8:51d2::23f4 REJECT
Connect:IPv6:2001:0db8:0000:0000:0000:0000:0000:0001 OK
Connect:IPv6:2001:db8:aaaa::/48 DISCARD
Connect:IPv6:::ffff:192.0.2.9 ERROR:550 mapped
`)
	assert.Empty(t, warns)
	for _, tc := range []struct {
		ip   string
		want Action
	}{
		{"2002:c0a8:2c7::1", ActionRelay},           // /48 from three groups, leading zero ignored
		{"2002:c0a8:2c7:ffff:1:2:3:4", ActionRelay}, // anywhere in the /48
		{"2002:c0a8:51d2::23f4", ActionReject},
		{"2002:c0a8:51d2:0:0:0:0:23f4", ActionReject},
		{"2001:db8::1", ActionOK}, // uncompressed key, compressed client
		{"2001:db8:aaaa:1::5", ActionDiscard},
		{"192.0.2.9", ActionError},        // IPv4-mapped key serves the IPv4 client
		{"::ffff:192.0.2.9", ActionError}, // and the mapped client
		{"2002:c0a8:2c8::1", ActionNone},
	} {
		e, _ := m.LookupClient("Connect", ip(tc.ip), "")
		assert.Equal(t, tc.want, e.Action, tc.ip)
	}
}

func TestLoad(t *testing.T) {
	m, warns, err := Load("testdata/sendmail-site.access")
	require.NoError(t, err)
	assert.Len(t, warns, 1)
	assert.Equal(t, "testdata/sendmail-site.access", m.File())
	e, ok := m.LookupAddr("From", "spammer@ube.com")
	require.True(t, ok)
	assert.Equal(t, "testdata/sendmail-site.access:8", e.Source())

	_, _, err = Load("testdata/no-such-file")
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.True(t, strings.HasPrefix(err.Error(), "access: "), err.Error())
}

func TestReplyOfError(t *testing.T) {
	m := mustMap(t, "a.example ERROR:4.7.1:421 slow down\n")
	e, _ := m.Exact("", "a.example")
	assert.Equal(t, postern.NewReply(421, postern.ESC(4, 7, 1), "slow down"), e.Reply)
}
