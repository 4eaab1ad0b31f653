// Command minimal is a custom MTA from Postern's packages in one page: a
// greet pause, a sendmail access map, a DNSBL, a filter of its own, relay
// control, the SMTP server, the durable queue and routing (Maildir for the
// local domains, MX or a smart host for the rest). It relays only for the
// -trusted networks (and "Connect:… RELAY" clients of the access map).
//
//	go run ./examples/minimal -domains example.test -dnsbl zen.spamhaus.org
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/smtpserver"
	"github.com/postern/postern/smtpserver/access"
	"github.com/postern/postern/smtpserver/greetpause"
)

// config is what the flags set.
type config struct {
	Hostname   string
	Domains    []string       // local domains, delivered to Maildir
	Trusted    []netip.Prefix // may relay anywhere
	Spool      string         // queue directory
	Maildir    string         // Maildir root: <root>/<domain>/<user>/
	Access     string         // sendmail access file; "" for none
	DNSBL      []dnsbl.Zone   // DNS lists asked about each client
	Resolvers  []string       // DNS servers; empty: /etc/resolv.conf
	SmartHost  string         // "[smtp.isp.example]"; empty: MX
	GreetPause time.Duration  // for clients no GreetPause: entry names
	Logger     *slog.Logger
}

// mta is the running server and queue.
type mta struct {
	srv    *smtpserver.Server
	ln     *greetpause.Listener
	q      *queue.Queue
	tr     *route.Transport
	stop   context.CancelFunc
	queued chan error // queue.Run's result
}

func main() {
	var cfg config
	listen := flag.String("listen", "127.0.0.1:2525", "SMTP address")
	domains := flag.String("domains", "example.test", "local domains, comma-separated")
	flag.Func("trusted", "a network that may relay, CIDR (repeat the flag for more)", func(s string) error {
		pfx, err := netip.ParsePrefix(s)
		cfg.Trusted = append(cfg.Trusted, pfx)
		return err
	})
	flag.StringVar(&cfg.Spool, "spool", "minimal-spool", "queue directory")
	flag.StringVar(&cfg.Maildir, "maildir", "minimal-maildir", "Maildir root of the local domains")
	flag.StringVar(&cfg.Access, "access", "", "sendmail access file")
	flag.Func("dnsbl", "a DNSBL zone to ask about each client (repeat the flag for more)", func(s string) error {
		cfg.DNSBL = append(cfg.DNSBL, dnsbl.Zone{Name: s, TXT: true})
		return nil
	})
	flag.StringVar(&cfg.SmartHost, "smarthost", "", "next hop of all other mail, e.g. [smtp.isp.example]")
	flag.DurationVar(&cfg.GreetPause, "greet-pause", 3*time.Second, "banner delay for strangers")
	flag.Parse()
	cfg.Domains = strings.FieldsFunc(strings.ToLower(*domains), func(r rune) bool { return r == ',' || r == ' ' })
	cfg.Hostname, _ = os.Hostname()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	var m *mta
	l, err := net.Listen("tcp", *listen)
	if err == nil {
		m, err = start(cfg, l)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(1)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM) // serve until told to stop
	go func() { m.srv.Serve(m.ln); cancel() }()
	<-ctx.Done()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.shutdown(ctx); err != nil {
		cfg.Logger.Error("shutdown", "error", err)
	}
}

// start builds the MTA on l: nothing is served until Serve(m.ln).
func start(cfg config, l net.Listener) (*mta, error) {
	if len(cfg.Domains) == 0 || cfg.Hostname == "" {
		return nil, errors.New("a host name and a local domain are required")
	}
	acc, _, err := access.Parse(strings.NewReader(""), "none")
	if cfg.Access != "" {
		acc, _, err = access.Load(cfg.Access)
	}
	if err != nil {
		return nil, err
	}
	trust, err1 := access.NewTrust(access.TrustConfig{Map: acc, TrustedNets: cfg.Trusted, Logger: cfg.Logger})
	filter, err2 := access.NewFilter(access.FilterConfig{Map: acc, LocalDomains: cfg.Domains, Logger: cfg.Logger})
	relay, err3 := access.NewRelayControl(access.RelayConfig{Map: acc, LocalDomains: cfg.Domains,
		TrustedNets: cfg.Trusted, Logger: cfg.Logger})
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	// Trust first, so every later filter knows who is trusted.
	entries := []postern.Entry{{Filter: trust}, {Filter: filter}, {Filter: relay}, {Filter: ownDomainSender(cfg.Domains)}}
	res, err := resolver.New(resolver.Config{Servers: cfg.Resolvers, Logger: cfg.Logger}) // lists and MX share it
	if err != nil {
		return nil, err
	}
	if len(cfg.DNSBL) > 0 {
		ck, err := dnsbl.New(dnsbl.Config{Zones: cfg.DNSBL, Resolver: res, Logger: cfg.Logger})
		var bl *dnsbl.Filter
		if err == nil {
			bl, err = dnsbl.NewFilter(dnsbl.FilterConfig{Checker: ck, Logger: cfg.Logger})
		}
		if err != nil {
			return nil, err
		}
		entries = append(entries, postern.Entry{Filter: bl})
	}
	chain, err := postern.NewChain(postern.ChainConfig{Name: "minimal", Entries: entries})
	if err != nil {
		return nil, err
	}
	router, err := route.NewRouter(route.RouterConfig{LocalDomains: cfg.Domains, SmartHost: cfg.SmartHost,
		Resolver: res, LocalNames: []string{cfg.Hostname}, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	m := &mta{queued: make(chan error, 1)}
	if m.tr, err = route.NewTransport(route.TransportConfig{Router: router, Hostname: cfg.Hostname,
		MaildirRoot: cfg.Maildir, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	m.q, err = queue.Open(queue.Config{Dir: cfg.Spool, Hostname: cfg.Hostname, Deliverer: m.tr,
		Postmaster: "postmaster@" + cfg.Domains[0], Logger: cfg.Logger})
	if err == nil {
		m.srv, err = smtpserver.New(smtpserver.Config{Hostname: cfg.Hostname, Policy: chain, Logger: cfg.Logger,
			Handoff: &queue.Handoff{Queue: m.q, Logger: cfg.Logger}})
	}
	if err == nil {
		m.ln, err = greetpause.New(l, greetpause.Config{Logger: cfg.Logger, Pause: func(ip netip.Addr) time.Duration {
			if slices.ContainsFunc(cfg.Trusted, func(p netip.Prefix) bool { return p.Contains(ip) }) {
				return 0
			} else if d, ok := acc.GreetPause(ip, ""); ok {
				return d // sendmail's GreetPause: entries
			}
			return cfg.GreetPause
		}})
	}
	if err != nil {
		if m.q != nil {
			m.q.Close()
		}
		return nil, errors.Join(err, m.tr.Close())
	}
	ctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	go func() { m.queued <- m.q.Run(ctx) }()
	return m, nil
}

// shutdown stops the server (sessions still open when ctx ends are
// closed), then the queue: attempts under way record their results.
func (m *mta) shutdown(ctx context.Context) error {
	err := m.srv.Shutdown(ctx) // closes m.ln too
	m.stop()
	err = errors.Join(err, <-m.queued, m.q.Close())
	m.tr.Close()
	return err
}

// ownDomainSender is this MTA's own filter: a stranger may not use a
// local domain as the sender (trusted clients send our mail).
func ownDomainSender(domains []string) postern.MailChecker {
	return postern.MailFunc("own-domain-sender", func(_ context.Context, c *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
		if d := postern.AddrDomain(t.From); slices.Contains(domains, d) && !c.Trusted && !c.Authenticated() {
			return postern.Rejected(550, postern.ESC(5, 7, 1), "Sender address rejected: not from this network",
				"stranger using local domain "+d), nil
		}
		return postern.Pass, nil
	})
}
