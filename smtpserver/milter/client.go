package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/postern/postern"
)

// ErrReplaceBody is the failure of a milter that replaced the message
// body: Postern records header edits on a message, never a new body, so
// the milter's failure policy (ClientConfig.OnError) answers it.
var ErrReplaceBody = errors.New("milter: the milter replaced the body, which Postern does not apply")

// Defaults of ClientConfig, Postfix's for its milter client.
const (
	DefaultConnectTimeout     = 30 * time.Second  // milter_connect_timeout
	DefaultCommandTimeout     = 30 * time.Second  // milter_command_timeout
	DefaultContentTimeout     = 300 * time.Second // milter_content_timeout
	DefaultClientIdleTimeout  = 10 * time.Minute
	DefaultMaxAddedRecipients = 100
)

// ClientConfig configures a Client: one external milter. The zero value
// of every field but Address is its documented default.
type ClientConfig struct {
	// Address of the milter, as ParseAddress reads it
	// ("inet:127.0.0.1:8891", "unix:/run/opendkim/opendkim.sock").
	// Required.
	Address string
	// Name names the milter in logs and in the chain's decisions
	// ("milter:" + Name); default the address.
	Name string
	// OnError is what a failure of the milter answers: unreachable, past
	// its timeout, a protocol error, a body replacement. The default,
	// OnErrorTempFail, is Postfix's milter_default_action: 451 4.7.1
	// "Service unavailable, try again later". OnErrorAccept goes on
	// without the milter for the rest of the transaction (fail open);
	// OnErrorReject answers 550 5.7.1 (554 at the end of DATA).
	OnError postern.ErrorPolicy
	// ConnectTimeout bounds connecting and negotiating. Default 30s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each envelope event (connect, HELO, MAIL,
	// RCPT and DATA) and its answer. Default 30s.
	CommandTimeout time.Duration
	// ContentTimeout bounds sending the header, the body and waiting for
	// the answer to the end of the message; a progress report from the
	// milter (SMFIR_PROGRESS) restarts it, within the caller's deadline.
	// Default 300s.
	ContentTimeout time.Duration
	// IdleTimeout closes the connection of a transaction that went quiet
	// (its client left without a new MAIL on the same connection). A
	// transaction that goes on after it gets a new connection, the
	// envelope sent again. Default 10m.
	IdleTimeout time.Duration
	// Hostname is this MTA's name for the milter (macro j); default
	// os.Hostname().
	Hostname string
	// DaemonName is {daemon_name}; default "postern".
	DaemonName string
	// MaxPacketBytes bounds one packet from the milter; a larger one is
	// a failure of the milter. Default DefaultMaxPacketBytes.
	MaxPacketBytes int
	// MaxAddedRecipients bounds the recipients the milter may add to one
	// message; further ones are left out (and logged). Default 100.
	MaxAddedRecipients int
	// Logger receives the milter's failures and refused modifications;
	// nil discards. Each transaction's own logger (Conn.Log) is used when
	// there is one.
	Logger *slog.Logger
}

// Client is a Postern filter that calls one external milter (opendkim,
// clamav-milter, rspamd's proxy, any milter speaking protocol version 2
// to 6) and applies its answers and modifications. It implements the
// MAIL, RCPT and DATA stages; see the package documentation for what
// maps to what. Put one Client per milter in a postern.Chain, in the
// order the milters should run (Postfix's smtpd_milters order). It is
// safe for concurrent use.
type Client struct {
	cfg     ClientConfig
	name    string
	network string
	addr    string
	// txnKey holds a transaction's milter session in Txn.Values, connKey
	// the last one of a connection in Conn.Values (to end it when the
	// next transaction starts).
	txnKey  *postern.Key[*clientSession]
	connKey *postern.Key[*clientSession]
}

// NewClient validates cfg and makes the filter. It does not connect:
// each transaction opens its own connection to the milter at MAIL.
func NewClient(cfg ClientConfig) (*Client, error) {
	network, addr, err := ParseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if !cfg.OnError.Valid() {
		return nil, fmt.Errorf("%w: unknown error policy %v", ErrConfig, cfg.OnError)
	}
	setDefault(&cfg.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&cfg.CommandTimeout, DefaultCommandTimeout)
	setDefault(&cfg.ContentTimeout, DefaultContentTimeout)
	setDefault(&cfg.IdleTimeout, DefaultClientIdleTimeout)
	setDefault(&cfg.MaxPacketBytes, DefaultMaxPacketBytes)
	setDefault(&cfg.MaxAddedRecipients, DefaultMaxAddedRecipients)
	switch {
	case cfg.ConnectTimeout < 0 || cfg.CommandTimeout < 0 || cfg.ContentTimeout < 0 || cfg.IdleTimeout < 0:
		return nil, fmt.Errorf("%w: negative timeout", ErrConfig)
	case cfg.MaxPacketBytes < 64<<10:
		return nil, fmt.Errorf("%w: MaxPacketBytes %d is under 64 KiB", ErrConfig, cfg.MaxPacketBytes)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.DaemonName == "" {
		cfg.DaemonName = "postern"
	}
	if cfg.Logger == nil {
		cfg.Logger = postern.DiscardLogger()
	}
	name := cfg.Name
	if name == "" {
		name = cfg.Address
	}
	c := &Client{cfg: cfg, name: "milter:" + name, network: network, addr: addr}
	c.txnKey = postern.NewKey[*clientSession](c.name)
	c.connKey = postern.NewKey[*clientSession](c.name + ":conn")
	return c, nil
}

// Name returns "milter:" and the milter's name.
func (c *Client) Name() string { return c.name }

// CheckMail opens the milter session of the transaction and sends the
// connect, HELO and MAIL events.
func (c *Client) CheckMail(ctx context.Context, conn *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	if prev, ok := postern.GetValue(&conn.Values, c.connKey); ok {
		prev.close() // the client started over (RSET, a new MAIL)
	}
	s := c.newSession(conn)
	postern.SetValue(&t.Values, c.txnKey, s)
	postern.SetValue(&conn.Values, c.connKey, s)
	return s.run(ctx, postern.StageMail, conn, t, func() (postern.Verdict, error) { return s.envelope(ctx, conn, t) })
}

// CheckRcpt sends one RCPT event; the milter's answer is this
// recipient's.
func (c *Client) CheckRcpt(ctx context.Context, conn *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	s := c.session(conn, t)
	return s.run(ctx, postern.StageRcpt, conn, t, func() (postern.Verdict, error) { return s.rcpt(ctx, conn, t, r) })
}

// CheckData sends the message as the filters before have left it (their
// header edits applied) and applies the milter's answer and
// modifications. The session ends with it.
func (c *Client) CheckData(ctx context.Context, conn *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	s := c.session(conn, t)
	defer func() {
		s.close()
		postern.DeleteValue(&t.Values, c.txnKey)
	}()
	return s.run(ctx, postern.StageData, conn, t, func() (postern.Verdict, error) { return s.data(ctx, conn, t, m) })
}

// session returns the transaction's session, or a new one (the filter
// came into force after MAIL, or a caller skipped CheckMail), which
// sends the envelope first.
func (c *Client) session(conn *postern.Conn, t *postern.Txn) *clientSession {
	if s, ok := postern.GetValue(&t.Values, c.txnKey); ok {
		return s
	}
	s := c.newSession(conn)
	postern.SetValue(&t.Values, c.txnKey, s)
	return s
}

// failVerdict answers a failure of the milter under OnError.
func (c *Client) failVerdict(st postern.Stage, err error) postern.Verdict {
	return c.cfg.OnError.Or(postern.OnErrorTempFail).Verdict(st, postern.ESC(4, 7, 1), "Service unavailable",
		c.name+": "+err.Error())
}
