package tlsrpt

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/postern/postern"
	"github.com/postern/postern/route/resolver"
)

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("tlsrpt: invalid configuration")

// Resolver is how the Reporter asks the DNS; *resolver.Resolver
// implements it.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) (resolver.Answer, error)
}

// Defaults of Config.
const (
	DefaultSendAfter = 15 * time.Minute
	DefaultRetain    = 30 * 24 * time.Hour
	// maxLine bounds one journal line read back.
	maxLine = 64 << 10
)

// Config configures a Reporter. Dir, Resolver, From, Submitter and
// Submit are required.
type Config struct {
	// Dir holds the journals, one file per UTC day ("2026-12-07.jsonl",
	// renamed ".sent" once reported). Made (0700) if missing.
	Dir      string
	Resolver Resolver
	// From is the reporter address: envelope sender and From field of the
	// reports. Submitter is the reporting domain (TLS-Report-Submitter,
	// report-id); Organization the organization-name (default
	// Submitter); Contact the contact-info (default From).
	From         string
	Submitter    string
	Organization string
	Contact      string
	// Submit queues one report message for the recipients.
	Submit func(ctx context.Context, from string, to []string, msg []byte) error
	// SendAfter is how long after midnight UTC Run sends the day's
	// reports (DefaultSendAfter); Retain how long sent journals are kept
	// (DefaultRetain).
	SendAfter time.Duration
	Retain    time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives a line per report and per failure; nil discards.
	Logger *slog.Logger
}

// Reporter records session results and sends the daily reports. It is
// safe for concurrent use.
type Reporter struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex // journal appends
}

// New validates cfg and returns a Reporter.
func New(cfg Config) (*Reporter, error) {
	switch {
	case cfg.Dir == "" || cfg.Resolver == nil || cfg.Submit == nil:
		return nil, fmt.Errorf("%w: Dir, Resolver and Submit are required", ErrConfig)
	case !validMailbox(cfg.From):
		return nil, fmt.Errorf("%w: From %q is not an address", ErrConfig, cfg.From)
	case cfg.Submitter == "" || strings.ContainsAny(cfg.Submitter, " \t\r\n<>"):
		return nil, fmt.Errorf("%w: Submitter %q is not a domain", ErrConfig, cfg.Submitter)
	}
	if cfg.Organization == "" {
		cfg.Organization = cfg.Submitter
	}
	if cfg.Contact == "" {
		cfg.Contact = cfg.From
	}
	if cfg.SendAfter == 0 {
		cfg.SendAfter = DefaultSendAfter
	}
	if cfg.Retain == 0 {
		cfg.Retain = DefaultRetain
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reporter{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = postern.DiscardLogger()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: Dir: %w", ErrConfig, err)
	}
	return r, nil
}

func dayName(t time.Time) string { return t.UTC().Format("2006-01-02") }

func (r *Reporter) journal(day string) string { return filepath.Join(r.cfg.Dir, day+".jsonl") }

// Record appends a result to the journal of its UTC day (Time, when
// zero, is now). Failures to write are logged: reports are not mail.
func (r *Reporter) Record(res Result) {
	if res.Domain == "" {
		return
	}
	if res.Time.IsZero() {
		res.Time = r.cfg.Now()
	}
	res.Time = res.Time.UTC().Truncate(time.Second)
	b, err := json.Marshal(res)
	if err != nil {
		return
	}
	b = append(b, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := os.OpenFile(r.journal(dayName(res.Time)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		r.log.Warn("TLS-RPT result not recorded", "domain", res.Domain, "error", err)
	}
}

// Results reads the results of one UTC day, by policy domain.
func (r *Reporter) Results(day time.Time) (map[string][]Result, error) {
	return readJournal(r.journal(dayName(day)))
}

func readJournal(path string) (map[string][]Result, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]Result{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		var res Result
		if json.Unmarshal(sc.Bytes(), &res) == nil && res.Domain != "" {
			out[res.Domain] = append(out[res.Domain], res)
		}
	}
	return out, sc.Err()
}

// Build returns the report of one domain's results of one UTC day.
// domain is not empty: Record keeps no result without one.
func (r *Reporter) Build(day time.Time, domain string, results []Result) Report {
	start := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
	return Report{
		OrganizationName: r.cfg.Organization,
		DateRange:        DateRange{Start: start, End: start.Add(24*time.Hour - time.Second)},
		ContactInfo:      r.cfg.Contact,
		ReportID:         dayName(start) + "_" + domain + "@" + r.cfg.Submitter,
		Policies:         Aggregate(results),
	}
}

// Send builds and submits the reports of one UTC day, one per domain
// that publishes a "_smtp._tls" record with a mailto: address, and then
// marks the day's journal sent.
func (r *Reporter) Send(ctx context.Context, day time.Time) error {
	day = day.UTC()
	byDomain, err := r.Results(day)
	if err != nil {
		return err
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	for _, d := range domains {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.sendDomain(ctx, day, d, byDomain[d])
	}
	if len(byDomain) > 0 {
		return os.Rename(r.journal(dayName(day)), r.journal(dayName(day))+".sent")
	}
	return nil
}

// sendDomain reports one domain's day, if it asks for reports.
func (r *Reporter) sendDomain(ctx context.Context, day time.Time, domain string, results []Result) {
	rec, err := r.lookup(ctx, domain)
	if err != nil || rec == nil {
		if err != nil {
			r.log.Warn("TLS-RPT: no report", "domain", domain, "error", err)
		}
		return
	}
	for _, u := range rec.HTTPS {
		r.log.Info("TLS-RPT: https reporting address skipped (reports go by mail only)", "domain", domain, "rua", u)
	}
	if len(rec.Mailto) == 0 {
		return
	}
	rep := r.Build(day, domain, results)
	msg, err := r.Message(rep, domain, rec.Mailto)
	if err == nil {
		err = r.cfg.Submit(ctx, r.cfg.From, rec.Mailto, msg)
	}
	if err != nil {
		r.log.Error("TLS-RPT report not queued", "domain", domain, "error", err)
		return
	}
	r.log.Info("TLS-RPT report queued", "domain", domain, "to", strings.Join(rec.Mailto, ","), "report_id", rep.ReportID,
		"policies", len(rep.Policies))
}

// lookup finds the domain's "_smtp._tls" record: nil when it has none
// or not exactly one (RFC 8460 §3).
func (r *Reporter) lookup(ctx context.Context, domain string) (*Record, error) {
	a, err := r.cfg.Resolver.Lookup(ctx, "_smtp._tls."+domain, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, rr := range a.Records {
		if t, ok := rr.(*dns.TXT); ok {
			if s := strings.Join(t.Txt, ""); strings.HasPrefix(s, "v=TLSRPTv1") {
				found = append(found, s)
			}
		}
	}
	if len(found) != 1 {
		return nil, nil
	}
	rec, err := ParseRecord(found[0])
	if err != nil {
		return nil, nil
	}
	return &rec, nil
}
