package smtpserver

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/postern/postern"
)

// Listen wraps inner so that each connection passes the connect stage of
// the policy (and the implicit TLS handshake, if configured) before the
// server writes its banner. go-smtp greets as soon as Accept returns, so
// this is the only place for connect-time checks: access Connect: entries,
// DNSBL, connection limits.
//
// A connection refused at the connect stage is answered 554 (or the
// verdict's reply; 421 for a temporary failure) and closed (RFC 5321
// §3.1). The checks of different connections run concurrently; Accept never
// returns an error for one connection, only when inner fails for good.
// Config.MaxConnections is counted here, on what inner accepts.
func (s *Server) Listen(inner net.Listener) net.Listener {
	if s.connLimit != nil {
		inner = s.connLimit.Listener(inner)
	}
	l := &listener{srv: s, inner: inner, ready: make(chan net.Conn), done: make(chan struct{})}
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.listeners = append(s.listeners, l)
	}
	s.mu.Unlock()
	if closing {
		l.Close()
		return l
	}
	go l.loop()
	return l
}

type listener struct {
	srv   *Server
	inner net.Listener
	ready chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error // set before done is closed
}

func (l *listener) Addr() net.Addr { return l.inner.Addr() }

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *listener) Close() error {
	err := l.inner.Close()
	l.stop(net.ErrClosed)
	return err
}

func (l *listener) stop(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *listener) loop() {
	var delay time.Duration
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			if temporaryAccept(err) {
				// Out of file descriptors and the like: back off, go on.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.srv.cfg.Logger.Warn("accept failed, retrying", "error", err, "retry_in", delay.String())
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.stop(err)
			return
		}
		delay = 0
		go l.admit(nc)
	}
}

// admit runs the connect stage for one connection and hands it to Accept.
func (l *listener) admit(nc net.Conn) {
	s := l.srv
	st := s.newConnState(nc)
	var transport net.Conn = nc
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	s.lookupClient(ctx, st.conn)
	if s.cfg.ImplicitTLS {
		tc := tls.Server(nc, s.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			st.conn.Logger().Info("tls handshake failed", "stage", "connect", "error", err)
			nc.Close()
			return
		}
		cs := tc.ConnectionState()
		st.conn.TLS = &cs
		st.tls = &cs
		transport = tc
	}
	if v, ok := s.checkConnect(ctx, st); !ok {
		_ = transport.SetWriteDeadline(time.Now().Add(s.cfg.CommandTimeout))
		_, _ = transport.Write([]byte(v.Reply.Wire()))
		transport.Close()
		return
	}
	st.screen = s.selectTests(ctx, st.conn)
	e := newEdge(nc, transport, s, st)
	if !s.trackEdge(e) {
		transport.Close()
		return
	}
	select {
	case l.ready <- e:
	case <-l.done:
		e.Close()
	}
}

// lookupClient finds the client's host name before anything judges the
// connection (sendmail looks it up before check_relay), unless the server
// has no resolver or the client is exempt.
func (s *Server) lookupClient(ctx context.Context, c *postern.Conn) {
	if s.cfg.ReverseDNS == nil {
		return
	}
	ip := c.RemoteAddr()
	if !ip.IsValid() || s.cfg.SkipReverseDNS != nil && s.cfg.SkipReverseDNS(ip) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReverseDNSTimeout)
	defer cancel()
	h := s.cfg.ReverseDNS.LookupClientHost(ctx, ip)
	if h.Resolve == postern.ResolveNone {
		return
	}
	c.SetClientHost(h)
}

// clientAttrs are the reverse DNS outcome for the connect log line.
func clientAttrs(c *postern.Conn) []any {
	if c.ClientResolve == postern.ResolveNone && c.ClientName == "" {
		return nil
	}
	a := []any{"client_resolve", c.ClientResolve.String()}
	if c.ClientName != "" {
		a = append(a, "client_name", c.ClientName)
	} else if c.ClientPTR != "" {
		a = append(a, "client_ptr", c.ClientPTR)
	}
	return a
}

// checkConnect runs the connect stage; ok is false when the client must be
// turned away with v.Reply.
func (s *Server) checkConnect(ctx context.Context, st *connState) (postern.Verdict, bool) {
	f, _ := s.currentPolicy().(postern.ConnectChecker)
	if f == nil {
		st.conn.Logger().Info("connect", append([]any{"stage", "connect", "action", "continue"}, clientAttrs(st.conn)...)...)
		return postern.Pass, true
	}
	v, err := f.CheckConnect(ctx, st.conn)
	if err != nil {
		v = postern.TempFailed(421, postern.ESC(4, 3, 0), "Temporary local problem, try again later", err.Error())
	}
	switch v.Action {
	case postern.Reject, postern.TempFail:
		rep := v.ReplyAt(postern.StageConnect)
		if v.Action == postern.TempFail && rep.Code != 421 {
			// Only 421 closes the channel cleanly before the banner.
			rep.Code = 421
		}
		v.Reply = rep
		st.conn.Logger().Info("connect refused", append([]any{"stage", "connect", "action", v.Action.String(),
			"code", rep.Code, "reason", v.Reason}, clientAttrs(st.conn)...)...)
		return v, false
	case postern.Discard, postern.Quarantine:
		st.connectVerdict = v
	}
	st.conn.Logger().Info("connect", append([]any{"stage", "connect", "action", v.Action.String(), "reason", v.Reason},
		clientAttrs(st.conn)...)...)
	return v, true
}
