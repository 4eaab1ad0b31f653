package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver"
	"github.com/postern/postern/route/resolver/dnstest"
)

func TestParseRecord(t *testing.T) {
	r, err := ParseRecord("v=TLSRPTv1; rua=mailto:tls%2Breports@example.net?subject=x, https://reports.example.net/v1,ftp://x")
	require.NoError(t, err)
	assert.Equal(t, []string{"tls+reports@example.net"}, r.Mailto)
	assert.Equal(t, []string{"https://reports.example.net/v1"}, r.HTTPS)
	for _, bad := range []string{"", "v=TLSRPTv2; rua=mailto:a@b.example", "rua=mailto:a@b.example", "v=TLSRPTv1;", "v=TLSRPTv1; rua=ftp://x",
		"v=TLSRPTv1; rua=mailto:a b@c.example", "v=TLSRPTv1; rua=mailto:<a@b.example>"} {
		_, err := ParseRecord(bad)
		assert.ErrorIs(t, err, ErrSyntax, bad)
	}
}

func TestAggregate(t *testing.T) {
	sts := Result{Domain: "example.net", PolicyType: PolicySTS, PolicyStrings: []string{"version: STSv1", "mode: testing"}, MXHosts: []string{"mx.example.net"}}
	fail := sts
	fail.Failure, fail.ReceivingMX, fail.ReceivingIP = ResultCertificateNotTrusted, "mx.example.net", "192.0.2.1"
	none := Result{Domain: "example.net", PolicyType: PolicyNone}
	got := Aggregate([]Result{sts, fail, sts, fail, none})
	require.Len(t, got, 2)
	assert.Equal(t, Summary{Successful: 2, Failure: 2}, got[0].Summary)
	assert.Equal(t, []FailureDetail{{ResultType: ResultCertificateNotTrusted, ReceivingMXHostname: "mx.example.net",
		ReceivingIP: "192.0.2.1", FailedSessionCount: 2}}, got[0].FailureDetails)
	assert.Equal(t, PolicyNone, got[1].Policy.Type)
	assert.Equal(t, Summary{Successful: 1}, got[1].Summary)
}

type submitted struct {
	from string
	to   []string
	msg  []byte
}

func TestSendDailyReport(t *testing.T) {
	srv := dnstest.Start(t)
	srv.AddTXT("_smtp._tls.example.net", "v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://reports.example.net/")
	srv.AddTXT("_smtp._tls.https-only.example", "v=TLSRPTv1; rua=https://reports.example/")
	res, err := resolver.New(resolver.Config{Servers: []string{srv.Addr}, Attempts: 1, Timeout: time.Second})
	require.NoError(t, err)
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	now := day.Add(30 * time.Hour)
	var mu sync.Mutex
	var sent []submitted
	dir := t.TempDir()
	cfg := Config{Dir: dir, Resolver: res, From: "tls-reports@relay.example.org", Submitter: "relay.example.org",
		Organization: "Example Org", Now: func() time.Time { return now },
		Submit: func(_ context.Context, from string, to []string, msg []byte) error {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, submitted{from, to, msg})
			return nil
		}}
	r, err := New(cfg)
	require.NoError(t, err)
	ok := Result{Time: day.Add(time.Hour), Domain: "example.net", PolicyType: PolicySTS, PolicyStrings: []string{"version: STSv1", "mode: testing"},
		MXHosts: []string{"mx.example.net"}, ReceivingMX: "mx.example.net", ReceivingIP: "192.0.2.1"}
	bad := ok
	bad.Failure, bad.Info = ResultCertificateNotTrusted, "x509: certificate signed by unknown authority"
	for _, x := range []Result{ok, ok, bad, {Time: day, Domain: "quiet.example", PolicyType: PolicyNone},
		{Time: day, Domain: "https-only.example", PolicyType: PolicyNone}} {
		r.Record(x)
	}
	r.Record(Result{Time: day.Add(25 * time.Hour), Domain: "example.net", PolicyType: PolicyNone}) // the next day

	// A restart: a new reporter reads the same journal.
	r, err = New(cfg)
	require.NoError(t, err)
	r.catchUp(context.Background())
	require.Len(t, sent, 1, "only example.net asks for mailed reports")
	s := sent[0]
	assert.Equal(t, "tls-reports@relay.example.org", s.from, "the reporter address, not the null sender")
	assert.Equal(t, []string{"tlsrpt@example.net"}, s.to)

	m, err := mail.ReadMessage(bytes.NewReader(s.msg))
	require.NoError(t, err)
	assert.Equal(t, "example.net", m.Header.Get("TLS-Report-Domain"))
	assert.Equal(t, "relay.example.org", m.Header.Get("TLS-Report-Submitter"))
	assert.Equal(t, "Report Domain: example.net Submitter: relay.example.org Report-ID: <2026-12-07_example.net@relay.example.org>", m.Header.Get("Subject"))
	js := reportJSON(t, m)
	require.NoError(t, Validate(js))
	assert.Contains(t, string(js), `"total-successful-session-count":2,"total-failure-session-count":1`)
	assert.Contains(t, string(js), `"start-datetime":"2026-12-07T00:00:00Z","end-datetime":"2026-12-07T23:59:59Z"`)
	assert.Contains(t, string(js), `"result-type":"certificate-not-trusted"`)

	// Sent once: the day's journal is marked.
	r.catchUp(context.Background())
	assert.Len(t, sent, 1)
	rest, err := r.Results(day.Add(25 * time.Hour))
	require.NoError(t, err)
	assert.Len(t, rest["example.net"], 1, "today's results wait for tomorrow")
}

// reportJSON returns the gunzipped application/tlsrpt+gzip part of a
// report mail.
func reportJSON(t *testing.T, m *mail.Message) []byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/report", mt)
	require.Equal(t, "tlsrpt", params["report-type"])
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		require.NoError(t, err, "no application/tlsrpt+gzip part")
		if p.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			continue
		}
		assert.Contains(t, p.Header.Get("Content-Disposition"), `.json.gz"`)
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		require.NoError(t, err)
		js, err := io.ReadAll(zr)
		require.NoError(t, err)
		return js
	}
}

func TestValidate(t *testing.T) {
	good := `{"organization-name":"o","date-range":{"start-datetime":"2026-12-07T00:00:00Z","end-datetime":"2026-12-07T23:59:59Z"},
	"contact-info":"c","report-id":"r","policies":[{"policy":{"policy-type":"sts","policy-domain":"example.net"},
	"summary":{"total-successful-session-count":1,"total-failure-session-count":1},
	"failure-details":[{"result-type":"certificate-expired","failed-session-count":1}]}]}`
	require.NoError(t, Validate([]byte(good)))
	for _, cut := range []string{`"organization-name":"o",`, `"contact-info":"c",`, `"report-id":"r",`,
		`"policy-type":"sts",`, `,"policy-domain":"example.net"`, `"total-successful-session-count":1,`} {
		assert.ErrorIs(t, Validate([]byte(strings.Replace(good, cut, "", 1))), ErrInvalid, cut)
	}
	for old, repl := range map[string]string{`"certificate-expired"`: `"oops"`, `"2026-12-07T00:00:00Z"`: `"yesterday"`,
		`"policy-type":"sts"`: `"policy-type":"dane"`, `"failed-session-count":1`: `"failed-session-count":5`} {
		assert.ErrorIs(t, Validate([]byte(strings.Replace(good, old, repl, 1))), ErrInvalid, repl)
	}
}
