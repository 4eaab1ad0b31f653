package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern"
)

// Server is an SMTP server on go-smtp that runs a policy at each stage and
// hands accepted mail to a Handoff. It is safe for concurrent use; serve as
// many listeners as needed.
type Server struct {
	cfg       Config
	tlsConfig *tls.Config
	policy    atomic.Pointer[policyBox]
	smtp      *smtp.Server
	connLimit *ConnLimit // nil without Config.MaxConnections

	mu        sync.Mutex
	listeners []net.Listener // ours, closed by Close and Shutdown
	edges     map[*edgeConn]struct{}
	closing   bool
	sessions  sync.WaitGroup
}

type policyBox struct{ f postern.Filter }

// New validates cfg and builds a server.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: c, edges: make(map[*edgeConn]struct{})}
	if c.TLSConfig != nil {
		s.tlsConfig = c.TLSConfig.Clone()
		s.tlsConfig.SessionTicketsDisabled = !c.TLSSessionTickets
	}
	s.policy.Store(&policyBox{c.Policy})
	if c.MaxConnections > 0 {
		s.connLimit = NewConnLimit(ConnLimitConfig{Max: c.MaxConnections, Hostname: c.Hostname, Logger: c.Logger})
	}

	s.smtp = newGoSMTP(&backend{srv: s}, c)
	return s, nil
}

// newGoSMTP configures go-smtp for serving behind the edge. What the edge
// assumes of it is asserted against go-smtp alone, configured by this
// same function, in gosmtp_contract_test.go.
func newGoSMTP(be smtp.Backend, c Config) *smtp.Server {
	gs := smtp.NewServer(be)
	gs.Domain = c.Hostname
	gs.MaxMessageBytes = c.MaxMessageBytes
	gs.MaxRecipients = c.MaxRecipients
	gs.MaxLineLength = 0 // the edge bounds command lines; DATA lines pass
	// go-smtp never sees TLS (the edge owns STARTTLS), so AUTH must be
	// allowed in its view; the session decides (AllowInsecureAuth).
	gs.AllowInsecureAuth = true
	gs.EnableSMTPUTF8 = !c.DisableSMTPUTF8
	gs.EnableDSN = !c.DisableDSN
	// TLSConfig, ReadTimeout and WriteTimeout stay zero: the edge's.
	gs.ErrorLog = log.New(io.Discard, "", 0)
	return gs
}

// SetPolicy replaces the policy for new stages of all sessions (hot
// reload). Build the new chain first; the swap is atomic.
func (s *Server) SetPolicy(f postern.Filter) { s.policy.Store(&policyBox{f}) }

func (s *Server) currentPolicy() postern.Filter { return s.policy.Load().f }

// Config returns the effective configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// ErrServerClosed is what Serve and ListenAndServe return after Shutdown
// or Close, as net/http's does.
var ErrServerClosed = errors.New("smtpserver: Server closed")

// Serve accepts connections on l until it is closed or the server shuts
// down. It runs the connect stage before the banner (see Listen). It
// always returns a non-nil error: ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	if s.isClosing() {
		l.Close()
		return ErrServerClosed
	}
	ll := s.Listen(l)
	err := s.smtp.Serve(ll)
	// go-smtp returns nil when it was closed before its listener's
	// Accept failed, net.ErrClosed when after: both are our closing.
	if err == nil || s.isClosing() && (errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed)) {
		return ErrServerClosed
	}
	return err
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// ListenAndServe listens on the TCP address addr and serves.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("smtpserver: %w", err)
	}
	return s.Serve(l)
}

// Shutdown stops accepting, tells idle sessions 421 and lets sessions in a
// transaction finish it. It waits until all sessions have ended or ctx is
// done; then the remaining connections are closed, whatever they are
// doing (a client stalled inside DATA included), and ctx's error is
// returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	s.mu.Lock()
	edges := make([]*edgeConn, 0, len(s.edges))
	for e := range s.edges {
		edges = append(edges, e)
	}
	s.mu.Unlock()
	for _, e := range edges {
		e.shutdown()
	}
	done := make(chan struct{})
	go func() {
		_ = s.smtp.Shutdown(context.Background())
		s.sessions.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.abortAll()
		_ = s.smtp.Close()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once. It may be
// called at any time, also after Shutdown or a second time.
func (s *Server) Close() error {
	s.closeListeners()
	s.abortAll()
	err := s.smtp.Close()
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// abortAll closes the socket under every connection. A session blocked
// reading a command or a DATA block wakes with an error and ends; go-smtp
// does not know the connections it has not seen a command on, so closing
// through go-smtp alone is not enough.
func (s *Server) abortAll() {
	s.mu.Lock()
	edges := make([]*edgeConn, 0, len(s.edges))
	for e := range s.edges {
		edges = append(edges, e)
	}
	s.mu.Unlock()
	for _, e := range edges {
		_ = e.raw.Close()
	}
}

// openSessions counts connections past the connect stage not yet closed.
func (s *Server) openSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.edges)
}

// closeListeners marks the server closing and closes the listeners made by
// Listen: go-smtp's Close knows only those its Serve has registered, and a
// listener may not have reached Serve yet.
func (s *Server) closeListeners() {
	s.mu.Lock()
	s.closing = true
	ls := s.listeners
	s.listeners = nil
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	if s.connLimit != nil {
		s.connLimit.Close()
	}
}

func (s *Server) trackEdge(e *edgeConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.edges[e] = struct{}{}
	s.sessions.Add(1)
	return true
}

func (s *Server) connClosed(e *edgeConn) {
	s.mu.Lock()
	_, ok := s.edges[e]
	delete(s.edges, e)
	s.mu.Unlock()
	if ok {
		s.sessions.Done()
		e.st.logClose()
	}
}

// connState is what the edge and the go-smtp session share about one
// connection.
type connState struct {
	conn *postern.Conn

	mu             sync.Mutex
	greeting       string
	esmtp          bool
	greetingSeq    int
	tls            *tls.ConnectionState
	connectVerdict postern.Verdict // a connect-stage Discard/Quarantine
	messages       int
	bareNewline    byte         // the first bare CR or LF of the last DATA; 0 for none
	screen         ProtocolTest // the deep protocol tests, chosen before the edge exists
}

// setBareNewline records, at the end of DATA, the first bare line end the
// edge saw in it.
func (st *connState) setBareNewline(c byte) {
	st.mu.Lock()
	st.bareNewline = c
	st.mu.Unlock()
}

func (st *connState) takeBareNewline() byte {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.bareNewline
	st.bareNewline = 0
	return c
}

func (st *connState) setGreeting(helo string, esmtp bool) {
	st.mu.Lock()
	st.greeting, st.esmtp = helo, esmtp
	st.greetingSeq++
	st.mu.Unlock()
}

func (st *connState) greetingNow() (string, bool, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.greeting, st.esmtp, st.greetingSeq
}

func (st *connState) setTLS(cs *tls.ConnectionState) {
	st.mu.Lock()
	st.tls = cs
	st.mu.Unlock()
}

func (st *connState) tlsState() *tls.ConnectionState {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.tls
}

func (st *connState) logClose() {
	st.mu.Lock()
	n := st.messages
	st.mu.Unlock()
	st.conn.Logger().Debug("disconnect", "stage", "disconnect", "messages", n,
		"duration", time.Since(st.conn.Started).Round(time.Millisecond).String())
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *Server) newConnState(nc net.Conn) *connState {
	c := &postern.Conn{
		ID:      s.cfg.NewID(),
		Remote:  addrPort(nc.RemoteAddr()),
		Local:   addrPort(nc.LocalAddr()),
		Started: s.cfg.Now(),
	}
	c.Log = s.cfg.Logger.With("conn_id", c.ID, "remote_ip", c.RemoteAddr().String())
	return &connState{conn: c}
}
