package greetpause_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern/smtpserver/greetpause"
)

// A 10 s greet pause for the world, none for loopback. The server behind
// the listener greets as soon as Accept returns, as go-smtp does; here the
// client is on loopback, so the greeting comes at once.
func Example() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	l, err := greetpause.New(inner, greetpause.Config{
		Pause: func(ip netip.Addr) time.Duration {
			if ip.IsLoopback() {
				return 0
			}
			return 10 * time.Second
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	// The server: with go-smtp this is smtpServer.Serve(l).
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			_, _ = io.WriteString(c, "220 mx.example.org ESMTP\r\n")
			_ = c.Close()
		}
	}()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.TrimSpace(greeting))
	fmt.Println("exempt:", l.Stats().Exempt)
	// Output:
	// 220 mx.example.org ESMTP
	// exempt: 1
}

// Config.Known lets a client that passed before skip the pause: with a
// pause of an hour, the client the pass cache knows (here loopback; in
// the relay ratelimit.PassCache.Known) is greeted at once.
func Example_known() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	l, err := greetpause.New(inner, greetpause.Config{
		Delay: time.Hour,
		Known: func(_ context.Context, ip netip.Addr) bool { return ip.IsLoopback() },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "220 mx.example.org ESMTP\r\n")
			_ = c.Close()
		}
	}()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.TrimSpace(greeting))
	fmt.Println("known:", l.Stats().Known)
	// Output:
	// 220 mx.example.org ESMTP
	// known: 1
}
