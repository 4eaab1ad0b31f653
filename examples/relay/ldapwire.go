package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/auth/directory"
	"github.com/postern/postern/route/resolver"
)

// buildDirectory makes the user directory of [ldap], nil without
// ldap.urls. It connects to nothing yet: a directory that is down at
// start or reload delays nothing (lookups answer 451 until it is back).
func buildDirectory(s *Config, res *resolver.Resolver, log *slog.Logger) (*directory.Directory, error) {
	l := &s.LDAP
	if len(l.URLs) == 0 {
		return nil, nil
	}
	var mode directory.TLSMode
	if err := mode.UnmarshalText([]byte(l.TLS)); err != nil {
		return nil, fmt.Errorf("ldap.tls: %w", err)
	}
	cfg := directory.Config{URLs: l.URLs, TLS: mode, CAFile: l.CAFile, BindDN: l.BindDN,
		BindPasswordFile: l.BindPasswordFile, Base: l.Base, RecipientFilter: l.RecipientFilter,
		LoginFilter: l.LoginFilter, MailAttributes: l.MailAttributes, Domains: l.Domains,
		Policy: directory.PolicyAttributes{Spam: l.SpamAttribute, SpamOff: l.SpamOffValues,
			TagScore: l.TagScoreAttribute, RejectScore: l.RejectScoreAttribute, Allow: l.AllowAttribute,
			Deny: l.DenyAttribute, MaxListEntries: l.MaxListEntries},
		Timeout: l.Timeout.Duration, CacheTTL: offIfZero(l.CacheTTL), NegativeTTL: offIfZero(l.NegativeTTL),
		Logger: log}
	if res != nil {
		cfg.Resolver = res
	}
	if len(cfg.Domains) == 0 {
		// The relay's own domains: mail to others (submission) asks
		// nothing.
		cfg.Domains = s.domains
	}
	d, err := directory.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("[ldap]: %w", err)
	}
	return d, nil
}

// offIfZero maps a relay duration of "0s" (not kept) to the directory's
// negative value (off); the relay's defaults are declared in keys.go.
func offIfZero(d Duration) time.Duration {
	if d.Duration == 0 {
		return -1
	}
	return d.Duration
}

// closeDirectory closes a directory a minute after its generation was
// replaced: lookups that picked it just before the swap finish with it.
func closeDirectory(d *directory.Directory, after time.Duration) {
	if d == nil {
		return
	}
	if after == 0 {
		d.Close()
		return
	}
	time.AfterFunc(after, func() { d.Close() })
}

// loginChecker checks a login against the credentials file, then the
// directory: a user either knows is let in. It is one check for the
// AUTH limiter, whichever answered.
type loginChecker struct {
	creds *auth.Credentials    // may be nil
	dir   *directory.Directory // may be nil
}

func (l loginChecker) CheckPassword(ctx context.Context, c *postern.Conn, user, password string) error {
	err := auth.ErrBadCredentials
	if l.creds != nil {
		if err = l.creds.CheckPassword(ctx, c, user, password); err == nil {
			return nil
		}
	}
	if l.dir != nil {
		return l.dir.CheckPassword(ctx, c, user, password)
	}
	return err
}

// version follows the credentials file for its users, the directory
// for the others.
func (l loginChecker) version(user string) (string, bool) {
	if l.creds != nil {
		if v, ok := l.creds.Version(user); ok {
			return "file:" + v, true
		}
	}
	if l.dir != nil {
		if v, ok := l.dir.Version(user); ok {
			return "ldap:" + v, true
		}
	}
	return "", false
}

// anyAllower allows what one of its sources allows (the senders file and
// the directory, for DKIM signing and the quarantine page).
type anyAllower []auth.SenderAllower

func (a anyAllower) Allowed(user, addr string) bool {
	for _, s := range a {
		if s.Allowed(user, addr) {
			return true
		}
	}
	return false
}

// describeDirectory prints what the directory answers for the
// recipients and the authenticated user of a dry run.
func describeDirectory(ctx context.Context, out io.Writer, s *Config, d *directory.Directory, a checkArgs) {
	if d == nil {
		return
	}
	if s.LDAP.uses("recipients") || s.LDAP.uses("spam_policy") {
		for _, r := range a.rcpts {
			addr, rep := checkAddr(s, r, postern.StageRcpt)
			if !rep.IsZero() || addr.Domain == "" || !d.Covers(addr.Domain) {
				continue
			}
			ans, err := d.Recipient(ctx, addr.String())
			fmt.Fprintf(out, "directory: rcpt <%s>: %s\n", safe(addr.String()), safe(describeAnswer(ans, err)))
		}
	}
	if a.authUser != "" && s.LDAP.uses("auth") {
		ans, err := d.User(ctx, a.authUser)
		fmt.Fprintf(out, "directory: login %q: %s\n", safe(a.authUser), safe(describeAnswer(ans, err)))
	}
}

func describeAnswer(a directory.Answer, err error) string {
	var b strings.Builder
	switch {
	case err != nil:
		b.WriteString("unavailable (" + err.Error() + ")")
	case a.Entry == nil:
		b.WriteString("no entry")
	default:
		e := a.Entry
		b.WriteString("found " + e.DN)
		if e.Matches > 1 {
			fmt.Fprintf(&b, " (first of %d)", e.Matches)
		}
		if len(e.Mail) > 0 {
			b.WriteString("; addresses " + strings.Join(e.Mail, ", "))
		}
		if e.HasPolicy {
			p := e.Policy
			fmt.Fprintf(&b, "; spam %s", p.Spam)
			if p.TagScore != 0 {
				fmt.Fprintf(&b, ", tag %g", p.TagScore)
			}
			if p.RejectScore != 0 {
				fmt.Fprintf(&b, ", reject %g", p.RejectScore)
			}
			if p.NeverReject {
				b.WriteString(", reject off")
			}
			if len(p.Allow) > 0 {
				b.WriteString(", allow " + strings.Join(p.Allow, " "))
			}
			if len(p.Deny) > 0 {
				b.WriteString(", deny " + strings.Join(p.Deny, " "))
			}
		}
	}
	b.WriteString("; filter " + a.Filter)
	if a.Cached {
		b.WriteString(" (cached)")
	}
	return b.String()
}
