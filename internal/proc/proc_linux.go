package proc

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes cmd's process get SIGKILL when the harness dies, so
// an interrupted run leaves no server behind.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// RaiseFileLimit lifts RLIMIT_NOFILE to its hard limit and returns the new
// soft limit. Setting it explicitly also makes children inherit it (Go
// otherwise restores the original soft limit in the processes it starts).
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}
