// Package queue is Postern's durable mail queue: it stores accepted
// messages so that none is lost once the client was told 250, delivers them
// through a Deliverer (package route implements one) with retries, and
// tells senders what happened with delivery status notifications (package
// queue/dsn, RFC 3464 and RFC 3461).
//
// # Durability
//
// Enqueue returns only when the message and its envelope are on disk and
// synced. Concurrent enqueues share one fdatasync of a write-ahead log
// (group commit), so durability does not cap throughput at one fsync per
// message. A checkpoint (every 10 seconds by default) drops the old log
// segments: messages younger than a minute are appended again to the
// current segment with their state; older ones (a backlog) are written to
// files of their own, made durable with one syncfs(2). Mail delivered
// within a minute never costs a file. After a crash, Open replays what is
// left of the log, so every acknowledged message is found again. A torn
// record at the end of the log belongs to a message that was never
// acknowledged.
//
// A full disk or a failed write makes Enqueue return an error that wraps
// the cause (syscall.ENOSPC for a full disk), for the server to answer
// 452 4.3.1; nothing acknowledged is affected.
//
// # Delivery
//
// Run delivers due messages. Pending recipients of a message are grouped
// by Deliverer.Destination and each group is one attempt (one SMTP
// transaction), at most Config.DestinationConcurrency at a time per
// destination. Each recipient has its own state, so a message delivered to
// some recipients resumes with the others only, after a crash too.
//
//   - 2xx: delivered; a success DSN if the recipient asked (NOTIFY=SUCCESS).
//   - 5xx: failed at once; a failure DSN unless NOTIFY excludes it.
//   - 4xx: retried after a backoff that starts at 5 minutes and doubles to
//     4000 seconds (Postfix's defaults), spread by ±10 %. After WarnAfter
//     (4h, sendmail's Timeout.queuewarn) the sender gets one delay DSN;
//     after ReturnAfter (5 days) delivery is given up with a failure DSN
//     (status 4.4.7 with the last answer as the diagnostic).
//
// DSNs are sent from the null sender. A message from the null sender never
// gets one (RFC 5321 §4.5.5); if it fails, the notice goes to
// Config.Postmaster (a double bounce) or is dropped, and a failed double
// bounce is only logged, so bounces cannot loop.
//
// # Administration
//
// List, Show, Open, Hold, Release, Delete, Retry, RetryDestination and
// Bounce are the Go side of mailq, postsuper and postqueue. A ListFilter
// selects messages by sender, age and Phase (new, active, deferred,
// held) and, within them, recipients by address, domain, destination and
// last reply (a ReplyPattern: "450", "4xx", "5.1.1", or text such as
// "User unknown"). DeleteRecipients and BounceRecipients act on single
// recipients (SelectRecipients turns a ListFilter into their RcptFunc):
// the message's other recipients stay queued, and a message left without
// pending recipients is removed. Like every other state change they are
// synced log records before they return, and observers hear of them
// after that. Held messages
// (an Envelope.Hold reason at Enqueue, e.g. a quarantine verdict, or Hold)
// stay in the hold area until released. Split moves some recipients of a
// message into a message of their own (the original marks them Moved), so
// one recipient of held mail can have it released or deleted without
// deciding for the others. The Logger gets one line per enqueue, per
// recipient per delivery attempt (queue_id, rcpt, relay, delay, status,
// reply) and per admin action. Info.Report builds the dsn.Report on
// chosen recipients of a message from its state, as the queue's own
// notices are built, for a notice of one's own.
//
// # Events
//
// Config.Observer sees an Event for each change (enqueued, delivered,
// deferred, bounced, expired, dsn, held, released, deleted, split), for
// metrics and statistics. An event is emitted only after the record that
// makes it true is durable, and events come in the order of those
// records, from one goroutine at a time: a message's "enqueued" comes
// before its "delivered"; a notice's own "enqueued" before the "dsn" of
// the message it reports on, which follows the outcome it reports.
// Show, called from the Observer or after it, returns the state the
// event reports or a later one. A method returns once the Observer has
// seen its events, so the Observer must not call methods that change the
// queue.
//
// # Hand-off
//
// Handoff is the step from an SMTP transaction that smtpserver accepted
// to queued mail: envelope fields, recipients with NOTIFY and ORCPT, the
// rendered message, the transaction ID as queue ID, quarantined mail to
// the hold area, and, with hooks, one copy per recipient group (per-
// recipient spam treatment) and envelope adjustments. A *Handoff is a
// smtpserver.Handoff.
//
// # On disk
//
// One directory, locked by the process that opened it:
//
//	wal/*.log    the write-ahead log
//	q/HH/ID      a message: its envelope as one JSON line, then its bytes
//	q/HH/ID.st   its delivery state (JSON)
//
// HH spreads messages over 256 directories, because a directory that once
// held a large backlog stays slow. Files are plain: a queue can be
// inspected with a text editor and moved by copying the directory (stopped).
//
// The examples show a queue delivering (Example), the hand-off
// (ExampleHandoff) and the admin API; smtpserver's Example_queue puts a
// server in front of it.
package queue
