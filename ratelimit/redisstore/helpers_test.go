package redisstore_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/postern/postern/internal/testutil"
)

// redisServer is a redis-server the test started for itself, on loopback,
// with persistence off.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	once sync.Once
}

// startRedis starts a private redis-server, or skips the test when none
// is installed (fails under CI=true, where it must be).
func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-server is not installed, and CI=true requires the tests against a real Redis")
		}
		tb.Skip("redis-server is not installed: skipping the tests against a real Redis (apt-get install redis-server)")
	}
	var lastErr error
	for range 3 {
		s, err := tryStartRedis(tb, path)
		if err == nil {
			return s
		}
		lastErr = err // most likely the port was taken in between
	}
	tb.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

func tryStartRedis(tb testing.TB, path string) (*redisServer, error) {
	// Redis takes no port 0: find a free port and hand it over.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	s := &redisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), out: &bytes.Buffer{}}
	s.cmd = exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", tb.TempDir(), "--protected-mode", "yes")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return nil, &startError{err: err, out: s.out.String()}
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = s.cmd.Process.Kill()
			<-exited
			return nil, &startError{err: err, out: s.out.String()}
		}
		time.Sleep(10 * time.Millisecond) // waiting for a real process to listen
	}
	tb.Cleanup(func() {
		s.Kill()
		<-exited
	})
	return s, nil
}

type startError struct {
	err error
	out string
}

func (e *startError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.out) }

// Kill kills the server, as a crash or a pulled cable would: no goodbye.
func (s *redisServer) Kill() {
	s.once.Do(func() { _ = s.cmd.Process.Kill() })
}

// client is a plain client for looking at the server's keys.
func (s *redisServer) client(tb testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// logBuf collects JSON log records.
type logBuf = testutil.LogBuffer
