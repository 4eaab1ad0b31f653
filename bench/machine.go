package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// describeMachine fills in what the report says about the machine: CPU,
// memory, kernel, the file system and disk under the spool directory, the
// Go toolchain. Whatever cannot be read stays empty.
func describeMachine(spool string) Machine {
	m := Machine{Cores: runtime.NumCPU(), SpoolDir: spool, GoVersion: goVersion()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if m.CPU == "" {
		m.CPU = runtime.GOARCH
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				m.MemoryMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadBefore = strings.Join(f[:3], " ")
		}
	}
	m.SpoolFS, m.SpoolDisk = spoolDevice(spool)
	return m
}

func goVersion() string {
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return runtime.Version()
}

// spoolDevice finds the mount holding dir in /proc/self/mountinfo (the
// longest mount point that is a prefix of it) and describes its file
// system and the disk below.
func spoolDevice(dir string) (fs, disk string) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 6 || len(b) < 2 {
			continue
		}
		mp := a[4]
		if !under(dir, mp) || len(mp) < len(best) {
			continue
		}
		best = mp
		fs = fmt.Sprintf("%s on %s mounted at %s (%s)", b[0], b[1], mp, a[5])
		disk = describeDisk(b[1])
	}
	return fs, disk
}

func under(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// describeDisk reads /sys/block for the device: rotational or not, the
// model when the driver gives one.
func describeDisk(dev string) string {
	name := filepath.Base(dev)
	sys := filepath.Join("/sys/class/block", name)
	if _, err := os.Stat(sys); err != nil {
		return ""
	}
	// A partition's queue and model are its parent's.
	if b, err := os.ReadFile(filepath.Join(sys, "partition")); err == nil && len(b) > 0 {
		if p, err := filepath.EvalSymlinks(filepath.Join(sys, "..")); err == nil {
			sys = p
			name = filepath.Base(p)
		}
	}
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(sys, p))
		return strings.TrimSpace(string(b))
	}
	var parts []string
	if model := read("device/model"); model != "" {
		parts = append(parts, model)
	} else if drv, err := filepath.EvalSymlinks(filepath.Join(sys, "device/driver")); err == nil {
		parts = append(parts, filepath.Base(drv))
	}
	switch read("queue/rotational") {
	case "0":
		parts = append(parts, "non-rotational")
	case "1":
		parts = append(parts, "rotational")
	}
	// "none [mq-deadline] kyber": the one in brackets is in use.
	if sched := read("queue/scheduler"); sched != "" {
		if _, rest, ok := strings.Cut(sched, "["); ok {
			sched, _, _ = strings.Cut(rest, "]")
		}
		parts = append(parts, "I/O scheduler "+sched)
	}
	if wc := read("queue/write_cache"); wc != "" {
		parts = append(parts, "write cache: "+wc)
	}
	return name + ": " + strings.Join(parts, ", ")
}
