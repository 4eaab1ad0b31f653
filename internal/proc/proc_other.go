//go:build !linux

package proc

import (
	"errors"
	"os/exec"
)

// DieWithParent does nothing outside Linux.
func DieWithParent(*exec.Cmd) {}

// RaiseFileLimit is implemented for Linux only.
func RaiseFileLimit() (uint64, error) {
	return 0, errors.New("proc: raising RLIMIT_NOFILE is implemented for Linux only")
}
