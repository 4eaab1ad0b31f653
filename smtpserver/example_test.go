package smtpserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/smtpserver"
)

// A server that hands accepted mail to the durable queue. The client is
// told the queue ID (the transaction's ID); the message is in the queue
// with its envelope before the 250, and a quarantined one would be in
// the hold area. Shutdown, then the queue closes.
func Example_queue() {
	// queue.Handoff is a smtpserver.Handoff: package queue does not import
	// smtpserver, its method set is the contract.
	var _ smtpserver.Handoff = (*queue.Handoff)(nil)

	dir, _ := os.MkdirTemp("", "smtpserver-example")
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: "mx.example.org"})
	if err != nil {
		panic(err)
	}
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.example.org", Handoff: &queue.Handoff{Queue: q}})
	if err != nil {
		panic(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	c, _ := net.Dial("tcp", l.Addr().String())
	br := bufio.NewReader(c)
	say := func(cmd string) postern.Reply {
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		r, _ := postern.ParseReply(br)
		return r
	}
	say("")
	say("EHLO client.example.net")
	say("MAIL FROM:<alice@example.net> ENVID=order-17")
	say("RCPT TO:<bob@example.org> NOTIFY=FAILURE")
	say("DATA")
	r := say("Subject: hello\r\n\r\nHi Bob.\r\n.")
	id, _ := strings.CutPrefix(r.Lines[0], "Ok: queued as ")
	fmt.Println(r.Code, r.Enhanced)
	say("QUIT")
	c.Close()

	m, err := q.Show(id)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Envelope.From, m.Envelope.EnvID, m.Envelope.Recipients[0].Addr, m.Envelope.Recipients[0].Notify)
	fmt.Println(m.Envelope.ClientIP, m.Envelope.HELO, m.Held())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println(srv.Shutdown(ctx), <-served)
	fmt.Println(q.Close())
	// Output:
	// 250 2.0.0
	// alice@example.net order-17 bob@example.org [FAILURE]
	// 127.0.0.1 client.example.net false
	// <nil> smtpserver: Server closed
	// <nil>
}

// A server that refuses one recipient and accepts the rest, driven by a raw
// client over loopback.
func Example() {
	policy := postern.RcptFunc("no-bob", func(_ context.Context, _ *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
		if strings.EqualFold(r.Addr, "bob@example.org") {
			return postern.Rejected(550, postern.ESC(5, 1, 1), "No such user", "bob left"), nil
		}
		return postern.Pass, nil
	})
	handoff := smtpserver.HandoffFunc(func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) (string, error) {
		return "ID42", nil // a real Handoff syncs the message to disk first
	})
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.example.org", Policy: policy, Handoff: handoff})
	if err != nil {
		panic(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	br := bufio.NewReader(c)
	say := func(cmd string) {
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		r, _ := postern.ParseReply(br)
		fmt.Println(r.Code, r.Enhanced, r.Lines[0])
	}
	say("")
	say("HELO client.example.net")
	say("MAIL FROM:<alice@example.net>")
	say("RCPT TO:<bob@example.org>")
	say("RCPT TO:<carol@example.org>")
	say("DATA")
	say("Subject: hello\r\n\r\nHi Carol.\r\n.")
	say("QUIT")
	// Output:
	// 220  mx.example.org ESMTP Service Ready
	// 250 2.0.0 Hello client.example.net
	// 250 2.0.0 Roger, accepting mail from <alice@example.net>
	// 550 5.1.1 No such user
	// 250 2.0.0 I'll make sure <carol@example.org> gets this
	// 354  Go ahead. End your data with <CR><LF>.<CR><LF>
	// 250 2.0.0 Ok: queued as ID42
	// 221 2.0.0 Bye
}

// A global connection limit put first, on the socket, in front of other
// listener wrappers; the server's own limit is then turned off.
func ExampleConnLimit() {
	handoff := smtpserver.HandoffFunc(func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) (string, error) {
		return "ID42", nil
	})
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.example.org", Handoff: handoff, MaxConnections: -1})
	if err != nil {
		panic(err)
	}
	limit := smtpserver.NewConnLimit(smtpserver.ConnLimitConfig{Max: 1, Hostname: "mx.example.org"})
	defer limit.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	// A greet pause or ratelimit.Listener would wrap limit.Listener(l).
	go srv.Serve(limit.Listener(l))
	defer srv.Close()

	banner := func() string {
		c, _ := net.Dial("tcp", l.Addr().String())
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	fmt.Println(banner())
	fmt.Println(banner()) // the first connection is still open
	// Output:
	// 220 mx.example.org ESMTP Service Ready
	// 421 4.7.0 mx.example.org Error: too many connections, try again later
}

// postscreen's deep protocol tests: a client that sends MAIL together with
// EHLO, before the EHLO reply (a bot that does not wait for answers), is
// told 421 4.7.0 and disconnected; Result hears it (a pass cache records
// the failure).
func ExampleProtocolTests() {
	handoff := smtpserver.HandoffFunc(func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) (string, error) {
		return "ID42", nil
	})
	srv, err := smtpserver.New(smtpserver.Config{Hostname: "mx.example.org", Handoff: handoff,
		ProtocolTests: smtpserver.ProtocolTests{
			Select: func(context.Context, *postern.Conn) smtpserver.ProtocolTest {
				return smtpserver.ProtocolPipelining | smtpserver.ProtocolNonSMTP | smtpserver.ProtocolBareNewline
			},
			Result: func(_ context.Context, c *postern.Conn, failed smtpserver.ProtocolTest) {
				fmt.Println("failed:", failed)
			},
		}})
	if err != nil {
		panic(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	defer srv.Close()

	c, _ := net.Dial("tcp", l.Addr().String())
	defer c.Close()
	br := bufio.NewReader(c)
	banner, _ := br.ReadString('\n')
	fmt.Println(strings.TrimSpace(banner))
	fmt.Fprint(c, "EHLO bot.example\r\nMAIL FROM:<a@bot.example>\r\n") // in one write
	rest, _ := io.ReadAll(br)
	fmt.Println(strings.TrimSpace(string(rest)))
	// Output:
	// 220 mx.example.org ESMTP Service Ready
	// failed: pipelining
	// 421 4.7.0 mx.example.org Error: command pipelined before the EHLO reply, try again later
}
