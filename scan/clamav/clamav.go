package clamav

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// Errors of the package. Scan, Ping and Version return a *scanner.Error,
// which names the adapter and the server (so ErrProtocol and ErrServer
// do not repeat "clamav") and is scanner.ErrScanner.
var (
	// ErrConfig is wrapped by New for an invalid configuration.
	ErrConfig = errors.New("clamav: invalid configuration")
	// ErrProtocol is wrapped when clamd answers something that is not a
	// clamd reply.
	ErrProtocol = errors.New("protocol error")
	// ErrServer is wrapped when clamd answers with an error ("... ERROR").
	ErrServer = errors.New("server error")
)

// Defaults of Config.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultTimeout     = 2 * time.Minute
	DefaultMaxSize     = 25 << 20 // clamd's StreamMaxLength default
	DefaultChunkSize   = 64 << 10
	// maxReply bounds a reply read from clamd.
	maxReply = 4096
)

// Config configures a Client. Addrs is required; zero values of the rest
// mean their defaults.
type Config struct {
	// Addrs are clamd servers, tried in order until one answers:
	// "127.0.0.1:3310" (TCPSocket) or "/run/clamav/clamd.ctl" (LocalSocket;
	// see scanner.SplitAddr).
	Addrs []string
	// DialTimeout bounds connecting to one server. Default 5 s.
	DialTimeout time.Duration
	// Timeout bounds one scan on one server, from connecting to the
	// reply. Default 2 minutes.
	Timeout time.Duration
	// MaxSize is the largest message sent; a larger one is not scanned and
	// Scan fails with scanner.ErrTooLarge. Keep it at most clamd's
	// StreamMaxLength. Default 25 MiB.
	MaxSize int64
	// ChunkSize is the size of the INSTREAM chunks. Default 64 KiB.
	ChunkSize int
	// Dial connects to a server; nil means a net.Dialer.
	Dial scanner.DialFunc
	// Logger receives failovers (Warn); nil discards.
	Logger *slog.Logger
}

type server struct {
	addr, network, address string
}

// Client speaks the clamd protocol (clamd(8): zINSTREAM, zPING,
// zVERSION). It implements scanner.Scanner and is safe for concurrent use.
type Client struct {
	cfg     Config
	servers []server
	log     *slog.Logger
}

var _ scanner.Scanner = (*Client)(nil)

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no server address", ErrConfig)
	}
	if cfg.DialTimeout < 0 || cfg.Timeout < 0 || cfg.MaxSize < 0 || cfg.ChunkSize < 0 || cfg.ChunkSize > 1<<30 {
		return nil, fmt.Errorf("%w: negative or oversized timeout, size or chunk", ErrConfig)
	}
	c := &Client{cfg: cfg, log: cfg.Logger}
	for _, a := range cfg.Addrs {
		network, address, err := scanner.SplitAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		c.servers = append(c.servers, server{addr: a, network: network, address: address})
	}
	if c.cfg.DialTimeout == 0 {
		c.cfg.DialTimeout = DefaultDialTimeout
	}
	if c.cfg.Timeout == 0 {
		c.cfg.Timeout = DefaultTimeout
	}
	if c.cfg.MaxSize == 0 {
		c.cfg.MaxSize = DefaultMaxSize
	}
	if c.cfg.ChunkSize == 0 {
		c.cfg.ChunkSize = DefaultChunkSize
	}
	if c.cfg.Dial == nil {
		c.cfg.Dial = (&net.Dialer{}).DialContext
	}
	if c.log == nil {
		c.log = postern.DiscardLogger()
	}
	return c, nil
}

// Name returns "clamav".
func (c *Client) Name() string { return "clamav" }

// Scan streams the message to clamd with zINSTREAM. A server that cannot
// be reached is skipped for the next; so is one that fails during the
// scan when msg is an io.Seeker (the message is sent again from the
// start). The error is a *scanner.Error (scanner.ErrScanner), wrapping
// scanner.ErrTooLarge for a message over MaxSize or over clamd's own
// limit.
func (c *Client) Scan(ctx context.Context, msg io.Reader, _ *scanner.Envelope) (scanner.Result, error) {
	seeker, _ := msg.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	var errs []error
	for i, s := range c.servers {
		if i > 0 && len(errs) > 0 {
			scanner.LogFailover(ctx, c.log, c.Name(), errs[len(errs)-1])
		}
		res, consumed, err := c.scanAt(ctx, s, msg)
		if err == nil {
			return res, nil
		}
		errs = append(errs, scanner.ServerError(s.addr, err))
		if errors.Is(err, scanner.ErrTooLarge) || ctx.Err() != nil {
			break
		}
		if consumed {
			if seeker == nil {
				break
			}
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				break
			}
		}
	}
	return scanner.Result{}, scanner.Failed(c.Name(), errs...)
}

// conn dials s and sets the deadline of one exchange; stop undoes the
// context watch.
func (c *Client) conn(ctx context.Context, s server) (net.Conn, func(), error) {
	return scanner.Dial(ctx, c.cfg.Dial, s.network, s.address, c.cfg.DialTimeout, c.cfg.Timeout)
}

// scanAt runs one zINSTREAM exchange; consumed reports whether anything
// was read from msg.
func (c *Client) scanAt(ctx context.Context, s server, msg io.Reader) (scanner.Result, bool, error) {
	conn, done, err := c.conn(ctx, s)
	if err != nil {
		return scanner.Result{}, false, err
	}
	defer done()
	if _, err := io.WriteString(conn, "zINSTREAM\x00"); err != nil {
		return scanner.Result{}, false, err
	}
	buf := make([]byte, 4+c.cfg.ChunkSize)
	var total int64
	consumed := false
	for {
		n, rerr := io.ReadFull(msg, buf[4:])
		consumed = consumed || n > 0
		if n > 0 {
			total += int64(n)
			if total > c.cfg.MaxSize {
				return scanner.Result{}, true, fmt.Errorf("%w: over %d bytes", scanner.ErrTooLarge, c.cfg.MaxSize)
			}
			// clamd(8) INSTREAM: each chunk is preceded by its length,
			// four bytes in network byte order.
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, err := conn.Write(buf[:4+n]); err != nil {
				// clamd may have refused the stream and closed: its reply
				// says why.
				if reply, rerr := readReply(conn); rerr == nil && len(reply) > 0 {
					if res, perr := ParseReply(reply); perr != nil {
						return res, true, perr
					}
				}
				return scanner.Result{}, true, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return scanner.Result{}, consumed, fmt.Errorf("read message: %w", rerr)
		}
	}
	if _, err := conn.Write([]byte{0, 0, 0, 0}); err != nil {
		return scanner.Result{}, true, err
	}
	reply, err := readReply(conn)
	if err != nil {
		return scanner.Result{}, true, err
	}
	res, err := ParseReply(reply)
	res.Server = s.addr
	return res, true, err
}

// readReply reads one NUL-terminated reply. A connection closed after a
// whole line is accepted too (clamd answers unknown commands that way).
func readReply(conn net.Conn) (string, error) {
	var b []byte
	chunk := make([]byte, 512)
	for {
		n, err := conn.Read(chunk)
		b = append(b, chunk[:n]...)
		if i := bytes.IndexByte(b, 0); i >= 0 {
			return string(b[:i]), nil
		}
		if len(b) > maxReply {
			return "", fmt.Errorf("%w: reply longer than %d bytes", ErrProtocol, maxReply)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(b) > 0 && b[len(b)-1] == '\n' {
					return string(b), nil
				}
				if len(b) == 0 {
					return "", fmt.Errorf("%w: connection closed without a reply", ErrProtocol)
				}
				return "", fmt.Errorf("%w: connection closed in the middle of reply %q", ErrProtocol, b)
			}
			return "", err
		}
	}
}

// ParseReply parses clamd's answer to INSTREAM: "stream: OK",
// "stream: NAME FOUND" (one line per signature with AllMatchScans), or
// an error such as "INSTREAM size limit exceeded. ERROR". An error
// reply is an error wrapping ErrServer (and scanner.ErrTooLarge for the size
// limit); anything else wraps ErrProtocol.
func ParseReply(reply string) (scanner.Result, error) {
	res := scanner.Result{Scanner: "clamav"}
	lines := strings.FieldsFunc(reply, func(r rune) bool { return r == '\n' || r == 0 })
	if len(lines) == 0 {
		return res, fmt.Errorf("%w: empty reply", ErrProtocol)
	}
	ok := false
	for _, line := range lines {
		line = stripRequestID(strings.TrimSpace(line))
		switch {
		case strings.HasSuffix(line, " ERROR"):
			text := strings.TrimSuffix(line, " ERROR")
			if strings.Contains(text, "size limit exceeded") {
				return scanner.Result{}, fmt.Errorf("%w: %w: %q", ErrServer, scanner.ErrTooLarge, text)
			}
			return scanner.Result{}, fmt.Errorf("%w: %q", ErrServer, text)
		case strings.HasSuffix(line, " FOUND"):
			name := strings.TrimSpace(strings.TrimSuffix(afterFile(line), " FOUND"))
			name = stripHashInfo(name)
			if name == "" {
				return scanner.Result{}, fmt.Errorf("%w: no signature name in %q", ErrProtocol, line)
			}
			res.Infected = true
			res.Viruses = append(res.Viruses, name)
		case afterFile(line) == "OK" && line != "OK":
			ok = true
		default:
			return scanner.Result{}, fmt.Errorf("%w: unexpected reply %q", ErrProtocol, truncate(line, 200))
		}
	}
	if ok && res.Infected {
		return scanner.Result{}, fmt.Errorf("%w: both OK and FOUND in %q", ErrProtocol, truncate(reply, 200))
	}
	return res, nil
}

// stripRequestID removes the "N: " clamd puts before replies in an
// IDSESSION.
func stripRequestID(line string) string {
	i := 0
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	if i > 0 && strings.HasPrefix(line[i:], ": ") {
		return line[i+2:]
	}
	return line
}

// afterFile strips "stream: " (or any "file: ") before the result.
func afterFile(line string) string {
	if i := strings.Index(line, ": "); i >= 0 {
		return line[i+2:]
	}
	return line
}

// stripHashInfo removes the "(md5:size)" clamd adds with
// ExtendedDetectionInfo.
func stripHashInfo(name string) string {
	if !strings.HasSuffix(name, ")") {
		return name
	}
	i := strings.LastIndexByte(name, '(')
	if i <= 0 || !strings.Contains(name[i:], ":") {
		return name
	}
	return name[:i]
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// command sends a short z-command to one server and returns its reply.
func (c *Client) command(ctx context.Context, s server, cmd string) (string, error) {
	conn, done, err := c.conn(ctx, s)
	if err != nil {
		return "", err
	}
	defer done()
	if _, err := io.WriteString(conn, "z"+cmd+"\x00"); err != nil {
		return "", err
	}
	reply, err := readReply(conn)
	return strings.TrimSpace(reply), err
}

// Ping asks the servers in order until one answers PONG; the error wraps
// scanner.ErrScanner when none does.
func (c *Client) Ping(ctx context.Context) error {
	var errs []error
	for _, s := range c.servers {
		reply, err := c.command(ctx, s, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%w: PING answered %q", ErrProtocol, truncate(reply, 100))
		}
		errs = append(errs, scanner.ServerError(s.addr, err))
	}
	return scanner.Failed(c.Name(), errs...)
}

// Version returns the VERSION reply of the first server that answers,
// e.g. "ClamAV 1.4.6/27000/Mon Nov 23 09:00:00 2026".
func (c *Client) Version(ctx context.Context) (string, error) {
	var errs []error
	for _, s := range c.servers {
		reply, err := c.command(ctx, s, "VERSION")
		if err == nil && strings.HasPrefix(reply, "ClamAV ") {
			return reply, nil
		}
		if err == nil {
			err = fmt.Errorf("%w: VERSION answered %q", ErrProtocol, truncate(reply, 100))
		}
		errs = append(errs, scanner.ServerError(s.addr, err))
	}
	return "", scanner.Failed(c.Name(), errs...)
}
