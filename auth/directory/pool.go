package directory

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// pool keeps connections to the servers: one for the service account's
// searches, one for users' binds (a connection bound as a user never
// searches). Each connection serves one operation at a time; tokens
// bound how many exist.
type pool struct {
	r      *resolved
	name   string // "search" or "bind"
	asSvc  bool   // bind as the service account after connecting
	tokens chan struct{}
	down   *downList

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// conn is one pooled connection.
type conn struct {
	c      *ldap.Conn
	server string // its URL
	used   time.Time
}

// downList remembers servers that could not be reached, shared by the
// pools of a Directory.
type downList struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func newPool(r *resolved, name string, asSvc bool, down *downList) *pool {
	p := &pool{r: r, name: name, asSvc: asSvc, tokens: make(chan struct{}, r.MaxConns), down: down}
	for range r.MaxConns {
		p.tokens <- struct{}{}
	}
	return p
}

// get returns an idle connection or a new one; put or discard must give
// it back.
func (p *pool) get(ctx context.Context) (*conn, error) {
	select {
	case <-p.tokens:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free %s connection: %w", p.name, ctx.Err())
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.tokens <- struct{}{}
			return nil, ErrClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if !c.c.IsClosing() {
			return c, nil
		}
		c.c.Close() // the server closed it while it was idle
	}
	c, err := p.dial(ctx)
	if err != nil {
		p.tokens <- struct{}{}
		return nil, err
	}
	return c, nil
}

// put returns a healthy connection.
func (p *pool) put(c *conn) {
	c.used = p.r.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.c.Close()
	} else {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
	}
	p.tokens <- struct{}{}
}

// discard closes a connection that failed or was left mid-operation.
func (p *pool) discard(c *conn) {
	c.c.Close()
	p.tokens <- struct{}{}
}

// close closes the idle connections; those in use close when returned.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// dial connects to the first server that is not marked down (all of
// them, in order, when every one is), protects the connection and binds
// the service account.
func (p *pool) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.r.ConnectTimeout)
	defer cancel()
	var errs []string // one line for the log, whatever the servers said
	for _, s := range p.down.order(p.r.servers, p.r.Now()) {
		c, err := p.dialOne(ctx, s)
		if err == nil {
			p.down.up(s.url)
			return &conn{c: c, server: s.url}, nil
		}
		errs = append(errs, s.url+": "+err.Error())
		if !bindRefused(err) {
			p.down.mark(s.url, p.r.Now().Add(p.r.DownFor))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func (p *pool) dialOne(ctx context.Context, s server) (*ldap.Conn, error) {
	nc, err := p.connect(ctx, s)
	if err != nil {
		return nil, err
	}
	tcfg := p.r.tls.Clone()
	tcfg.ServerName = s.host
	if s.ldaps {
		tc := tls.Client(nc, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS: %w", err)
		}
		nc = tc
	}
	c := ldap.NewConn(nc, s.ldaps)
	c.Start()
	// Operations without a context of their own (StartTLS, Bind) end
	// within the timeout.
	c.SetTimeout(p.r.Timeout)
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if s.startTLS {
		if err := c.StartTLS(tcfg); err != nil {
			c.Close()
			return nil, fmt.Errorf("StartTLS: %w", err)
		}
	}
	if p.asSvc && p.r.BindDN != "" {
		if err := c.Bind(p.r.BindDN, p.r.password); err != nil {
			c.Close()
			return nil, &bindError{err}
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// connect opens a TCP connection to s: its host's addresses in turn,
// found through the Resolver.
func (p *pool) connect(ctx context.Context, s server) (net.Conn, error) {
	var d net.Dialer
	if ip := net.ParseIP(s.host); ip != nil {
		return d.DialContext(ctx, "tcp", net.JoinHostPort(s.host, s.port))
	}
	addrs, err := p.r.Resolver.LookupIPAddr(ctx, s.host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", s.host)
	}
	var errs []error
	for _, a := range addrs {
		nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.IP.String(), s.port))
		if err == nil {
			return nc, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// bindError is the service account's bind refused: the server is up,
// the configuration is wrong.
type bindError struct{ err error }

func (e *bindError) Error() string { return "service account bind: " + e.err.Error() }
func (e *bindError) Unwrap() error { return e.err }

func bindRefused(err error) bool {
	var b *bindError
	return errors.As(err, &b) && !networkError(b.err)
}

// networkError reports a failure of the connection rather than an LDAP
// result the server sent: the connection must not be used again.
func networkError(err error) bool {
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode == ldap.ErrorNetwork || le.ResultCode == ldap.LDAPResultUnavailable ||
			le.ResultCode == ldap.LDAPResultBusy || le.ResultCode == ldap.LDAPResultServerDown
	}
	return true
}

// order returns the servers to try: those not marked down first, in
// their configured order, then the others.
func (d *downList) order(all []server, now time.Time) []server {
	d.mu.Lock()
	defer d.mu.Unlock()
	var up, down []server
	for _, s := range all {
		if t, ok := d.until[s.url]; ok && now.Before(t) {
			down = append(down, s)
		} else {
			up = append(up, s)
		}
	}
	return append(up, down...)
}

func (d *downList) mark(url string, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.until == nil {
		d.until = map[string]time.Time{}
	}
	d.until[url] = until
}

func (d *downList) up(url string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.until, url)
}

// check probes the idle connections that have not been used for the
// health interval (a read of the root DSE, RFC 4512 §5.1) and closes
// those that fail.
func (p *pool) check(ctx context.Context) {
	p.mu.Lock()
	var stale, keep []*conn
	now := p.r.Now()
	for _, c := range p.idle {
		if now.Sub(c.used) >= p.r.HealthInterval || c.c.IsClosing() {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	p.idle = keep
	p.mu.Unlock()
	for _, c := range stale {
		// Each probe holds a token, as any use of a connection does.
		select {
		case <-p.tokens:
		case <-ctx.Done():
			c.c.Close()
			continue
		}
		if err := probe(ctx, c.c, p.r.Timeout); err != nil {
			p.discard(c)
			continue
		}
		p.put(c)
	}
}

func probe(ctx context.Context, c *ldap.Conn, timeout time.Duration) error {
	if c.IsClosing() {
		return ldap.ErrConnUnbound
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil)
	r := c.SearchAsync(ctx, req, 1)
	for r.Next() {
	}
	if err := r.Err(); err != nil {
		return err
	}
	return ctx.Err()
}
