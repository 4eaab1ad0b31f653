package rspamd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan/scanner"
)

const gtubeReply = `{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject",
"symbols":{"GTUBE":{"name":"GTUBE","score":0.0,"metric_score":0.0},"R_SPF_ALLOW":{"name":"R_SPF_ALLOW","score":-0.2,"description":"SPF verification allows sending"}},
"messages":{"smtp_message":"Gtube pattern"},"message-id":"undef","time_real":0.09}`

func TestParseReply(t *testing.T) {
	res, err := ParseReply([]byte(gtubeReply))
	require.NoError(t, err)
	assert.True(t, res.Scored)
	assert.True(t, res.Spam)
	assert.Equal(t, "reject", res.Action)
	assert.Equal(t, 15.0, res.Score)
	assert.Equal(t, 15.0, res.Threshold)
	assert.Equal(t, []scanner.Symbol{{Name: "GTUBE"}, {Name: "R_SPF_ALLOW", Score: -0.2, Description: "SPF verification allows sending"}}, res.Symbols)

	res, err = ParseReply([]byte(`{"score":2.5,"required_score":15,"action":"greylist","symbols":{}}`))
	require.NoError(t, err)
	assert.False(t, res.Spam, "greylisting is not a content verdict")

	for _, bad := range []struct{ reply, text string }{
		{`{"error":"cannot parse input"}`, "server error"},
		{`not json`, "protocol error"},
		{`{"score":1}`, "no action"},
		{`{"action":"reject"}`, "no action or score"},
		{`{"action":"reject","score":"x"}`, "protocol error"},
		{`[]`, "protocol error"},
	} {
		_, err := ParseReply([]byte(bad.reply))
		assert.ErrorContains(t, err, bad.text, bad.reply)
	}
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestScanRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		io.WriteString(w, gtubeReply)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := newClient(t, Config{Addrs: []string{addr}, Password: "secret"})
	env := &scanner.Envelope{From: "sender@example.org", Rcpts: []string{"a@example.com", "b@example.com"},
		IP: netip.MustParseAddr("192.0.2.1"), Helo: "mx.example.org\r\nX-Evil: 1", QueueID: "Q1", User: "alice"}
	msg := "Subject: hi\r\n\r\nhello\r\n"
	res, err := c.Scan(context.Background(), io.MultiReader(strings.NewReader(msg)), env)
	require.NoError(t, err)
	assert.Equal(t, "reject", res.Action)
	assert.Equal(t, addr, res.Server)
	assert.Equal(t, "/checkv2", got.URL.Path)
	assert.Equal(t, http.MethodPost, got.Method)
	assert.Equal(t, msg, string(body))
	assert.Equal(t, int64(len(msg)), got.ContentLength)
	assert.Equal(t, "sender@example.org", got.Header.Get("From"))
	assert.Equal(t, []string{"a@example.com", "b@example.com"}, got.Header.Values("Rcpt"))
	assert.Equal(t, "192.0.2.1", got.Header.Get("IP"))
	assert.Equal(t, "mx.example.orgX-Evil: 1", got.Header.Get("Helo"), "no header injection")
	assert.Equal(t, "Q1", got.Header.Get("Queue-Id"))
	assert.Equal(t, "alice", got.Header.Get("User"))
	assert.Equal(t, "secret", got.Header.Get("Password"))
}

// rawServer answers every connection with handle, below HTTP.
func rawServer(t *testing.T, handle func(conn net.Conn)) string {
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
				handle(conn)
			})
		}
	})
	return ln.Addr().String()
}

func TestScanFailures(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := down.Addr().String()
	down.Close()
	status500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"overloaded"}`, http.StatusServiceUnavailable)
	}))
	defer status500.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") }))
	defer garbage.Close()
	stop := make(chan struct{})
	hang := rawServer(t, func(conn net.Conn) { <-stop }) // never answers
	t.Cleanup(func() { close(stop) })
	midway := rawServer(t, func(conn net.Conn) {
		// Read the whole request first: closing with unread input would
		// reset the connection instead of ending the reply early.
		if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
			_, _ = io.Copy(io.Discard, req.Body)
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"score\":")
	})
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, gtubeReply) }))
	defer good.Close()
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	for _, tc := range []struct {
		name, addr, text string
	}{
		{"down", downAddr, "refused"},
		{"http error", host(status500), "503 Service Unavailable"},
		{"garbage", host(garbage), "protocol error"},
		{"hangs", hang, "deadline exceeded"},
		{"closes mid-reply", midway, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, Config{Addrs: []string{tc.addr}, Timeout: 300 * time.Millisecond})
			_, err := c.Scan(context.Background(), strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil)
			assert.ErrorIs(t, err, scanner.ErrScanner)
			assert.ErrorContains(t, err, tc.text)
			readsOnce(t, err, tc.addr)
		})
	}
	c0 := newClient(t, Config{Addrs: []string{downAddr, host(status500)}})
	_, err = c0.Scan(context.Background(), strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil)
	assert.EqualError(t, err, "rspamd: "+downAddr+": dial: connect: connection refused; "+
		host(status500)+`: server error: HTTP 503 Service Unavailable: "{\"error\":\"overloaded\"}\n"`)
	readsOnce(t, c0.Ping(context.Background()), downAddr, host(status500))
	c := newClient(t, Config{Addrs: []string{downAddr, midway, host(good)}})
	res, err := c.Scan(context.Background(), io.MultiReader(strings.NewReader("Subject: x\r\n\r\nx\r\n")), nil)
	require.NoError(t, err, "fails over")
	assert.Equal(t, host(good), res.Server)

	c = newClient(t, Config{Addrs: []string{host(good)}, MaxSize: 5})
	_, err = c.Scan(context.Background(), strings.NewReader("Subject: x\r\n\r\nx\r\n"), nil)
	assert.ErrorIs(t, err, scanner.ErrTooLarge)
	assert.EqualError(t, err, "rspamd: message too large for the scanner: 17 bytes, over 5")

	for _, cfg := range []Config{{}, {Addrs: []string{"nope"}}, {Addrs: []string{"a:1"}, Password: "a\nb"}, {Addrs: []string{"a:1"}, MaxSize: -1}} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrConfig)
	}
}

// readsOnce checks that err starts with "rspamd: " and names the adapter
// and each server once.
func readsOnce(t *testing.T, err error, addrs ...string) {
	t.Helper()
	require.Error(t, err)
	text := err.Error()
	assert.True(t, strings.HasPrefix(text, "rspamd: "), text)
	assert.Equal(t, 1, strings.Count(text, "rspamd"), "the adapter named once: %s", text)
	for _, a := range addrs {
		assert.Equal(t, 1, strings.Count(text, a), "the server named once: %s", text)
	}
}

// The milter block: values as a string, {value, order} or a list; fields
// come out top first by order, then those without one as given; removals
// as a number or a list; the signature outside the block too; bounds.
func TestParseReplyMilter(t *testing.T) {
	res, err := ParseReply([]byte(`{"score":1,"action":"no action",
		"messages":{"smtp_message":"Thanks"},
		"milter":{"add_headers":{
			"Z-Last":"plain",
			"ARC-Seal":{"value":"i=1; seal","order":2},
			"ARC-Message-Signature":{"value":"i=1; ams","order":1},
			"Multi":[{"value":"one","order":3},"two"]},
		"remove_headers":{"X-Spam":0,"X-Old":[1,-1]}},
		"dkim-signature":"v=1; d=example.test"}`))
	require.NoError(t, err)
	assert.Equal(t, "Thanks", res.Message)
	names := func() []string {
		var out []string
		for _, h := range res.AddHeaders {
			out = append(out, h.Name+"="+h.Value)
		}
		return out
	}
	assert.Equal(t, []string{"ARC-Message-Signature=i=1; ams", "ARC-Seal=i=1; seal", "Multi=one", "Z-Last=plain",
		"Multi=two", "DKIM-Signature=v=1; d=example.test"}, names())
	assert.Equal(t, []scanner.HeaderRemoval{{Name: "X-Spam"}, {Name: "X-Old", Index: 1}, {Name: "X-Old", Index: -1}},
		res.RemoveHeaders)

	// A DKIM-Signature in the milter block is not added twice.
	res, err = ParseReply([]byte(`{"score":1,"action":"no action","milter":{"add_headers":{"DKIM-Signature":"a"}},"dkim-signature":"b"}`))
	require.NoError(t, err)
	assert.Len(t, res.AddHeaders, 1)

	// Bounds: too many fields, an oversized field, long texts.
	var b strings.Builder
	b.WriteString(`{"score":1,"action":"no action","subject":"` + strings.Repeat("s", 2000) + `","milter":{"add_headers":{`)
	for i := range 100 {
		fmt.Fprintf(&b, `"X-%d":"v",`, i)
	}
	b.WriteString(`"Huge":"` + strings.Repeat("h", 20<<10) + `"},"remove_headers":{`)
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"R-%d":0`, i)
	}
	b.WriteString(`}}}`)
	res, err = ParseReply([]byte(b.String()))
	require.NoError(t, err)
	assert.Len(t, res.AddHeaders, maxAddHeaders)
	assert.Len(t, res.RemoveHeaders, maxRemoveHeaders)
	assert.Len(t, res.Subject, maxText)

	for _, bad := range []string{
		`{"score":1,"action":"no action","milter":{"add_headers":{"A":5}}}`,
		`{"score":1,"action":"no action","milter":{"add_headers":[1]}}`,
		`{"score":1,"action":"no action","milter":{"remove_headers":{"A":"x"}}}`,
		`{"score":1,"action":"no action","dkim-signature":5}`,
	} {
		_, err := ParseReply([]byte(bad))
		assert.ErrorIs(t, err, ErrProtocol, bad)
	}
}
