package auth

// Status is the result of one authentication method, as written in
// Authentication-Results (RFC 8601 §2.7) and Received-SPF (RFC 7208 §8).
// Not every method uses every value: SPF has no Policy, DKIM has no
// SoftFail, DMARC has only None, Pass, Fail, TempError and PermError.
type Status string

// The result values.
const (
	// None: nothing to check (no SPF record, no signature, no DMARC policy).
	None Status = "none"
	// Pass: the check succeeded.
	Pass Status = "pass"
	// Fail: the check failed; the domain says so (SPF "-all"), the signature
	// does not verify, DMARC found no aligned pass.
	Fail Status = "fail"
	// SoftFail: SPF "~all", the domain believes the host is not authorized
	// but will not say so strongly (RFC 7208 §8.5).
	SoftFail Status = "softfail"
	// Neutral: SPF "?all" (RFC 7208 §8.2); for DKIM a signature that was not
	// processed (RFC 8601 §2.7.1).
	Neutral Status = "neutral"
	// Policy: a DKIM signature that verifies or might verify but that local
	// policy does not accept (a body length limit, l=).
	Policy Status = "policy"
	// TempError: a transient error (DNS timeout, SERVFAIL); trying later may
	// give a result.
	TempError Status = "temperror"
	// PermError: the published data cannot be interpreted (a broken record,
	// too many DNS lookups, a malformed signature).
	PermError Status = "permerror"
)

func (s Status) String() string { return string(s) }

func validStatus(s Status) bool {
	switch s {
	case None, Pass, Fail, SoftFail, Neutral, Policy, TempError, PermError:
		return true
	}
	return false
}
