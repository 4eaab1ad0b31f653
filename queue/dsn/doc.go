// Package dsn composes and parses delivery status notifications (DSNs):
// the bounces, delay warnings and delivery reports an MTA sends back to
// the sender of a message (RFC 3464, RFC 3461, RFC 6522, RFC 6533).
//
// # Composing
//
// A Composer (New, from a Config naming this host) writes one DSN per
// Report: the original sender (the DSN's To), the message's envelope
// details (ENVID, arrival date, queue ID) and one RecipientStatus per
// recipient reported on, each with its Action (failed, delayed,
// delivered, relayed, expanded), RFC 3463 status code, remote MTA and
// last SMTP reply. The DSN is a multipart/report (RFC 6522) of three
// parts:
//
//  1. a text/plain explanation for people, recipient by recipient, with
//     its own wording for failures and for delays ("still trying until
//     ...");
//  2. the message/delivery-status part for programs (RFC 3464 §2): the
//     per-message fields (Original-Envelope-Id, Reporting-MTA,
//     Arrival-Date, X-Postern-Queue-ID) and per-recipient fields
//     (Original-Recipient, Final-Recipient, Action, Status, Remote-MTA,
//     Diagnostic-Code "smtp; 550 5.1.1 ...", Last-Attempt-Date,
//     Will-Retry-Until);
//  3. the original message (message/rfc822) or its header only
//     (text/rfc822-headers). The whole message is returned when RET=FULL
//     or no RET was given, some recipient failed, and it fits in
//     Config.MaxReturn (1 MiB by default); otherwise the header only (RFC
//     3461 §4.3), and the text says when size was the reason.
//
// When the message came with SMTPUTF8 or an address reported is not ASCII,
// the DSN uses the RFC 6533 types instead: message/global-delivery-status
// with "utf-8" addresses, message/global or message/global-headers.
// Info then says whether the DSN itself must be sent with SMTPUTF8 (its
// header is UTF-8) or BODY=8BITMIME.
//
// The header has From (MAILER-DAEMON@host by default), To, a Subject by
// the most serious action ("Undelivered Mail Returned to Sender",
// "Delayed Mail (still being retried)", "Successful Mail Delivery
// Report"), Date, Message-ID, In-Reply-To and References naming the
// original's Message-ID, and Auto-Submitted: auto-replied (RFC 3834).
// Lines end in CRLF and long fields are folded. The sender and final
// recipients are given in canonical form (postern.Address, as Txn.From and
// Rcpt.Addr hold them) and written in wire form in To, Final-Recipient and
// the text: a local part that is not a Dot-string is quoted (spaces in it
// escaped, so folding keeps them), so `"ceo(x)"@example.org` is reported
// as that mailbox and not as ceo@example.org with a comment; an
// Original-Recipient is the ORCPT as the client gave it. Addresses, ENVIDs and
// remote replies are untrusted: CR, LF and other control characters in
// them become spaces, so they can add no header field, report field or
// MIME part; outside RFC 6533 DSNs anything not ASCII becomes '?'.
//
// The clock, the Message-ID and the MIME boundary come from Config, so
// a DSN can be reproduced byte for byte.
//
// # When to send one
//
// The envelope sender of a DSN is the null sender <>, and a message from
// the null sender never gets a DSN (RFC 3461 §6.2, RFC 5321 §4.5.5):
// NullSender tells, and Compose refuses such a Report. Wants applies a
// recipient's NOTIFY list (RFC 3461 §4.1): none given means FAILURE and
// DELAY, NEVER means nothing, SUCCESS asks for delivered, relayed and
// expanded. ShouldSend combines the two. Both are for the queue, which
// decides when to compose.
//
// # Parsing
//
// Parse reads a DSN, ours or another MTA's, RFC 6533 ones included, with
// net/mail, mime/multipart and net/textproto: the per-message fields,
// the per-recipient fields (Reply turns a Diagnostic-Code back into a
// postern.Reply), the text and the returned message. Input is bounded
// (Parser: 32 MiB in all, 1000 recipients, 1 MiB of delivery-status, 1
// MiB of returned message kept); input that is not a DSN, or over a
// limit, gives an error wrapping ErrMalformed, never a panic.
//
// # Example
//
//	c, err := dsn.New(dsn.Config{ReportingMTA: "mx.example.org"})
//	if err != nil {
//		return err
//	}
//	if !dsn.ShouldSend(env.From, rcpt.Notify, dsn.Failed) {
//		return nil
//	}
//	var buf bytes.Buffer
//	info, err := c.Compose(&buf, &dsn.Report{
//		Sender:      env.From,
//		EnvID:       env.EnvID,
//		ArrivalDate: env.Received,
//		SMTPUTF8:    env.SMTPUTF8,
//		Ret:         dsn.Ret(env.Ret),
//		Recipients: []dsn.RecipientStatus{{
//			FinalRecipient:    rcpt.Addr,
//			OriginalType:      rcpt.ORcptType,
//			OriginalRecipient: rcpt.ORcpt,
//			Action:            dsn.Failed,
//			RemoteMTA:         res.RemoteMTA,
//			Reply:             res.Reply,
//			LastAttemptDate:   now,
//		}},
//		Message: msg, Size: size,
//	})
//	// Enqueue buf from <> to env.From, with SMTPUTF8 if info.SMTPUTF8
//	// and BODY=8BITMIME if info.EightBit.
package dsn
