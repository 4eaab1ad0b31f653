package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/postern/postern/queue"
	"github.com/postern/postern/route"
	"github.com/postern/postern/route/mtasts"
	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/tlsrpt"
	"github.com/postern/postern/smtpserver/access"
)

// validateOutbound checks the keys of outbound TLS and login.
func (c *Config) validateOutbound() error {
	if c.Delivery.TLS != "" {
		lvl, err := route.ParseTLSPolicy(c.Delivery.TLS)
		if err != nil {
			return keyErr("delivery.tls", "%q is not none, may, encrypt, dane, dane-only, verify or secure", c.Delivery.TLS)
		}
		if (lvl == route.TLSDane || lvl == route.TLSDaneOnly) && !c.DNS.DNSSEC {
			return keyErr("delivery.tls", "%s needs dns.dnssec (a validating resolver whose AD bit can be believed)", lvl)
		}
	}
	if (c.Delivery.AuthUser == "") != (c.Delivery.AuthPasswordFile == "") {
		return keyErr("delivery.auth_user", "delivery.auth_user and delivery.auth_password_file go together")
	}
	if c.Delivery.AuthUser != "" && c.Delivery.SmartHost == "" {
		return keyErr("delivery.auth_user", "logs in to delivery.smart_host, which is not set")
	}
	if c.TLSRPT.From != "" {
		if _, err := envelopeAddr(c.TLSRPT.From); err != nil {
			return keyErr("tlsrpt.from", "%v", err)
		}
	}
	return nil
}

// outbound is what secures the relay's deliveries: the default level,
// the TLS policy map, MTA-STS, the roots, and the logins.
type outbound struct {
	level    route.TLSPolicy
	policies *route.Watcher[*route.TLSPolicyMap]
	sts      *mtasts.Client
	roots    *x509.CertPool
	auth     *authSource
	dane     bool
}

// buildOutbound reads the outbound keys and the files they name.
func buildOutbound(s *Config, res *resolver.Resolver, log *slog.Logger) (*outbound, error) {
	o := &outbound{level: route.TLSMay}
	if s.Delivery.TLS != "" {
		o.level, _ = route.ParseTLSPolicy(s.Delivery.TLS) // validated
	}
	if o.level == route.TLSMay && s.Delivery.DANE && s.DNS.DNSSEC {
		o.level = route.TLSDane
	}
	o.dane = o.level == route.TLSDane || o.level == route.TLSDaneOnly
	var err error
	if s.Delivery.TLSCAFile != "" {
		b, err := os.ReadFile(s.Delivery.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("delivery.tls_ca_file: %w", err)
		}
		o.roots = x509.NewCertPool()
		if !o.roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("delivery.tls_ca_file: %s holds no PEM certificate", s.Delivery.TLSCAFile)
		}
	}
	if s.Delivery.TLSPolicyMap != "" {
		if o.policies, err = route.NewTLSPolicyMapWatcher(s.Delivery.TLSPolicyMap, route.WatcherConfig{Logger: log}); err != nil {
			return nil, fmt.Errorf("delivery.tls_policy_map: %w", err)
		}
	}
	if s.Delivery.MTASTS {
		o.sts, err = mtasts.New(mtasts.Config{Resolver: res, CacheDir: filepath.Join(s.Spool, "mta-sts"), RootCAs: o.roots, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("delivery.mta_sts: %w", err)
		}
	}
	if o.auth, err = newAuthSource(s, log); err != nil {
		return nil, err
	}
	return o, nil
}

// configure puts the outbound parts into a transport's configuration.
func (o *outbound) configure(cfg *route.TransportConfig, s *Config, rpt route.TLSReporter) {
	cfg.TLS = o.level
	if o.roots != nil {
		cfg.TLSConfig.RootCAs = o.roots
	}
	if o.policies != nil {
		cfg.TLSPolicies = o.policies
	}
	if o.sts != nil {
		cfg.MTASTS = o.sts
	}
	cfg.TLSReporter = rpt
	if o.auth.any() {
		cfg.Auth = o.auth
	}
	cfg.AuthWithoutTLS = s.Delivery.AuthWithoutTLS
}

// watch follows the policy map and the files with AuthInfo entries.
func (o *outbound) watch(ctx context.Context) {
	if o.policies != nil {
		go o.policies.Run(ctx)
	}
	for _, w := range o.auth.watchers {
		go w.Run(ctx)
	}
}

// describe says what check-config prints about delivery security; never
// a secret.
func (o *outbound) describe(s *Config) []string {
	dane := "off"
	switch {
	case o.dane:
		dane = "on"
	case !s.DNS.DNSSEC:
		dane = "off (dns.dnssec is not set)"
	}
	line := fmt.Sprintf("delivery TLS: level %s, DANE %s, MTA-STS %s", o.level, dane, onOff(o.sts != nil))
	if o.policies != nil {
		line += fmt.Sprintf(", policy map %s (%d entries)", s.Delivery.TLSPolicyMap, o.policies.Current().Len())
	}
	out := []string{line}
	if s.Delivery.AuthUser != "" {
		out = append(out, "smart host login: user "+s.Delivery.AuthUser+", password set")
	}
	if n := o.auth.table().Len() - len(o.auth.static); n > 0 {
		out = append(out, "AuthInfo entries: "+strconv.Itoa(n)+" (credentials set)")
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// authSource is route.AuthSource over the AuthInfo entries of the files
// in force (policy.access, delivery.authinfo) and the smart host login
// of delivery.auth_user, which comes first. The table is made again
// when a file is reloaded.
type authSource struct {
	watchers []*access.Watcher
	static   []route.AuthEntry
	log      *slog.Logger

	mu    sync.Mutex
	maps  []*access.Map
	built *route.AuthTable
}

func newAuthSource(s *Config, log *slog.Logger) (*authSource, error) {
	a := &authSource{log: log}
	for _, f := range []struct{ key, path string }{{"policy.access", s.Policy.Access}, {"delivery.authinfo", s.Delivery.AuthInfo}} {
		if f.path == "" {
			continue
		}
		w, err := access.NewWatcher(f.path, access.WatcherConfig{Logger: discardWarnings(log)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		a.watchers = append(a.watchers, w)
	}
	if s.Delivery.AuthUser != "" {
		pw, err := readSecret(s.Delivery.AuthPasswordFile, log)
		if err != nil {
			return nil, fmt.Errorf("delivery.auth_password_file: %w", err)
		}
		hop, err := route.ParseNextHop(smartHostHop(s.Delivery.SmartHost))
		if err != nil {
			return nil, fmt.Errorf("delivery.smart_host: %w", err)
		}
		val := `"U:` + s.Delivery.AuthUser + `" "P=` + base64.StdEncoding.EncodeToString([]byte(pw)) + `"`
		for _, h := range hop.Hosts {
			a.static = append(a.static, route.AuthEntry{Key: h.Name, Value: val, Source: "delivery.auth_user"})
		}
		if _, err := route.NewAuthTable(a.static); err != nil {
			return nil, err
		}
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// smartHostHop gives a smart host its mailer, as the router does.
func smartHostHop(v string) string {
	if m, _, ok := strings.Cut(v, ":"); ok {
		if _, err := route.ParseNextHop(m + ":"); err == nil && !strings.HasPrefix(v, "[") {
			return v
		}
	}
	return "relay:" + v
}

// discardWarnings: the policy's own watcher of the access file already
// logs its warnings.
func discardWarnings(log *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{log.Handler(), slog.LevelError})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (l levelFilter) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}

// readSecret reads the first line of a password file, warning when
// others may read it.
func readSecret(path string, log *slog.Logger) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		log.Warn("password file is readable by others than its owner; chmod 600 it", "file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("%s: the first line is empty", path)
	}
	return pw, nil
}

func (a *authSource) any() bool { return len(a.watchers) > 0 || len(a.static) > 0 }

// check fails on an AuthInfo entry that does not parse, naming its line.
func (a *authSource) check() error {
	_, err := route.NewAuthTable(a.entries(a.current()))
	return err
}

func (a *authSource) current() []*access.Map {
	maps := make([]*access.Map, len(a.watchers))
	for i, w := range a.watchers {
		maps[i] = w.Current()
	}
	return maps
}

func (a *authSource) entries(maps []*access.Map) []route.AuthEntry {
	out := append([]route.AuthEntry(nil), a.static...)
	for _, m := range maps {
		for _, e := range m.Entries() {
			if strings.EqualFold(e.Tag, "AuthInfo") {
				out = append(out, route.AuthEntry{Key: e.Key, Value: e.Raw, Source: e.Source()})
			}
		}
	}
	return out
}

// table returns the AuthInfo table of the files in force.
func (a *authSource) table() *route.AuthTable {
	maps := a.current()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.built != nil && samePointers(maps, a.maps) {
		return a.built
	}
	var good []route.AuthEntry
	for _, e := range a.entries(maps) {
		if _, err := route.NewAuthTable([]route.AuthEntry{e}); err != nil {
			a.log.Error("AuthInfo entry ignored", "error", err.Error())
			continue
		}
		good = append(good, e)
	}
	a.built, _ = route.NewAuthTable(good)
	a.maps = maps
	return a.built
}

func samePointers(a, b []*access.Map) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Lookup implements route.AuthSource.
func (a *authSource) Lookup(host string, addr netip.Addr, named bool) (route.Credentials, bool) {
	return a.table().Lookup(host, addr, named)
}

// newTLSReporter makes the TLS-RPT reporter of a running relay: its
// journal under the spool, its DNS through the generation in force, its
// reports queued (marked, so they go despite TLS failures).
func (r *relayServer) newTLSReporter(s *Config) (*tlsrpt.Reporter, error) {
	host := s.hostnameOrDefault()
	from := s.TLSRPT.From
	if from == "" {
		from = "postmaster@" + host
	}
	return tlsrpt.New(tlsrpt.Config{Dir: filepath.Join(s.Spool, "tlsrpt"), Resolver: genResolver{r}, From: from,
		Submitter: host, Organization: s.TLSRPT.Organization, Contact: s.TLSRPT.Contact, Logger: r.log,
		Submit: func(ctx context.Context, from string, to []string, msg []byte) error {
			env := queue.Envelope{From: from, TLSReport: true}
			for _, a := range to {
				env.Recipients = append(env.Recipients, queue.Recipient{Addr: a, Original: a})
			}
			id, err := r.q.Enqueue(ctx, env, bytes.NewReader(msg))
			if err == nil {
				r.log.Info("TLS report queued", "queue_id", id, "to", strings.Join(to, ","))
			}
			return err
		}})
}

// genResolver asks the DNS through the generation in force.
type genResolver struct{ r *relayServer }

func (g genResolver) Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error) {
	return g.r.cur.Load().routing.res.Lookup(ctx, name, qtype)
}
