package route

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern"
)

// TLSPolicy says when the SMTP client uses STARTTLS (RFC 3207).
type TLSPolicy uint8

// The TLS policies. The zero value is TLSMay.
const (
	// TLSMay uses STARTTLS when the server offers it, without verifying
	// its certificate (opportunistic TLS, RFC 7435; Postfix "may"). A
	// failed handshake is retried once in plain text.
	TLSMay TLSPolicy = iota
	// TLSNone never uses STARTTLS.
	TLSNone
	// TLSEncrypt requires STARTTLS but does not verify the certificate
	// (Postfix "encrypt").
	TLSEncrypt
	// TLSVerify requires STARTTLS and a certificate valid for the host
	// name (the MX host, or the bracketed name) under TLSConfig.RootCAs
	// or the system roots (Postfix "secure"). Messages with REQUIRETLS
	// (RFC 8689) always use it.
	TLSVerify
)

var tlsPolicyNames = [...]string{"may", "none", "encrypt", "verify"}

func (p TLSPolicy) String() string {
	if int(p) < len(tlsPolicyNames) {
		return tlsPolicyNames[p]
	}
	return "tlspolicy(" + strconv.Itoa(int(p)) + ")"
}

// session is one SMTP or LMTP connection, fresh or from the pool.
type session struct {
	key    string
	target Target
	kind   Kind
	conn   *sessConn // the TCP or Unix connection
	wire   net.Conn  // what go-smtp talks over: conn, or TLS on it
	c      *smtp.Client
	tls    *tls.ConnectionState
	// verified is set when the certificate was verified for the host.
	verified bool
	msgs     int
	born     time.Time
	reused   bool
	unbind   func()
	broken   bool
	// clean: the last transaction ended with the reply to the end of
	// data, which leaves the server in its initial state (RFC 5321
	// §4.1.1.4), so no RSET is needed to begin the next one.
	clean bool
	idled time.Time // when it went back to the pool
	// pool bookkeeping, guarded by pool.mu
	timer *time.Timer
	gen   uint64
}

// sessFail is a failure to get a session, with the reply to report.
type sessFail struct {
	reply  postern.Reply
	remote bool // a server reply (RemoteMTA is the host)
	next   bool // try the next host
}

// greetedStep tells a greeting failure from an EHLO failure: nothing has
// been written before the greeting is read.
type countingConn struct {
	*sessConn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.sessConn.Write(p)
}

func (t *Transport) newClient(conn net.Conn, kind Kind) *smtp.Client {
	var c *smtp.Client
	if kind == KindLMTP {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = t.cmdTimeout
	c.SubmissionTimeout = t.dataTimeout
	return c
}

func sessionKey(kind Kind, tg Target, pol TLSPolicy) string {
	return kind.String() + "|" + tg.String() + "|" + pol.String()
}

// getSession returns a session to tg bound to ctx: an idle one from the
// pool that still answers RSET, or a new one.
func (t *Transport) getSession(ctx context.Context, kind Kind, tg Target, pol TLSPolicy) (*session, *sessFail) {
	key := sessionKey(kind, tg, pol)
	if t.pool != nil {
		for {
			s := t.pool.get(key)
			if s == nil {
				break
			}
			s.unbind = s.conn.bind(ctx)
			if s.clean && t.now().Sub(s.idled) < quickReuse && s.conn.quiet() {
				// Back in the pool moments ago after a whole
				// transaction, and the server has not closed it since:
				// no RSET round trip (under load, one per message).
				s.clean, s.reused = false, true
				return s, nil
			}
			s.clean = false
			// RSET between messages (RFC 5321 §4.1.1.5) also proves
			// that the cached connection still works; a broken one
			// is dropped and a fresh one made.
			s.wire.SetDeadline(time.Now().Add(t.cmdTimeout))
			rep, err := lockstepCommand(s.wire, "RSET")
			s.wire.SetDeadline(time.Time{})
			if err == nil && rep.Code == 250 {
				s.reused = true
				return s, nil
			}
			t.log.LogAttrs(ctx, slog.LevelDebug, "cached connection failed, reconnecting",
				slog.String("relay", tg.String()))
			s.broken = true
			t.closeSession(s)
			if ctx.Err() != nil {
				return nil, &sessFail{reply: localFailure(ctx, tg.String(), stepConnect, ctx.Err()), next: false}
			}
		}
	}
	s, f := t.dial(ctx, kind, tg, pol, pol)
	if f != nil {
		return nil, f
	}
	s.key = key
	return s, nil
}

// errPlainRetry asks dial to try again without TLS.
var errPlainRetry = errors.New("route: retry without TLS")

// dial connects, reads the greeting, says EHLO (LHLO for LMTP) and starts
// TLS as the policy says.
func (t *Transport) dial(ctx context.Context, kind Kind, tg Target, pol, orig TLSPolicy) (*session, *sessFail) {
	name := tg.String()
	network, addr := "tcp", tg.Addr.String()
	if tg.Socket != "" {
		network, addr = "unix", tg.Socket
	}
	dctx, cancel := context.WithTimeout(ctx, t.connectTimeout)
	raw, err := t.dialer(dctx, network, addr)
	cancel()
	if err != nil {
		return nil, &sessFail{reply: localFailure(ctx, name, stepConnect, err), next: true}
	}
	sc := &sessConn{Conn: raw}
	s := &session{target: tg, kind: kind, conn: sc, wire: sc, born: t.now()}
	s.unbind = sc.bind(ctx)
	cc := &countingConn{sessConn: sc}
	s.c = t.newClient(cc, kind)
	if err := s.c.Hello(t.hostname); err != nil {
		st := stepEHLO
		if cc.writes == 0 {
			st = stepGreeting
		}
		return nil, t.helloFailed(ctx, s, st, err)
	}
	if pol == TLSNone || tg.Socket != "" {
		return s, nil
	}
	if ok, _ := s.c.Extension("STARTTLS"); !ok {
		if pol == TLSMay {
			return s, nil
		}
		t.closeSession(s)
		return nil, &sessFail{reply: postern.NewReply(451, postern.ESC(4, 7, 4), "TLS is required, but was not offered by host "+name), next: true}
	}
	err = t.startTLS(ctx, s, pol)
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, errPlainRetry):
		// Opportunistic TLS: a server whose TLS is broken still gets
		// the mail, in plain text, as Postfix does.
		t.log.LogAttrs(ctx, slog.LevelInfo, "TLS failed, retrying in plain text",
			slog.String("relay", name), slog.String("error", err.Error()))
		return t.dial(ctx, kind, tg, TLSNone, orig)
	}
	var f *sessFailErr
	if errors.As(err, &f) {
		return nil, &f.f
	}
	return nil, &sessFail{reply: localFailure(ctx, name, stepSTARTTLS, err), next: true}
}

type sessFailErr struct{ f sessFail }

func (e *sessFailErr) Error() string { return e.f.reply.Error() }

func (t *Transport) helloFailed(ctx context.Context, s *session, st step, err error) *sessFail {
	name := s.target.String()
	s.broken = true
	t.closeSession(s)
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if rep, ok := replyFromSMTPError(se); ok {
			// A 4xx or 5xx greeting or EHLO: this server will not take
			// mail now; the next one may (RFC 5321 §3.1; Postfix
			// smtp_skip_5xx_greeting). The reply is kept as text, made
			// temporary: another host or a later attempt may do.
			text := "host " + name + " refused to talk to me: " + rep.Error()
			if st == stepEHLO {
				text = "host " + name + " said: " + rep.Error() + " (in reply to EHLO)"
			}
			return &sessFail{reply: postern.NewReply(451, postern.ESC(4, 4, 0), text), remote: true, next: true}
		}
	}
	return &sessFail{reply: localFailure(ctx, name, st, err), next: true}
}

// startTLS runs STARTTLS itself: go-smtp's client starts TLS only on a
// connection it greets as "localhost". The command goes straight on the
// wire, its reply is read with postern's parser, and after the handshake a
// new go-smtp client takes over the TLS connection and says EHLO again
// (RFC 3207 §4.2).
func (t *Transport) startTLS(ctx context.Context, s *session, pol TLSPolicy) error {
	name := s.target.String()
	fail := func(r postern.Reply, remote bool) error {
		s.broken = true
		t.closeSession(s)
		return &sessFailErr{sessFail{reply: r, remote: remote, next: true}}
	}
	s.conn.SetDeadline(time.Now().Add(t.cmdTimeout))
	rep, err := rawCommand(s.conn, "STARTTLS")
	s.conn.SetDeadline(time.Time{})
	if err != nil {
		return fail(localFailure(ctx, name, stepSTARTTLS, err), false)
	}
	if rep.Code != 220 {
		if pol == TLSMay && rep.Code >= 400 && rep.Code < 600 && rep.Code != 421 {
			return nil // go on in plain text on the same session
		}
		return fail(postern.NewReply(451, postern.ESC(4, 7, 4), "host "+name+" refused STARTTLS: "+rep.Error()), true)
	}
	cfg := t.tlsConfig(s.target, pol)
	tc := tls.Client(s.conn, cfg)
	s.conn.SetDeadline(time.Now().Add(t.cmdTimeout))
	err = tc.HandshakeContext(ctx)
	s.conn.SetDeadline(time.Time{})
	if err != nil {
		s.broken = true
		t.closeSession(s)
		if pol == TLSMay && ctx.Err() == nil {
			return errors.Join(errPlainRetry, err)
		}
		return &sessFailErr{sessFail{reply: localFailure(ctx, name, stepTLS, err), next: true}}
	}
	st := tc.ConnectionState()
	s.tls = &st
	s.verified = pol == TLSVerify
	s.wire = tc
	s.c = t.newClient(&prefixConn{Conn: tc, pre: []byte("220 TLS started\r\n")}, s.kind)
	if err := s.c.Hello(t.hostname); err != nil {
		f := t.helloFailed(ctx, s, stepEHLO, err)
		return &sessFailErr{*f}
	}
	return nil
}

func (t *Transport) tlsConfig(tg Target, pol TLSPolicy) *tls.Config {
	var cfg *tls.Config
	if t.tlsBase != nil {
		cfg = t.tlsBase.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.ServerName = tg.Host
	if pol != TLSVerify {
		// Opportunistic and "encrypt": any certificate will do (RFC
		// 7435); without DANE or MTA-STS there is nothing to check it
		// against.
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// release returns a healthy session to the pool, or closes it.
func (t *Transport) release(s *session) {
	if s.unbind != nil {
		s.unbind()
		s.unbind = nil
	}
	if s.broken || s.conn.dead() || t.pool == nil || s.msgs >= t.maxMsgs || t.now().Sub(s.born) >= t.maxAge {
		t.closeSession(s)
		return
	}
	s.idled = t.now()
	if !t.pool.put(s) {
		t.closeSession(s)
	}
}

// quickReuse is how long a session may wait in the pool and still be
// reused without a RSET when quiet says the server has not closed it. A
// connection idle for longer may have been lost without a FIN (a NAT or
// firewall timing it out), which only a round trip shows.
const quickReuse = 2 * time.Second

// closeSession says QUIT, unless the session is broken, and closes it.
// QUIT goes straight on the wire: go-smtp's Quit would say EHLO first
// after a RSET.
func (t *Transport) closeSession(s *session) {
	if s.unbind != nil {
		s.unbind()
		s.unbind = nil
	}
	if !s.broken && !s.conn.dead() {
		d := min(t.cmdTimeout, 5*time.Second)
		s.wire.SetDeadline(time.Now().Add(d))
		lockstepCommand(s.wire, "QUIT")
	}
	s.wire.Close()
	s.conn.Close()
}
