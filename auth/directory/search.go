package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// errTooMany ends a search that found more entries than a lookup reads.
var errTooMany = errors.New("more entries than MaxEntries")

// search runs filter under Base (subtree) as the service account, page
// by page (RFC 2696), and returns at most MaxEntries entries sorted by
// DN. A connection that broke is replaced once, so a server restarted
// since the last use costs no failure.
func (d *Directory) search(ctx context.Context, filter string, attrs []string) ([]*ldap.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, d.r.Timeout)
	defer cancel()
	var last error
	for range 2 {
		c, err := d.searches.get(ctx)
		if err != nil {
			return nil, err
		}
		entries, err := d.paged(ctx, c.c, filter, attrs)
		if err != nil && !errors.Is(err, errTooMany) {
			entries = nil // never a partial answer
		}
		switch {
		case err == nil, errors.Is(err, errTooMany):
			if err != nil {
				d.searches.discard(c) // its search was left unfinished
				d.log.Warn("directory: filter matches more entries than are read", "filter", filter, "max_entries", d.r.MaxEntries)
			} else {
				d.searches.put(c)
			}
			slices.SortFunc(entries, func(a, b *ldap.Entry) int { return strings.Compare(a.DN, b.DN) })
			return entries, nil
		case !networkError(err) && ctx.Err() == nil:
			// The server answered with an error: the connection is fine,
			// and asking again would get the same answer.
			d.searches.put(c)
			return nil, err
		}
		d.searches.discard(c)
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil && last != nil {
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), last)
	}
	return nil, last
}

// paged runs a search on c. The first try asks the server for at most
// MaxEntries+1 entries and no paging: a lookup wants a few, and a paged
// search costs the server (slapd) about twice as much. When the server's
// own size limit stops it short of that, the search is run again, paged
// (RFC 2696), so the limit cuts nothing.
func (d *Directory) paged(ctx context.Context, c *ldap.Conn, filter string, attrs []string) ([]*ldap.Entry, error) {
	out, err := d.searchPages(ctx, c, filter, attrs, false)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && len(out) <= d.r.MaxEntries {
		return d.searchPages(ctx, c, filter, attrs, true)
	}
	return out, err
}

func (d *Directory) searchPages(ctx context.Context, c *ldap.Conn, filter string, attrs []string, paged bool) ([]*ldap.Entry, error) {
	timeLimit := int(d.r.Timeout.Seconds())
	req := ldap.NewSearchRequest(d.r.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, d.r.MaxEntries+1, timeLimit, false,
		filter, attrs, nil)
	var paging *ldap.ControlPaging
	if paged {
		paging = ldap.NewControlPaging(d.r.PageSize)
		req.SizeLimit, req.Controls = 0, []ldap.Control{paging}
	}
	var out []*ldap.Entry
	for {
		res := c.SearchAsync(ctx, req, 16)
		var cookie []byte
		for res.Next() {
			if e := res.Entry(); e != nil {
				if len(out) == d.r.MaxEntries {
					return out, errTooMany
				}
				out = append(out, e)
			}
			if pc, ok := ldap.FindControl(res.Controls(), ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
				cookie = pc.Cookie
			}
		}
		if err := res.Err(); err != nil {
			return out, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err // the search was cut short: never a partial answer
		}
		if !paged || len(cookie) == 0 {
			return out, nil
		}
		paging.SetCookie(cookie)
	}
}

// bindUser checks password by binding as dn on a connection of the bind
// pool. ok false with a nil error is a refusal (wrong password, an
// account the server will not let in); an error is a server that could
// not answer.
func (d *Directory) bindUser(ctx context.Context, dn, password string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d.r.Timeout)
	defer cancel()
	var last error
	for range 2 {
		c, err := d.binds.get(ctx)
		if err != nil {
			return false, err
		}
		// go-ldap's Bind refuses an empty password itself too: an
		// unauthenticated bind would "succeed" (RFC 4513 §5.1.2).
		err = c.c.Bind(dn, password)
		switch {
		case err == nil:
			d.binds.put(c)
			return true, nil
		case !networkError(err):
			d.binds.put(c)
			return false, nil
		}
		d.binds.discard(c)
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return false, last
}
