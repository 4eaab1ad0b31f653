package directory

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults of Config.
const (
	// DefaultRecipientFilter finds a recipient by its address: %s is the
	// whole address, escaped (RFC 4515).
	DefaultRecipientFilter = "(|(mail=%s)(mailAlternateAddress=%s))"
	// DefaultLoginFilter finds the entry of a login name, which users
	// give as their uid or their address.
	DefaultLoginFilter    = "(|(uid=%s)(mail=%s))"
	DefaultTimeout        = 10 * time.Second // Postfix ldap_table's timeout
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxConns       = 8
	DefaultHealthInterval = 30 * time.Second
	DefaultPageSize       = 500
	DefaultMaxEntries     = 20
	DefaultCacheTTL       = 5 * time.Minute
	DefaultNegativeTTL    = time.Minute
	DefaultCacheSize      = 10000
	DefaultMaxListEntries = 20
	// DefaultVersionAttribute changes whenever an entry does, its
	// password included (OpenLDAP and Active Directory both keep it).
	DefaultVersionAttribute = "modifyTimestamp"
	// DefaultDownFor is how long a server that could not be reached is
	// passed over while another answers.
	DefaultDownFor = 30 * time.Second
)

// DefaultMailAttributes hold a user's addresses: sender binding and the
// quarantine page's "whose mail is this".
var DefaultMailAttributes = []string{"mail", "mailAlternateAddress"}

// TLSMode says how a plain ldap:// connection is protected; ldaps://
// URLs always use TLS from the first byte.
type TLSMode uint8

// TLS modes.
const (
	// TLSAuto, the zero value, is TLSStartTLS for ldap:// servers that
	// are not on loopback and TLSNone for those on loopback: passwords
	// (the service account's and the users') never cross a network in
	// clear.
	TLSAuto TLSMode = iota
	// TLSStartTLS upgrades every ldap:// connection (RFC 4511 §4.14)
	// and fails when the server cannot.
	TLSStartTLS
	// TLSNone sends everything in clear, on any network.
	TLSNone
)

var tlsModeNames = [...]string{"auto", "starttls", "none"}

func (m TLSMode) String() string {
	if int(m) < len(tlsModeNames) {
		return tlsModeNames[m]
	}
	return fmt.Sprintf("tls-mode(%d)", uint8(m))
}

// UnmarshalText reads "auto" (or ""), "starttls" or "none".
func (m *TLSMode) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = TLSAuto
		return nil
	}
	for i, n := range tlsModeNames {
		if strings.EqualFold(string(b), n) {
			*m = TLSMode(i)
			return nil
		}
	}
	return fmt.Errorf("%w: TLS mode %q (want auto, starttls or none)", ErrConfig, b)
}

// MarshalText returns the mode's word.
func (m TLSMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// PolicyAttributes name the attributes of a recipient's spam policy
// (scan.RcptPolicy). The defaults are amavisd-new's LDAP schema, which
// many directories already carry for per-user spam settings.
type PolicyAttributes struct {
	// Spam turns filtering off when it holds one of SpamOff (compared
	// ignoring case), and on for any other value; absent, the policy
	// file or the filter decides. Default "amavisBypassSpamChecks" with
	// SpamOff ["TRUE"]; a site whose attribute says ON/OFF sets SpamOff
	// ["OFF"].
	Spam    string
	SpamOff []string
	// TagScore and RejectScore hold scores (a number; "off" for
	// RejectScore means never refuse). Defaults "amavisSpamTag2Level"
	// and "amavisSpamKillLevel".
	TagScore, RejectScore string
	// Allow and Deny hold the recipient's sender lists ("user@domain",
	// "@domain", "@.domain", "<>"). Defaults "amavisWhitelistSender" and
	// "amavisBlacklistSender".
	Allow, Deny string
	// MaxListEntries bounds each list (DefaultMaxListEntries); values
	// past it are ignored and logged.
	MaxListEntries int
}

func (p PolicyAttributes) withDefaults() PolicyAttributes {
	p.Spam = cmp.Or(p.Spam, "amavisBypassSpamChecks")
	if len(p.SpamOff) == 0 {
		p.SpamOff = []string{"TRUE"}
	}
	p.TagScore = cmp.Or(p.TagScore, "amavisSpamTag2Level")
	p.RejectScore = cmp.Or(p.RejectScore, "amavisSpamKillLevel")
	p.Allow = cmp.Or(p.Allow, "amavisWhitelistSender")
	p.Deny = cmp.Or(p.Deny, "amavisBlacklistSender")
	if p.MaxListEntries == 0 {
		p.MaxListEntries = DefaultMaxListEntries
	}
	return p
}

func (p PolicyAttributes) names() []string {
	return []string{p.Spam, p.TagScore, p.RejectScore, p.Allow, p.Deny}
}

// Config configures a Directory. URLs and Base are required; the zero
// value of every other field is its documented default.
type Config struct {
	// URLs are the servers, "ldap://host[:port]" or "ldaps://host[:port]"
	// (ports 389 and 636 by default), tried in order: a server that
	// cannot be reached is passed over for DownFor while another answers.
	URLs []string
	// TLS says how ldap:// connections are protected (TLSAuto). CAFile
	// is a PEM file of the CAs that sign the servers' certificates;
	// default the system's roots. The certificate must name the URL's
	// host.
	TLS    TLSMode
	CAFile string
	// BindDN and its password are the service account that searches;
	// empty BindDN searches anonymously. The password is BindPassword,
	// or the content of BindPasswordFile (one trailing line end
	// removed), read by New: a reload builds a new Directory.
	BindDN           string
	BindPassword     string
	BindPasswordFile string
	// Base is the search base (subtree scope). Required.
	Base string
	// RecipientFilter finds a recipient's entry (DefaultRecipientFilter);
	// LoginFilter the entry of a login name (DefaultLoginFilter). In
	// both, %s is the address or login name, %u its local part (all of
	// it without '@'), %d its domain and %% a '%'; every value is escaped
	// as RFC 4515 says before it goes in, never concatenated raw.
	RecipientFilter string
	LoginFilter     string
	// MailAttributes hold a user's addresses (DefaultMailAttributes).
	MailAttributes []string
	// Policy names the spam policy attributes.
	Policy PolicyAttributes
	// VersionAttribute changes when a user's entry does
	// (DefaultVersionAttribute): the quarantine page logs out a user
	// whose entry changed.
	VersionAttribute string
	// Domains are the domains whose recipients the directory knows
	// ("example.com", or ".example.com" for its subdomains); empty: every
	// domain it is asked about.
	Domains []string
	// Timeout bounds one lookup or bind, connecting included
	// (DefaultTimeout); ConnectTimeout one connection and its TLS
	// handshake (DefaultConnectTimeout).
	Timeout        time.Duration
	ConnectTimeout time.Duration
	// MaxConns bounds the connections used for searches, and as many
	// again for users' binds (DefaultMaxConns each).
	MaxConns int
	// HealthInterval is how often idle connections are probed (a read of
	// the root DSE) and broken ones closed (DefaultHealthInterval).
	HealthInterval time.Duration
	// DownFor is how long an unreachable server is passed over
	// (DefaultDownFor).
	DownFor time.Duration
	// MaxEntries bounds the entries one lookup reads
	// (DefaultMaxEntries): a filter that matches more is a mistake,
	// answered with the first ones. A search that the server's own size
	// limit (Active Directory's MaxPageSize) stops short of MaxEntries is
	// run again paged (RFC 2696), PageSize entries a page
	// (DefaultPageSize).
	PageSize   uint32
	MaxEntries int
	// CacheTTL keeps found entries and NegativeTTL "no such entry"
	// answers (DefaultCacheTTL, DefaultNegativeTTL); a negative value
	// turns that cache off. A directory that could not answer is never
	// cached. CacheSize bounds the entries kept (DefaultCacheSize).
	CacheTTL    time.Duration
	NegativeTTL time.Duration
	CacheSize   int
	// Resolver finds the addresses of the servers' host names
	// (*route/resolver.Resolver and *net.Resolver have the method); nil
	// is net.DefaultResolver.
	Resolver Resolver
	// Now is the clock of the cache; default time.Now.
	Now func() time.Time
	// Logger receives lookups that failed, addresses with filter
	// characters and unusable values; nil discards.
	Logger *slog.Logger
}

// Resolver looks up a host's addresses.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// server is one parsed URL.
type server struct {
	url      string
	port     string
	host     string
	ldaps    bool
	startTLS bool
}

// resolved is a Config with its defaults applied and its files read.
type resolved struct {
	Config
	servers  []server
	password string
	tls      *tls.Config
	recip    template
	login    template
	attrs    []string // every attribute a lookup asks for
	domains  []string
}

func resolve(cfg Config) (*resolved, error) {
	r := &resolved{Config: cfg}
	c := &r.Config
	if len(c.URLs) == 0 || strings.TrimSpace(c.Base) == "" {
		return nil, fmt.Errorf("%w: needs URLs and a Base", ErrConfig)
	}
	if c.TLS > TLSNone {
		return nil, fmt.Errorf("%w: bad TLS mode %v", ErrConfig, c.TLS)
	}
	for _, d := range []time.Duration{c.Timeout, c.ConnectTimeout, c.HealthInterval, c.DownFor} {
		if d < 0 {
			return nil, fmt.Errorf("%w: negative duration", ErrConfig)
		}
	}
	if c.MaxConns < 0 || c.MaxEntries < 0 || c.CacheSize < 0 || c.Policy.MaxListEntries < 0 {
		return nil, fmt.Errorf("%w: negative bound", ErrConfig)
	}
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	c.HealthInterval = cmp.Or(c.HealthInterval, DefaultHealthInterval)
	c.DownFor = cmp.Or(c.DownFor, DefaultDownFor)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.MaxEntries = cmp.Or(c.MaxEntries, DefaultMaxEntries)
	c.CacheSize = cmp.Or(c.CacheSize, DefaultCacheSize)
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	c.CacheTTL = cmp.Or(c.CacheTTL, DefaultCacheTTL)
	c.NegativeTTL = cmp.Or(c.NegativeTTL, DefaultNegativeTTL)
	c.VersionAttribute = cmp.Or(c.VersionAttribute, DefaultVersionAttribute)
	if len(c.MailAttributes) == 0 {
		c.MailAttributes = DefaultMailAttributes
	}
	c.Policy = c.Policy.withDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	var err error
	if r.recip, err = parseTemplate(cmp.Or(c.RecipientFilter, DefaultRecipientFilter)); err != nil {
		return nil, fmt.Errorf("%w: RecipientFilter: %w", ErrConfig, err)
	}
	if r.login, err = parseTemplate(cmp.Or(c.LoginFilter, DefaultLoginFilter)); err != nil {
		return nil, fmt.Errorf("%w: LoginFilter: %w", ErrConfig, err)
	}
	if err := r.readPassword(); err != nil {
		return nil, err
	}
	if err := r.parseServers(); err != nil {
		return nil, err
	}
	for _, d := range c.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" || d == "." || strings.ContainsAny(d, " @") {
			return nil, fmt.Errorf("%w: bad domain %q", ErrConfig, d)
		}
		r.domains = append(r.domains, d)
	}
	for _, list := range [][]string{c.MailAttributes, c.Policy.names(), {c.VersionAttribute}} {
		for _, a := range list {
			if !validAttr(a) {
				return nil, fmt.Errorf("%w: bad attribute name %q", ErrConfig, a)
			}
			r.attrs = append(r.attrs, a)
		}
	}
	return r, nil
}

// validAttr accepts an attribute description: a name or an OID, with
// options (RFC 4512 §2.5).
func validAttr(a string) bool {
	if a == "" || len(a) > 128 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ';') {
			return false
		}
	}
	return true
}

func (r *resolved) readPassword() error {
	c := &r.Config
	switch {
	case c.BindPasswordFile != "" && c.BindPassword != "":
		return fmt.Errorf("%w: BindPassword and BindPasswordFile both given", ErrConfig)
	case c.BindPasswordFile != "":
		b, err := os.ReadFile(c.BindPasswordFile)
		if err != nil {
			return fmt.Errorf("%w: bind password: %w", ErrConfig, err)
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if s == "" {
			return fmt.Errorf("%w: bind password file %s is empty", ErrConfig, c.BindPasswordFile)
		}
		r.password = s
	default:
		r.password = c.BindPassword
	}
	if c.BindDN != "" && r.password == "" {
		// An empty password is an unauthenticated bind (RFC 4513 §5.1.2):
		// it "succeeds" and then sees nothing.
		return fmt.Errorf("%w: BindDN without a password", ErrConfig)
	}
	return nil
}

func (r *resolved) parseServers() error {
	c := &r.Config
	var roots *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("%w: CA file: %w", ErrConfig, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, c.CAFile)
		}
	}
	r.tls = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	for _, raw := range c.URLs {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
			return fmt.Errorf("%w: bad URL %q (want ldap://host[:port] or ldaps://host[:port])", ErrConfig, raw)
		}
		s := server{url: u.Scheme + "://" + u.Host, host: u.Hostname()}
		port := u.Port()
		switch strings.ToLower(u.Scheme) {
		case "ldap":
			port = cmp.Or(port, "389")
			s.startTLS = c.TLS == TLSStartTLS || c.TLS == TLSAuto && !loopback(s.host)
		case "ldaps":
			port = cmp.Or(port, "636")
			s.ldaps = true
		default:
			return fmt.Errorf("%w: bad URL %q: scheme must be ldap or ldaps", ErrConfig, raw)
		}
		s.port = port
		r.servers = append(r.servers, s)
	}
	return nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrConfig reports an invalid configuration.
var ErrConfig = errors.New("directory: invalid configuration")
