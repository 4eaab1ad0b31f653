package milter

import (
	"testing"

	"github.com/d--j/go-milter"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct{ in, network, addr string }{
		{"inet:127.0.0.1:8891", "tcp", "127.0.0.1:8891"},
		{"inet:8891@127.0.0.1", "tcp", "127.0.0.1:8891"},
		{"inet6:8891@::1", "tcp", "[::1]:8891"},
		{"inet:[::1]:8891", "tcp", "[::1]:8891"},
		{"inet:localhost:8891", "tcp", "localhost:8891"},
		{"unix:/run/postern.sock", "unix", "/run/postern.sock"},
		{"local:/run/postern.sock", "unix", "/run/postern.sock"},
		{"/run/postern.sock", "unix", "/run/postern.sock"},
		{"127.0.0.1:8891", "tcp", "127.0.0.1:8891"},
	} {
		n, a, err := ParseAddress(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.network+" "+tc.addr, n+" "+a, tc.in)
	}
	for _, bad := range []string{"", "inet:", "inet:127.0.0.1", "unix:", "smtp:x:1", "nonsense"} {
		_, _, err := ParseAddress(bad)
		assert.ErrorIs(t, err, ErrAddress, bad)
	}
}

type macros map[string]string

func (m macros) Get(n string) string           { return m[n] }
func (m macros) GetEx(n string) (string, bool) { v, ok := m[n]; return v, ok }

var _ milter.Macros = macros{}

// What each MTA says of the client's name, and what Postern believes.
func TestClientHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		host string
		m    macros
		want postern.ClientHost
	}{
		{"postfix verified", "mx.example.net", macros{"{client_ptr}": "mx.example.net", "_": "mx.example.net [192.0.2.7]"},
			postern.ClientHost{Resolve: postern.ResolveOK, Name: "mx.example.net", PTR: "mx.example.net"}},
		{"postfix forged", "unknown", macros{"{client_ptr}": "fake.example.net"},
			postern.ClientHost{Resolve: postern.ResolveForged, PTR: "fake.example.net"}},
		{"postfix no PTR", "unknown", macros{"{client_ptr}": "unknown"},
			postern.ClientHost{Resolve: postern.ResolveFail}},
		{"postfix without client_ptr", "unknown", macros{}, postern.ClientHost{}},
		{"sendmail forged", "fake.example.net", macros{"_": "fake.example.net [192.0.2.7] (may be forged)"},
			postern.ClientHost{Resolve: postern.ResolveForged, PTR: "fake.example.net"}},
		{"sendmail no name", "[192.0.2.7]", macros{"_": "[192.0.2.7]"}, postern.ClientHost{}},
		{"sendmail client_resolve OK", "MX.Example.NET.", macros{"{client_resolve}": "OK"},
			postern.ClientHost{Resolve: postern.ResolveOK, Name: "mx.example.net", PTR: "mx.example.net"}},
		{"sendmail client_resolve TEMP", "[192.0.2.7]", macros{"{client_resolve}": "TEMP"},
			postern.ClientHost{Resolve: postern.ResolveTemp}},
		{"odd name", "bad name;drop", macros{}, postern.ClientHost{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, clientHost(tc.host, tc.m))
		})
	}
}

// Header values come back as fields: folds as CRLF, the eaten space
// restored, a line break that would end the field made a space.
func TestHeaderLine(t *testing.T) {
	assert.Equal(t, "Subject: hello\r\n", headerLine("Subject", "hello", false))
	assert.Equal(t, "Subject:  two\r\n", headerLine("Subject", "  two", true))
	assert.Equal(t, "Subject: a\r\n\tb\r\n", headerLine("Subject", "a\n\tb", false))
	assert.Equal(t, "Subject: a\r\n b\r\n", headerLine("Subject", "a\r\n b", false))
	assert.Equal(t, "X: a Bcc: evil@example.net\r\n", headerLine("X", "a\nBcc: evil@example.net", false))
	assert.Equal(t, "X: a\r\n", headerLine("X", "a\n\n", false), "no blank line: the header does not end early")
}

// Edits become changes in place, removals (last first) and insertions.
func TestHeaderOps(t *testing.T) {
	changes, inserts := headerOps([]postern.HeaderEdit{
		{Kind: postern.EditDelete, Name: "X-Spam-Flag", Index: 0},
		{Kind: postern.EditDelete, Name: "X-Spam-Flag", Index: 1},
		{Kind: postern.EditAdd, Name: "Authentication-Results", Value: "mx; spf=pass"},
		{Kind: postern.EditDelete, Name: "Subject", Index: 0},
		{Kind: postern.EditAdd, Name: "Subject", Value: "[SPAM] hi"},
		{Kind: postern.EditAdd, Name: "X-Spam-Flag", Value: "YES"},
	})
	assert.Equal(t, []headerOp{
		{index: 2, name: "X-Spam-Flag"},
		{index: 1, name: "X-Spam-Flag", value: "YES"},
		{index: 1, name: "Subject", value: "[SPAM] hi"},
	}, changes)
	assert.Equal(t, []headerOp{{name: "Authentication-Results", value: "mx; spf=pass"}}, inserts)
}

func TestMailParams(t *testing.T) {
	p := mailParams("SIZE=1234 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B1 AUTH=<a+2Bb@Example.ORG> FOO=bar SIZE=x")
	require.NotNil(t, p.Auth)
	assert.Equal(t, "a+b@example.org", *p.Auth)
	p.Auth = nil
	assert.Equal(t, postern.MailParams{Size: 1234, Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "QQ+1"}, p)
	var r postern.Rcpt
	rcptParams(&r, "NOTIFY=success,delay ORCPT=rfc822;bob+40example.test")
	assert.Equal(t, []string{"SUCCESS", "DELAY"}, r.Notify)
	assert.Equal(t, "bob@example.test", r.ORcpt)
}

// With SMFIP_HDR_LEADSPC the MTA writes "name:" and the value as sent
// (Postfix wrote "Subject:[SPAM] offer" before the space was sent), so
// the server sends the space; without it the MTA adds one itself.
func TestWireValue(t *testing.T) {
	for _, tc := range []struct {
		v    string
		lead bool
		want string
	}{
		{"YES", true, " YES"},
		{"YES", false, "YES"},
		{"", true, ""}, // a removal
		{" already", true, " already"},
		{"\tfolded", true, "\tfolded"},
		{"a\r\n\tb", true, " a\r\n\tb"},
	} {
		assert.Equal(t, tc.want, wireValue(tc.v, tc.lead), "%q lead=%v", tc.v, tc.lead)
	}
}
