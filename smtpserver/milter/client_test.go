package milter

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/d--j/go-milter"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// goMilter serves a go-milter backend (a stand-in for an external milter
// in unit tests; the integration tests use real ones).
func goMilter(t *testing.T, actions milter.OptAction, m func() milter.Milter) string {
	t.Helper()
	srv := milter.NewServer(milter.WithMilter(m), milter.WithActions(actions))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "inet:" + l.Addr().String()
}

// editor is a milter that changes the message at its end.
type editor struct {
	milter.NoOpMilter
	eom func(m milter.Modifier) (*milter.Response, error)
}

func (e editor) RcptTo(string, string, milter.Modifier) (*milter.Response, error) {
	return milter.RespContinue, nil
}

func (e editor) EndOfMessage(m milter.Modifier) (*milter.Response, error) { return e.eom(m) }

// runTxn passes one message through a client: MAIL, RCPT per recipient,
// DATA.
func runTxn(t *testing.T, cl *Client, rcpts []string, raw string) (postern.Verdict, *postern.Txn, *postern.Message) {
	t.Helper()
	ctx := context.Background()
	c, tx := envelope()
	v, err := cl.CheckMail(ctx, c, tx)
	require.NoError(t, err)
	if v.Final() {
		return v, tx, nil
	}
	for _, a := range rcpts {
		r := &postern.Rcpt{Addr: a, Original: a}
		v, err := cl.CheckRcpt(ctx, c, tx, r)
		require.NoError(t, err)
		if !v.Final() {
			tx.Rcpts = append(tx.Rcpts, r)
		}
	}
	m := message(t, raw)
	v, err = cl.CheckData(ctx, c, tx, m)
	require.NoError(t, err)
	return v, tx, m
}

func render(t *testing.T, m *postern.Message) string {
	var b strings.Builder
	require.NoError(t, m.Render(&b))
	return b.String()
}

// The milter's modifications become Postern's edits and envelope
// changes.
func TestClientModifications(t *testing.T) {
	addr := goMilter(t, milter.AllClientSupportedActionMasks, func() milter.Milter {
		return editor{eom: func(m milter.Modifier) (*milter.Response, error) {
			for _, err := range []error{
				m.AddHeader("X-Virus-Scanned", "clean"),
				m.InsertHeader(0, "DKIM-Signature", "v=1; a=rsa-sha256;\n\tb=abc"),
				m.ChangeHeader(1, "Subject", "changed"),
				m.ChangeHeader(1, "To", ""),
				m.AddRecipient("<archive@example.test>", ""),
				m.DeleteRecipient("<carol@example.test>"),
				m.ChangeFrom("<bounce@example.net>", ""),
			} {
				if err != nil {
					return nil, err
				}
			}
			return milter.RespAccept, nil
		}}
	})
	cl, err := NewClient(ClientConfig{Address: addr})
	require.NoError(t, err)
	v, tx, m := runTxn(t, cl, []string{"bob@example.test", "carol@example.test"}, sample)
	require.Equal(t, postern.Continue, v.Action, v.Reason)
	out := render(t, m)
	assert.Contains(t, out, "X-Virus-Scanned: clean\r\n")
	assert.Contains(t, out, "DKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\n", "a fold keeps its CRLF")
	assert.Contains(t, out, "Subject: changed\r\n")
	assert.NotContains(t, out, "Subject: hello")
	assert.NotContains(t, out, "To:")
	var got []string
	for _, r := range tx.Rcpts {
		got = append(got, r.Addr)
	}
	assert.Equal(t, []string{"bob@example.test", "archive@example.test"}, got)
	assert.Equal(t, "bounce@example.net", tx.From)
}

// A milter that quarantines holds the message; one that replaces the
// body fails (Postern never rewrites a body); one that removes every
// recipient discards the message.
func TestClientVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name string
		eom  func(m milter.Modifier) (*milter.Response, error)
		want postern.Action
		text string
	}{
		{"quarantine", func(m milter.Modifier) (*milter.Response, error) {
			return milter.RespAccept, m.Quarantine("suspicious")
		}, postern.Quarantine, "suspicious"},
		{"replace body", func(m milter.Modifier) (*milter.Response, error) {
			return milter.RespAccept, m.ReplaceBody(strings.NewReader("new body\r\n"))
		}, postern.TempFail, "451 4.7.1 Service unavailable, try again later"},
		{"remove every recipient", func(m milter.Modifier) (*milter.Response, error) {
			return milter.RespAccept, m.DeleteRecipient("<bob@example.test>")
		}, postern.Discard, "every recipient removed"},
		{"reply code", func(milter.Modifier) (*milter.Response, error) {
			return milter.RejectWithCodeAndReason(554, "5.7.0 Virus found")
		}, postern.Reject, "554 5.7.0 Virus found"},
		{"tempfail", func(milter.Modifier) (*milter.Response, error) { return milter.RespTempFail, nil },
			postern.TempFail, "451 4.7.1 Service unavailable - try again later"},
		{"discard", func(milter.Modifier) (*milter.Response, error) { return milter.RespDiscard, nil },
			postern.Discard, "discard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := goMilter(t, milter.AllClientSupportedActionMasks, func() milter.Milter { return editor{eom: tc.eom} })
			cl, err := NewClient(ClientConfig{Address: addr})
			require.NoError(t, err)
			v, _, _ := runTxn(t, cl, []string{"bob@example.test"}, sample)
			assert.Equal(t, tc.want, v.Action, v.Reason)
			if v.Reply.IsZero() {
				assert.Contains(t, v.Reason, tc.text)
			} else {
				assert.Equal(t, tc.text, v.Reply.Error())
			}
		})
	}
}

// hangingMilter negotiates, then answers nothing more.
func hangingMilter(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 17)
				if _, err := c.Read(buf); err != nil {
					return
				}
				d := make([]byte, 12)
				d[3], d[11] = 6, 0
				_, _ = c.Write(pkt('O', string(d)))
				_, _ = c.Read(make([]byte, 1<<16))
				time.Sleep(time.Minute) // hangs
			}()
		}
	}()
	return "inet:" + l.Addr().String()
}

// A milter that is down or hangs is answered under OnError, within its
// timeout: tempfail by default, accept skips it for the transaction,
// reject refuses.
func TestClientFailurePolicy(t *testing.T) {
	down := freeAddr(t)
	for _, tc := range []struct {
		name   string
		addr   string
		policy postern.ErrorPolicy
		want   postern.Action
		reply  string
	}{
		{"down, default", down, postern.OnErrorDefault, postern.TempFail, "451 4.7.1 Service unavailable, try again later"},
		{"down, reject", down, postern.OnErrorReject, postern.Reject, "550 5.7.1 Service unavailable"},
		{"down, accept", down, postern.OnErrorAccept, postern.Continue, ""},
		{"hangs, default", hangingMilter(t), postern.OnErrorDefault, postern.TempFail, "451 4.7.1 Service unavailable, try again later"},
		{"hangs, accept", hangingMilter(t), postern.OnErrorAccept, postern.Continue, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := NewClient(ClientConfig{Address: tc.addr, OnError: tc.policy,
				ConnectTimeout: 2 * time.Second, CommandTimeout: 200 * time.Millisecond})
			require.NoError(t, err)
			ctx := context.Background()
			c, tx := envelope()
			v, err := cl.CheckMail(ctx, c, tx)
			require.NoError(t, err)
			assert.Equal(t, tc.want, v.Action, v.Reason)
			if tc.reply != "" {
				assert.Equal(t, tc.reply, v.Reply.Error())
				return
			}
			assert.Contains(t, v.Reason, "on error: accept")
			// Skipped for the rest of the transaction, without waiting again.
			r := &postern.Rcpt{Addr: "bob@example.test", Original: "bob@example.test"}
			v, err = cl.CheckRcpt(ctx, c, tx, r)
			require.NoError(t, err)
			assert.Equal(t, postern.Continue, v.Action)
			tx.Rcpts = append(tx.Rcpts, r)
			v, err = cl.CheckData(ctx, c, tx, message(t, sample))
			require.NoError(t, err)
			assert.Equal(t, postern.Continue, v.Action)
		})
	}
}

// The caller's deadline cuts a hanging milter short, whatever its own
// timeouts.
func TestClientContextDeadline(t *testing.T) {
	cl, err := NewClient(ClientConfig{Address: hangingMilter(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, tx := envelope()
	v, err := cl.CheckMail(ctx, c, tx)
	require.NoError(t, err)
	assert.Equal(t, postern.TempFail, v.Action)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := l.Addr().String()
	l.Close()
	return "inet:" + a
}
