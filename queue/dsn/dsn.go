package dsn

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/postern/postern"
)

// Errors.
var (
	// ErrConfig is returned by New for an invalid Config.
	ErrConfig = errors.New("dsn: invalid config")
	// ErrInvalid is returned by Compose for a Report it cannot turn into a
	// DSN (no sender, no recipient, an unknown action ...).
	ErrInvalid = errors.New("dsn: invalid report")
	// ErrMalformed is returned (wrapped) by Parse for input that is not a
	// delivery status notification it can read, or that is over a limit.
	ErrMalformed = errors.New("dsn: malformed report")
)

// Action is the RFC 3464 §2.3.3 Action field: what happened to one
// recipient.
type Action string

// Actions.
const (
	// Failed: the message could not be delivered and will not be retried.
	Failed Action = "failed"
	// Delayed: not delivered yet; the queue keeps trying.
	Delayed Action = "delayed"
	// Delivered: handed to the final mailbox, or to a next hop that will
	// itself send DSNs.
	Delivered Action = "delivered"
	// Relayed: handed to a next hop that does not offer DSNs, so no further
	// notification can be expected (RFC 3461 §6.2.7.3).
	Relayed Action = "relayed"
	// Expanded: delivered to an alias or list that passes the message on
	// to several recipients.
	Expanded Action = "expanded"
)

// Valid reports whether a is one of the five RFC 3464 actions.
func (a Action) Valid() bool {
	switch a {
	case Failed, Delayed, Delivered, Relayed, Expanded:
		return true
	}
	return false
}

// success reports an action that NOTIFY=SUCCESS asks for.
func (a Action) success() bool { return a == Delivered || a == Relayed || a == Expanded }

// Ret is the RFC 3461 §4.3 RET parameter: how much of the original message
// a failure notification returns.
type Ret string

// RET values. Compose treats any other value as RetDefault.
const (
	// RetDefault (no RET given): the whole message, as for RetFull.
	RetDefault Ret = ""
	// RetFull returns the whole message (message/rfc822).
	RetFull Ret = "FULL"
	// RetHdrs returns only its header (text/rfc822-headers).
	RetHdrs Ret = "HDRS"
)

// Return says what Compose attached of the original message.
type Return int

// What was returned.
const (
	// ReturnNone: nothing (the Report had no Message).
	ReturnNone Return = iota
	// ReturnHeaders: the header only.
	ReturnHeaders
	// ReturnFull: the whole message.
	ReturnFull
)

func (r Return) String() string {
	switch r {
	case ReturnHeaders:
		return "headers"
	case ReturnFull:
		return "full"
	}
	return "none"
}

// DefaultMaxReturn is the default Config.MaxReturn: a message larger than
// this is returned as its header only.
const DefaultMaxReturn = 1 << 20

// Defaults of Config.FromName and of the local part of Config.From.
const (
	DefaultFromName  = "Mail Delivery System"
	DefaultFromLocal = "MAILER-DAEMON"
)

// Config configures a Composer. The zero value of every field but
// ReportingMTA is the default documented on it.
type Config struct {
	// ReportingMTA is this host's name, as it says it in HELO: the
	// Reporting-MTA field (RFC 3464 §2.2.2), the human text, and the
	// domain of the default From and Message-ID. Required.
	ReportingMTA string
	// From is the address the DSN comes from; "" means
	// MAILER-DAEMON@ReportingMTA. (The envelope sender of a DSN is always
	// the null sender <>, RFC 3461 §6.2; that is the queue's business.)
	From string
	// FromName is From's display name; "" means "Mail Delivery System".
	FromName string
	// MaxReturn bounds the bytes of the original message returned; 0 means
	// DefaultMaxReturn (1 MiB). A larger message is returned as its header
	// only (at most MaxReturn bytes of it), and the text says so.
	MaxReturn int64
	// Now is the clock for the Date field; nil means time.Now.
	Now func() time.Time
	// MessageID returns the Message-ID of each DSN, with or without angle
	// brackets; nil means a random one at ReportingMTA.
	MessageID func() string
	// Boundary returns the MIME boundary of each DSN (1 to 70 of the
	// characters RFC 2046 §5.1.1 allows, no space); nil means a random
	// one. If the returned message happens to contain it, a suffix
	// "=N" is added until it does not.
	Boundary func() string
}

// Composer writes DSNs. It is immutable and safe for concurrent use.
type Composer struct {
	host      string
	from      string
	maxReturn int64
	now       func() time.Time
	messageID func() string
	boundary  func() string
}

// New checks cfg and returns a Composer.
func New(cfg Config) (*Composer, error) {
	host := strings.TrimSuffix(cfg.ReportingMTA, ".")
	if host == "" {
		return nil, fmt.Errorf("%w: ReportingMTA is required", ErrConfig)
	}
	if !isHostname(host) {
		return nil, fmt.Errorf("%w: ReportingMTA %q is not a host name", ErrConfig, cfg.ReportingMTA)
	}
	c := &Composer{host: host, maxReturn: cfg.MaxReturn, now: cfg.Now, messageID: cfg.MessageID, boundary: cfg.Boundary}
	if c.maxReturn == 0 {
		c.maxReturn = DefaultMaxReturn
	}
	if c.maxReturn < 0 {
		return nil, fmt.Errorf("%w: negative MaxReturn %d", ErrConfig, cfg.MaxReturn)
	}
	addr := cfg.From
	if addr == "" {
		addr = DefaultFromLocal + "@" + host
	}
	if cleanHeader(addr, true) != addr || strings.ContainsAny(addr, " <>") || !strings.Contains(addr, "@") {
		return nil, fmt.Errorf("%w: From %q is not an address", ErrConfig, cfg.From)
	}
	name := cfg.FromName
	if name == "" {
		name = DefaultFromName
	}
	if cleanHeader(name, true) != name {
		return nil, fmt.Errorf("%w: FromName %q has control characters", ErrConfig, cfg.FromName)
	}
	// net/mail quotes or RFC 2047-encodes the display name as it needs.
	// The address is written as given: it may be UTF-8 (RFC 6532).
	display := (&mail.Address{Name: name, Address: "x@x"}).String()
	c.from = strings.TrimSuffix(display, "<x@x>") + "<" + addr + ">"
	if c.now == nil {
		c.now = time.Now
	}
	if c.messageID == nil {
		c.messageID = func() string { return randomHex(16) + "@" + host }
	}
	if c.boundary == nil {
		c.boundary = func() string { return "=_dsn_" + randomHex(12) }
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b)
}

// isHostname accepts a DNS name (letters, digits, '-', '.', '_') or an
// address literal in brackets.
func isHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return len(s) > 2 && !strings.ContainsAny(s[1:len(s)-1], "[] \t\r\n")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Report describes one DSN: the message it is about and what happened to
// each of the recipients it reports on.
type Report struct {
	// Sender is the original message's reverse path in canonical form
	// (postern.Address, as Txn.From holds it), with or without angle
	// brackets: the DSN goes to it (To:, in wire form). It must not be empty: a message from the null sender never
	// gets a DSN (see NullSender).
	Sender string
	// EnvID is the RFC 3461 ENVID, decoded from xtext: the
	// Original-Envelope-Id field; "" omits it.
	EnvID string
	// ArrivalDate is when the message was accepted: the Arrival-Date
	// field; zero omits it.
	ArrivalDate time.Time
	// QueueID is the queue ID of the message; when set it is named in the
	// text and as the extension field X-Postern-Queue-ID.
	QueueID string
	// SMTPUTF8 is set when the message came with SMTPUTF8 (RFC 6531): the
	// DSN then uses the RFC 6533 types, as it does when any address
	// reported is not ASCII.
	SMTPUTF8 bool
	// Recipients are the recipients reported on, in order; at least one.
	Recipients []RecipientStatus
	// Message holds the original message, Size bytes of it; nil returns
	// nothing of it.
	Message io.ReaderAt
	Size    int64
	// Ret is the RET parameter. The whole message is returned only for
	// RetFull or RetDefault, when some recipient failed, and when it fits
	// in Config.MaxReturn; otherwise only its header (RFC 3461 §4.3: a
	// report of no failure returns the header only).
	Ret Ret
}

// RecipientStatus is what happened to one recipient: one per-recipient
// block of the delivery-status part (RFC 3464 §2.3).
type RecipientStatus struct {
	// FinalRecipient is the address the delivery was for, in canonical
	// form (Rcpt.Addr): Final-Recipient writes its wire form, type rfc822,
	// or utf-8 when not ASCII. Required.
	FinalRecipient string
	// OriginalType and OriginalRecipient are the ORCPT parameter
	// (decoded from xtext), for Original-Recipient; "" omits the field.
	// OriginalType "" means rfc822 (utf-8 when the address is not ASCII).
	OriginalType      string
	OriginalRecipient string
	// Action is what happened. Required.
	Action Action
	// Status is the RFC 3463 status code; zero takes Reply's enhanced
	// code, else X.0.0 of Reply's class, else 5.0.0 for Failed, 4.0.0 for
	// Delayed and 2.0.0 for the others.
	Status postern.EnhancedCode
	// RemoteMTA is the host that gave Reply ("mx.example.net"): the
	// Remote-MTA field; "" omits it.
	RemoteMTA string
	// Reply is the last SMTP reply for this recipient: the
	// Diagnostic-Code field ("smtp; 550 5.1.1 User unknown"); the zero
	// Reply omits it.
	Reply postern.Reply
	// LastAttemptDate is when delivery was last tried; zero omits it.
	LastAttemptDate time.Time
	// WillRetryUntil is when the queue gives up (Delayed only); zero
	// omits it.
	WillRetryUntil time.Time
}

// status returns the Status field's code.
func (rs *RecipientStatus) status() postern.EnhancedCode {
	switch {
	case !rs.Status.IsZero():
		return rs.Status
	case validESC(rs.Reply.Enhanced):
		return rs.Reply.Enhanced
	case validESC(postern.ESC(rs.Reply.Code/100, 0, 0)) && rs.Reply.Code < 600:
		return postern.ESC(rs.Reply.Code/100, 0, 0)
	case rs.Action == Failed:
		return postern.ESC(5, 0, 0)
	case rs.Action == Delayed:
		return postern.ESC(4, 0, 0)
	}
	return postern.ESC(2, 0, 0)
}

// validESC reports an RFC 3463 code: class 2, 4 or 5, subject and detail
// 0 to 999.
func validESC(e postern.EnhancedCode) bool {
	return (e[0] == 2 || e[0] == 4 || e[0] == 5) && e[1] >= 0 && e[1] <= 999 && e[2] >= 0 && e[2] <= 999
}

// Info describes a DSN that Compose wrote: what the queue needs to send
// it and to log it.
type Info struct {
	// Size is the number of bytes written.
	Size int64
	// MessageID is the DSN's Message-ID, in angle brackets.
	MessageID string
	// Subject is the DSN's Subject.
	Subject string
	// Global is set when the DSN uses the RFC 6533 types.
	Global bool
	// SMTPUTF8 is set when the DSN's header is not ASCII (an address is
	// UTF-8): it must be sent with SMTPUTF8 (RFC 6531).
	SMTPUTF8 bool
	// EightBit is set when the body has 8-bit bytes: it must be sent with
	// BODY=8BITMIME (RFC 6152).
	EightBit bool
	// Returned says what of the original message was attached.
	Returned Return
	// Truncated is set when the whole message was asked for but was over
	// Config.MaxReturn, so only its header was attached.
	Truncated bool
}

// NullSender reports whether from is the null reverse path "" or "<>".
// A message from the null sender must never get a DSN (RFC 3461 §6.2,
// RFC 5321 §4.5.5): that is how loops between two bouncing systems are
// avoided. The queue checks it before composing; Compose refuses such a
// Report too.
func NullSender(from string) bool {
	from = strings.TrimSpace(from)
	return from == "" || from == "<>"
}

// Wants reports whether a recipient whose RCPT NOTIFY list is notify
// asks for a DSN reporting action a (RFC 3461 §4.1). A nil or empty list
// means FAILURE,DELAY (the choice §4.1 leaves to the MTA); NEVER means
// none; SUCCESS covers delivered, relayed and expanded. Keywords are
// matched without regard to case.
func Wants(notify []string, a Action) bool {
	if len(notify) == 0 {
		return a == Failed || a == Delayed
	}
	want := false
	for _, n := range notify {
		switch strings.ToUpper(strings.TrimSpace(n)) {
		case "NEVER":
			return false
		case "SUCCESS":
			want = want || a.success()
		case "FAILURE":
			want = want || a == Failed
		case "DELAY":
			want = want || a == Delayed
		}
	}
	return want
}

// ShouldSend combines NullSender and Wants: a DSN reporting a for a
// recipient with NOTIFY list notify of a message from from.
func ShouldSend(from string, notify []string, a Action) bool {
	return !NullSender(from) && Wants(notify, a)
}
