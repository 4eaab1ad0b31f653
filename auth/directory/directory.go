package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// Errors. An error that is not ErrBadCredentials or ErrConfig from a
// lookup is an *UnavailableError.
var (
	// ErrUnavailable is wrapped by every *UnavailableError.
	ErrUnavailable = errors.New("directory: unavailable")
	// ErrBadCredentials is CheckPassword's answer to a wrong password, an
	// unknown user or a login name that matches several entries.
	ErrBadCredentials = errors.New("directory: bad credentials")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("directory: closed")
)

// UnavailableError is a lookup the directory could not answer: no server
// reachable, a timeout, an error result. It is temporary (Temporary
// reports true), so smtpserver answers a login it ends 454 4.7.0 and
// counts no failure.
type UnavailableError struct {
	// Op is "recipient", "login" or "bind"; Key the address or login.
	Op, Key string
	Err     error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("directory: %s %q: unavailable: %v", e.Op, e.Key, e.Err)
}

// Unwrap returns ErrUnavailable and the cause.
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Temporary reports true: the same lookup may succeed later.
func (e *UnavailableError) Temporary() bool { return true }

// Entry is what a lookup found: one directory entry, read through the
// attribute names of the Config. It is shared by the cache: do not
// modify it.
type Entry struct {
	DN string
	// Mail are the values of MailAttributes.
	Mail []string
	// Policy is the spam policy its attributes give; HasPolicy is false
	// when it has none of them.
	Policy    scanner.RcptPolicy
	HasPolicy bool
	// Version is the VersionAttribute's value.
	Version string
	// Matches is the number of entries the filter matched (more than one
	// is a directory mistake; the first by DN is used).
	Matches int
}

// Owns reports whether addr is one of the entry's addresses (ignoring
// case, as LDAP's mail attributes compare).
func (e *Entry) Owns(addr string) bool {
	addr = strings.TrimSuffix(addr, ".")
	for _, m := range e.Mail {
		if strings.EqualFold(strings.TrimSpace(m), addr) {
			return true
		}
	}
	return false
}

// Answer is a lookup's result: the entry (nil when none matched), the
// filter sent and whether it came from the cache.
type Answer struct {
	Entry  *Entry
	Filter string
	Cached bool
}

// Directory is an LDAP user directory: recipients, their spam policy,
// logins and their addresses. It implements route.RecipientDirectory,
// scan.PolicyLookup, smtpserver.PasswordChecker, auth.SenderDirectory
// and auth.SenderAllower. It is safe for concurrent use; Close releases
// its connections.
type Directory struct {
	r        *resolved
	log      *slog.Logger
	searches *pool
	binds    *pool
	cache    *cache
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// New validates cfg, reads its password and CA files and returns a
// Directory. It connects to no server: the first lookup does, so a
// directory that is down at start delays nothing (lookups fail until it
// answers). Close stops its health checks.
func New(cfg Config) (*Directory, error) {
	r, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	d := &Directory{r: r, log: cfg.Logger, cache: newCache(r.CacheSize, r.Now)}
	if d.log == nil {
		d.log = postern.DiscardLogger()
	}
	down := &downList{}
	d.searches = newPool(r, "search", true, down)
	d.binds = newPool(r, "bind", false, down)
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	d.wg.Add(1)
	go d.health(ctx)
	return d, nil
}

// Close stops the health checks and closes the connections.
func (d *Directory) Close() error {
	d.stop()
	d.wg.Wait()
	d.searches.close()
	d.binds.close()
	return nil
}

func (d *Directory) health(ctx context.Context) {
	defer d.wg.Done()
	t := time.NewTicker(d.r.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.searches.check(ctx)
			d.binds.check(ctx)
		}
	}
}

// Recipient looks up the entry of a recipient address with
// RecipientFilter.
func (d *Directory) Recipient(ctx context.Context, addr string) (Answer, error) {
	return d.lookup(ctx, "recipient", d.r.recip, strings.ToLower(addr), addr)
}

// User looks up the entry of a login name with LoginFilter.
func (d *Directory) User(ctx context.Context, login string) (Answer, error) {
	return d.lookup(ctx, "login", d.r.login, login, login)
}

func (d *Directory) lookup(ctx context.Context, op string, t template, key, value string) (Answer, error) {
	filter := t.expand(value)
	if filterChars(value) {
		// Escaped, so it finds nothing but itself; no real address or
		// login name has these characters: likely an injection attempt.
		d.log.LogAttrs(ctx, slog.LevelWarn, "directory: lookup value holds LDAP filter characters (escaped)",
			slog.String("op", op), slog.String("value", strconv.Quote(value)), slog.String("filter", filter))
	}
	ckey := op + "\x00" + key
	if e, ok := d.cache.get(ckey); ok {
		return Answer{Entry: e, Filter: filter, Cached: true}, nil
	}
	e, err := d.cache.do(ctx, ckey, func(ctx context.Context) (*Entry, error) {
		entries, err := d.search(ctx, filter, d.r.attrs)
		if err != nil {
			return nil, err
		}
		if len(entries) == 0 {
			d.cache.put(ckey, nil, d.r.NegativeTTL)
			return nil, nil
		}
		if len(entries) > 1 {
			d.log.LogAttrs(ctx, slog.LevelWarn, "directory: several entries match", slog.String("op", op),
				slog.String("value", strconv.Quote(value)), slog.Int("entries", len(entries)), slog.String("used", entries[0].DN))
		}
		e := d.entry(ctx, entries[0], len(entries))
		d.cache.put(ckey, e, d.r.CacheTTL)
		return e, nil
	})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return Answer{Filter: filter}, err
		}
		if ctx.Err() == nil {
			d.log.LogAttrs(ctx, slog.LevelWarn, "directory: lookup failed", slog.String("op", op),
				slog.String("value", strconv.Quote(value)), slog.String("error", err.Error()))
		}
		return Answer{Filter: filter}, &UnavailableError{Op: op, Key: value, Err: err}
	}
	return Answer{Entry: e, Filter: filter}, nil
}

// entry reads an LDAP entry through the configured attribute names.
func (d *Directory) entry(ctx context.Context, le *ldap.Entry, matches int) *Entry {
	e := &Entry{DN: le.DN, Matches: matches, Version: le.GetEqualFoldAttributeValue(d.r.VersionAttribute)}
	for _, a := range d.r.MailAttributes {
		e.Mail = append(e.Mail, le.GetEqualFoldAttributeValues(a)...)
	}
	e.Policy, e.HasPolicy = d.policy(ctx, le)
	return e
}

// policy reads the spam policy attributes. A value that cannot be used
// is skipped and logged: one bad value must not stop a user's mail.
func (d *Directory) policy(ctx context.Context, le *ldap.Entry) (scanner.RcptPolicy, bool) {
	pa := d.r.Policy
	p := scanner.RcptPolicy{Key: le.DN, Source: "ldap"}
	has := false
	bad := func(attr, val, why string) {
		d.log.LogAttrs(ctx, slog.LevelWarn, "directory: unusable policy value ignored", slog.String("dn", le.DN),
			slog.String("attribute", attr), slog.String("value", strconv.Quote(val)), slog.String("reason", why))
	}
	if v := le.GetEqualFoldAttributeValues(pa.Spam); len(v) > 0 {
		has = true
		p.Spam = scanner.SpamOn
		for _, off := range pa.SpamOff {
			if strings.EqualFold(strings.TrimSpace(v[0]), off) {
				p.Spam = scanner.SpamOff
			}
		}
	}
	for _, sc := range []struct {
		attr string
		to   *float64
	}{{pa.TagScore, &p.TagScore}, {pa.RejectScore, &p.RejectScore}} {
		v := strings.TrimSpace(le.GetEqualFoldAttributeValue(sc.attr))
		if v == "" {
			continue
		}
		if sc.attr == pa.RejectScore && strings.EqualFold(v, "off") {
			p.NeverReject, has = true, true
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
			bad(sc.attr, v, "want a non-zero number")
			continue
		}
		*sc.to, has = f, true
	}
	for _, l := range []struct {
		attr string
		to   *[]string
	}{{pa.Allow, &p.Allow}, {pa.Deny, &p.Deny}} {
		vals := le.GetEqualFoldAttributeValues(l.attr)
		for i, v := range vals {
			if len(*l.to) == pa.MaxListEntries {
				bad(l.attr, strings.Join(vals[i:], ", "), fmt.Sprintf("more than %d entries", pa.MaxListEntries))
				break
			}
			e, err := scanner.PolicyEntry(v, true)
			if err != nil {
				bad(l.attr, v, err.Error())
				continue
			}
			*l.to, has = append(*l.to, e), true
		}
	}
	if p.RejectScore != 0 && p.TagScore > p.RejectScore {
		bad(pa.TagScore, strconv.FormatFloat(p.TagScore, 'g', -1, 64), "tag score over the reject score")
		p.TagScore = 0
	}
	return p, has
}

// Covers reports whether the directory knows the recipients of domain:
// every domain without Domains.
func (d *Directory) Covers(domain string) bool {
	if len(d.r.domains) == 0 {
		return true
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, c := range d.r.domains {
		if domain == c || strings.HasPrefix(c, ".") && strings.HasSuffix(domain, c) {
			return true
		}
	}
	return false
}

// RecipientExists reports whether addr has an entry (route's
// RecipientDirectory). An error is an *UnavailableError: the directory
// could not say, which is not "unknown".
func (d *Directory) RecipientExists(ctx context.Context, addr string) (bool, error) {
	a, err := d.Recipient(ctx, addr)
	if err != nil {
		return false, err
	}
	return a.Entry != nil, nil
}

// LookupPolicy returns the spam policy of rcpt's entry (scan's
// PolicyLookup); found is false when rcpt has no entry, its entry has
// none of the policy attributes or its domain is not one the directory
// covers (not asked).
func (d *Directory) LookupPolicy(ctx context.Context, rcpt string) (scanner.RcptPolicy, bool, error) {
	if !d.Covers(postern.AddrDomain(rcpt)) {
		return scanner.RcptPolicy{}, false, nil // not asked: mail to other domains
	}
	a, err := d.Recipient(ctx, rcpt)
	if err != nil || a.Entry == nil || !a.Entry.HasPolicy {
		return scanner.RcptPolicy{}, false, err
	}
	return a.Entry.Policy, true, nil
}

// CheckPassword checks a login by searching the user's entry with
// LoginFilter (as the service account) and binding as that entry with
// password (smtpserver's PasswordChecker, the quarantine page's login).
// It returns nil when the bind succeeds; ErrBadCredentials for a wrong
// password, an unknown login, an empty password (never sent: an empty
// simple bind is anonymous and "succeeds") or a login that matches
// several entries; an *UnavailableError when the directory could not
// answer. Passwords are never cached.
func (d *Directory) CheckPassword(ctx context.Context, conn *postern.Conn, user, password string) error {
	fail := func(why string) error {
		attrs := []slog.Attr{slog.String("user", strconv.Quote(user)), slog.String("reason", why)}
		if conn != nil {
			attrs = append(attrs, slog.String("conn_id", conn.ID), slog.String("remote_ip", conn.RemoteAddr().String()))
		}
		d.log.LogAttrs(ctx, slog.LevelInfo, "directory: login refused", attrs...)
		return ErrBadCredentials
	}
	if user == "" || password == "" {
		return fail("empty user name or password")
	}
	a, err := d.User(ctx, user)
	switch {
	case err != nil:
		return err
	case a.Entry == nil:
		return fail("no such user")
	case a.Entry.Matches > 1:
		return fail("login name matches several entries")
	}
	ok, err := d.bindUser(ctx, a.Entry.DN, password)
	switch {
	case err != nil:
		if errors.Is(err, ErrClosed) {
			return err
		}
		return &UnavailableError{Op: "bind", Key: user, Err: err}
	case !ok:
		return fail("bind refused (wrong password or locked account)")
	}
	return nil
}

// SenderAllowed reports whether the login user may send as addr: addr
// is one of the MailAttributes of the user's entry (auth's
// SenderDirectory). An error is an *UnavailableError.
func (d *Directory) SenderAllowed(ctx context.Context, user, addr string) (bool, error) {
	a, err := d.User(ctx, user)
	if err != nil || a.Entry == nil {
		return false, err
	}
	return a.Entry.Owns(addr), nil
}

// Allowed is SenderAllowed for callers that cannot wait or fail (auth's
// SenderAllower: DKIM signing, the quarantine page's ownership): a
// directory that cannot answer allows nothing.
func (d *Directory) Allowed(user, addr string) bool {
	ok, err := d.SenderAllowed(context.Background(), user, addr)
	return err == nil && ok
}

// Version returns a token that changes when user's entry does (its
// DN and VersionAttribute), and false when the user has no entry: the
// quarantine page logs out such a user. While the directory cannot
// answer, the last entry seen is used, so an outage logs nobody out.
func (d *Directory) Version(user string) (string, bool) {
	a, err := d.User(context.Background(), user)
	e := a.Entry
	if err != nil {
		var ok bool
		if e, ok = d.cache.stale("login\x00" + user); !ok {
			return "", false
		}
	}
	if e == nil {
		return "", false
	}
	return e.DN + "\x00" + e.Version, true
}
