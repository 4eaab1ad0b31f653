//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"time"
)

// The harness runs its peers (Postfix from Debian) on Linux only; these
// stubs keep the package compiling elsewhere.

func childOf(*exec.Cmd) {}

func raiseFileLimit() (uint64, error) {
	return 0, errors.New("bench: raising RLIMIT_NOFILE is implemented for Linux only")
}

func processCPU(int) (time.Duration, error) {
	return 0, errors.New("bench: CPU accounting is implemented for Linux only")
}
