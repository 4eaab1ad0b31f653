package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern/postern/internal/proc"
	"github.com/postern/postern/route/resolver/dnstest"
)

// daemon is a peer server process started for a scenario.
type daemon struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	out    *os.File
	exited chan struct{}
}

func (d *daemon) kill() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// startDaemon runs prog and waits until ready(addr) succeeds.
func (s *suite) startDaemon(ctx context.Context, name, addr, dir string, ready func(context.Context) error, prog string, args ...string) (*daemon, error) {
	out, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, err
	}
	d := &daemon{name: name, addr: addr, out: out, exited: make(chan struct{})}
	d.cmd = exec.Command(prog, args...)
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = out, out
	proc.DieWithParent(d.cmd)
	if err := d.cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	go func() { _ = d.cmd.Wait(); out.Close(); close(d.exited) }()
	s.onClose(d.kill)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-d.exited:
			b, _ := os.ReadFile(out.Name())
			return nil, fmt.Errorf("%s exited at start: %s", name, lastLines(string(b), 10))
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := ready(rctx)
		cancel()
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.kill()
			return nil, fmt.Errorf("%s not ready: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond) // a process starting up: poll
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ping sends cmd to addr and wants a first reply line containing want.
func ping(ctx context.Context, addr, cmd, want string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte(cmd)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, want) {
		return fmt.Errorf("%q: %v", line, err)
	}
	return nil
}

// eicar is the EICAR anti-virus test file, put together at run time so no
// scanner flags this program's source.
func eicar() string {
	return `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-FILE!$H+H*"
}

// startClamd runs clamd with a database of one signature, for EICAR, so
// it needs neither freshclam nor a network.
func (s *suite) startClamd(ctx context.Context) (*daemon, error) {
	prog, err := lookTool("clamd")
	if err != nil {
		return nil, err
	}
	dir, err := s.dir("clamd")
	if err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		return nil, err
	}
	// A body signature (.ndb): name, any file type, any offset, hex bytes.
	sig := "Reliability.Test.EICAR:0:*:" + hex.EncodeToString([]byte(eicar())) + "\n"
	if err := os.WriteFile(filepath.Join(db, "reliability.ndb"), []byte(sig), 0o644); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "clamd.conf")
	text := strings.Join([]string{"Foreground yes", "DatabaseDirectory " + db, "TCPSocket " + port, "TCPAddr 127.0.0.1",
		"PidFile " + filepath.Join(dir, "clamd.pid"), "LogFile " + filepath.Join(dir, "clamd.log"),
		"MaxThreads 4", "SelfCheck 3600", ""}, "\n")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	return s.startDaemon(ctx, "clamd", addr, dir, func(ctx context.Context) error {
		return ping(ctx, addr, "zPING\x00", "PONG")
	}, prog, "-c", conf)
}

// startRedis runs a private redis-server without persistence.
func (s *suite) startRedis(ctx context.Context) (*daemon, error) {
	prog, err := lookTool("redis-server")
	if err != nil {
		return nil, err
	}
	dir, err := s.dir("redis")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return s.startDaemon(ctx, "redis", addr, dir, func(ctx context.Context) error {
		return ping(ctx, addr, "PING\r\n", "+PONG")
	}, prog, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
}

// dnsZone is the relay's DNS: a dnstest server (real DNS over UDP and
// TCP on loopback). It knows A records and MX records by name; other
// names are NXDOMAIN (RFC 5782 §2.1, §2.3 for the block lists).
type dnsZone struct {
	*dnstest.Server
	addr string
}

// startDNS serves a block list: each listed name answers 127.0.0.2.
func (s *suite) startDNS(listed ...string) (*dnsZone, error) {
	a := map[string]string{}
	for _, n := range listed {
		a[n] = "127.0.0.2"
	}
	return s.startDNSZone(a, nil)
}

// startDNSZone serves the A records a (name -> IP) and the MX records mx
// (name -> exchange host, preference 10).
func (s *suite) startDNSZone(a, mx map[string]string) (*dnsZone, error) {
	srv, err := dnstest.NewServer()
	if err != nil {
		return nil, fmt.Errorf("reliability: DNS server: %w", err)
	}
	s.onClose(srv.Close)
	for n, ip := range a {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("reliability: DNS server: %s: %q is not an address", n, ip)
		}
		srv.AddA(n, ip)
	}
	for n, host := range mx {
		srv.AddMX(n, 10, host)
	}
	return &dnsZone{Server: srv, addr: srv.Addr}, nil
}

func (z *dnsZone) queryCount() int { return z.Queries("", 0) }
