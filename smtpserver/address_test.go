package smtpserver

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// recorder is a policy that keeps the sender and recipients it is shown.
type recorder struct {
	mu    sync.Mutex
	from  []string
	rcpts []string
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) CheckMail(_ context.Context, _ *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	r.mu.Lock()
	r.from = append(r.from, t.From)
	r.mu.Unlock()
	return postern.Pass, nil
}

func (r *recorder) CheckRcpt(_ context.Context, _ *postern.Conn, _ *postern.Txn, rc *postern.Rcpt) (postern.Verdict, error) {
	r.mu.Lock()
	r.rcpts = append(r.rcpts, rc.Addr)
	r.mu.Unlock()
	return postern.Pass, nil
}

func (r *recorder) last() (from, rcpt string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.from) > 0 {
		from = r.from[len(r.from)-1]
	}
	if len(r.rcpts) > 0 {
		rcpt = r.rcpts[len(r.rcpts)-1]
	}
	return from, rcpt
}

// Every form of a mailbox reaches the policy in one canonical form, and
// what cannot be carried to the next hop as the same mailbox is refused.
func TestEnvelopeAddresses(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Policy: rec})
	tests := []struct {
		path, params, want, canonical string
	}{
		{"ceo@example.test", "", "250", "ceo@example.test"},
		{`"ceo"@example.test`, "", "250", "ceo@example.test"},
		{`"c\eo"@Example.TEST.`, "", "250", "ceo@example.test"},
		{`"ceo(x)"@example.test`, "", "250", "ceo(x)@example.test"},
		{`"a b"@example.test`, "", "250", "a b@example.test"},
		{`"a\"b"@example.test`, "", "250", `a"b@example.test`},
		{`"a@b"@example.test`, "", "250", "a@b@example.test"},
		{"@relay.example:ceo@example.test", "", "250", "ceo@example.test"},
		{"x@[IPv6:2001:DB8::1]", "", "250", "x@[IPv6:2001:db8::1]"},
		{"山田@例え.jp", " SMTPUTF8", "250", "山田@例え.jp"},
		{"山田@example.test", "", "553 5.6.7", ""},
		{"ceo@例え.jp", "", "553 5.6.7", ""},
		{"ceo@example.test(x)", "", "553 5.1.", ""},
		{`ceo@example.test"`, "", "553 5.1.", ""},
		{"ceo@example..test", "", "553 5.1.", ""},
		{"ceo@[300.0.0.1]", "", "553 5.1.", ""},
		{"ceo@[tag:general]", "", "553 5.1.", ""},
		{`"c\` + "\x01" + `eo"@example.test`, "", "553 5.1.", ""},
		{"c\x7feo@example.test", "", "553 5.1.", ""},
		{"c\xffeo@example.test", " SMTPUTF8", "553 5.1.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c := dial(t, addr)
			c.greet()
			r := c.cmd("MAIL FROM:<" + tt.path + ">" + tt.params)
			expect(t, r, tt.want)
			if tt.want == "250" {
				from, _ := rec.last()
				assert.Equal(t, tt.canonical, from)
			} else {
				assert.Contains(t, []postern.EnhancedCode{postern.ESC(5, 1, 7), postern.ESC(5, 6, 7)}, r.Enhanced)
			}
			expect(t, c.cmd("MAIL FROM:<>"+tt.params), "250")
			r = c.cmd("RCPT TO:<" + tt.path + ">")
			expect(t, r, tt.want)
			if tt.want == "250" {
				_, rcpt := rec.last()
				assert.Equal(t, tt.canonical, rcpt)
			} else {
				assert.Contains(t, []postern.EnhancedCode{postern.ESC(5, 1, 3), postern.ESC(5, 6, 7)}, r.Enhanced)
			}
		})
	}
}

// RefuseQuotedLocalParts: a local part that is not a Dot-string is refused
// 553; one that was quoted needlessly is the plain mailbox and passes.
func TestRefuseQuotedLocalParts(t *testing.T) {
	rec := &recorder{}
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Policy: rec, RefuseQuotedLocalParts: true})
	c := dial(t, addr)
	c.greet()
	r := c.cmd(`MAIL FROM:<"a b"@example.test>`)
	expect(t, r, "553 5.1.7")
	assert.Contains(t, r.Text(), "quoted local parts are not accepted")
	expect(t, c.cmd(`MAIL FROM:<"alice"@example.test>`), "250")
	r = c.cmd(`RCPT TO:<"ceo(x)"@example.test>`)
	expect(t, r, "553 5.1.3")
	assert.Contains(t, r.Text(), "quoted local parts are not accepted")
	expect(t, c.cmd(`RCPT TO:<".ceo"@example.test>`), "553 5.1.3")
	expect(t, c.cmd(`RCPT TO:<"ceo"@example.test>`), "250")
	expect(t, c.cmd(`RCPT TO:<Postmaster>`), "250")
	from, rcpt := rec.last()
	assert.Equal(t, "alice@example.test", from)
	assert.Equal(t, "Postmaster", rcpt)
	assert.Equal(t, []string{"ceo@example.test", "Postmaster"}, rec.rcpts)
}

// The AUTH= mailbox of MAIL FROM (RFC 4954 §5) is kept in canonical form;
// one that does not parse becomes <>.
func TestAuthParamCanonical(t *testing.T) {
	var got []*string
	pol := postern.MailFunc("auth", func(_ context.Context, _ *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
		got = append(got, t.Mail.Auth)
		return postern.Pass, nil
	})
	_, addr := startServer(t, Config{Handoff: &memHandoff{}, Policy: pol})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd(`MAIL FROM:<a@x.test> AUTH="a+20b"@X.TEST`), "250")
	expect(t, c.cmd("RSET"), "250")
	expect(t, c.cmd(`MAIL FROM:<a@x.test> AUTH=a@x.test(comment)`), "250")
	expect(t, c.cmd("RSET"), "250")
	expect(t, c.cmd(`MAIL FROM:<a@x.test>`), "250")
	require.Len(t, got, 3)
	require.NotNil(t, got[0])
	assert.Equal(t, "a b@x.test", *got[0])
	require.NotNil(t, got[1])
	assert.Equal(t, "", *got[1])
	assert.Nil(t, got[2])
}

// The Received field names a sole recipient in wire form (RFC 5321 §4.4
// takes a Mailbox), so a quoted ';' cannot end the clause early.
func TestReceivedForQuoted(t *testing.T) {
	h := &memHandoff{}
	_, addr := startServer(t, Config{Handoff: h})
	c := dial(t, addr)
	c.greet()
	expect(t, c.cmd("MAIL FROM:<a@example.org>"), "250")
	expect(t, c.cmd(`RCPT TO:<"b; x"@example.net>`), "250")
	expect(t, c.cmd("DATA"), "354")
	expect(t, c.cmd("Subject: hi\r\n\r\nbody\r\n."), "250")
	msgs := h.all()
	require.Len(t, msgs, 1)
	assert.Equal(t, "b; x@example.net", msgs[0].txn.Rcpts[0].Addr)
	assert.Contains(t, string(msgs[0].data), "\tfor <\"b; x\"@example.net>; ")
}
