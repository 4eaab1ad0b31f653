package auth

import "errors"

// Errors. Each is wrapped with details (file and line, domain, reason); test
// with errors.Is.
var (
	// ErrConfig is returned by the constructors for an invalid Config.
	ErrConfig = errors.New("auth: invalid configuration")
	// ErrKey is returned for a private key that cannot be used for DKIM.
	ErrKey = errors.New("auth: unusable DKIM key")
	// ErrSign is returned when a message could not be signed.
	ErrSign = errors.New("auth: DKIM signing failed")
	// ErrNoKey is returned by DKIMSigner.Sign when no key covers the
	// message's From domain. It is not a failure: the message goes unsigned.
	ErrNoKey = errors.New("auth: no DKIM key for domain")
	// ErrDMARCRecord is returned by ParseDMARCRecord for a record that is
	// not a usable DMARC policy record.
	ErrDMARCRecord = errors.New("auth: invalid DMARC record")
	// ErrFrom is returned by FromDomain when the RFC 5322 From field does not
	// name exactly one author domain (RFC 7489 §6.6.1).
	ErrFrom = errors.New("auth: unusable From field")
	// ErrCredentialsFile is returned for a credentials file that cannot be
	// read or parsed; the message names the file and line.
	ErrCredentialsFile = errors.New("auth: bad credentials file")
	// ErrBadCredentials is returned by Credentials.CheckPassword for an
	// unknown user or a wrong password; the two are not told apart.
	ErrBadCredentials = errors.New("auth: invalid credentials")
	// ErrPasswordHash is returned by HashPassword for an unknown algorithm
	// or an unusable password.
	ErrPasswordHash = errors.New("auth: cannot hash password")
	// ErrSenderFile is returned for a sender-binding file that cannot be
	// read or parsed; the message names the file and line.
	ErrSenderFile = errors.New("auth: bad sender binding file")
)
