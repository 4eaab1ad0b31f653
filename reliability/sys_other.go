//go:build !linux

package main

import (
	"errors"
)

var errNotLinux = errors.New("reliability: needs Linux (/proc, tmpfs)")

func mountTmpfs(string, string) (func(), error) { return nil, errNotLinux }

func memStatus(int) (int64, int64, error) { return 0, 0, errNotLinux }
