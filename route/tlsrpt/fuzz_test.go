package tlsrpt

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern/route/resolver"
)

// FuzzParseRecord: a record either fails with ErrSyntax or yields only
// addresses safe to put in RCPT TO and https: URIs.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=TLSRPTv1; rua=mailto:a@b.example", "v=TLSRPTv1;rua=https://x/,mailto:a%40b@c", "v=TLSRPTv1; rua=mailto:%0d%0a@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		for _, a := range r.Mailto {
			require.True(t, validMailbox(a), a)
			require.False(t, strings.ContainsAny(a, "\r\n<> "), a)
		}
		for _, u := range r.HTTPS {
			require.True(t, strings.HasPrefix(strings.ToLower(u), "https://"), u)
		}
	})
}

// FuzzValidate: any input is accepted or refused with ErrInvalid, never
// a panic (the validator reads reports from other hosts too).
func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"organization-name":"o","date-range":{"start-datetime":"2026-12-07T00:00:00Z","end-datetime":"2026-12-07T23:59:59Z"},"contact-info":"c","report-id":"r","policies":[]}`))
	f.Add([]byte(`{"policies":[{"policy":{},"summary":{},"failure-details":[{}]}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, js []byte) {
		if err := Validate(js); err != nil {
			require.ErrorIs(t, err, ErrInvalid)
		}
	})
}

// FuzzReportValidates is differential: whatever sessions the journal
// holds, the report Build makes of them passes Validate, and its counts
// are the sessions'.
func FuzzReportValidates(f *testing.F) {
	f.Add("example.net", uint8(0), uint8(0), "mx.example.net", "192.0.2.1", uint8(3))
	f.Add("a.example", uint8(1), uint8(5), "", "", uint8(1))
	f.Add("\x00\"\\", uint8(2), uint8(11), "\n", "::1", uint8(7))
	types := []string{PolicySTS, PolicyTLSA, PolicyNone}
	failures := []string{"", ResultSTARTTLSNotSupported, ResultCertificateHostMismatch, ResultCertificateExpired,
		ResultCertificateNotTrusted, ResultValidationFailure, ResultTLSAInvalid, ResultDNSSECInvalid,
		ResultDANERequired, ResultSTSPolicyFetchError, ResultSTSPolicyInvalid, ResultSTSWebPKIInvalid}
	r, err := New(Config{Dir: f.TempDir(), Resolver: noDNS{}, From: "tlsrpt@example.org", Submitter: "example.org",
		Submit: func(context.Context, string, []string, []byte) error { return nil }})
	require.NoError(f, err)
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, domain string, pt, fail uint8, mx, ip string, n uint8) {
		if domain == "" {
			return // Record keeps no result without a policy domain: no report has one
		}
		var results []Result
		var failed int64
		for i := range int(n%8) + 1 {
			res := Result{Time: day.Add(time.Duration(i) * time.Minute), Domain: domain,
				PolicyType: types[int(pt)%len(types)], ReceivingMX: mx, ReceivingIP: ip,
				Failure: failures[(int(fail)+i)%len(failures)]}
			if res.Failure != "" {
				failed++
			}
			results = append(results, res)
		}
		rep := r.Build(day, domain, results)
		js, err := json.Marshal(rep)
		require.NoError(t, err)
		require.NoError(t, Validate(js), "%s", js)
		var ok, bad int64
		for _, p := range rep.Policies {
			ok += p.Summary.Successful
			bad += p.Summary.Failure
		}
		require.Equal(t, failed, bad)
		require.Equal(t, int64(len(results))-failed, ok)
	})
}

// noDNS answers nothing; Build does not ask.
type noDNS struct{}

func (noDNS) Lookup(context.Context, string, uint16) (resolver.Answer, error) {
	return resolver.Answer{}, nil
}
