package main

import (
	"context"
	"io"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
)

// queueHandoff is the hand-off from an accepted transaction to the queue:
// the few lines where smtpserver's vocabulary becomes the queue's. The
// transaction ID (the one in the Received header) becomes the queue ID, so
// one ID follows the message through every log line.
type queueHandoff struct{ q *queue.Queue }

func (h queueHandoff) Handoff(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	env := queue.Envelope{ID: t.ID, From: t.From, EnvID: t.Mail.EnvID, Ret: t.Mail.Ret, SMTPUTF8: t.Mail.SMTPUTF8,
		Body: t.Mail.Body, RequireTLS: t.Mail.RequireTLS, ClientIP: c.RemoteAddr().String(), HELO: c.HELO,
		AuthUser: c.AuthUser, ConnID: c.ID, Hold: t.Quarantine}
	for _, r := range t.Rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r.Addr, Original: r.Original,
			Notify: r.Notify, ORcptType: r.ORcptType, ORcpt: r.ORcpt})
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(m.Render(pw)) }()
	id, err := h.q.Enqueue(ctx, env, pr)
	pr.CloseWithError(io.ErrClosedPipe) // ends Render if Enqueue stopped reading early
	return id, err
}
