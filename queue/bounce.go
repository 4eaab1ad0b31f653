package queue

import (
	"bytes"
	"context"

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
// message asked for (RFC 3461 NOTIFY). It goes to the sender with the null
// reverse path. A message from the null sender never gets one (RFC 5321
// §4.5.5); when such a message fails — a bounce that cannot be delivered —
// the postmaster gets the notice instead (a double bounce), or it is
// dropped, and a double bounce that fails is only logged. So bounces never
// loop. A message from an unverified sender (Envelope.UnverifiedSender)
// is treated alike, so a forged sender gets no backscatter.
func (q *Queue) notify(it *item, st *State, kind dsnKind, idx []int) {
	if len(idx) == 0 {
		return
	}
	env := it.env
	var rcpts []dsn.RecipientStatus
	for _, i := range idx {
		r, s := env.Recipients[i], st.Rcpts[i]
		a := [...]dsn.Action{dsnFailed: dsn.Failed, dsnDelayed: dsn.Delayed, dsnDelivered: dsn.Delivered}[kind]
		if kind == dsnDelivered && s.Relayed {
			a = dsn.Relayed
		}
		rs := dsn.RecipientStatus{FinalRecipient: r.Addr, OriginalType: r.ORcptType, OriginalRecipient: r.ORcpt,
			Action: a, RemoteMTA: s.RemoteMTA, Reply: s.Reply, LastAttemptDate: s.LastAttempt}
		if s.Expired && !s.Reply.Permanent() {
			// RFC 3463 X.4.7: delivery time expired; the last answer stays
			// as the diagnostic.
			rs.Status = postern.ESC(4, 4, 7)
		}
		if kind == dsnDelayed {
			rs.WillRetryUntil = env.Received.Add(q.cfg.ReturnAfter)
		}
		double := dsn.NullSender(env.From)
		if !double && !dsn.Wants(r.Notify, a) {
			continue
		}
		rcpts = append(rcpts, rs)
	}
	if len(rcpts) == 0 {
		return
	}
	to, double, ok := q.noticeTo(it, kind)
	if !ok {
		return
	}
	f, err := q.openData(it)
	if err != nil {
		q.log.Error("queue: cannot read message for its DSN", "queue_id", it.id, "err", err)
		return
	}
	defer f.Close()
	var buf bytes.Buffer
	info, err := q.dsn.Compose(&buf, &dsn.Report{Sender: to, EnvID: env.EnvID, ArrivalDate: env.Received,
		QueueID: it.id, SMTPUTF8: env.SMTPUTF8, Recipients: rcpts, Message: f,
		Size: it.size, Ret: dsn.Ret(env.Ret)})
	if err != nil {
		q.log.Error("queue: cannot compose DSN", "queue_id", it.id, "err", err)
		return
	}
	denv := Envelope{Recipients: []Recipient{{Addr: to, Original: to, Notify: []string{"NEVER"}}},
		SMTPUTF8: info.SMTPUTF8, DSN: true, DoubleBounce: double}
	if info.EightBit {
		denv.Body = "8BITMIME"
	}
	id, err := q.Enqueue(context.Background(), denv, &buf)
	if err != nil {
		q.log.Error("queue: cannot queue DSN", "queue_id", it.id, "kind", kind.String(), "err", err)
		return
	}
	q.log.Info("dsn", "queue_id", it.id, "dsn_id", id, "kind", kind.String(), "to", to, "nrcpt", len(rcpts))
	q.emit(Event{Kind: EventDSN, ID: it.id, Rcpt: to, Reason: kind.String()})
}
