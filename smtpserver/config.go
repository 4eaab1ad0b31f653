package smtpserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/postern/postern"
)

// ErrConfig is returned (wrapped) by New for an invalid Config.
var ErrConfig = errors.New("smtpserver: invalid config")

// ErrNoSpace is what a Handoff returns (wrapped) when it cannot store the
// message for lack of space; the client is told 452 4.3.1 and retries later.
var ErrNoSpace = errors.New("smtpserver: insufficient storage")

// Handoff takes an accepted message: the server calls it at the end of
// DATA, after the DATA stage passed the message. queue.Handoff is one (a
// durable queue); HandoffFunc adapts a function.
//
// It must return only once the message is durable (on disk and synced):
// the client is then told "250 2.0.0 Ok: queued as <id>", with the id
// Handoff returns, which should be the queue ID the message is found
// under later (the transaction ID t.ID, which the Received field names,
// is a good one). Store what m.Render writes: the received bytes with the
// filters' header edits, our Received field first among them.
//
// A transaction with t.Quarantine set (a Quarantine verdict, with its
// reason) is accepted all the same, and the client is not told
// otherwise: the Handoff must keep the message from delivery until
// someone releases it (queue.Handoff puts it in the queue's hold area),
// never deliver it and never drop it. A discarded transaction (a Discard
// verdict, t.Discard) never reaches the Handoff: the server answers it
// 250 with t.ID as the queue ID and keeps nothing.
//
// A returned postern.Reply is sent to the client as is; an error wrapping
// ErrNoSpace (or syscall.ENOSPC) becomes 452 4.3.1; any other error 451
// 4.3.0. Then nothing of the message may stay queued: the client will
// send it again.
type Handoff interface {
	Handoff(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (id string, err error)
}

// HandoffFunc adapts a function to Handoff.
type HandoffFunc func(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error)

// Handoff calls f.
func (f HandoffFunc) Handoff(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (string, error) {
	return f(ctx, c, t, m)
}

// TxnResult is the outcome of one transaction at the end of DATA.
type TxnResult struct {
	Conn *postern.Conn
	Txn  *postern.Txn
	// Size of the message as received, in bytes.
	Size int64
	// Outcome is "queued", "quarantine", "discard", "reject" or
	// "tempfail"; Code the reply code the client got.
	Outcome string
	Code    int
	// QueueID is the ID the client was told, for queued, quarantined and
	// discarded messages.
	QueueID  string
	Duration time.Duration
}

// PasswordChecker verifies SMTP AUTH credentials (PLAIN and LOGIN). It
// returns nil for good credentials and any error otherwise: the client
// sees 535 5.7.8, and AuthLimit counts a failure. An error that says it
// is temporary (errors.As finds a Temporary() bool method that returns
// true, as a 4xx postern.Reply and auth/directory's unavailable error
// have) means the checker could not tell, for example because its
// directory is down: the client sees 454 4.7.0 and nothing is counted.
type PasswordChecker interface {
	CheckPassword(ctx context.Context, c *postern.Conn, user, password string) error
}

// AuthLimiter limits failed SMTP AUTH attempts. CheckAuth returns a
// non-Continue verdict to refuse an attempt; RecordAuthFailure counts one.
type AuthLimiter interface {
	CheckAuth(ctx context.Context, keys ...string) postern.Verdict
	RecordAuthFailure(ctx context.Context, keys ...string) error
}

// ReverseResolver finds the verified host name of a client address
// (forward-confirmed reverse DNS). auth.IPRev implements it. It must
// return within ctx: an outcome it cannot know in time is ResolveTemp.
type ReverseResolver interface {
	LookupClientHost(ctx context.Context, ip netip.Addr) postern.ClientHost
}

// Config configures a Server. The zero value of every field is its
// documented default; Handoff is the only required field.
type Config struct {
	// Hostname is used in the banner and the Received header; default
	// os.Hostname().
	Hostname string
	// Policy is run at every stage (usually a *postern.Chain); nil accepts
	// everything. The server applies no relay policy of its own: put
	// access.RelayControl (or your own) first in the RCPT stage.
	Policy postern.Filter
	// Handoff takes accepted messages. Required.
	Handoff Handoff
	// Logger receives one line per connection and per transaction; nil
	// discards.
	Logger *slog.Logger

	// MaxMessageBytes is the SIZE limit; larger messages get 552 5.3.4.
	// Default 10 MiB.
	MaxMessageBytes int64
	// MaxRecipients per transaction; more get 452 4.5.3. Default 1000
	// (Postfix smtpd_recipient_limit).
	MaxRecipients int
	// RecipientOvershootLimit is how many recipients past MaxRecipients a
	// transaction may send before each further 452 4.5.3 counts toward
	// the error limits. Default 1000 (Postfix
	// smtpd_recipient_overshoot_limit); negative counts every one.
	RecipientOvershootLimit int
	// MaxHeaderBytes bounds the header block; larger gets 552 5.3.4.
	// Default 256 KiB.
	MaxHeaderBytes int
	// MaxHops is the most Received and Delivered-To fields a message may
	// carry, ours included: one arriving with MaxHops of them has been
	// round a mail loop and is refused at the end of DATA with
	// 554 5.4.6 "Too many hops" (RFC 5321 §6.3). Default DefaultMaxHops
	// (50); negative means no limit.
	MaxHops int
	// MaxCommandLine bounds a command line including CRLF; longer lines get
	// 500 5.5.2. Default 2048 (Postfix line_length_limit; RFC 5321
	// §4.5.3.1.4 asks for at least 512), at most MaxCommandLineLimit.
	MaxCommandLine int
	// BareNewline is what a bare CR or bare LF in a message (DATA or
	// BDAT) gets: the default BareNewlineNormalize makes it CRLF,
	// BareNewlineReject refuses the message with 550 5.5.2 (and a
	// command line ending in a bare LF too). Only CRLF "." CRLF ends
	// DATA in either case.
	BareNewline BareNewline
	// SpoolMemoryBytes of a message are kept in memory; the rest goes to a
	// temporary file in SpoolDir. Default 1 MiB.
	SpoolMemoryBytes int
	// SpoolDir holds temporary files of large messages; default
	// os.TempDir().
	SpoolDir string

	// CommandTimeout is how long the server waits for a command (RFC 5321
	// §4.5.3.2.7 asks for 5 minutes); also the write and TLS handshake
	// timeout. Default 5m.
	CommandTimeout time.Duration
	// DataTimeout is how long the server waits for each block of DATA or
	// BDAT (RFC 5321 §4.5.3.2.5: 3 minutes). Default 3m.
	DataTimeout time.Duration
	// SessionTimeout bounds a whole connection. Default 1h; negative means
	// none.
	SessionTimeout time.Duration
	// ConnectTimeout bounds the connect stage (and implicit TLS handshake)
	// before the banner. Default 30s.
	ConnectTimeout time.Duration

	// ReverseDNS, if set, looks up each client's host name before the
	// connect stage and records the outcome in Conn.ClientName, ClientPTR
	// and ClientResolve: access entries by host name then apply, and the
	// Received field names the client as sendmail writes it ("from helo
	// (name [ip])", "(name [ip] (may be forged))" for a name that does not
	// confirm, "([ip])" without one). nil makes no lookup.
	ReverseDNS ReverseResolver
	// ReverseDNSTimeout bounds that lookup, within ConnectTimeout; a
	// lookup that runs out of time is ResolveTemp. Default 10s.
	ReverseDNSTimeout time.Duration
	// SkipReverseDNS, if set, is asked first: true leaves the client
	// unlooked-up (ResolveNone), as for trusted networks, which no
	// host-name entry needs to judge.
	SkipReverseDNS func(ip netip.Addr) bool

	// MaxConnections bounds the connections open at once across the
	// listeners of Listen and Serve; more are answered "421 4.7.0" and
	// closed before anything is read. 0 means AutoMaxConnections()
	// (from RLIMIT_NOFILE); negative means no limit (put a ConnLimit in
	// front instead, to count connections that other listener wrappers
	// hold). When the process runs out of file descriptors anyway the
	// listener answers waiting clients "421 4.3.2" from a descriptor it
	// keeps in reserve, and goes on accepting.
	MaxConnections int

	// SoftErrorLimit: past this many errors each error reply is delayed by
	// ErrorSleep. Default 10 (Postfix smtpd_soft_error_limit).
	SoftErrorLimit int
	// HardErrorLimit: at this many errors the client is told 421 and
	// disconnected. Default 20 (Postfix smtpd_hard_error_limit). A message
	// delivered resets the count.
	HardErrorLimit int
	// ErrorSleep is the delay past the soft limit. Default 1s; negative
	// means none.
	ErrorSleep time.Duration

	// TLSConfig enables STARTTLS (or implicit TLS with ImplicitTLS). TLS
	// session tickets are turned off unless TLSSessionTickets is set: some
	// large senders fail STARTTLS against Go servers that send them.
	TLSConfig         *tls.Config
	TLSSessionTickets bool
	// ImplicitTLS makes the listener speak TLS from the first byte (port
	// 465, RFC 8314).
	ImplicitTLS bool
	// RequireTLS refuses MAIL and AUTH before STARTTLS with 530 5.7.0.
	RequireTLS bool
	// RequireAuth refuses MAIL before AUTH with 530 5.7.0 (RFC 4954 §6):
	// a submission port.
	RequireAuth bool
	// Auth enables AUTH PLAIN and LOGIN; mechanisms are offered only over
	// TLS unless AllowInsecureAuth.
	Auth              PasswordChecker
	AllowInsecureAuth bool
	// AuthLimit, if set, slows password guessing: it is asked before each
	// AUTH and before each password check, and told of each failure
	// (ratelimit.AuthLimiter implements it). A refusal is answered with
	// its reply, 454 4.7.0 by default (RFC 4954 §6).
	AuthLimit AuthLimiter
	// AuthKeys names what AuthLimit counts for a client and the user name
	// tried ("" before the name is known). nil means the client IP alone,
	// as "ip:<addr>".
	AuthKeys func(c *postern.Conn, user string) []string

	// RefuseQuotedLocalParts refuses MAIL FROM and RCPT TO addresses whose
	// local part is not an RFC 5321 Dot-string and so must be quoted
	// ("a b"@example.org, "ceo(x)"@example.org, .dot@example.org), with
	// 553 5.1.3 (5.1.7 for the sender), for sites whose mail store cannot
	// take them. By default they are accepted, as RFC 5321 §4.1.2 requires
	// and Postfix and sendmail do, and carried quoted to the next hop.
	RefuseQuotedLocalParts bool

	// DisableSMTPUTF8 and DisableDSN turn off the RFC 6531 and RFC 3461
	// extensions, which are on by default.
	DisableSMTPUTF8 bool
	DisableDSN      bool

	// ProtocolTests, with its Select set, runs postscreen's deep
	// protocol tests (pipelining before the greeting reply, non-SMTP
	// commands, bare LF in commands) on the sessions it selects; a
	// client that fails one is told 421 4.7.0 and disconnected. Off by
	// default.
	ProtocolTests ProtocolTests

	// TxnObserver, if set, is called once for each transaction that
	// reached the end of DATA, with its outcome (metrics, statistics). It
	// runs on the session's goroutine and must be quick.
	TxnObserver func(ctx context.Context, r TxnResult)

	// Now is the clock; default time.Now.
	Now func() time.Time
	// NewID makes connection and transaction IDs; default random,
	// time-ordered 16-character IDs.
	NewID func() string
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Handoff == nil {
		return cfg, fmt.Errorf("%w: Handoff is required", ErrConfig)
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		cfg.Hostname = h
	}
	if cfg.Logger == nil {
		cfg.Logger = postern.DiscardLogger()
	}
	setDefault(&cfg.MaxMessageBytes, 10<<20)
	setDefault(&cfg.MaxRecipients, 1000)
	setDefault(&cfg.RecipientOvershootLimit, 1000)
	if cfg.RecipientOvershootLimit < 0 {
		cfg.RecipientOvershootLimit = 0
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = AutoMaxConnections()
	}
	setDefault(&cfg.MaxHeaderBytes, 256<<10)
	setDefault(&cfg.MaxHops, DefaultMaxHops)
	setDefault(&cfg.MaxCommandLine, 2048)
	setDefault(&cfg.SpoolMemoryBytes, 1<<20)
	setDefault(&cfg.CommandTimeout, 5*time.Minute)
	setDefault(&cfg.DataTimeout, 3*time.Minute)
	setDefault(&cfg.SessionTimeout, time.Hour)
	setDefault(&cfg.ConnectTimeout, 30*time.Second)
	setDefault(&cfg.ReverseDNSTimeout, 10*time.Second)
	setDefault(&cfg.SoftErrorLimit, 10)
	setDefault(&cfg.HardErrorLimit, 20)
	setDefault(&cfg.ErrorSleep, time.Second)
	if cfg.SessionTimeout < 0 {
		cfg.SessionTimeout = 0
	}
	if cfg.ErrorSleep < 0 {
		cfg.ErrorSleep = 0
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = NewID
	}
	if cfg.AuthKeys == nil {
		cfg.AuthKeys = func(c *postern.Conn, _ string) []string { return []string{"ip:" + c.RemoteAddr().String()} }
	}
	switch {
	case cfg.MaxMessageBytes < 0, cfg.MaxRecipients < 0, cfg.MaxHeaderBytes < 0, cfg.SpoolMemoryBytes < 0:
		return cfg, fmt.Errorf("%w: negative size limit", ErrConfig)
	case cfg.BareNewline > BareNewlineReject:
		return cfg, fmt.Errorf("%w: unknown BareNewline %d", ErrConfig, cfg.BareNewline)
	case cfg.MaxCommandLine < 512:
		return cfg, fmt.Errorf("%w: MaxCommandLine %d is below RFC 5321's 512", ErrConfig, cfg.MaxCommandLine)
	case cfg.MaxCommandLine > MaxCommandLineLimit:
		return cfg, fmt.Errorf("%w: MaxCommandLine %d is over %d", ErrConfig, cfg.MaxCommandLine, MaxCommandLineLimit)
	case cfg.HardErrorLimit < cfg.SoftErrorLimit:
		return cfg, fmt.Errorf("%w: HardErrorLimit %d below SoftErrorLimit %d", ErrConfig, cfg.HardErrorLimit, cfg.SoftErrorLimit)
	case cfg.CommandTimeout < 0, cfg.DataTimeout < 0, cfg.ConnectTimeout < 0, cfg.ReverseDNSTimeout < 0:
		return cfg, fmt.Errorf("%w: negative timeout", ErrConfig)
	case cfg.ImplicitTLS && cfg.TLSConfig == nil:
		return cfg, fmt.Errorf("%w: ImplicitTLS needs TLSConfig", ErrConfig)
	case cfg.RequireTLS && cfg.TLSConfig == nil:
		return cfg, fmt.Errorf("%w: RequireTLS needs TLSConfig", ErrConfig)
	case cfg.RequireAuth && cfg.Auth == nil:
		return cfg, fmt.Errorf("%w: RequireAuth needs Auth", ErrConfig)
	}
	return cfg, nil
}

// MaxCommandLineLimit is the largest Config.MaxCommandLine. go-smtp echoes
// a command's argument in its reply ("250-Hello <name>") and writes a
// reply line longer than its 4096-byte buffer in two pieces; the edge
// reads each reply line from one write (see gosmtp_contract_test.go).
const MaxCommandLineLimit = 4000

func setDefault[T int | int64 | time.Duration](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// NewID returns a 16-character ID: 48 bits of milliseconds then 32 random
// bits, in Crockford's base32, so IDs sort by time and are safe in file
// names and log searches.
func NewID() string {
	var b [10]byte
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}
