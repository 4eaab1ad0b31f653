package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/scan"
)

// queueHandoff is the relay's hand-off from an accepted transaction to
// the queue: queue.Handoff (the transaction ID becomes the queue ID;
// quarantined mail goes to the hold area) with the relay's three
// choices:
//
//   - When recipients chose different spam treatment (scan's
//     per-recipient policy), the message is queued once per copy (scan.Groups:
//     tagged for some, untagged for others; IDs ID, ID-2, ...);
//     recipients whose copy is dropped get none. If one copy cannot be
//     queued, those already queued are withdrawn and the client is told
//     to retry, so nobody gets the message twice.
//   - A sender nothing vouched for (senderVerified) is marked
//     UnverifiedSender, so its failure notices go to the postmaster,
//     unless notifyAll.
//   - A bare "RCPT TO:<Postmaster>" (RFC 5321 §4.5.1), which has no
//     domain to route by, is queued for postmaster(), the site's
//     postmaster in force.
type queueHandoff struct {
	h   queue.Handoff
	met *metrics // nil: not counted
}

func newQueueHandoff(q *queue.Queue, log *slog.Logger, met *metrics, notifyAll func() bool, postmaster func() string) *queueHandoff {
	return &queueHandoff{met: met, h: queue.Handoff{Queue: q, Logger: log,
		Copies: func(_ context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) ([]queue.Copy, error) {
			var copies []queue.Copy
			for _, g := range scan.Groups(t, m, nil) {
				if !g.Drop {
					copies = append(copies, queue.Copy{Rcpts: g.Rcpts, Message: g})
					continue
				}
				for _, r := range g.Rcpts {
					log.Info("copy dropped by the recipient's spam policy", "conn_id", c.ID, "queue_id", t.ID,
						"rcpt", r.Addr, "stage", "handoff", "action", "discard")
				}
			}
			return copies, nil
		},
		Envelope: func(c *postern.Conn, t *postern.Txn, env *queue.Envelope) {
			env.UnverifiedSender = !notifyAll() && !senderVerified(c, t)
			for i := range env.Recipients {
				if postern.AddrDomain(env.Recipients[i].Addr) == "" {
					env.Recipients[i].Addr = postmaster() // smtpserver passes only Postmaster without a domain
				}
			}
		},
	}}
}

func (h *queueHandoff) Handoff(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	start := time.Now()
	id, err := h.h.Handoff(ctx, c, t, m)
	if err == nil && h.met != nil {
		h.met.enqueue.Observe(time.Since(start).Seconds())
	}
	return id, err
}
