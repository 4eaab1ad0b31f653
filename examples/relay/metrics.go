package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postern/postern"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/ratelimit"
	"github.com/postern/postern/scan"
)

// metrics are the relay's Prometheus metrics, in a registry of their own
// (no global state), served on -metrics-listen with /healthz.
type metrics struct {
	reg        *prometheus.Registry
	conns      *prometheus.CounterVec
	connsOpen  *prometheus.GaugeVec
	verdicts   *prometheus.CounterVec
	filterTime *prometheus.HistogramVec
	dnsblHits  *prometheus.CounterVec
	scans      *prometheus.CounterVec
	messages   *prometheus.CounterVec
	enqueue    prometheus.Histogram
	deliveries *prometheus.CounterVec
	delivTime  prometheus.Histogram
	reloads    *prometheus.CounterVec
	limited    *limitCollector
	greet      *prometheus.CounterVec // the greet pause's outcomes (frontdoor.go)
	protocol   *prometheus.CounterVec // the deep protocol tests' results
	greylist   *prometheus.CounterVec // greylisting's decisions
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.conns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_connections_total",
		Help: "SMTP connections accepted, by listener."}, []string{"listener"})
	m.connsOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "postern_connections_open",
		Help: "SMTP connections open now, by listener."}, []string{"listener"})
	m.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_verdicts_total",
		Help: "Policy decisions other than continue, by stage, filter and action."}, []string{"stage", "filter", "action"})
	m.filterTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "postern_filter_duration_seconds",
		Help: "Time each filter took per stage.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)},
		[]string{"stage", "filter"})
	m.dnsblHits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_dnsbl_hits_total",
		Help: "Client addresses listed, by DNS list zone."}, []string{"zone"})
	m.scans = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_scan_results_total",
		Help: "Content scan outcomes: clean, virus, spam, ham, finding (attachment or keyword), error."}, []string{"result"})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_messages_total",
		Help: "Transactions that reached the end of DATA, by outcome: queued, quarantine, discard, reject, tempfail."},
		[]string{"outcome"})
	m.enqueue = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postern_enqueue_duration_seconds",
		Help: "Time to make an accepted message durable.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_deliveries_total",
		Help: "Delivery outcomes per recipient: delivered, deferred, bounced, expired."}, []string{"result"})
	m.delivTime = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "postern_delivery_duration_seconds",
		Help: "Time of delivery attempts.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_config_reloads_total",
		Help: "Configuration reloads, by result (ok, failed)."}, []string{"result"})
	m.limited = newLimitCollector()
	m.greet = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_greet_pause_total",
		Help: "Connections through the greet pause, by outcome: pass (waited in silence), known (the pass cache let it in at once), exempt, reject (talked early), log-only, busy, overflow, hangup, closed."},
		[]string{"action"})
	m.protocol = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_protocol_tests_total",
		Help: "Sessions through the deep protocol tests, by result: passed, or the test failed (pipelining, non_smtp, bare_newline)."},
		[]string{"result"})
	m.greylist = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "postern_greylist_total",
		Help: "Greylisting decisions per triplet: greylisted (first attempt, 451), early (retried too soon, 451), passed (retried in time), known, allowed (auto-allowlisted client), exempt, error (the store failed)."},
		[]string{"outcome"})
	m.reg.MustRegister(m.conns, m.connsOpen, m.verdicts, m.filterTime, m.dnsblHits, m.scans, m.messages,
		m.enqueue, m.deliveries, m.delivTime, m.reloads, m.limited, m.greet, m.protocol, m.greylist,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchQueue adds the queue gauges.
func (m *metrics) watchQueue(q *queue.Queue, now func() time.Time) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_queue_messages",
			Help: "Messages in the queue, held ones included."}, func() float64 { n, _ := q.Len(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_queue_held_messages",
			Help: "Messages in the hold area (quarantine)."}, func() float64 { _, h := q.Len(); return float64(h) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_queue_oldest_age_seconds",
			Help: "Age of the oldest queued message; 0 when empty."}, func() float64 {
			o := q.Oldest()
			if o.IsZero() {
				return 0
			}
			return now().Sub(o).Seconds()
		}))
}

// watchGreylist adds the gauge of triplets never retried.
func (m *metrics) watchGreylist(neverRetried func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "postern_greylist_never_retried",
		Help: "Triplets first greylisted on the last UTC day whose retry window has closed that were never retried (from the counter store: all relays sharing it)."},
		neverRetried))
}

// observe counts a policy decision.
func (m *metrics) observe(d postern.Decision) {
	st := d.Stage.String()
	m.filterTime.WithLabelValues(st, d.Filter).Observe(d.Elapsed.Seconds())
	if d.Verdict.Action != postern.Continue || d.Err != nil {
		action := d.Verdict.Action.String()
		if d.Err != nil && d.Verdict.Action == postern.Continue {
			action = "error"
		}
		m.verdicts.WithLabelValues(st, d.Filter, action).Inc()
	}
	if reason := limitReason(d); reason != "" {
		m.limited.vec.WithLabelValues(d.Filter, reason).Inc()
	}
	switch {
	case d.Filter == dnsbl.FilterName && d.Stage == postern.StageConnect && d.Conn != nil:
		if r, ok := postern.GetValue(&d.Conn.Values, dnsbl.IPResultKey); ok {
			for _, h := range r.Hits {
				m.dnsblHits.WithLabelValues(h.Zone).Inc()
			}
		}
	case d.Filter == scan.FilterName && d.Stage == postern.StageData && d.Txn != nil:
		rep, ok := postern.GetValue(&d.Txn.Values, scan.ReportKey)
		if !ok {
			return
		}
		for _, r := range scanOutcomes(rep) {
			m.scans.WithLabelValues(r).Inc()
		}
	}
}

// limitReason names what a rate limit refused: "messages" or
// "recipients" (a rate limit's 450 4.7.1), "harvest" (a held source),
// "store" (the counter store failed and the limit's OnError refused:
// x.3.0, tempfail or reject); "" for any other decision.
func limitReason(d postern.Decision) string {
	if d.Verdict.Action != postern.TempFail && d.Verdict.Action != postern.Reject {
		return ""
	}
	switch d.Filter {
	case ratelimit.FilterName, outboundFilterName, ratelimit.GuardName:
	default:
		return ""
	}
	switch {
	case d.Verdict.Reply.Enhanced == postern.ESC(4, 3, 0), d.Verdict.Reply.Enhanced == postern.ESC(5, 3, 0):
		return "store"
	case d.Verdict.Action != postern.TempFail:
		return ""
	case d.Filter == ratelimit.GuardName:
		return "harvest"
	case d.Stage == postern.StageMail:
		return "messages"
	case d.Stage == postern.StageRcpt:
		return "recipients"
	}
	return ""
}

// limitCollector is postern_rate_limited_total: the chain's rate-limit
// refusals, counted as the observer sees them, and the connection
// listener's, read from its counters at each scrape.
type limitCollector struct {
	vec      *prometheus.CounterVec
	desc     *prometheus.Desc
	listener atomic.Pointer[ratelimit.Listener]
}

func newLimitCollector() *limitCollector {
	const name, help = "postern_rate_limited_total",
		"Commands and connections refused by a rate limit, by filter and reason: messages, recipients, harvest, store, connection_rate, connections."
	labels := []string{"filter", "reason"}
	return &limitCollector{vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels),
		desc: prometheus.NewDesc(name, help, labels, nil)}
}

func (c *limitCollector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c *limitCollector) Collect(ch chan<- prometheus.Metric) {
	c.vec.Collect(ch)
	if l := c.listener.Load(); l != nil {
		st := l.Stats()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.RateRefused),
			ratelimit.ListenerFilterName, "connection_rate")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(st.ConnRefused),
			ratelimit.ListenerFilterName, "connections")
	}
}

// scanOutcomes names what a scan found, for metrics and statistics.
func scanOutcomes(rep *scan.Report) []string {
	var out []string
	if len(rep.Viruses()) > 0 {
		out = append(out, "virus")
	}
	if len(rep.Findings) > 0 {
		out = append(out, "finding")
	}
	if len(rep.Errors) > 0 {
		out = append(out, "error")
	}
	if rep.Spam != nil {
		if rep.Spam.Spam {
			out = append(out, "spam")
		} else {
			out = append(out, "ham")
		}
	}
	if len(out) == 0 {
		out = append(out, "clean")
	}
	return out
}

// observeQueue counts delivery outcomes.
func (m *metrics) observeQueue(e queue.Event) {
	switch e.Kind {
	case queue.EventDelivered, queue.EventDeferred, queue.EventBounced, queue.EventExpired:
		m.deliveries.WithLabelValues(string(e.Kind)).Inc()
		if e.Duration > 0 {
			m.delivTime.Observe(e.Duration.Seconds())
		}
	}
}

// serveMetrics serves /metrics and /healthz until ctx is done. healthy
// says whether the relay can take mail.
func (m *metrics) serve(ctx context.Context, addr string, profiles bool, healthy func() error, log *slog.Logger) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := healthy(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	if profiles {
		// Mounted on this mux only: the relay serves nothing from
		// http.DefaultServeMux, where the package's init also puts them.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return l.Addr(), nil
}

// countingListener counts connections for the metrics.
type countingListener struct {
	net.Listener
	total prometheus.Counter
	open  prometheus.Gauge
}

func (m *metrics) countConns(l net.Listener, name string) net.Listener {
	return &countingListener{Listener: l, total: m.conns.WithLabelValues(name), open: m.connsOpen.WithLabelValues(name)}
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.total.Inc()
	l.open.Inc()
	return &countedConn{Conn: c, open: l.open}, nil
}

type countedConn struct {
	net.Conn
	once sync.Once
	open prometheus.Gauge
}

func (c *countedConn) Close() error {
	c.once.Do(c.open.Dec)
	return c.Conn.Close()
}

// CloseWrite keeps half-close working through the wrapper (the greet
// pause and connection limits use it to refuse politely).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
