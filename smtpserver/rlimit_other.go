//go:build !unix

package smtpserver

// fileLimit: no RLIMIT_NOFILE here.
func fileLimit() (uint64, bool) { return 0, false }
