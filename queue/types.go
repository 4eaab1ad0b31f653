package queue

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/postern/postern"
)

// Envelope is what the queue keeps about a message besides its bytes. It is
// written once, at Enqueue, and never changes; delivery progress lives in
// the message's State.
type Envelope struct {
	// ID, when set, is the queue ID to use: it must be unique and made of
	// letters, digits, '-' and '_' (at most 64), such as the transaction
	// ID that the Received header already names, so one ID follows the
	// message through every log line. Empty: Config.NewID makes one.
	ID string `json:"-"`
	// From is the reverse path; "" is the null sender <> (bounces). A
	// message from the null sender is never answered with a DSN.
	From string `json:"from"`
	// Recipients in the order the client gave them.
	Recipients []Recipient `json:"rcpts"`
	// EnvID, Ret ("FULL", "HDRS" or ""), SMTPUTF8, Body and RequireTLS are
	// the MAIL FROM parameters (RFC 3461, RFC 6531, RFC 6152, RFC 8689),
	// passed on to the next hop and used for DSNs.
	EnvID      string `json:"envid,omitempty"`
	Ret        string `json:"ret,omitempty"`
	SMTPUTF8   bool   `json:"smtputf8,omitempty"`
	Body       string `json:"body,omitempty"`
	RequireTLS bool   `json:"requiretls,omitempty"`
	// Received is when the message was accepted; Enqueue sets it from the
	// queue's clock when zero.
	Received time.Time `json:"received"`
	// ClientIP, HELO, AuthUser and ConnID describe where the message came
	// from, for logs and the admin API.
	ClientIP string `json:"client_ip,omitempty"`
	HELO     string `json:"helo,omitempty"`
	AuthUser string `json:"auth_user,omitempty"`
	ConnID   string `json:"conn_id,omitempty"`
	// Hold, when not empty, puts the message in the hold area at once with
	// this reason (a quarantine verdict); it is not delivered until released.
	Hold string `json:"hold,omitempty"`
	// UnverifiedSender marks a reverse path nothing vouched for (no SPF
	// or DKIM pass for its domain, not a trusted or authenticated
	// client). A notice to it would often reach a forged address
	// (backscatter): its failure notices go to Config.Postmaster instead,
	// as double bounces do, and its delay and success notices are not
	// sent.
	UnverifiedSender bool `json:"unverified_sender,omitempty"`
	// DSN marks a delivery status notification the queue generated
	// itself; DoubleBounce one sent to the postmaster because a message
	// from the null sender could not be delivered. A failed double bounce
	// is dropped (logged), so bounces never loop.
	DSN          bool `json:"dsn,omitempty"`
	DoubleBounce bool `json:"double_bounce,omitempty"`
	// TLSReport marks an SMTP TLS report (RFC 8460): it is delivered
	// despite TLS policy failures, and its own sessions are not reported
	// (§3).
	TLSReport bool `json:"tlsrpt,omitempty"`
}

// validUTF8 makes every text of the envelope valid UTF-8, as its JSON
// on disk will be (an invalid byte becomes U+FFFD): the queue then holds
// in memory exactly what a restart reads back. Smtpserver refuses
// invalid addresses; ENVID, ORCPT and a hold reason may still carry such
// bytes.
func (e *Envelope) validUTF8() {
	for _, s := range []*string{&e.ID, &e.From, &e.EnvID, &e.Ret, &e.Body, &e.ClientIP, &e.HELO, &e.AuthUser, &e.ConnID, &e.Hold} {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	for i := range e.Recipients {
		r := &e.Recipients[i]
		for _, s := range []*string{&r.Addr, &r.Original, &r.ORcptType, &r.ORcpt} {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
		if r.Notify != nil {
			n := make([]string, len(r.Notify))
			for k, v := range r.Notify {
				n[k] = strings.ToValidUTF8(v, "\uFFFD")
			}
			r.Notify = n
		}
	}
}

// Recipient is one envelope recipient with its RFC 3461 parameters.
type Recipient struct {
	// Addr is where the message goes.
	Addr string `json:"addr"`
	// Original is the address as the client first gave it (before any
	// rewriting); DSNs report it when ORCPT was not given.
	Original string `json:"original,omitempty"`
	// Notify is the NOTIFY list (NEVER, or any of SUCCESS, FAILURE, DELAY),
	// nil when not given (then FAILURE and DELAY apply).
	Notify []string `json:"notify,omitempty"`
	// ORcptType and ORcpt are the ORCPT parameter ("rfc822", address).
	ORcptType string `json:"orcpt_type,omitempty"`
	ORcpt     string `json:"orcpt,omitempty"`
}

// Deliverer moves messages to their next hop; route.Transport implements
// it. The queue calls it concurrently, at most the configured number of
// times per destination at once.
type Deliverer interface {
	// Destination returns the key that groups recipients delivered in one
	// attempt (one SMTP transaction) and bounds concurrency, typically the
	// next hop chosen by the mailertable, or the recipient's domain.
	Destination(rcpt string) string
	// Deliver makes one attempt to deliver d to d.Recipients, all of which
	// share one destination. It returns one Result per recipient, in
	// order. It must return when ctx is done.
	Deliver(ctx context.Context, d *Delivery) []Result
}

// Delivery is one delivery attempt handed to a Deliverer.
type Delivery struct {
	// ID is the queue ID of the message.
	ID string
	// Envelope is the message's envelope (From and MAIL parameters).
	Envelope *Envelope
	// Recipients are the recipients to try in this attempt.
	Recipients []Recipient
	// Message holds the message bytes, Size of them.
	Message io.ReaderAt
	Size    int64
	// Attempt counts attempts for this message, 1 for the first.
	Attempt int
}

// Result is the outcome of a delivery attempt for one recipient.
type Result struct {
	// Reply is the answer: 2xx delivered, 4xx try again later, 5xx failed
	// for good. A Deliverer builds a 4xx reply with a clear text for local
	// failures (DNS, connection refused, timeout, garbage from the peer).
	Reply postern.Reply
	// RemoteMTA names the host that gave Reply ("mx.example.net"); empty
	// when no server answered.
	RemoteMTA string
	// Relayed is set when the next hop accepted the message but will not
	// send DSNs itself (it did not offer the DSN extension): a SUCCESS
	// notification then says "relayed" rather than "delivered".
	Relayed bool
	// TLS says how the session with RemoteMTA was secured, for the
	// delivery log ("TLSv1.3 authenticated by DANE", "none"); empty when
	// there was no session.
	TLS string
}
