package webui

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/scan"
)

// Queue is what the page needs of the relay's queue; *queue.Queue
// satisfies it.
type Queue interface {
	List(queue.ListFilter) []queue.Info
	Show(id string) (queue.Info, error)
	Open(id string) (io.ReadCloser, error)
	Release(id string) error
	Delete(id string) error
	Split(id string, rcpts []string) (string, error)
	Len() (total, held int)
	Oldest() time.Time
}

var _ Queue = (*queue.Queue)(nil)

// Day is one day of the relay's totals, for the admin chart.
type Day struct {
	Date                                                      time.Time
	Received, Delivered, Rejected, Quarantined, Viruses, Spam int
}

// Errors of the package.
var (
	ErrConfig = errors.New("webui: bad configuration")
	// ErrDigest is returned by Digests for a bad DigestConfig.
	ErrDigest = errors.New("webui: bad digest configuration")
)

// Defaults of Config.
const (
	DefaultSessionIdle = 30 * time.Minute
	DefaultSessionMax  = 12 * time.Hour
	DefaultMaxSessions = 10000
	DefaultMaxView     = 10 << 20
	DefaultMaxText     = 1 << 20
	DefaultMaxList     = 500
	DefaultChartDays   = 14
	DefaultLogins      = 4
	DefaultTitle       = "Postern quarantine"
)

// Config configures the page. Queue and Authenticate are required; every
// other zero value is the documented default.
type Config struct {
	// Queue is the relay's queue; its hold area is the quarantine.
	Queue Queue
	// Authenticate checks a user's password (the relay passes its
	// credentials file's CheckPassword); nil error means yes.
	Authenticate func(ctx context.Context, user, password string) error
	// Owns reports whether a recipient address is the user's: the user
	// sees and acts on held mail for it. nil: the address equals the
	// user name, ignoring case.
	Owns func(user, addr string) bool
	// Admins are the users who see every held message and the admin
	// page (queue status and chart).
	Admins []string
	// Days returns the relay's totals per day in [from, to), for the
	// admin chart; nil: the chart says no statistics are available.
	Days func(ctx context.Context, from, to time.Time) ([]Day, error)
	// Logger gets one line per action (login, view, release, delete,
	// refusals) with the keys user, queue_id, action and remote_ip; nil
	// discards.
	Logger *slog.Logger
	// Clock is the current time; default time.Now.
	Clock func() time.Time
	// Location is the time zone of the times shown and of the chart's
	// days; default time.Local.
	Location *time.Location

	// Limiter counts failed logins under LoginKeys and refuses logins
	// while a key is blocked (429 with Retry-After). nil: a limiter of
	// its own, in memory (ratelimit's defaults: 5 failures of one client
	// network or 10 of one account within 10 minutes block that key for
	// 10 minutes). The relay shares its SMTP AUTH limiter, so failures
	// count on both and a locked account is locked on both.
	Limiter *ratelimit.AuthLimiter
	// LoginKeys names what a failed login counts against; default
	// Limiter.LoginKeys: the client's network (one IPv4 address, one IPv6
	// /64) and the account tried, the keys SMTP AUTH uses in the relay.
	LoginKeys func(remote netip.Addr, user string) []string
	// Credential returns a version of user's credentials that changes
	// when their password does (auth.Credentials.Version), and false when
	// the user can no longer log in. Every request of a session asks it:
	// a user removed from the credentials file, or whose password
	// changed, is logged out at their next click. nil: sessions end only
	// by time or logout.
	Credential func(user string) (version string, ok bool)
	// MaxLogins bounds password checks running at once (a hash may take
	// 64 MiB); default 4.
	MaxLogins int

	// Rand is the source of session IDs and CSRF tokens; default
	// crypto/rand.
	Rand io.Reader
	// SessionIdle ends a session unused this long (default 30 minutes);
	// SessionMax ends any session this long after login (default 12
	// hours). MaxSessions bounds the sessions held (default 10000); past
	// it the least recently used one ends.
	SessionIdle, SessionMax time.Duration
	MaxSessions             int

	// MaxView bounds the bytes of a message read for display (default
	// 10 MiB: a longer one is shown truncated); MaxText bounds the text
	// shown (default 1 MiB). MaxList bounds the messages listed on the
	// page (default 500, newest first).
	MaxView int64
	MaxText int
	MaxList int
	// ChartDays is the number of days the admin chart shows, today
	// included; default 14.
	ChartDays int
	// Title names the page; default "Postern quarantine".
	Title string
}

func (c *Config) setDefaults() error {
	if c.Queue == nil {
		return fmt.Errorf("%w: Queue is required", ErrConfig)
	}
	if c.Authenticate == nil {
		return fmt.Errorf("%w: Authenticate is required", ErrConfig)
	}
	if c.SessionIdle < 0 || c.SessionMax < 0 || c.MaxSessions < 0 || c.MaxView < 0 || c.MaxText < 0 ||
		c.MaxList < 0 || c.ChartDays < 0 || c.MaxLogins < 0 {
		return fmt.Errorf("%w: negative limit", ErrConfig)
	}
	if c.Owns == nil {
		c.Owns = func(user, addr string) bool { return strings.EqualFold(user, addr) }
	}
	if c.Logger == nil {
		c.Logger = postern.DiscardLogger()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Location == nil {
		c.Location = time.Local
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxLogins, DefaultLogins)
	def(&c.MaxSessions, DefaultMaxSessions)
	def(&c.MaxText, DefaultMaxText)
	def(&c.MaxList, DefaultMaxList)
	def(&c.ChartDays, DefaultChartDays)
	if c.SessionIdle == 0 {
		c.SessionIdle = DefaultSessionIdle
	}
	if c.SessionMax == 0 {
		c.SessionMax = DefaultSessionMax
	}
	if c.MaxView == 0 {
		c.MaxView = DefaultMaxView
	}
	if c.Title == "" {
		c.Title = DefaultTitle
	}
	return nil
}

//go:embed templates/*.html static/*
var assets embed.FS

// Server is the page. It is an http.Handler, safe for concurrent use;
// serve it over HTTPS only (its cookies are Secure).
type Server struct {
	cfg      Config
	log      *slog.Logger
	admins   map[string]bool
	pages    map[string]*template.Template
	sessions *sessions
	limiter  *ratelimit.AuthLimiter
	logins   chan struct{}
	walker   *scan.Walker
	parser   *enmime.Parser
	css      []byte
	handler  http.Handler

	sumMu     sync.Mutex
	summaries map[string]summary // header summaries by queue ID; bytes never change
}

// New validates cfg and returns the page.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, admins: map[string]bool{}, limiter: cfg.Limiter,
		logins: make(chan struct{}, cfg.MaxLogins), summaries: map[string]summary{}}
	for _, a := range cfg.Admins {
		if a = strings.TrimSpace(a); a != "" {
			s.admins[a] = true
		}
	}
	if s.limiter == nil {
		var err error
		if s.limiter, err = ratelimit.NewAuthLimiter(ratelimit.AuthConfig{Logger: cfg.Logger, Now: cfg.Clock}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if s.cfg.LoginKeys == nil {
		s.cfg.LoginKeys = s.limiter.LoginKeys
	}
	var err error
	if s.walker, err = scan.NewWalker(scan.WalkerConfig{Limits: scan.Limits{MaxSize: cfg.MaxView,
		Timeout: 5 * time.Second}}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.parser = enmime.NewParser(
		enmime.SkipMalformedParts(true),
		enmime.MultipartWOBoundaryAsSinglePart(true),
		enmime.DisableCharacterDetection(true),
		enmime.SetReadPartErrorPolicy(enmime.AllowCorruptTextPartErrorPolicy),
		enmime.MaxStoredPartErrors(16),
	)
	if s.pages, err = parsePages(cfg.Location); err != nil {
		return nil, err
	}
	if s.css, err = assets.ReadFile("static/style.css"); err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	s.sessions = newSessions(cfg.Clock, cfg.Rand, cfg.SessionIdle, cfg.SessionMax, cfg.MaxSessions)
	s.handler = s.routes()
	return s, nil
}

// hsts is the Strict-Transport-Security value: a year, for this host only
// (the page often shares its name with a mail host whose other names
// need not be HTTPS).
const hsts = "max-age=31536000"

// ServeHTTP serves the page: every response carries a strict
// Content-Security-Policy (no scripts at all, styles only from the page's
// own stylesheet), X-Frame-Options DENY and nosniff, and nothing that
// needs a login is cached. Over TLS it also carries
// Strict-Transport-Security (RFC 6797 §7.2: never over plain HTTP).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", hsts)
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; "+
		"frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	s.handler.ServeHTTP(w, r)
}

// idRE is what a queue ID looks like (queue.Envelope.ID).
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(s.css)
	})
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.withSession(true, s.logout))
	mux.HandleFunc("GET /{$}", s.withSession(false, s.list))
	mux.HandleFunc("GET /msg/{id}", s.withSession(false, s.message))
	mux.HandleFunc("POST /msg/{id}/release", s.withSession(true, s.act(actRelease)))
	mux.HandleFunc("POST /msg/{id}/delete", s.withSession(true, s.act(actDelete)))
	mux.HandleFunc("GET /admin", s.withSession(false, s.admin))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	// Defence in depth: browsers say where a request comes from
	// (Sec-Fetch-Site, Origin); cross-origin POSTs are refused before any
	// handler runs. The CSRF token is the main protection.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.logAction(r, "", "csrf-refused", "", "reason", "cross-origin request")
		s.fail(w, r, nil, http.StatusForbidden, "Cross-origin requests are refused.")
	}))
	return cop.Handler(mux)
}

// remoteIP is the client's address (the listener is the relay's own; no
// proxy headers are believed).
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// logAction logs one thing a user did or was refused.
func (s *Server) logAction(r *http.Request, user, action, queueID string, args ...any) {
	attrs := append([]any{"user", user, "action", action, "remote_ip", remoteIP(r).String()}, args...)
	if queueID != "" {
		attrs = append(attrs, "queue_id", queueID)
	}
	s.log.InfoContext(r.Context(), "quarantine page", attrs...)
}

func (s *Server) isAdmin(user string) bool { return s.admins[user] }
