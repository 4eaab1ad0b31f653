package spamd

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scanner"
)

const report = `Spam detection software, running on the system "mx",
has identified this incoming email as possible spam.

Content analysis details:   (1003.3 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
 2.7 MISSING_DATE           Missing Date: header
-0.0 NO_RECEIVED            Informational: message has no Received headers
1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email
 0.6 URI_LONG               Long URI with a description that goes
                            on to a second line
`

func response(cmd Command, body string) string {
	head := "SPAMD/1.1 0 EX_OK\r\n"
	if cmd != Check {
		head += "Content-length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	return head + "Spam: True ; 1003.3 / 5.0\r\n\r\n" + body
}

func TestParseResponse(t *testing.T) {
	res, err := parseResponse(bufio.NewReader(strings.NewReader(response(Symbols, "GTUBE,MISSING_DATE,NO_RECEIVED\n"))), Symbols)
	require.NoError(t, err)
	assert.True(t, res.Spam)
	assert.True(t, res.Scored)
	assert.Equal(t, 1003.3, res.Score)
	assert.Equal(t, 5.0, res.Threshold)
	assert.Equal(t, "GTUBE,MISSING_DATE,NO_RECEIVED", res.SymbolNames())

	res, err = parseResponse(bufio.NewReader(strings.NewReader(response(Report, report))), Report)
	require.NoError(t, err)
	assert.Equal(t, []scanner.Symbol{
		{Name: "MISSING_DATE", Score: 2.7, Description: "Missing Date: header"},
		{Name: "NO_RECEIVED", Score: 0, Description: "Informational: message has no Received headers"},
		{Name: "GTUBE", Score: 1000, Description: "BODY: Generic Test for Unsolicited Bulk Email"},
		{Name: "URI_LONG", Score: 0.6, Description: "Long URI with a description that goes on to a second line"},
	}, res.Symbols)

	res, err = parseResponse(bufio.NewReader(strings.NewReader("SPAMD/1.1 0 EX_OK\r\nSpam: False ; -1.5 / 5.0\r\n\r\n")), Check)
	require.NoError(t, err)
	assert.False(t, res.Spam)
	assert.Equal(t, -1.5, res.Score)

	tests := []struct {
		resp string
		err  error
		text string
	}{
		{"SPAMD/1.0 76 Bad header line: Content-length: x\r\n", ErrServer, "76 Bad header line"},
		{"HTTP/1.1 200 OK\r\n\r\n", ErrProtocol, "status line"},
		{"SPAMD/1.1 zero EX_OK\r\n", ErrProtocol, "status line"},
		{"SPAMD/1.1 0 EX_OK\r\n\r\n", ErrProtocol, "no Spam header"},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 5\r\n\r\n", ErrProtocol, "Spam header"},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 of 5\r\n\r\n", ErrProtocol, "Spam header"},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n", ErrProtocol, "Spam header"},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\nContent-length: 100\r\n\r\nshort", ErrProtocol, "shorter than Content-length"},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\nContent-length: 99999999\r\n\r\n", ErrProtocol, "Content-length"},
		{"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1", ErrProtocol, "closed in the middle"},
		{"SPAMD/1.1 0 EX_OK\r\nno colon\r\n\r\n", ErrProtocol, "header line"},
		{"SPAMD/1.1 0 EX_OK\r\n" + strings.Repeat("X-A: b\r\n", 200), ErrProtocol, "header lines"},
		{strings.Repeat("x", 10000), ErrProtocol, "line over"},
	}
	for _, tc := range tests {
		_, err := parseResponse(bufio.NewReader(strings.NewReader(tc.resp)), Symbols)
		assert.ErrorIs(t, err, tc.err, tc.resp)
		assert.ErrorContains(t, err, tc.text)
	}
}

// serveFake runs a fake spamd on loopback: enough of the protocol to test
// the client's failure handling. The real spamd is in integration_test.go.
func serveFake(t *testing.T, handle func(conn net.Conn, req string, body []byte)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
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
				br := bufio.NewReader(conn)
				var head strings.Builder
				length := 0
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if v, ok := strings.CutPrefix(line, "Content-length: "); ok {
						length, _ = strconv.Atoi(strings.TrimSpace(v))
					}
					if line == "\r\n" {
						break
					}
				}
				body := make([]byte, length)
				if _, err := io.ReadFull(br, body); err != nil {
					return
				}
				handle(conn, head.String(), body)
			})
		}
	})
	return ln.Addr().String()
}

const message = "Subject: hi\r\nFrom: a@example.org\r\n\r\nhello\r\n"

func TestScanRequest(t *testing.T) {
	var gotReq string
	var gotBody []byte
	addr := serveFake(t, func(conn net.Conn, req string, body []byte) {
		gotReq, gotBody = req, body
		io.WriteString(conn, response(Report, report))
	})
	c, err := New(Config{Addrs: []string{addr}, User: "alice", Command: Report})
	require.NoError(t, err)
	res, err := c.Scan(context.Background(), io.MultiReader(strings.NewReader(message)), nil)
	require.NoError(t, err)
	assert.Equal(t, "REPORT SPAMC/1.5\r\nContent-length: "+strconv.Itoa(len(message))+"\r\nUser: alice\r\n\r\n", gotReq)
	assert.Equal(t, message, string(gotBody))
	assert.True(t, res.Spam)
	assert.Equal(t, addr, res.Server)
	assert.Len(t, res.Symbols, 4)
}

func TestScanFailures(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := down.Addr().String()
	down.Close()
	garbage := serveFake(t, func(conn net.Conn, _ string, _ []byte) { io.WriteString(conn, "<html>hello</html>\r\n") })
	stop := make(chan struct{})
	hang := serveFake(t, func(conn net.Conn, _ string, _ []byte) { <-stop }) // never answers
	t.Cleanup(func() { close(stop) })
	midway := serveFake(t, func(conn net.Conn, _ string, _ []byte) { io.WriteString(conn, "SPAMD/1.1 0 EX_OK\r\nSpam: Tr") })
	good := serveFake(t, func(conn net.Conn, _ string, _ []byte) { io.WriteString(conn, response(Symbols, "GTUBE")) })

	for _, tc := range []struct {
		name  string
		addrs []string
		text  string
	}{
		{"down", []string{downAddr}, "refused"},
		{"garbage", []string{garbage}, "status line"},
		{"hangs", []string{hang}, "timeout"},
		{"closes mid-response", []string{midway}, "closed in the middle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Addrs: tc.addrs, Timeout: 300 * time.Millisecond})
			require.NoError(t, err)
			_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
			assert.ErrorIs(t, err, scanner.ErrScanner)
			assert.ErrorContains(t, err, tc.text)
			readsOnce(t, err, tc.addrs...)
		})
	}
	c, err := New(Config{Addrs: []string{downAddr, garbage, midway}})
	require.NoError(t, err)
	_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
	assert.EqualError(t, err, "spamd: "+downAddr+": dial: connect: connection refused; "+
		garbage+`: protocol error: status line "<html>hello</html>"; `+
		midway+": protocol error: connection closed in the middle of the response")
	readsOnce(t, c.Ping(context.Background()), downAddr, garbage, midway)

	c, err = New(Config{Addrs: []string{downAddr, garbage, midway, good}})
	require.NoError(t, err)
	res, err := c.Scan(context.Background(), io.MultiReader(strings.NewReader(message)), nil)
	require.NoError(t, err, "fails over, sending the message again")
	assert.Equal(t, good, res.Server)

	c, err = New(Config{Addrs: []string{good}, MaxSize: 10})
	require.NoError(t, err)
	_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
	assert.ErrorIs(t, err, scanner.ErrTooLarge)
	_, err = c.Scan(context.Background(), io.MultiReader(strings.NewReader(message)), nil)
	assert.ErrorIs(t, err, scanner.ErrTooLarge)
	assert.EqualError(t, err, "spamd: message too large for the scanner: over 10 bytes")

	tempfail := serveFake(t, func(conn net.Conn, _ string, _ []byte) { io.WriteString(conn, "SPAMD/1.1 75 EX_TEMPFAIL\r\n\r\n") })
	c, err = New(Config{Addrs: []string{tempfail}})
	require.NoError(t, err)
	_, err = c.Scan(context.Background(), strings.NewReader(message), nil)
	assert.EqualError(t, err, "spamd: "+tempfail+": server error: 75 EX_TEMPFAIL")
}

// readsOnce checks that err starts with "spamd: " and names the adapter
// and each server once.
func readsOnce(t *testing.T, err error, addrs ...string) {
	t.Helper()
	require.Error(t, err)
	text := err.Error()
	assert.True(t, strings.HasPrefix(text, "spamd: "), text)
	assert.Equal(t, 1, strings.Count(text, "spamd"), "the adapter named once: %s", text)
	for _, a := range addrs {
		assert.Equal(t, 1, strings.Count(text, a), "the server named once: %s", text)
	}
}

func TestPing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			if line == "PING SPAMC/1.5\r\n" {
				io.WriteString(conn, "SPAMD/1.5 0 PONG\r\n")
			}
			conn.Close()
		}
	}()
	c, err := New(Config{Addrs: []string{ln.Addr().String()}})
	require.NoError(t, err)
	assert.NoError(t, c.Ping(context.Background()))

	for _, cfg := range []Config{{}, {Addrs: []string{"x"}}, {Addrs: []string{"a:1"}, User: "a\r\nb"}, {Addrs: []string{"a:1"}, Command: 7}} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrConfig)
	}
}
