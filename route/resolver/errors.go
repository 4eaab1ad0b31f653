package resolver

import "errors"

// Sentinel errors. Every error of the package wraps one of them. All
// lookup errors but ErrName are temporary: asking again later may work.
var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("resolver: invalid configuration")
	// ErrName reports a name that is not a domain name (empty labels,
	// longer than 253 octets, not packable); it is never sent.
	ErrName = errors.New("resolver: not a domain name")
	// ErrTimeout reports that no server answered within the attempts, or
	// that the context ended first (the error then also wraps the
	// context's error).
	ErrTimeout = errors.New("resolver: timeout")
	// ErrNetwork reports that no server could be reached (connection
	// refused, network unreachable).
	ErrNetwork = errors.New("resolver: network error")
	// ErrServerFailure reports that the servers answered with an error
	// code: SERVFAIL, REFUSED, NOTIMP, FORMERR ...
	ErrServerFailure = errors.New("resolver: server failure")
	// ErrBadResponse reports a response that does not answer the
	// question, does not parse, stays truncated over TCP, or a CNAME
	// chain that is too long or loops.
	ErrBadResponse = errors.New("resolver: bad response")

	// ErrNXDomain and ErrNoData are what the net.Resolver-like methods
	// wrap in a *net.DNSError with IsNotFound set: the name does not
	// exist, or has no records of the type asked. Lookup reports both as
	// an Answer, not as an error.
	ErrNXDomain = errors.New("resolver: no such domain")
	ErrNoData   = errors.New("resolver: no records of that type")
)

// errNotCached is the internal answer of a cache-only lookup that missed.
var errNotCached = errors.New("resolver: not cached")
