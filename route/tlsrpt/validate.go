package tlsrpt

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrInvalid is wrapped by the errors of Validate.
var ErrInvalid = errors.New("tlsrpt: invalid report")

var resultTypes = map[string]bool{
	ResultSTARTTLSNotSupported: true, ResultCertificateHostMismatch: true, ResultCertificateExpired: true,
	ResultCertificateNotTrusted: true, ResultValidationFailure: true, ResultTLSAInvalid: true,
	ResultDNSSECInvalid: true, ResultDANERequired: true, ResultSTSPolicyFetchError: true,
	ResultSTSPolicyInvalid: true, ResultSTSWebPKIInvalid: true,
}

// Validate checks a JSON report against RFC 8460 §4.4 as a receiver
// would: the required fields present with their types (organization-name,
// date-range with RFC 3339 start-datetime and end-datetime, contact-info,
// report-id, policies; per policy its policy-type and policy-domain and
// the two session counts; per failure detail a known result-type and
// failed-session-count), and the counts adding up.
func Validate(js []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, k := range []string{"organization-name", "contact-info", "report-id"} {
		if err := needString(top, k); err != nil {
			return err
		}
	}
	var dr map[string]json.RawMessage
	if err := need(top, "date-range", &dr); err != nil {
		return err
	}
	for _, k := range []string{"start-datetime", "end-datetime"} {
		var s string
		if err := need(dr, k, &s); err != nil {
			return err
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return fmt.Errorf("%w: %s %q is not an RFC 3339 date-time", ErrInvalid, k, s)
		}
	}
	var policies []map[string]json.RawMessage
	if err := need(top, "policies", &policies); err != nil {
		return err
	}
	for i, p := range policies {
		if err := validatePolicy(p); err != nil {
			return fmt.Errorf("%w (policies[%d])", err, i)
		}
	}
	return nil
}

func validatePolicy(p map[string]json.RawMessage) error {
	var pol map[string]json.RawMessage
	if err := need(p, "policy", &pol); err != nil {
		return err
	}
	var typ string
	if err := need(pol, "policy-type", &typ); err != nil {
		return err
	}
	if typ != PolicySTS && typ != PolicyTLSA && typ != PolicyNone {
		return fmt.Errorf("%w: policy-type %q", ErrInvalid, typ)
	}
	if err := needString(pol, "policy-domain"); err != nil {
		return err
	}
	var sum Summary
	var sm map[string]json.RawMessage
	if err := need(p, "summary", &sm); err != nil {
		return err
	}
	if err := need(sm, "total-successful-session-count", &sum.Successful); err != nil {
		return err
	}
	if err := need(sm, "total-failure-session-count", &sum.Failure); err != nil {
		return err
	}
	var details []map[string]json.RawMessage
	if raw, ok := p["failure-details"]; ok {
		if err := json.Unmarshal(raw, &details); err != nil {
			return fmt.Errorf("%w: failure-details: %v", ErrInvalid, err)
		}
	}
	var failed int64
	for _, d := range details {
		var rt string
		var n int64
		if err := need(d, "result-type", &rt); err != nil {
			return err
		}
		if !resultTypes[rt] {
			return fmt.Errorf("%w: result-type %q", ErrInvalid, rt)
		}
		if err := need(d, "failed-session-count", &n); err != nil {
			return err
		}
		failed += n
	}
	if sum.Successful < 0 || sum.Failure < 0 || failed > sum.Failure {
		return fmt.Errorf("%w: session counts do not add up", ErrInvalid)
	}
	return nil
}

func need(m map[string]json.RawMessage, key string, v any) error {
	raw, ok := m[key]
	if !ok {
		return fmt.Errorf("%w: no %s", ErrInvalid, key)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, key, err)
	}
	return nil
}

func needString(m map[string]json.RawMessage, key string) error {
	var s string
	if err := need(m, key, &s); err != nil {
		return err
	}
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, key)
	}
	return nil
}
