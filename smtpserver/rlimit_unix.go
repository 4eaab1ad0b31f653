//go:build unix

package smtpserver

import "syscall"

// fileLimit returns the soft RLIMIT_NOFILE in force (Go raises it to the
// hard limit at start).
func fileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<40 { // unlimited (RLIM_INFINITY)
		return 0, false
	}
	return uint64(lim.Cur), true
}
