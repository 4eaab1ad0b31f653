package rspamd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// Errors of the package. Scan and Ping return a *scanner.Error, which
// names the adapter and the server (so ErrProtocol and ErrServer do not
// repeat "rspamd") and is scanner.ErrScanner.
var (
	// ErrConfig is wrapped by New for an invalid configuration.
	ErrConfig = errors.New("rspamd: invalid configuration")
	// ErrProtocol is wrapped when rspamd answers something that is not a
	// /checkv2 reply.
	ErrProtocol = errors.New("protocol error")
	// ErrServer is wrapped when rspamd answers with an HTTP error or an
	// "error" member.
	ErrServer = errors.New("server error")
)

// Defaults of Config.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultTimeout     = time.Minute
	DefaultMaxSize     = 20 << 20
	maxReply           = 4 << 20
)

// Config configures a Client. Addrs is required.
type Config struct {
	// Addrs are rspamd normal (or proxy, or controller) workers, tried in
	// order until one answers: "127.0.0.1:11333" or a Unix socket path
	// (see scanner.SplitAddr).
	Addrs []string
	// Password, if set, is sent in the Password header (the controller
	// worker wants it).
	Password string
	// DialTimeout bounds connecting to one server. Default 5 s.
	DialTimeout time.Duration
	// Timeout bounds one request to one server. Default 1 minute.
	Timeout time.Duration
	// MaxSize is the largest message sent; a larger one fails with
	// scanner.ErrTooLarge. Default 20 MiB.
	MaxSize int64
	// Dial connects to a server; nil means a net.Dialer.
	Dial scanner.DialFunc
	// Logger receives failovers (Warn); nil discards.
	Logger *slog.Logger
}

type server struct {
	addr   string
	client *http.Client
}

// Client asks rspamd's HTTP protocol (POST /checkv2). It implements
// scanner.Scanner and is safe for concurrent use.
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
	if cfg.DialTimeout < 0 || cfg.Timeout < 0 || cfg.MaxSize < 0 {
		return nil, fmt.Errorf("%w: negative timeout or size", ErrConfig)
	}
	if strings.ContainsAny(cfg.Password, "\r\n") {
		return nil, fmt.Errorf("%w: password with a line break", ErrConfig)
	}
	c := &Client{cfg: cfg, log: cfg.Logger}
	if c.cfg.DialTimeout == 0 {
		c.cfg.DialTimeout = DefaultDialTimeout
	}
	if c.cfg.Timeout == 0 {
		c.cfg.Timeout = DefaultTimeout
	}
	if c.cfg.MaxSize == 0 {
		c.cfg.MaxSize = DefaultMaxSize
	}
	dial := c.cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	if c.log == nil {
		c.log = postern.DiscardLogger()
	}
	for _, a := range cfg.Addrs {
		network, address, err := scanner.SplitAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		dialTimeout := c.cfg.DialTimeout
		tr := &http.Transport{
			// Every request of this transport goes to this one server,
			// whatever the URL says.
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				ctx, cancel := context.WithTimeout(ctx, dialTimeout)
				defer cancel()
				return dial(ctx, network, address)
			},
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}
		c.servers = append(c.servers, server{addr: a, client: &http.Client{Transport: tr}})
		c.addrs = append(c.addrs, a)
	}
	return c, nil
}

// Name returns "rspamd".
func (c *Client) Name() string { return "rspamd" }

// Close closes idle connections.
func (c *Client) Close() {
	for _, s := range c.servers {
		s.client.CloseIdleConnections()
	}
}

// Scan posts the message to /checkv2 with the envelope in the request
// headers (From, Rcpt, IP, Helo, Hostname, Queue-Id, User) and parses the
// JSON reply. Servers are tried in order until one answers. The error
// is a *scanner.Error (scanner.ErrScanner), wrapping scanner.ErrTooLarge
// for a message over MaxSize.
func (c *Client) Scan(ctx context.Context, msg io.Reader, env *scanner.Envelope) (scanner.Result, error) {
	body, size, err := scanner.SizedBody(msg, c.cfg.MaxSize)
	if err != nil {
		return scanner.Result{}, scanner.Failed(c.Name(), err)
	}
	// Each request reads its own section: after a failed request the HTTP
	// transport may still be reading the old one while the next server is
	// tried.
	ra, ok := body.(io.ReaderAt)
	if !ok {
		b, err := io.ReadAll(body)
		if err != nil {
			return scanner.Result{}, scanner.Failed(c.Name(), err)
		}
		body, ra = bytes.NewReader(b), bytes.NewReader(b)
	}
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return scanner.Result{}, scanner.Failed(c.Name(), err)
	}
	return scanner.Failover(ctx, c.log, c.Name(), c.addrs, body, func(i int) (scanner.Result, error) {
		return c.scanAt(ctx, c.servers[i], io.NewSectionReader(ra, start, size), size, env)
	})
}

// headerSafe keeps envelope text (chosen by the client) from breaking the
// request's header.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func (c *Client) scanAt(ctx context.Context, s server, body io.Reader, size int64, env *scanner.Envelope) (scanner.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://rspamd/checkv2", io.NopCloser(io.LimitReader(body, size)))
	if err != nil {
		return scanner.Result{}, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	h := req.Header
	if c.cfg.Password != "" {
		h.Set("Password", c.cfg.Password)
	}
	if env != nil {
		set := func(k, v string) {
			if v != "" {
				h.Set(k, headerSafe(v))
			}
		}
		set("From", env.From)
		for _, r := range env.Rcpts {
			h.Add("Rcpt", headerSafe(r))
		}
		if env.IP.IsValid() {
			h.Set("IP", env.IP.String())
		}
		set("Helo", env.Helo)
		set("Hostname", env.Hostname)
		set("Queue-Id", env.QueueID)
		set("User", env.User)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return scanner.Result{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return scanner.Result{}, fmt.Errorf("%w: reading the reply: %v", ErrProtocol, err)
	}
	if len(data) > maxReply {
		return scanner.Result{}, fmt.Errorf("%w: reply over %d bytes", ErrProtocol, maxReply)
	}
	if resp.StatusCode != http.StatusOK {
		return scanner.Result{}, fmt.Errorf("%w: HTTP %s: %s", ErrServer, resp.Status, snippet(data))
	}
	return ParseReply(data)
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return strconv.Quote(string(b))
}

type symbol struct {
	Name        string   `json:"name"`
	Score       *float64 `json:"score"`
	Description string   `json:"description"`
}

type reply struct {
	IsSkipped     bool              `json:"is_skipped"`
	Score         *float64          `json:"score"`
	RequiredScore *float64          `json:"required_score"`
	Action        string            `json:"action"`
	Symbols       map[string]symbol `json:"symbols"`
	Error         string            `json:"error"`
	// Messages holds smtp_message, the text for the client.
	Messages map[string]json.RawMessage `json:"messages"`
	// Subject is the rewritten Subject ("rewrite subject").
	Subject string `json:"subject"`
	// Milter holds add_headers and remove_headers (read in order by
	// parseMilter); DKIMSignature is the signature of dkim_signing
	// when rspamd hands it over outside the milter block.
	Milter        json.RawMessage `json:"milter"`
	DKIMSignature json.RawMessage `json:"dkim-signature"`
}

// spamActions are the actions that mean "this is spam"; greylist and soft
// reject are about the sender's behaviour, not the content.
var spamActions = []string{"reject", "add header", "rewrite subject"}

// ParseReply parses a /checkv2 JSON reply: action, score,
// required_score and symbols are used. A reply with an "error" member
// wraps ErrServer; one that lacks action or score wraps ErrProtocol.
func ParseReply(data []byte) (scanner.Result, error) {
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		return scanner.Result{}, fmt.Errorf("%w: %v: %s", ErrProtocol, err, snippet(data))
	}
	if r.Error != "" {
		return scanner.Result{}, fmt.Errorf("%w: %s", ErrServer, snippet([]byte(r.Error)))
	}
	if r.Action == "" || len(r.Action) > 64 || r.Score == nil {
		return scanner.Result{}, fmt.Errorf("%w: no action or score in %s", ErrProtocol, snippet(data))
	}
	res := scanner.Result{Scanner: "rspamd", Scored: true, Score: *r.Score, Action: r.Action}
	if r.RequiredScore != nil {
		res.Threshold = *r.RequiredScore
	}
	if !finite(res.Score) || !finite(res.Threshold) {
		return scanner.Result{}, fmt.Errorf("%w: score not a finite number", ErrProtocol)
	}
	res.Spam = slices.Contains(spamActions, r.Action)
	for key, s := range r.Symbols {
		name := s.Name
		if name == "" {
			name = key
		}
		if name == "" {
			continue // a symbol without a name says nothing
		}
		sym := scanner.Symbol{Name: name, Description: s.Description}
		if s.Score != nil && finite(*s.Score) {
			sym.Score = *s.Score
		}
		res.Symbols = append(res.Symbols, sym)
	}
	slices.SortFunc(res.Symbols, func(a, b scanner.Symbol) int { return strings.Compare(a.Name, b.Name) })
	if raw, ok := r.Messages["smtp_message"]; ok {
		var msg string
		if json.Unmarshal(raw, &msg) == nil {
			res.Message = truncate(msg, maxText)
		}
	}
	res.Subject = truncate(r.Subject, maxText)
	var err error
	if res.AddHeaders, res.RemoveHeaders, err = parseMilter(r.Milter); err != nil {
		return scanner.Result{}, fmt.Errorf("%w: milter block: %v", ErrProtocol, err)
	}
	if len(r.DKIMSignature) > 0 && !slices.ContainsFunc(res.AddHeaders, func(h scanner.HeaderField) bool {
		return strings.EqualFold(h.Name, "DKIM-Signature")
	}) {
		sigs, err := stringOrList(r.DKIMSignature)
		if err != nil {
			return scanner.Result{}, fmt.Errorf("%w: dkim-signature: %v", ErrProtocol, err)
		}
		for _, sig := range sigs {
			res.AddHeaders = addField(res.AddHeaders, "DKIM-Signature", sig)
		}
	}
	return res, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Ping asks GET /ping of the servers in order until one answers "pong".
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
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://rspamd/ping", nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "pong" {
		return fmt.Errorf("%w: /ping answered %s %s", ErrProtocol, resp.Status, snippet(b))
	}
	return nil
}
