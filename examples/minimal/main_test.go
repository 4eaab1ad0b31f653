package main

import (
	"bufio"
	"context"
	"fmt"
	"github.com/postern/postern/route/resolver/dnstest"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/dnsbl"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/smtpserver"
)

// Loopback sources (Linux routes all of 127/8 to lo): a stranger, a
// trusted host, a client on the DNSBL, one the access map pauses.
const (
	stranger   = "127.0.0.1"
	trustedIP  = "127.0.0.2"
	listedIP   = "127.0.0.3"
	pausedIP   = "127.0.0.4"
	accessFile = "GreetPause:127.0.0.4 2000\nFrom:spammer@bad.example REJECT\n"
)

// running is one MTA under test: what it was started with, where it
// listens, and Serve's result.
type running struct {
	*mta
	cfg    config
	addr   string
	served chan error
}

// startMTA runs the program's start on a loopback port with a DNSBL
// served locally and smartHost as the next hop of foreign mail.
func startMTA(t *testing.T, smartHost string) *running {
	t.Helper()
	dir := t.TempDir()
	accessPath := filepath.Join(dir, "access")
	require.NoError(t, os.WriteFile(accessPath, []byte(accessFile), 0o600))
	cfg := config{Hostname: "mx.example.test", Domains: []string{"example.test"},
		Trusted: []netip.Prefix{netip.MustParsePrefix(trustedIP + "/32")},
		Spool:   filepath.Join(dir, "spool"), Maildir: filepath.Join(dir, "maildir"), Access: accessPath,
		DNSBL: []dnsbl.Zone{{Name: "bl.test", TXT: true}}, Resolvers: []string{serveDNSBL(t, listedIP)},
		SmartHost: smartHost, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m, err := start(cfg, l)
	require.NoError(t, err)
	r := &running{mta: m, cfg: cfg, addr: l.Addr().String(), served: make(chan error, 1)}
	go func() { r.served <- m.srv.Serve(m.ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r.mta != nil {
			r.shutdown(ctx)
		}
	})
	return r
}

// serveDNSBL answers for the zone bl.test: listed (and the RFC 5782
// test point 127.0.0.2 of the zone, which is not our trusted host:
// queries name the reversed address) is listed, with a TXT record.
func serveDNSBL(t *testing.T, listed string) string {
	t.Helper()
	d := dnstest.Start(t)
	ip := netip.MustParseAddr(listed).As4()
	name := fmt.Sprintf("%d.%d.%d.%d.bl.test", ip[3], ip[2], ip[1], ip[0])
	d.AddA(name, "127.0.0.2")
	d.AddTXT(name, "listed for the test")
	return d.Addr
}

// client is a raw SMTP client from a chosen loopback address.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialFrom(t *testing.T, from, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// reply reads one reply; a closed connection gives code 0.
func (c *client) reply() postern.Reply {
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	r, err := postern.ParseReply(c.br)
	if err != nil {
		return postern.Reply{}
	}
	return r
}

func (c *client) cmd(line string) postern.Reply {
	fmt.Fprintf(c.c, "%s\r\n", line)
	return c.reply()
}

// send runs a whole transaction and returns the final reply.
func (c *client) send(from string, rcpts []string, body string) postern.Reply {
	if r := c.cmd("MAIL FROM:<" + from + ">"); r.Code != 250 {
		return r
	}
	for _, rc := range rcpts {
		if r := c.cmd("RCPT TO:<" + rc + ">"); r.Code != 250 {
			return r
		}
	}
	if r := c.cmd("DATA"); r.Code != 354 {
		return r
	}
	return c.cmd(body + "\r\n.")
}

func (c *client) greet() {
	require.Equal(c.t, 220, c.reply().Code)
	require.Equal(c.t, 250, c.cmd("EHLO client.example.net").Code)
}

// maildir returns the messages delivered to user@example.test.
func maildir(r *running, user string) []string {
	files, _ := filepath.Glob(filepath.Join(r.cfg.Maildir, "example.test", user, "new", "*"))
	var out []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		out = append(out, string(b))
	}
	return out
}

// TestRefusesToRelayForAStranger: the program is never an open relay.
// A client outside the trusted networks gets every relay trick refused
// and may only send to the local domain, where the mail is delivered.
func TestRefusesToRelayForAStranger(t *testing.T) {
	r := startMTA(t, "[192.0.2.1]")
	c := dialFrom(t, stranger, r.addr)
	c.greet()
	require.Equal(t, 250, c.cmd("MAIL FROM:<alice@example.net>").Code)
	for _, rcpt := range []string{
		"victim@example.org",                // plain relaying
		"victim%example.org@example.test",   // percent hack
		"example.org!victim@example.test",   // bang path
		`"victim@example.org"@example.test`, // quoted @
		"victim@[192.0.2.1]",                // foreign address literal
		"victim@sub.example.test",           // a subdomain nobody routes
		"victim@example.test.example.org",   // a look-alike
	} {
		got := c.cmd("RCPT TO:<" + rcpt + ">")
		assert.Equal(t, 5, got.Code/100, "%s: %v", rcpt, got)
	}
	require.Equal(t, 250, c.cmd("RCPT TO:<bob@example.test>").Code)
	require.Equal(t, 354, c.cmd("DATA").Code)
	got := c.cmd("Subject: hello\r\n\r\nHi Bob.\r\n.")
	require.Equal(t, 250, got.Code, got.Error())
	id, ok := strings.CutPrefix(got.Lines[0], "Ok: queued as ")
	require.True(t, ok)
	c.cmd("QUIT")

	require.Eventually(t, func() bool { return len(maildir(r, "bob")) == 1 }, 20*time.Second, 20*time.Millisecond)
	msg := maildir(r, "bob")[0]
	assert.Contains(t, msg, "Hi Bob.")
	assert.Contains(t, msg, "by mx.example.test", "our Received field")
	assert.Contains(t, msg, id, "the queue ID the client was told names the message")
}

// The rest of the policy: the access map, the program's own filter,
// the DNSBL before the banner, the greet pause, and the bare Postmaster.
func TestPolicy(t *testing.T) {
	r := startMTA(t, "[192.0.2.1]")
	c := dialFrom(t, stranger, r.addr)
	c.greet()
	got := c.cmd("MAIL FROM:<spammer@bad.example>")
	assert.Equal(t, 550, got.Code, "access map From: REJECT: %v", got)
	c.cmd("RSET")
	got = c.cmd("MAIL FROM:<ceo@example.test>")
	assert.Equal(t, []any{550, postern.ESC(5, 7, 1)}, []any{got.Code, got.Enhanced}, "a stranger sending as us: %v", got)
	c.cmd("RSET")
	got = c.send("alice@example.net", []string{"Postmaster"}, "Subject: abuse report\r\n\r\nsee attached")
	assert.Equal(t, 250, got.Code, got.Error())
	require.Eventually(t, func() bool { return len(maildir(r, "postmaster")) == 1 }, 20*time.Second, 20*time.Millisecond,
		"a bare Postmaster reaches postmaster@example.test")

	listed := dialFrom(t, listedIP, r.addr)
	got = listed.reply()
	assert.Equal(t, 554, got.Code, "no banner for a listed client: %v", got)
	assert.Contains(t, got.Error(), "bl.test")

	early := dialFrom(t, pausedIP, r.addr)
	fmt.Fprintf(early.c, "EHLO too.early.example\r\n")
	got = early.reply()
	assert.Equal(t, 554, got.Code, "an early talker is refused: %v", got)
	assert.Equal(t, postern.ESC(5, 5, 1), got.Enhanced)
}

// stallingHost accepts connections and never says a word: the next hop
// that keeps a delivery attempt under way until shutdown.
func stallingHost(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan struct{}, 16)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), ch
}

// TestShutdownUnderAStalledClient is a consumer program end to end:
// smtpserver → queue.Handoff → queue → route. With a delivery under way
// to a next hop that never answers and a client stalled inside DATA,
// Shutdown with a deadline returns at the deadline, having closed the
// stalled session; Serve ends with ErrServerClosed; the queue stops and
// closes cleanly; and what was accepted is delivered or still queued
// when the spool is opened again, while the half-sent message is not.
func TestShutdownUnderAStalledClient(t *testing.T) {
	hop, attempts := stallingHost(t)
	r := startMTA(t, "["+strings.Replace(hop, ":", "]:", 1))

	trusted := dialFrom(t, trustedIP, r.addr)
	trusted.greet()
	got := trusted.send("ceo@example.test", []string{"partner@far.example"}, "Subject: contract\r\n\r\nsigned")
	require.Equal(t, 250, got.Code, "a trusted host relays: %v", got)
	relayedID, _ := strings.CutPrefix(got.Lines[0], "Ok: queued as ")
	got = trusted.send("ceo@example.test", []string{"bob@example.test"}, "Subject: local\r\n\r\nfor bob")
	require.Equal(t, 250, got.Code, got.Error())
	trusted.cmd("QUIT")
	select {
	case <-attempts:
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery attempt reached the next hop")
	}
	require.Eventually(t, func() bool { return len(maildir(r, "bob")) == 1 }, 20*time.Second, 20*time.Millisecond)

	stalled := dialFrom(t, stranger, r.addr)
	stalled.greet()
	require.Equal(t, 250, stalled.cmd("MAIL FROM:<alice@example.net>").Code)
	require.Equal(t, 250, stalled.cmd("RCPT TO:<carol@example.test>").Code)
	require.Equal(t, 354, stalled.cmd("DATA").Code)
	fmt.Fprintf(stalled.c, "Subject: half\r\n\r\nand then nothing")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.shutdown(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // the stalled client alone would hold for DataTimeout (3 min)
		t.Fatal("Shutdown did not return")
	}
	r.mta = nil
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Shutdown gave up on the stalled session at its deadline")
	assert.Equal(t, context.DeadlineExceeded.Error(), err.Error(), "and nothing else failed: the queue closed cleanly")
	assert.ErrorIs(t, <-r.served, smtpserver.ErrServerClosed)
	_, rerr := stalled.br.ReadByte()
	assert.Error(t, rerr, "the stalled session was closed")

	q, err := queue.Open(queue.Config{Dir: r.cfg.Spool, Hostname: "mx.example.test"})
	require.NoError(t, err, "the spool opens again: the lock was released")
	defer q.Close()
	all := q.List(queue.ListFilter{})
	require.Len(t, all, 1, "the relayed message is still queued; the delivered one is gone; the half one never was")
	assert.Equal(t, relayedID, all[0].ID)
	assert.Equal(t, queue.Pending, all[0].State.Rcpts[0].Status)
	assert.Equal(t, "partner@far.example", all[0].Envelope.Recipients[0].Addr)
	assert.Empty(t, maildir(r, "carol"), "nothing of the half-sent message")
}

// The SDK's front page stays one page.
func TestOnePage(t *testing.T) {
	b, err := os.ReadFile("main.go")
	require.NoError(t, err)
	assert.Less(t, strings.Count(string(b), "\n"), 200, "examples/minimal is a custom MTA in under 200 lines")
}
