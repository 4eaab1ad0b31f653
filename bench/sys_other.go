//go:build !linux

package main

import (
	"errors"
	"time"
)

// The harness runs its peers (Postfix from Debian) on Linux only; these
// stubs keep the package compiling elsewhere.

func processCPU(int) (time.Duration, error) {
	return 0, errors.New("bench: CPU accounting is implemented for Linux only")
}
