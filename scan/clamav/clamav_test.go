package clamav

import (
	"bufio"

	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scanner"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		reply   string
		viruses []string
		err     error
	}{
		{"stream: OK", nil, nil},
		{"stream: OK\n", nil, nil},
		{"stream: Eicar-Signature FOUND", []string{"Eicar-Signature"}, nil},
		{"stream: Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND", []string{"Win.Test.EICAR_HDB-1"}, nil},
		{"stream: A FOUND\nstream: B FOUND\n", []string{"A", "B"}, nil},
		{"1: stream: OK", nil, nil},
		{"INSTREAM size limit exceeded. ERROR", nil, scanner.ErrTooLarge},
		{"stream: Can't allocate memory ERROR", nil, ErrServer},
		{"UNKNOWN COMMAND", nil, ErrProtocol},
		{"", nil, ErrProtocol},
		{"stream:  FOUND", nil, ErrProtocol},
		{"OK", nil, ErrProtocol},
		{"stream: OK\nstream: X FOUND", nil, ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.reply, func(t *testing.T) {
			res, err := ParseReply(tc.reply)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, len(tc.viruses) > 0, res.Infected)
			assert.Equal(t, tc.viruses, res.Viruses)
		})
	}
}

// fakeClamd serves one behaviour on loopback. It speaks just enough of
// the protocol to test the client's failure handling; the client is
// tested against a real clamd in integration_test.go.
type fakeClamd struct {
	ln       net.Listener
	mu       sync.Mutex
	received [][]byte
}

func serveFake(t *testing.T, network string, handle func(conn net.Conn, f *fakeClamd)) (*fakeClamd, string) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		dir, err := os.MkdirTemp("", "fclamd")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "s")
	}
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	f := &fakeClamd{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				handle(conn, f)
			})
		}
	})
	return f, ln.Addr().String()
}

// readStream reads a zINSTREAM command and its chunks; limit stops after
// that many bytes (0: all).
func readStream(conn net.Conn, limit int) ([]byte, error) {
	br := bufio.NewReader(conn)
	cmd, err := br.ReadString(0)
	if err != nil || cmd != "zINSTREAM\x00" {
		return nil, errors.New("bad command " + cmd)
	}
	var data []byte
	for {
		var n uint32
		if err := binary.Read(br, binary.BigEndian, &n); err != nil {
			return data, err
		}
		if n == 0 {
			return data, nil
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return data, err
		}
		data = append(data, chunk...)
		if limit > 0 && len(data) >= limit {
			return data, nil
		}
	}
}

func answer(reply string) func(net.Conn, *fakeClamd) {
	return func(conn net.Conn, f *fakeClamd) {
		data, err := readStream(conn, 0)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.received = append(f.received, data)
		f.mu.Unlock()
		io.WriteString(conn, reply)
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

var message = "Subject: test\r\n\r\n" + strings.Repeat("body line\r\n", 2000)

func TestScanChunks(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			f, addr := serveFake(t, network, answer("stream: Worm.Test FOUND\x00"))
			c := newClient(t, Config{Addrs: []string{addr}, ChunkSize: 1000})
			res, err := c.Scan(context.Background(), strings.NewReader(message), nil)
			require.NoError(t, err)
			assert.True(t, res.Infected)
			assert.Equal(t, []string{"Worm.Test"}, res.Viruses)
			assert.Equal(t, addr, res.Server)
			require.Len(t, f.received, 1)
			assert.Equal(t, message, string(f.received[0]), "the chunks put together are the message")
		})
	}
}

func TestScanFailures(t *testing.T) {
	tests := []struct {
		name   string
		handle func(net.Conn, *fakeClamd)
		cfg    Config
		want   error
		text   string
	}{
		{"garbage", answer("HTTP/1.1 400 Bad Request\r\n\r\n\x00"), Config{}, ErrProtocol, "unexpected reply"},
		{"endless reply", func(conn net.Conn, _ *fakeClamd) {
			_, _ = readStream(conn, 0)
			io.WriteString(conn, strings.Repeat("x", 10000))
		}, Config{}, ErrProtocol, "longer than"},
		{"hangs", func(conn net.Conn, _ *fakeClamd) {
			_, _ = readStream(conn, 0)
			_, _ = io.Copy(io.Discard, conn) // never answers
		}, Config{Timeout: 200 * time.Millisecond}, nil, "timeout"},
		{"closes mid-stream", func(conn net.Conn, _ *fakeClamd) {
			_, _ = readStream(conn, 3000)
		}, Config{}, nil, ""},
		{"closes mid-reply", func(conn net.Conn, _ *fakeClamd) {
			_, _ = readStream(conn, 0)
			io.WriteString(conn, "stream: Eic")
		}, Config{}, ErrProtocol, "in the middle of reply"},
		{"closes without reply", func(conn net.Conn, _ *fakeClamd) {
			_, _ = readStream(conn, 0)
		}, Config{}, ErrProtocol, "without a reply"},
		{"server size limit", func(conn net.Conn, _ *fakeClamd) {
			_, _ = readStream(conn, 5000)
			io.WriteString(conn, "INSTREAM size limit exceeded. ERROR\x00")
		}, Config{}, scanner.ErrTooLarge, ""},
		{"client size limit", answer("stream: OK\x00"), Config{MaxSize: 100}, scanner.ErrTooLarge, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := serveFake(t, "tcp", tc.handle)
			tc.cfg.Addrs = []string{addr}
			c := newClient(t, tc.cfg)
			_, err := c.Scan(context.Background(), strings.NewReader(message), nil)
			require.Error(t, err)
			assert.ErrorIs(t, err, scanner.ErrScanner)
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			assert.Contains(t, err.Error(), tc.text)
			readsOnce(t, err, addr)
		})
	}
}

func TestFailover(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := down.Addr().String()
	down.Close()
	midway := func(conn net.Conn, _ *fakeClamd) { _, _ = readStream(conn, 3000) }
	_, brokenAddr := serveFake(t, "tcp", midway)
	good, goodAddr := serveFake(t, "tcp", answer("stream: OK\x00"))

	c := newClient(t, Config{Addrs: []string{downAddr, brokenAddr, goodAddr}})
	res, err := c.Scan(context.Background(), strings.NewReader(message), nil)
	require.NoError(t, err)
	assert.False(t, res.Infected)
	assert.Equal(t, goodAddr, res.Server)
	require.Len(t, good.received, 1)
	assert.Equal(t, message, string(good.received[0]), "sent again from the start after the failure")

	// A reader that cannot seek back is not sent twice.
	_, err = c.Scan(context.Background(), io.MultiReader(strings.NewReader(message)), nil)
	assert.ErrorIs(t, err, scanner.ErrScanner)
	assert.Len(t, good.received, 1)

	// All down.
	c = newClient(t, Config{Addrs: []string{downAddr}})
	_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
	assert.ErrorIs(t, err, scanner.ErrScanner)
	assert.Contains(t, err.Error(), "refused")
	assert.ErrorIs(t, c.Ping(context.Background()), scanner.ErrScanner)
}

func TestCancel(t *testing.T) {
	_, addr := serveFake(t, "tcp", func(conn net.Conn, _ *fakeClamd) { _, _ = io.Copy(io.Discard, conn) })
	c := newClient(t, Config{Addrs: []string{addr}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.Scan(ctx, strings.NewReader(message), nil)
		done <- err
	}()
	cancel()
	assert.ErrorIs(t, <-done, scanner.ErrScanner)
}

func TestPingVersion(t *testing.T) {
	_, addr := serveFake(t, "tcp", func(conn net.Conn, _ *fakeClamd) {
		cmd, _ := bufio.NewReader(conn).ReadString(0)
		switch cmd {
		case "zPING\x00":
			io.WriteString(conn, "PONG\x00")
		case "zVERSION\x00":
			io.WriteString(conn, "ClamAV 1.4.6/27000/Wed Nov 25 09:00:00 2026\x00")
		}
	})
	c := newClient(t, Config{Addrs: []string{addr}})
	require.NoError(t, c.Ping(context.Background()))
	v, err := c.Version(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "ClamAV 1.4.6/27000/Wed Nov 25 09:00:00 2026", v)

	_, bad := serveFake(t, "tcp", func(conn net.Conn, _ *fakeClamd) { io.WriteString(conn, "NOPE\x00") })
	c = newClient(t, Config{Addrs: []string{bad}})
	assert.ErrorIs(t, c.Ping(context.Background()), ErrProtocol)
	_, err = c.Version(context.Background())
	assert.ErrorIs(t, err, ErrProtocol)
}

func TestNew(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Addrs: []string{"no-port"}},
		{Addrs: []string{"unix:"}},
		{Addrs: []string{"127.0.0.1:3310"}, Timeout: -1},
	} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	c := newClient(t, Config{Addrs: []string{"/run/clamav/clamd.ctl", "tcp:127.0.0.1:3310"}})
	assert.Equal(t, "unix", c.servers[0].network)
	assert.Equal(t, "127.0.0.1:3310", c.servers[1].address)
	assert.Equal(t, "clamav", c.Name())

}

// readsOnce checks that err starts with "clamav: " and names the adapter
// and each server once.
func readsOnce(t *testing.T, err error, addrs ...string) {
	t.Helper()
	text := err.Error()
	assert.True(t, strings.HasPrefix(text, "clamav: "), text)
	assert.Equal(t, 1, strings.Count(text, "clamav"), "the adapter named once: %s", text)
	for _, a := range addrs {
		assert.Equal(t, 1, strings.Count(text, a), "the server named once: %s", text)
	}
}

// TestErrorText: the error of a failed scan reads once, adapter then
// server then what went wrong, whatever layer it came from.
func TestErrorText(t *testing.T) {
	_, addr := serveFake(t, "tcp", answer("stream: Can't allocate memory ERROR\x00"))
	c := newClient(t, Config{Addrs: []string{addr}})
	_, err := c.Scan(context.Background(), strings.NewReader(message), nil)
	assert.EqualError(t, err, "clamav: "+addr+`: server error: "stream: Can't allocate memory"`)
	assert.ErrorIs(t, err, ErrServer)

	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := down.Addr().String()
	down.Close()
	c = newClient(t, Config{Addrs: []string{downAddr, addr}})
	_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
	assert.EqualError(t, err, "clamav: "+downAddr+": dial: connect: connection refused; "+
		addr+`: server error: "stream: Can't allocate memory"`)
	var op *net.OpError
	assert.ErrorAs(t, err, &op, "the network error stays reachable")
	err = c.Ping(context.Background())
	readsOnce(t, err, downAddr, addr)
	_, err = c.Version(context.Background())
	readsOnce(t, err, downAddr, addr)

	c = newClient(t, Config{Addrs: []string{addr}, MaxSize: 10})
	_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
	readsOnce(t, err, addr)
}
