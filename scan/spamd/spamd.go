package spamd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// Errors of the package. Scan and Ping return a *scanner.Error, which
// names the adapter and the server (so ErrProtocol and ErrServer do not
// repeat "spamd") and is scanner.ErrScanner.
var (
	// ErrConfig is wrapped by New for an invalid configuration.
	ErrConfig = errors.New("spamd: invalid configuration")
	// ErrProtocol is wrapped when spamd answers something that is not
	// SPAMD/1.x.
	ErrProtocol = errors.New("protocol error")
	// ErrServer is wrapped when spamd answers with a non-zero response
	// code (EX_USAGE, EX_TEMPFAIL, …).
	ErrServer = errors.New("server error")
)

// Command is the request sent to spamd.
type Command uint8

// Commands (spamd's PROTOCOL file).
const (
	// Symbols asks for the verdict and the names of the rules that hit.
	// The default.
	Symbols Command = iota
	// Report asks for the verdict and the report, which carries each
	// rule's score and description.
	Report
	// Check asks for the verdict only.
	Check
)

func (c Command) String() string {
	switch c {
	case Report:
		return "REPORT"
	case Check:
		return "CHECK"
	}
	return "SYMBOLS"
}

// Defaults of Config.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultTimeout     = 2 * time.Minute
	DefaultMaxSize     = 512 << 10 // spamc's --max-size default is 500 KB
	maxBody            = 1 << 20
	maxHeaderLines     = 100
	maxLine            = 8 << 10
)

// Config configures a Client. Addrs is required.
type Config struct {
	// Addrs are spamd servers, tried in order until one answers:
	// "127.0.0.1:783" or a Unix socket path (see scanner.SplitAddr).
	Addrs []string
	// User, if set, is sent as the User header: spamd loads that user's
	// preferences.
	User string
	// Command: Symbols (default), Report or Check.
	Command Command
	// DialTimeout bounds connecting to one server. Default 5 s.
	DialTimeout time.Duration
	// Timeout bounds one request to one server. Default 2 minutes.
	Timeout time.Duration
	// MaxSize is the largest message sent; a larger one fails with
	// scanner.ErrTooLarge (the filter then skips spam scoring, as spamc
	// does). Default 512 KiB.
	MaxSize int64
	// Dial connects to a server; nil means a net.Dialer.
	Dial scanner.DialFunc
	// Logger receives failovers (Warn); nil discards.
	Logger *slog.Logger
}

type server struct {
	addr, network, address string
}

// Client speaks SpamAssassin's spamd protocol (SPAMC/1.5). It
// implements scanner.Scanner and is safe for concurrent use.
type Client struct {
	cfg     Config
	servers []server
	addrs   []string // servers' addresses, for failover logs and errors
	log     *slog.Logger
}

var _ scanner.Scanner = (*Client)(nil)

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no server address", ErrConfig)
	}
	if cfg.DialTimeout < 0 || cfg.Timeout < 0 || cfg.MaxSize < 0 || cfg.Command > Check {
		return nil, fmt.Errorf("%w: negative timeout or size, or unknown command", ErrConfig)
	}
	if strings.ContainsAny(cfg.User, "\r\n") {
		return nil, fmt.Errorf("%w: user name with a line break", ErrConfig)
	}
	c := &Client{cfg: cfg, log: cfg.Logger}
	for _, a := range cfg.Addrs {
		network, address, err := scanner.SplitAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		c.servers = append(c.servers, server{addr: a, network: network, address: address})
		c.addrs = append(c.addrs, a)
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
	if c.cfg.Dial == nil {
		c.cfg.Dial = (&net.Dialer{}).DialContext
	}
	if c.log == nil {
		c.log = postern.DiscardLogger()
	}
	return c, nil
}

// Name returns "spamd".
func (c *Client) Name() string { return "spamd" }

// Scan sends the message to spamd and parses the verdict. Servers are
// tried in order until one answers. The error is a *scanner.Error
// (scanner.ErrScanner), wrapping scanner.ErrTooLarge for a message over
// MaxSize.
func (c *Client) Scan(ctx context.Context, msg io.Reader, _ *scanner.Envelope) (scanner.Result, error) {
	body, size, err := scanner.SizedBody(msg, c.cfg.MaxSize)
	if err != nil {
		return scanner.Result{}, scanner.Failed(c.Name(), err)
	}
	return scanner.Failover(ctx, c.log, c.Name(), c.addrs, body, func(i int) (scanner.Result, error) {
		return c.scanAt(ctx, c.servers[i], body, size)
	})
}

func (c *Client) conn(ctx context.Context, s server) (net.Conn, func(), error) {
	return scanner.Dial(ctx, c.cfg.Dial, s.network, s.address, c.cfg.DialTimeout, c.cfg.Timeout)
}

type closeWriter interface{ CloseWrite() error }

func (c *Client) scanAt(ctx context.Context, s server, body io.Reader, size int64) (scanner.Result, error) {
	conn, done, err := c.conn(ctx, s)
	if err != nil {
		return scanner.Result{}, err
	}
	defer done()
	bw := bufio.NewWriterSize(conn, 32<<10)
	// spamd PROTOCOL: request line, headers, blank line, message.
	fmt.Fprintf(bw, "%s SPAMC/1.5\r\nContent-length: %d\r\n", c.cfg.Command, size)
	if c.cfg.User != "" {
		fmt.Fprintf(bw, "User: %s\r\n", c.cfg.User)
	}
	bw.WriteString("\r\n")
	if _, err := io.CopyN(bw, body, size); err != nil {
		return scanner.Result{}, fmt.Errorf("send message: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return scanner.Result{}, err
	}
	if cw, ok := conn.(closeWriter); ok {
		_ = cw.CloseWrite() // as spamc does; spamd reads Content-length bytes anyway
	}
	return parseResponse(bufio.NewReaderSize(conn, 4096), c.cfg.Command)
}

// parseResponse reads "SPAMD/1.1 0 EX_OK", headers ("Spam: True ; 15.0 /
// 5.0", "Content-length: N"), a blank line and, for SYMBOLS and REPORT,
// the body.
func parseResponse(br *bufio.Reader, cmd Command) (scanner.Result, error) {
	res := scanner.Result{Scanner: "spamd"}
	status, err := readLine(br)
	if err != nil {
		return res, err
	}
	proto, rest, _ := strings.Cut(status, " ")
	if !strings.HasPrefix(proto, "SPAMD/1.") {
		return res, fmt.Errorf("%w: status line %q", ErrProtocol, trunc(status))
	}
	codeText, msg, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || code < 0 {
		return res, fmt.Errorf("%w: status line %q", ErrProtocol, trunc(status))
	}
	if code != 0 {
		return res, fmt.Errorf("%w: %d %s", ErrServer, code, trunc(msg))
	}
	length := int64(-1)
	gotSpam := false
	for n := 0; ; n++ {
		if n > maxHeaderLines {
			return res, fmt.Errorf("%w: more than %d header lines", ErrProtocol, maxHeaderLines)
		}
		line, err := readLine(br)
		if err != nil {
			return res, err
		}
		if line == "" {
			break
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			return res, fmt.Errorf("%w: header line %q", ErrProtocol, trunc(line))
		}
		val = strings.TrimSpace(val)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			l, err := strconv.ParseInt(val, 10, 64)
			if err != nil || l < 0 || l > maxBody {
				return res, fmt.Errorf("%w: Content-length %q", ErrProtocol, trunc(val))
			}
			length = l
		case "spam":
			if err := parseSpamHeader(val, &res); err != nil {
				return res, err
			}
			gotSpam = true
		}
	}
	if !gotSpam {
		return res, fmt.Errorf("%w: no Spam header", ErrProtocol)
	}
	res.Scored = true
	if cmd == Check {
		return res, nil
	}
	var body []byte
	if length >= 0 {
		body = make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return res, fmt.Errorf("%w: body shorter than Content-length: %v", ErrProtocol, err)
		}
	} else {
		body, err = io.ReadAll(io.LimitReader(br, maxBody+1))
		if err != nil {
			return res, err
		}
		if len(body) > maxBody {
			return res, fmt.Errorf("%w: body over %d bytes", ErrProtocol, maxBody)
		}
	}
	if cmd == Symbols {
		res.Symbols = parseSymbols(string(body))
	} else {
		res.Symbols = parseReport(string(body))
	}
	return res, nil
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// readLine reads a CRLF (or LF) terminated line of at most maxLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxLine {
			return "", fmt.Errorf("%w: line over %d bytes", ErrProtocol, maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("%w: connection closed in the middle of the response", ErrProtocol)
			}
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}

// parseSpamHeader parses "True ; 1000.0 / 5.0" (also "Yes" and "False",
// "No").
func parseSpamHeader(v string, res *scanner.Result) error {
	verdict, scores, ok := strings.Cut(v, ";")
	if !ok {
		return fmt.Errorf("%w: Spam header %q", ErrProtocol, trunc(v))
	}
	switch strings.ToLower(strings.TrimSpace(verdict)) {
	case "true", "yes":
		res.Spam = true
	case "false", "no":
		res.Spam = false
	default:
		return fmt.Errorf("%w: Spam header %q", ErrProtocol, trunc(v))
	}
	score, threshold, ok := strings.Cut(scores, "/")
	if !ok {
		return fmt.Errorf("%w: Spam header %q", ErrProtocol, trunc(v))
	}
	var err1, err2 error
	res.Score, err1 = parseFloat(score)
	res.Threshold, err2 = parseFloat(threshold)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%w: Spam header %q", ErrProtocol, trunc(v))
	}
	return nil
}

func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("not a finite number")
	}
	return f, nil
}

// parseSymbols parses the SYMBOLS body: rule names separated by commas.
func parseSymbols(body string) []scanner.Symbol {
	var out []scanner.Symbol
	for name := range strings.SplitSeq(body, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, scanner.Symbol{Name: name})
		}
	}
	return out
}

// parseReport takes the rule table from a REPORT body:
//
//	 pts rule name              description
//	---- ---------------------- ------------------------------
//	1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email
//	-0.0 NO_RECEIVED            Informational: message has no Received headers
//
// A line that does not start with a score continues the description
// above it.
func parseReport(body string) []scanner.Symbol {
	var out []scanner.Symbol
	inTable := false
	for line := range strings.SplitSeq(body, "\n") {
		line = strings.TrimRight(line, "\r")
		if !inTable {
			inTable = strings.HasPrefix(line, "----")
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		score, err := parseFloat(fields[0])
		if err != nil || len(fields) < 2 {
			if len(out) > 0 {
				out[len(out)-1].Description = strings.TrimSpace(out[len(out)-1].Description + " " + strings.Join(fields, " "))
			}
			continue
		}
		out = append(out, scanner.Symbol{Name: fields[1], Score: score, Description: strings.Join(fields[2:], " ")})
	}
	return out
}

// Ping asks the servers in order until one answers PONG.
func (c *Client) Ping(ctx context.Context) error {
	var errs []error
	for _, s := range c.servers {
		err := c.ping(ctx, s)
		if err == nil {
			return nil
		}
		errs = append(errs, scanner.ServerError(s.addr, err))
	}
	return scanner.Failed(c.Name(), errs...)
}

func (c *Client) ping(ctx context.Context, s server) error {
	conn, done, err := c.conn(ctx, s)
	if err != nil {
		return err
	}
	defer done()
	if _, err := io.WriteString(conn, "PING SPAMC/1.5\r\n\r\n"); err != nil {
		return err
	}
	line, err := readLine(bufio.NewReader(conn))
	if err != nil {
		return err
	}
	if f := strings.Fields(line); len(f) != 3 || !strings.HasPrefix(f[0], "SPAMD/1.") || f[1] != "0" || f[2] != "PONG" {
		return fmt.Errorf("%w: PING answered %q", ErrProtocol, trunc(line))
	}
	return nil
}
