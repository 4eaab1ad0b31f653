package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/scan"
)

// queueHandoff is the hand-off from an accepted transaction to the queue:
// the few lines where smtpserver's vocabulary becomes the queue's. The
// transaction ID (the one in the Received header) becomes the queue ID, so
// one ID follows the message through every log line.
//
// When recipients chose different spam treatment (scan's per-recipient
// policy), the message is queued once per copy: tagged for some,
// untagged for others; recipients whose copy is dropped get none. The
// extra copies have IDs of the form ID-2, ID-3. If one copy cannot be
// queued, the copies already queued are deleted and the client is told
// to retry, so nobody gets the message twice.
//
// A sender nothing vouched for (senderVerified) is marked
// UnverifiedSender, so its failure notices go to the postmaster, unless
// notifyAll. A bare "RCPT TO:<Postmaster>" (RFC 5321 §4.5.1), which has
// no domain to route by, is queued for postmaster(), the site's
// postmaster.
type queueHandoff struct {
	q          *queue.Queue
	log        *slog.Logger
	met        *metrics      // nil: not counted
	notifyAll  func() bool   // nil: false
	postmaster func() string // nil: the bare Postmaster is queued as it is
}

func (h *queueHandoff) Handoff(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	groups := scan.Groups(t, m, nil)
	if len(groups) == 1 && !groups[0].Drop {
		return h.enqueue(ctx, c, t, t.Rcpts, t.ID, m)
	}
	var ids []string
	for _, g := range groups {
		if g.Drop {
			for _, r := range g.Rcpts {
				h.log.Info("copy dropped by the recipient's spam policy", "conn_id", c.ID, "queue_id", t.ID,
					"rcpt", r.Addr, "stage", "handoff", "action", "discard")
			}
			continue
		}
		gm, err := g.Message()
		id := t.ID
		if len(ids) > 0 {
			id = fmt.Sprintf("%s-%d", t.ID, len(ids)+1)
		}
		if err == nil {
			id, err = h.enqueue(ctx, c, t, g.Rcpts, id, gm)
		}
		if err != nil {
			for _, done := range ids {
				if derr := h.q.Delete(done); derr != nil {
					h.log.Error("could not withdraw a queued copy", "queue_id", done, "error", derr)
				}
			}
			return "", err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return t.ID, nil // every copy dropped: accepted, as for a discard
	}
	if len(ids) > 1 {
		h.log.Info("queued as copies", "conn_id", c.ID, "queue_id", t.ID, "copies", ids)
	}
	return ids[0], nil
}

func (h *queueHandoff) enqueue(ctx context.Context, c *postern.Conn, t *postern.Txn, rcpts []*postern.Rcpt, id string, m *postern.Message) (string, error) {
	env := queue.Envelope{ID: id, From: t.From, EnvID: t.Mail.EnvID, Ret: t.Mail.Ret, SMTPUTF8: t.Mail.SMTPUTF8,
		Body: t.Mail.Body, RequireTLS: t.Mail.RequireTLS, ClientIP: c.RemoteAddr().String(), HELO: c.HELO,
		AuthUser: c.AuthUser, ConnID: c.ID, Hold: t.Quarantine, UnverifiedSender: !h.notifyAllSenders() && !senderVerified(c, t)}
	for _, r := range rcpts {
		addr := r.Addr
		if h.postmaster != nil && postern.AddrDomain(addr) == "" {
			addr = h.postmaster() // smtpserver passes only Postmaster without a domain
		}
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: addr, Original: r.Original,
			Notify: r.Notify, ORcptType: r.ORcptType, ORcpt: r.ORcpt})
	}
	start := time.Now()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(m.Render(pw)) }()
	qid, err := h.q.Enqueue(ctx, env, pr)
	pr.CloseWithError(io.ErrClosedPipe) // ends Render if Enqueue stopped reading early
	if err == nil && h.met != nil {
		h.met.enqueue.Observe(time.Since(start).Seconds())
	}
	return qid, err
}

func (h *queueHandoff) notifyAllSenders() bool { return h.notifyAll != nil && h.notifyAll() }
