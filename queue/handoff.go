package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/postern/postern"
)

// Renderer writes a message as it is to be delivered. *postern.Message
// (its header edits applied) and scan.Group (one recipient group's copy)
// are Renderers.
type Renderer interface {
	Render(w io.Writer) error
}

// Copy is one copy of an accepted message: the recipients that get it
// and the message they get.
type Copy struct {
	Rcpts []*postern.Rcpt
	// Message is this copy; nil means the transaction's message.
	Message Renderer
}

// Handoff puts the mail an SMTP server accepted into a Queue: the step
// from a transaction (postern.Txn) to queued mail (Envelope). Its Handoff
// method has the signature of smtpserver.Handoff, so a *Handoff is what
// smtpserver.Config.Handoff takes (package queue does not import
// smtpserver: the method set is the contract). Safe for concurrent use;
// do not change its fields once it is in use.
//
// For each copy (one, unless Copies splits the recipients) it queues an
// Envelope with the transaction's sender and MAIL parameters (ENVID, RET,
// SMTPUTF8, BODY, REQUIRETLS), the client (address, HELO name, AUTH user,
// connection ID), and each recipient with its original address, NOTIFY
// list and ORCPT, in the order the client gave them. The message bytes
// are the copy's Render output: the received message with the header
// edits of the filters (the Received field first among them), streamed
// into Enqueue. Handoff returns once every copy is durable.
//
// Queue IDs. The first copy is queued under the transaction ID, the one
// the Received field already names, so one ID follows the message
// through every log line; further copies get ID-2, ID-3 and so on. (A
// transaction ID that is not a valid queue ID, or too long to take the
// suffix, is replaced by one Config.NewID makes.) The ID Handoff returns,
// the one the client is told in "250 2.0.0 Ok: queued as <id>", is the
// first copy's.
//
// Quarantine. A transaction with Txn.Quarantine set (a filter's
// Quarantine verdict) is accepted like any other, and the client is told
// it was queued: every copy goes to the hold area with the reason as
// Envelope.Hold, and is delivered only when released (Release). The
// hold is on disk before Handoff returns.
//
// Discard. smtpserver answers a discarded transaction (Txn.Discard, a
// Discard verdict) 250 with the transaction ID itself and never calls the
// Handoff. Handed one anyway, Handoff queues nothing and returns Txn.ID.
// The same holds when Copies gives no recipient a copy: nothing is
// queued and the client is told Txn.ID, as for a discard.
//
// Failure. If a copy cannot be queued, the copies already queued are
// deleted and the error is returned, so the client is told to try again
// later (smtpserver answers 452 4.3.1 for a full disk, 451 4.3.0
// otherwise) and nobody gets the message twice.
type Handoff struct {
	// Queue receives the mail. Required.
	Queue *Queue
	// Copies, when set, splits a transaction into copies, each with its
	// recipients and its own message: per-recipient spam treatment
	// gives one copy per treatment (scan.Groups; a scan.Group is a
	// Renderer). Copies are queued in order; a recipient in no copy gets
	// nothing (a copy dropped by the recipient's policy), a copy without
	// recipients is skipped. An error is returned to the server (451).
	// Nil: one copy of m for every recipient.
	Copies func(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) ([]Copy, error)
	// Envelope, when set, adjusts each copy's envelope before it is
	// queued: mark an UnverifiedSender, rewrite a recipient. Every field
	// Handoff sets (queue ID, sender, parameters, client, the copy's
	// recipients, hold) is filled in when it runs.
	Envelope func(c *postern.Conn, t *postern.Txn, env *Envelope)
	// Postmaster is where a recipient without a domain goes: smtpserver
	// lets only "RCPT TO:<Postmaster>" through so (RFC 5321 §4.5.1),
	// and it has no domain to route by. Empty: the queue's
	// Config.Postmaster; both empty: it is queued as given, and fails at
	// delivery. Envelope runs first and may map it itself.
	Postmaster string
	// Logger receives a line when a message is queued as several copies
	// and when a queued copy cannot be withdrawn; nil discards.
	Logger *slog.Logger
}

// Handoff queues the accepted message m of transaction t from connection
// c and returns the queue ID the client is told.
func (h *Handoff) Handoff(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	if h.Queue == nil {
		return "", fmt.Errorf("%w: Handoff needs a Queue", ErrConfig)
	}
	if t.Discard {
		return t.ID, nil
	}
	copies := []Copy{{Rcpts: t.Rcpts}}
	if h.Copies != nil {
		var err error
		if copies, err = h.Copies(ctx, c, t, m); err != nil {
			return "", err
		}
	}
	var ids []string
	for _, cp := range copies {
		if len(cp.Rcpts) == 0 {
			continue
		}
		var msg Renderer = m
		if cp.Message != nil {
			msg = cp.Message
		}
		env := h.envelope(c, t, cp.Rcpts, copyID(t.ID, len(ids)))
		id, err := h.enqueue(ctx, env, msg)
		if err != nil {
			h.withdraw(ids)
			return "", err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return t.ID, nil
	}
	if len(ids) > 1 {
		h.logger().Info("queued as copies", "conn_id", connID(c), "queue_id", ids[0], "copies", ids, "stage", "handoff")
	}
	return ids[0], nil
}

// envelope builds the envelope of one copy.
func (h *Handoff) envelope(c *postern.Conn, t *postern.Txn, rcpts []*postern.Rcpt, id string) Envelope {
	env := Envelope{ID: id, From: t.From, EnvID: t.Mail.EnvID, Ret: t.Mail.Ret, SMTPUTF8: t.Mail.SMTPUTF8,
		Body: t.Mail.Body, RequireTLS: t.Mail.RequireTLS, Hold: t.Quarantine}
	if c != nil {
		env.HELO, env.AuthUser, env.ConnID = c.HELO, c.AuthUser, c.ID
		if ip := c.RemoteAddr(); ip.IsValid() {
			env.ClientIP = ip.String()
		}
	}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Recipient{Addr: r.Addr, Original: r.Original,
			Notify: append([]string(nil), r.Notify...), ORcptType: r.ORcptType, ORcpt: r.ORcpt})
	}
	if h.Envelope != nil {
		h.Envelope(c, t, &env)
	}
	pm := h.Postmaster
	if pm == "" {
		pm = h.Queue.cfg.Postmaster
	}
	for i := range env.Recipients {
		if pm != "" && postern.AddrDomain(env.Recipients[i].Addr) == "" {
			env.Recipients[i].Addr = pm
		}
	}
	return env
}

// enqueue streams one copy's message into the queue. The renderer is
// done with the message when enqueue returns: the server may release
// its spool then.
func (h *Handoff) enqueue(ctx context.Context, env Envelope, msg Renderer) (string, error) {
	pr, pw := io.Pipe()
	rendered := make(chan struct{})
	go func() {
		defer close(rendered)
		pw.CloseWithError(msg.Render(pw))
	}()
	id, err := h.Queue.Enqueue(ctx, env, pr)
	pr.CloseWithError(io.ErrClosedPipe) // ends Render if Enqueue stopped reading early
	<-rendered
	return id, err
}

// withdraw deletes the copies already queued when a later one failed.
func (h *Handoff) withdraw(ids []string) {
	for _, id := range ids {
		if err := h.Queue.Delete(id); err != nil {
			h.logger().Error("could not withdraw a queued copy", "queue_id", id, "stage", "handoff", "error", err)
		}
	}
}

func (h *Handoff) logger() *slog.Logger {
	if h.Logger == nil {
		return postern.DiscardLogger()
	}
	return h.Logger
}

// copyID is the queue ID of copy n (0 first) of transaction txnID: the
// transaction ID, then ID-2, ID-3...; "" (the queue makes one) when that
// is not a valid queue ID.
func copyID(txnID string, n int) string {
	id := txnID
	if n > 0 {
		id = fmt.Sprintf("%s-%d", txnID, n+1)
	}
	if !validID(id) {
		return ""
	}
	return id
}

func connID(c *postern.Conn) string {
	if c == nil {
		return ""
	}
	return c.ID
}
