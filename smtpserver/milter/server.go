package milter

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/d--j/go-milter"

	"github.com/postern/postern"
)

// ErrConfig is returned (wrapped) by New and NewClient for an invalid
// configuration.
var ErrConfig = errors.New("milter: invalid config")

// Defaults of Config.
const (
	DefaultMaxMessageBytes  = 10 << 20
	DefaultMaxHeaderBytes   = postern.DefaultMaxHeaderBytes
	DefaultSpoolMemoryBytes = 1 << 20
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxConnections   = 1000
)

// TxnResult is the outcome of one message at its end (SMFIC_BODYEOB), as
// smtpserver.TxnResult is for a message received over SMTP.
type TxnResult struct {
	Conn *postern.Conn
	Txn  *postern.Txn
	// Size of the message as the MTA passed it, in bytes.
	Size int64
	// Outcome is "queued" (the MTA was told to accept), "quarantine",
	// "discard", "reject" or "tempfail"; Code the SMTP reply code the
	// MTA was asked to give (250 for the first three).
	Outcome string
	Code    int
	// QueueID is the MTA's queue ID (macro i), "" when it sent none.
	QueueID  string
	Duration time.Duration
}

// Config configures a Server. The zero value of every field is its
// documented default.
type Config struct {
	// Policy is run at every stage (usually a *postern.Chain); nil
	// accepts everything.
	Policy postern.Filter
	// Logger receives one line per connection and per message; nil
	// discards.
	Logger *slog.Logger

	// MaxMessageBytes bounds a message (header and body as the MTA passes
	// them); larger is refused with 552 5.3.4. Default 10 MiB; set it to
	// the MTA's own limit (Postfix message_size_limit).
	MaxMessageBytes int64
	// MaxHeaderBytes bounds the header block; larger is refused with
	// 552 5.3.4. Default 256 KiB.
	MaxHeaderBytes int
	// SpoolMemoryBytes of a message are kept in memory, the rest in an
	// unlinked temporary file in SpoolDir (os.TempDir() when ""), as
	// smtpserver does. Default 1 MiB.
	SpoolMemoryBytes int
	SpoolDir         string
	// MaxPacketBytes bounds one milter packet from the MTA; a larger one
	// ends the connection (the MTA then applies its
	// milter_default_action). Default DefaultMaxPacketBytes (2 MiB); at
	// least 64 KiB.
	MaxPacketBytes int

	// IdleTimeout is how long the server waits for the MTA's next event.
	// The MTA sends one as its client sends a command, so it must exceed
	// the MTA's own command timeout (Postfix smtpd_timeout, 300 s).
	// Default 10m.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one reply. Default 10s.
	WriteTimeout time.Duration
	// MaxConnections bounds the MTA connections served at once (one per
	// SMTP connection of the MTA); more are closed at once, which the MTA
	// answers with its milter_default_action. Default 1000; negative
	// means no limit.
	MaxConnections int

	// NewID makes connection IDs, and transaction IDs when the MTA sends
	// no queue ID (macro i). Default random, sortable by time.
	NewID func() string
	// TxnObserver, if set, sees the outcome of every message (metrics,
	// statistics).
	TxnObserver func(ctx context.Context, r TxnResult)
}

func (cfg *Config) setDefaults() error {
	if cfg.Logger == nil {
		cfg.Logger = postern.DiscardLogger()
	}
	setDefault(&cfg.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&cfg.SpoolMemoryBytes, DefaultSpoolMemoryBytes)
	setDefault(&cfg.MaxPacketBytes, DefaultMaxPacketBytes)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.MaxConnections, DefaultMaxConnections)
	if cfg.NewID == nil {
		cfg.NewID = newID
	}
	switch {
	case cfg.MaxMessageBytes < 0 || cfg.MaxHeaderBytes < 0 || cfg.SpoolMemoryBytes < 0:
		return fmt.Errorf("%w: negative size", ErrConfig)
	case cfg.MaxPacketBytes < 64<<10:
		return fmt.Errorf("%w: MaxPacketBytes %d is under 64 KiB", ErrConfig, cfg.MaxPacketBytes)
	case cfg.IdleTimeout < 0 || cfg.WriteTimeout < 0:
		return fmt.Errorf("%w: negative timeout", ErrConfig)
	}
	return nil
}

func setDefault[T int | int64 | time.Duration](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}

// Server serves a Postern policy to MTAs over the milter protocol
// (version 2 to 6). It is safe for concurrent use.
type Server struct {
	cfg Config
	srv *milter.Server
	// slots bounds the connections served at once; nil for no limit.
	slots chan struct{}
}

// New validates cfg and makes a server.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg}
	if cfg.MaxConnections > 0 {
		s.slots = make(chan struct{}, cfg.MaxConnections)
	}
	s.srv = milter.NewServer(
		milter.WithDynamicMilter(func(version uint32, action milter.OptAction, protocol milter.OptProtocol, _ milter.DataSize) milter.Milter {
			return s.newSession(version, action, protocol)
		}),
		milter.WithNegotiationCallback(s.negotiate),
		milter.WithMacroRequest(milter.StageConnect, connectMacros),
		milter.WithMacroRequest(milter.StageHelo, heloMacros),
		milter.WithMacroRequest(milter.StageMail, mailMacros),
		milter.WithMacroRequest(milter.StageEOM, eomMacros),
		milter.WithReadTimeout(cfg.IdleTimeout),
		milter.WithWriteTimeout(cfg.WriteTimeout),
	)
	return s, nil
}

// Serve accepts MTA connections on l until Shutdown or Close, and returns
// nil then; another error is l's. Serve may be called for several
// listeners. Listen opens one from a milter address.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(&guardListener{Listener: l, s: s})
	if errors.Is(err, milter.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for the MTA connections to end
// (an MTA ends its milter connection with its SMTP connection) until ctx
// is done, then closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	return s.srv.Close()
}

// negotiate answers the MTA's SMFIC_OPTNEG: its version (2 to 6), the
// actions the server may need among those it offers, and the protocol
// steps the server does without among those it can skip. Actions the
// MTA does not offer are found missing at the end of a message that
// needs them, which then fails closed (tempfail).
func (s *Server) negotiate(mtaVersion, _ uint32, mtaActions, _ milter.OptAction, mtaProtocol, _ milter.OptProtocol, offered milter.DataSize) (uint32, milter.OptAction, milter.OptProtocol, milter.DataSize, error) {
	if mtaVersion < 2 {
		return 0, 0, 0, 0, fmt.Errorf("milter: MTA speaks protocol version %d", mtaVersion)
	}
	version := min(mtaVersion, milter.MaxServerProtocolVersion)
	want := milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptAddRcpt |
		milter.OptRemoveRcpt | milter.OptChangeFrom | milter.OptSetMacros
	// The server needs no DATA or unknown-command events, and sends no
	// replies to header and body events (it answers at the end of the
	// message): fewer round trips per message. It wants header values as
	// they are, leading space included (SMFIP_HDR_LEADSPC).
	proto := milter.OptNoUnknown | milter.OptNoData | milter.OptNoHeaderReply | milter.OptNoBodyReply |
		milter.OptNoEOHReply | milter.OptNoDataReply | milter.OptNoUnknownReply | milter.OptHeaderLeadingSpace
	size := milter.DataSize64K
	for _, d := range []milter.DataSize{milter.DataSize1M, milter.DataSize256K} {
		if offered >= d && int(d)+1 <= s.cfg.MaxPacketBytes {
			size = d
			break
		}
	}
	return version, want & mtaActions, proto & mtaProtocol, size, nil
}

// guardListener puts the packet guard in front of go-milter on every
// connection and bounds how many are served at once.
type guardListener struct {
	net.Listener
	s *Server
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.slots != nil {
			select {
			case l.s.slots <- struct{}{}:
			default:
				l.s.cfg.Logger.Warn("too many MTA connections; closed", "max_connections", l.s.cfg.MaxConnections)
				c.Close()
				continue
			}
		}
		g := newGuardConn(c, l.s.cfg.MaxPacketBytes, checkFromMTA)
		return &slotConn{guardConn: g, s: l.s}, nil
	}
}

// slotConn gives its slot back on the first Close.
type slotConn struct {
	*guardConn
	s    *Server
	once sync.Once
}

func (c *slotConn) Close() error {
	err := c.guardConn.Close()
	c.once.Do(func() {
		if c.s.slots != nil {
			<-c.s.slots
		}
	})
	return err
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a 16-character ID: 48 bits of milliseconds then 32
// random bits, in Crockford's base32 (smtpserver.NewID's form).
func newID() string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}
