package queue

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue/dsn"
)

// dsnKind is the kind of notification a delivery attempt calls for.
type dsnKind int

const (
	dsnFailed dsnKind = iota
	dsnDelayed
	dsnDelivered
)

func (k dsnKind) String() string {
	return [...]string{"failure", "delay", "success"}[k]
}

// noticeTo decides who gets a notice of kind about a message: its
// sender; the postmaster for a failure of a message from the null sender
// or from an unverified sender (double is then set, so a failure of the
// notice itself is dropped); nobody (ok false) otherwise.
func (q *Queue) noticeTo(it *item, kind dsnKind) (to string, double, ok bool) {
	env := it.env
	null := dsn.NullSender(env.From)
	if !null && !env.UnverifiedSender {
		return env.From, false, true
	}
	if kind != dsnFailed || env.DoubleBounce || q.cfg.Postmaster == "" {
		if kind == dsnFailed {
			msg := "undeliverable message from the null sender dropped"
			if !null {
				msg = "failure notice for an unverified sender withheld (no postmaster configured)"
			}
			q.log.Warn(msg, "queue_id", it.id, "double_bounce", env.DoubleBounce)
		}
		return "", false, false
	}
	return q.cfg.Postmaster, true, true
}

// notify queues the delivery status notification that recipients idx of a
// message asked for (RFC 3461 NOTIFY), and returns the event that says
// so, for the caller to emit with the state that called for it. It goes
// to the sender with the null reverse path. A message from the null
// sender never gets one (RFC 5321 §4.5.5); when such a message fails — a
// bounce that cannot be delivered — the postmaster gets the notice
// instead (a double bounce), or it is dropped, and a double bounce that
// fails is only logged. So bounces never loop. A message from an
// unverified sender (Envelope.UnverifiedSender) is treated alike, so a
// forged sender gets no backscatter.
func (q *Queue) notify(it *item, st *State, kind dsnKind, idx []int) []Event {
	env := it.env
	double := dsn.NullSender(env.From)
	var want []int
	for _, i := range idx {
		if a, ok := rcptAction(st.Rcpts[i]); ok && (double || dsn.Wants(env.Recipients[i].Notify, a)) {
			want = append(want, i)
		}
	}
	if len(want) == 0 {
		return nil
	}
	to, double, ok := q.noticeTo(it, kind)
	if !ok {
		return nil
	}
	info := Info{ID: it.id, Envelope: *env, State: *st, Size: it.size}
	rep, err := info.Report(want, env.Received.Add(q.cfg.ReturnAfter))
	if err != nil {
		q.log.Error("queue: cannot report on recipients", "queue_id", it.id, "err", err)
		return nil
	}
	f, err := q.openData(it)
	if err != nil {
		q.log.Error("queue: cannot read message for its DSN", "queue_id", it.id, "err", err)
		return nil
	}
	defer f.Close()
	rep.Sender, rep.Message = to, f
	var buf bytes.Buffer
	dinfo, err := q.dsn.Compose(&buf, rep)
	if err != nil {
		q.log.Error("queue: cannot compose DSN", "queue_id", it.id, "err", err)
		return nil
	}
	denv := Envelope{Recipients: []Recipient{{Addr: to, Original: to, Notify: []string{"NEVER"}}},
		SMTPUTF8: dinfo.SMTPUTF8, DSN: true, DoubleBounce: double}
	if dinfo.EightBit {
		denv.Body = "8BITMIME"
	}
	id, err := q.Enqueue(context.Background(), denv, &buf)
	if err != nil {
		q.log.Error("queue: cannot queue DSN", "queue_id", it.id, "kind", kind.String(), "err", err)
		return nil
	}
	q.log.Info("dsn", "queue_id", it.id, "dsn_id", id, "kind", kind.String(), "to", to, "nrcpt", len(rep.Recipients))
	return []Event{{Kind: EventDSN, ID: it.id, From: env.From, Rcpt: to, Reason: kind.String()}}
}

// Report returns the report of a delivery status notification (package
// dsn, RFC 3464) on recipients idx of a queued message: indexes into
// Envelope.Recipients and State.Rcpts, as Show and List give them. It is
// what the queue itself composes its notices from.
//
// Each recipient is reported as its state says: a failed one as failed
// (an expired one, given up after Config.ReturnAfter on a temporary
// failure, with status 4.4.7 and the last answer as the diagnostic, RFC
// 3463), a pending one as delayed, with willRetryUntil as its
// Will-Retry-Until (the queue gives Received + ReturnAfter; zero omits
// it), a delivered one as delivered, or relayed when the next hop offered
// no DSN of its own (RFC 3461 §6.2.7.3). The ORCPT of each recipient is
// its Original-Recipient. A recipient deleted or moved to another
// message, or an index out of range, is an error wrapping
// ErrNoRecipient.
//
// The report's Sender is the envelope sender; the queue sends the
// notices of null-sender and unverified-sender mail to Config.Postmaster
// instead, and so may the caller by changing it. Report applies no
// NOTIFY list: choose idx with dsn.ShouldSend, as the queue does.
// Message is nil: set it to the message bytes (Queue.Open) to return
// them, or leave it for a notice without them.
func (i *Info) Report(idx []int, willRetryUntil time.Time) (*dsn.Report, error) {
	env := &i.Envelope
	rep := &dsn.Report{Sender: env.From, EnvID: env.EnvID, ArrivalDate: env.Received, QueueID: i.ID,
		SMTPUTF8: env.SMTPUTF8, Size: i.Size, Ret: dsn.Ret(env.Ret)}
	for _, k := range idx {
		if k < 0 || k >= len(env.Recipients) || k >= len(i.State.Rcpts) {
			return nil, fmt.Errorf("%w: index %d of %s", ErrNoRecipient, k, i.ID)
		}
		r, s := env.Recipients[k], i.State.Rcpts[k]
		a, ok := rcptAction(s)
		if !ok {
			return nil, fmt.Errorf("%w: %s of %s is %s", ErrNoRecipient, r.Addr, i.ID, s.Status)
		}
		rs := dsn.RecipientStatus{FinalRecipient: r.Addr, OriginalType: r.ORcptType, OriginalRecipient: r.ORcpt,
			Action: a, RemoteMTA: s.RemoteMTA, Reply: s.Reply, LastAttemptDate: s.LastAttempt}
		if s.Expired && !s.Reply.Permanent() {
			// RFC 3463 X.4.7: delivery time expired; the last answer stays
			// as the diagnostic.
			rs.Status = postern.ESC(4, 4, 7)
		}
		if a == dsn.Delayed {
			rs.WillRetryUntil = willRetryUntil
		}
		rep.Recipients = append(rep.Recipients, rs)
	}
	return rep, nil
}

// rcptAction is the DSN action a recipient's state reports; false for a
// recipient that is no longer this message's (deleted, moved).
func rcptAction(s RcptState) (dsn.Action, bool) {
	switch s.Status {
	case Failed:
		return dsn.Failed, true
	case Pending:
		return dsn.Delayed, true
	case Delivered:
		if s.Relayed {
			return dsn.Relayed, true
		}
		return dsn.Delivered, true
	}
	return "", false
}
