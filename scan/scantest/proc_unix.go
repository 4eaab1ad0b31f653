//go:build unix

package scantest

import (
	"os/exec"
	"syscall"
)

// ownGroup puts the daemon in a process group of its own: its children
// (spamd and rspamd fork workers) die with it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the daemon's process group, the daemon's children
// included.
func killGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
