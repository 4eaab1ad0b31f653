package tlsrpt

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Result types (RFC 8460 §4.3).
const (
	ResultSTARTTLSNotSupported    = "starttls-not-supported"
	ResultCertificateHostMismatch = "certificate-host-mismatch"
	ResultCertificateExpired      = "certificate-expired"
	ResultCertificateNotTrusted   = "certificate-not-trusted"
	ResultValidationFailure       = "validation-failure"
	ResultTLSAInvalid             = "tlsa-invalid"
	ResultDNSSECInvalid           = "dnssec-invalid"
	ResultDANERequired            = "dane-required"
	ResultSTSPolicyFetchError     = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid        = "sts-policy-invalid"
	ResultSTSWebPKIInvalid        = "sts-webpki-invalid"
)

// Policy types (RFC 8460 §4.4).
const (
	PolicySTS  = "sts"
	PolicyTLSA = "tlsa"
	PolicyNone = "no-policy-found"
)

// Result is the outcome of one session with an MX host of a domain.
type Result struct {
	Time time.Time `json:"t"`
	// Domain is the policy domain (the recipient domain).
	Domain string `json:"d"`
	// PolicyType is PolicySTS, PolicyTLSA or PolicyNone; PolicyStrings
	// the policy's text (MTA-STS lines, or TLSA records) and MXHosts the
	// MTA-STS policy's mx patterns.
	PolicyType    string   `json:"pt"`
	PolicyStrings []string `json:"ps,omitempty"`
	MXHosts       []string `json:"mx,omitempty"`
	// ReceivingMX, ReceivingIP and SendingIP name the session's ends.
	ReceivingMX string `json:"rmx,omitempty"`
	ReceivingIP string `json:"rip,omitempty"`
	SendingIP   string `json:"sip,omitempty"`
	// Failure is the result type of a failed session, "" for success;
	// Info says more (additional-information).
	Failure string `json:"f,omitempty"`
	Info    string `json:"i,omitempty"`
}

// Report is the JSON report of RFC 8460 §4.4.
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyReport `json:"policies"`
}

// DateRange is the period a report covers.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyReport is the sessions under one policy.
type PolicyReport struct {
	Policy         PolicyDesc      `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// PolicyDesc names a policy.
type PolicyDesc struct {
	Type    string   `json:"policy-type"`
	Strings []string `json:"policy-string,omitempty"`
	Domain  string   `json:"policy-domain"`
	MXHost  []string `json:"mx-host,omitempty"`
}

// Summary counts sessions.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failure    int64 `json:"total-failure-session-count"`
}

// FailureDetail counts the failed sessions of one kind between two
// hosts.
type FailureDetail struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64  `json:"failed-session-count"`
	AdditionalInfo      string `json:"additional-information,omitempty"`
}

// Aggregate builds the report of one domain's results.
func Aggregate(results []Result) []PolicyReport {
	var out []PolicyReport
	index := map[string]int{}
	details := map[string]map[string]int{}
	for _, r := range results {
		pk := strings.Join([]string{r.PolicyType, strings.Join(r.PolicyStrings, "\n"), strings.Join(r.MXHosts, ",")}, "\x00")
		i, ok := index[pk]
		if !ok {
			i = len(out)
			index[pk] = i
			details[pk] = map[string]int{}
			out = append(out, PolicyReport{Policy: PolicyDesc{Type: r.PolicyType, Strings: r.PolicyStrings, Domain: r.Domain, MXHost: r.MXHosts}})
		}
		p := &out[i]
		if r.Failure == "" {
			p.Summary.Successful++
			continue
		}
		p.Summary.Failure++
		dk := strings.Join([]string{r.Failure, r.SendingIP, r.ReceivingMX, r.ReceivingIP, r.Info}, "\x00")
		j, ok := details[pk][dk]
		if !ok {
			j = len(p.FailureDetails)
			details[pk][dk] = j
			p.FailureDetails = append(p.FailureDetails, FailureDetail{ResultType: r.Failure, SendingMTAIP: r.SendingIP,
				ReceivingMXHostname: r.ReceivingMX, ReceivingIP: r.ReceivingIP, AdditionalInfo: r.Info})
		}
		p.FailureDetails[j].FailedSessionCount++
	}
	return out
}

// ErrSyntax is wrapped by the errors of ParseRecord.
var ErrSyntax = errors.New("tlsrpt: bad record")

// Record is a domain's "_smtp._tls" TXT record (RFC 8460 §3).
type Record struct {
	// Mailto are the addresses of the mailto: URIs; HTTPS the https:
	// URIs.
	Mailto []string
	HTTPS  []string
}

// ParseRecord reads "v=TLSRPTv1; rua=mailto:reports@example.net,https://…".
// URIs of other schemes are ignored; a record with none of mailto or
// https is an error.
func ParseRecord(txt string) (Record, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		return Record{}, fmt.Errorf("%w: does not start with v=TLSRPTv1", ErrSyntax)
	}
	var rec Record
	seen := false
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || strings.TrimSpace(k) != "rua" || seen {
			continue
		}
		seen = true
		for u := range strings.SplitSeq(v, ",") {
			u = strings.TrimSpace(u)
			switch {
			case len(u) > 7 && strings.EqualFold(u[:7], "mailto:"):
				addr := u[7:]
				if i := strings.IndexByte(addr, '?'); i >= 0 {
					addr = addr[:i]
				}
				if a, err := url.PathUnescape(addr); err == nil && validMailbox(a) {
					rec.Mailto = append(rec.Mailto, a)
				}
			case len(u) > 8 && strings.EqualFold(u[:8], "https://"):
				rec.HTTPS = append(rec.HTTPS, u)
			}
		}
	}
	if len(rec.Mailto) == 0 && len(rec.HTTPS) == 0 {
		return Record{}, fmt.Errorf("%w: no mailto: or https: rua", ErrSyntax)
	}
	rec.Mailto = slices.Compact(rec.Mailto)
	return rec, nil
}

// validMailbox accepts a plain local@domain address without white space,
// control characters or brackets: it goes into RCPT TO and a To field.
func validMailbox(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("<>()[]\\,;:\"", c) >= 0 && i != at {
			return false
		}
	}
	return !strings.Contains(a[at+1:], "@")
}
