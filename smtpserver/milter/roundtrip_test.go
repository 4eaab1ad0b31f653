package milter

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// startServer serves policy on a loopback port and returns its address
// in Postfix's form.
func startServer(t *testing.T, cfg Config) string {
	t.Helper()
	srv, err := New(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return "inet:" + l.Addr().String()
}

// envelope makes a connection and a transaction as smtpserver would.
func envelope() (*postern.Conn, *postern.Txn) {
	c := &postern.Conn{ID: "C1", HELO: "client.example.net"}
	c.Remote = netipMust("192.0.2.7:40000")
	return c, &postern.Txn{ID: "T1", From: "alice@example.net"}
}

const sample = "From: alice@example.net\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nbody line\r\n"

func message(t *testing.T, raw string) *postern.Message {
	t.Helper()
	m, err := postern.NewMessage(strings.NewReader(raw), int64(len(raw)), 0)
	require.NoError(t, err)
	return m
}

// Postern's Client against Postern's Server: the chain behind the server
// decides, and its verdicts and edits come back through the protocol as
// the client's verdicts and edits.
func TestRoundTrip(t *testing.T) {
	policy, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{
		{Filter: postern.MailFunc("no-spammer", func(_ context.Context, _ *postern.Conn, tx *postern.Txn) (postern.Verdict, error) {
			if tx.From == "spammer@example.net" {
				return postern.Rejected(550, postern.ESC(5, 7, 1), "Access denied", "spammer"), nil
			}
			return postern.Pass, nil
		})},
		{Filter: postern.RcptFunc("no-carol", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
			if r.Addr == "carol@example.test" {
				return postern.Rejected(550, postern.ESC(5, 1, 1), "User unknown", "carol"), nil
			}
			return postern.Pass, nil
		})},
		{Filter: postern.DataFunc("tag", func(_ context.Context, c *postern.Conn, tx *postern.Txn, m *postern.Message) (postern.Verdict, error) {
			body := new(strings.Builder)
			_ = m.Render(body)
			if strings.Contains(body.String(), "EICAR") {
				return postern.Rejected(554, postern.ESC(5, 7, 0), "Virus found: Eicar-Signature", "virus"), nil
			}
			if strings.Contains(body.String(), "hold me") {
				return postern.Quarantined("held for review"), nil
			}
			m.AddHeader("X-Checked", "by postern helo="+c.HELO)
			m.DeleteHeader("Subject", 0)
			m.AddHeader("Subject", "[SPAM] hello")
			return postern.Pass, nil
		})},
	}})
	require.NoError(t, err)
	addr := startServer(t, Config{Policy: policy})
	cl, err := NewClient(ClientConfig{Address: addr, Name: "postern"})
	require.NoError(t, err)
	ctx := context.Background()

	t.Run("reject at MAIL", func(t *testing.T) {
		c, tx := envelope()
		tx.From = "spammer@example.net"
		v, err := cl.CheckMail(ctx, c, tx)
		require.NoError(t, err)
		assert.Equal(t, postern.Reject, v.Action)
		assert.Equal(t, "550 5.7.1 Access denied", v.Reply.Error())
	})
	t.Run("per recipient, then edits", func(t *testing.T) {
		c, tx := envelope()
		v, err := cl.CheckMail(ctx, c, tx)
		require.NoError(t, err)
		require.Equal(t, postern.Continue, v.Action, v.Reason)
		for _, rc := range []string{"bob@example.test", "carol@example.test"} {
			r := &postern.Rcpt{Addr: rc, Original: rc}
			v, err := cl.CheckRcpt(ctx, c, tx, r)
			require.NoError(t, err)
			if rc == "carol@example.test" {
				assert.Equal(t, "550 5.1.1 User unknown", v.Reply.Error())
				continue
			}
			require.Equal(t, postern.Continue, v.Action, v.Reason)
			tx.Rcpts = append(tx.Rcpts, r)
		}
		m := message(t, sample)
		v, err = cl.CheckData(ctx, c, tx, m)
		require.NoError(t, err)
		require.Equal(t, postern.Continue, v.Action, v.Reason)
		var out strings.Builder
		require.NoError(t, m.Render(&out))
		assert.Contains(t, out.String(), "X-Checked: by postern helo=client.example.net\r\n")
		assert.Contains(t, out.String(), "Subject: [SPAM] hello\r\n")
		assert.NotContains(t, out.String(), "Subject: hello")
		assert.Contains(t, out.String(), "\r\n\r\nbody line\r\n")
	})
	for _, tc := range []struct{ name, body, want string }{
		{"reject at DATA", "EICAR test\r\n", "554 5.7.0 Virus found: Eicar-Signature"},
		{"quarantine", "hold me\r\n", "quarantine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, tx := envelope()
			_, err := cl.CheckMail(ctx, c, tx)
			require.NoError(t, err)
			r := &postern.Rcpt{Addr: "bob@example.test", Original: "bob@example.test"}
			_, err = cl.CheckRcpt(ctx, c, tx, r)
			require.NoError(t, err)
			tx.Rcpts = append(tx.Rcpts, r)
			v, err := cl.CheckData(ctx, c, tx, message(t, strings.Replace(sample, "body line\r\n", tc.body, 1)))
			require.NoError(t, err)
			if tc.want == "quarantine" {
				assert.Equal(t, postern.Quarantine, v.Action)
				assert.Contains(t, v.Reason, "held for review")
				return
			}
			assert.Equal(t, tc.want, v.Reply.Error())
		})
	}
}
