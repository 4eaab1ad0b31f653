package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/filewatch"
)

const maxSenderLine = 64 << 10

// SenderBindings says which sender addresses each authenticated user may
// use. It is immutable and safe for concurrent use.
type SenderBindings struct {
	users map[string][]senderPattern
}

// senderPattern is one entry: any address, a domain, or one address
// (lower case).
type senderPattern struct {
	any    bool
	domain string
	addr   string
}

// ParseSenderBindings reads a sender-binding file. Each line is
//
//	user: entry, entry ...
//
// where an entry is an address (alice@example.com), "@domain" for every
// address in that domain, or "*" for any address. Entries are separated by
// commas or white space; a user on several lines gets all of them. Blank
// lines and lines starting with '#' are skipped. Addresses and domains
// compare case-insensitively, user names exactly. name is used in errors,
// which give the line.
func ParseSenderBindings(r io.Reader, name string) (*SenderBindings, error) {
	b := &SenderBindings{users: make(map[string][]senderPattern)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxSenderLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, list, ok := strings.Cut(line, ":")
		user = strings.TrimSpace(user)
		switch {
		case !ok:
			return nil, lineError(ErrSenderFile, name, n, "want \"user: address, @domain, ...\"")
		case user == "":
			return nil, lineError(ErrSenderFile, name, n, "empty user name")
		case strings.IndexFunc(user, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return nil, lineError(ErrSenderFile, name, n, "user name %q contains white space or control characters", user)
		}
		entries := strings.FieldsFunc(list, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(entries) == 0 {
			return nil, lineError(ErrSenderFile, name, n, "no addresses for user %q", user)
		}
		for _, e := range entries {
			p, err := parseSenderPattern(e)
			if err != nil {
				return nil, lineError(ErrSenderFile, name, n, "%v", err)
			}
			b.users[user] = append(b.users[user], p)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, lineError(ErrSenderFile, name, n+1, "line longer than %d bytes", maxSenderLine)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrSenderFile, name, err)
	}
	return b, nil
}

func parseSenderPattern(e string) (senderPattern, error) {
	if e == "*" {
		return senderPattern{any: true}, nil
	}
	if strings.IndexFunc(e, unicode.IsControl) >= 0 {
		return senderPattern{}, fmt.Errorf("entry %q contains control characters", e)
	}
	local, domain, ok := splitAddr(e)
	domain = normDomain(domain)
	switch {
	case !ok || domain == "" || strings.ContainsAny(domain, "@") || strings.Contains(domain, ".."):
		return senderPattern{}, fmt.Errorf("%q is not an address, @domain or *", e)
	case local == "":
		return senderPattern{domain: domain}, nil
	}
	return senderPattern{addr: strings.ToLower(local) + "@" + domain}, nil
}

// Allowed reports whether user may use addr as sender.
func (b *SenderBindings) Allowed(user, addr string) bool {
	if b == nil {
		return false
	}
	pats := b.users[user]
	if len(pats) == 0 {
		return false
	}
	local, domain, ok := splitAddr(addr)
	if !ok {
		return false
	}
	domain = normDomain(domain)
	full := strings.ToLower(local) + "@" + domain
	for _, p := range pats {
		if p.any || (p.domain != "" && p.domain == domain) || (p.addr != "" && p.addr == full) {
			return true
		}
	}
	return false
}

// Len returns the number of users.
func (b *SenderBindings) Len() int { return len(b.users) }

// SenderMapConfig configures a SenderMap.
type SenderMapConfig struct {
	// Path is the sender-binding file (see ParseSenderBindings). Required.
	Path string
	// AllowOwnAddress lets a user whose name is an address send as that
	// address without a line saying so.
	AllowOwnAddress bool
	// Interval between looks at the file under Run; 0 means
	// DefaultWatchInterval.
	Interval time.Duration
	// Logger receives loads (Info) and files that could not be loaded
	// (Error, once per broken content); nil discards.
	Logger *slog.Logger
}

// SenderMap is a sender-binding file that can be reloaded without a
// restart. It is safe for concurrent use.
type SenderMap struct {
	fw  *filewatch.Watcher[*SenderBindings]
	own bool
}

// NewSenderMap loads cfg.Path and returns the map. Errors name the file
// and line.
func NewSenderMap(cfg SenderMapConfig) (*SenderMap, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: sender map needs a Path", ErrConfig)
	}
	fw, err := watchFile(cfg.Path, "sender bindings", ErrSenderFile, cfg.Interval, cfg.Logger, ParseSenderBindings,
		(*SenderBindings).Len)
	if err != nil {
		return nil, err
	}
	return &SenderMap{fw: fw, own: cfg.AllowOwnAddress}, nil
}

// Allowed reports whether user may use addr as sender.
func (s *SenderMap) Allowed(user, addr string) bool {
	if s.own && strings.Contains(user, "@") && strings.EqualFold(user, addr) {
		return true
	}
	return s.fw.Current().Allowed(user, addr)
}

// Reload reads the file now, changed or not (for SIGHUP). On error the
// old bindings stay in use.
func (s *SenderMap) Reload() error { return fileErr(ErrSenderFile, s.fw.Reload()) }

// Run looks at the file every Interval until ctx is done and returns
// ctx.Err(); see Credentials.Run.
func (s *SenderMap) Run(ctx context.Context) error { return s.fw.Run(ctx) }

// SenderFilterName is the sender-binding filter's name in chains and logs.
const SenderFilterName = "sender-login"

// SenderFilterConfig configures a SenderFilter. The zero value of each
// field but Map is its default: the MAIL FROM address and the originator
// fields of the header are both bound to the user.
type SenderFilterConfig struct {
	// Map holds the bindings. Map or Directory is required.
	Map *SenderMap
	// Directory, if set, is asked when Map does not allow an address (a
	// user directory: auth/directory gives each user the addresses of
	// their entry's mail attributes).
	Directory SenderDirectory
	// OnDirectoryError applies when Directory cannot answer. The
	// default, postern.OnErrorTempFail, answers 451 4.3.0 and the client
	// retries; postern.OnErrorAccept lets the address through (logged);
	// postern.OnErrorReject answers 550 5.3.0 at MAIL, 554 5.3.0 at DATA.
	OnDirectoryError postern.ErrorPolicy
	// IgnoreHeader turns off the DATA check of the From and Sender fields
	// (CheckOriginator): only MAIL FROM is then bound. Mail readers show
	// the From field, not the envelope, so without this check a user can
	// write as anyone of any domain the relay serves.
	IgnoreHeader bool
	// AllowNullSender lets authenticated users send with MAIL FROM:<>.
	AllowNullSender bool
	// Logger receives refusals (Info); nil discards.
	Logger *slog.Logger
}

// SenderFilter refuses, for authenticated sessions, a MAIL FROM address the
// user does not own:
//
//	553 5.7.1 Sender address rejected: not owned by user
//
// and, at DATA, a message whose From or Sender field names an address the
// user does not own, or whose originator fields cannot be read (see
// CheckOriginator); the reply names the field:
//
//	553 5.7.1 From header rejected: <boss@example.com> not owned by user
//
// (Postfix answers sender login mismatches with 553 5.7.1 too.)
// Unauthenticated sessions are not looked at. It is safe for concurrent
// use.
type SenderFilter struct {
	m       *SenderMap // may be nil
	dir     SenderDirectory
	dirErr  postern.ErrorPolicy // resolved
	fromHdr bool
	nullOK  bool
	log     *slog.Logger
}

var (
	_ postern.MailChecker = (*SenderFilter)(nil)
	_ postern.DataChecker = (*SenderFilter)(nil)
)

// NewSenderFilter validates cfg and returns the filter.
func NewSenderFilter(cfg SenderFilterConfig) (*SenderFilter, error) {
	if cfg.Map == nil && cfg.Directory == nil {
		return nil, fmt.Errorf("%w: sender filter needs a Map or a Directory", ErrConfig)
	}
	if !cfg.OnDirectoryError.Valid() {
		return nil, fmt.Errorf("%w: bad OnDirectoryError", ErrConfig)
	}
	return &SenderFilter{m: cfg.Map, dir: cfg.Directory, dirErr: cfg.OnDirectoryError.Or(postern.OnErrorTempFail),
		fromHdr: !cfg.IgnoreHeader, nullOK: cfg.AllowNullSender, log: orDiscard(cfg.Logger)}, nil
}

// SenderDirectory says whether a user owns an address, from a source
// that must be asked, such as a user directory (auth/directory
// implements it). An error means it could not answer.
type SenderDirectory interface {
	SenderAllowed(ctx context.Context, user, addr string) (bool, error)
}

// allowed asks the map, then the directory; err is the directory's
// failure to answer.
func (f *SenderFilter) allowed(ctx context.Context, user, addr string) (bool, error) {
	if f.m != nil && f.m.Allowed(user, addr) {
		return true, nil
	}
	if f.dir == nil {
		return false, nil
	}
	return f.dir.SenderAllowed(ctx, user, addr)
}

// dirFailed answers a directory that could not say whether user owns an
// address, as OnDirectoryError says.
func (f *SenderFilter) dirFailed(ctx context.Context, c *postern.Conn, st postern.Stage, err error) postern.Verdict {
	v := f.dirErr.Verdict(st, postern.ESC(4, 3, 0), "Sender address binding unavailable",
		fmt.Sprintf("sender binding of user %q: %v", c.AuthUser, err))
	f.logRefusal(ctx, c, st, v)
	return v
}

// Name returns "sender-login".
func (f *SenderFilter) Name() string { return SenderFilterName }

// CheckMail refuses a sender the authenticated user does not own.
func (f *SenderFilter) CheckMail(ctx context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
	if !c.Authenticated() {
		return postern.Pass, nil
	}
	if t.From == "" && f.nullOK {
		return postern.Pass, nil
	}
	if t.From != "" {
		ok, err := f.allowed(ctx, c.AuthUser, t.From)
		if err != nil {
			return f.dirFailed(ctx, c, postern.StageMail, err), nil
		}
		if ok {
			return postern.Pass, nil
		}
	}
	v := postern.Rejected(553, postern.ESC(5, 7, 1), "Sender address rejected: not owned by user",
		fmt.Sprintf("sender <%s> not bound to user %q", t.From, c.AuthUser))
	f.logRefusal(ctx, c, postern.StageMail, v)
	return v, nil
}

// CheckData refuses a message whose originator fields the authenticated
// user may not use (CheckOriginator), unless IgnoreHeader.
func (f *SenderFilter) CheckData(ctx context.Context, c *postern.Conn, _ *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	if !f.fromHdr || !c.Authenticated() {
		return postern.Pass, nil
	}
	var dirErr error
	err := CheckOriginator(m, func(addr string) bool {
		ok, err := f.allowed(ctx, c.AuthUser, addr)
		if err != nil {
			if dirErr == nil {
				dirErr = err
			}
			return f.dirErr == postern.OnErrorAccept // let through only when told to
		}
		return ok
	})
	if dirErr != nil {
		if v := f.dirFailed(ctx, c, postern.StageData, dirErr); v.Final() || err == nil {
			return v, nil
		}
	}
	if err == nil {
		return postern.Pass, nil
	}
	var oe *OriginatorError
	if !errors.As(err, &oe) {
		return postern.Pass, err // not reached: CheckOriginator returns only these
	}
	v := postern.Rejected(553, postern.ESC(5, 7, 1), originatorReplyText(oe),
		fmt.Sprintf("%v (user %q)", oe, c.AuthUser))
	f.logRefusal(ctx, c, postern.StageData, v)
	return v, nil
}

// originatorReplyText names the field, and the address when it is plain
// printable ASCII (a reply line is ASCII, and a hostile address is not
// echoed).
func originatorReplyText(e *OriginatorError) string {
	switch {
	case e.Addr != "" && printableASCII(e.Addr) && len(e.Addr) <= 256:
		return fmt.Sprintf("%s header rejected: <%s> not owned by user", e.Field, e.Addr)
	case e.Addr != "":
		return e.Field + " header rejected: address not owned by user"
	case e.Problem == "missing":
		return "Message has no " + e.Field + " header"
	}
	return e.Field + " header rejected: " + e.Problem
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (f *SenderFilter) logRefusal(ctx context.Context, c *postern.Conn, st postern.Stage, v postern.Verdict) {
	f.log.LogAttrs(ctx, slog.LevelInfo, "sender binding refused",
		slog.String("conn_id", c.ID),
		slog.String("remote_ip", c.RemoteAddr().String()),
		slog.String("stage", st.String()),
		slog.String("filter", SenderFilterName),
		slog.String("action", v.Action.String()),
		slog.Int("code", v.Reply.Code),
		slog.String("user", c.AuthUser),
		slog.String("reason", v.Reason))
}
