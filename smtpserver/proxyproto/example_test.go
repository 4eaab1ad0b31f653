package proxyproto_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"

	"github.com/postern/postern/smtpserver/proxyproto"
)

// A balancer on loopback sends a version 2 header; the server behind the
// listener sees the client it names.
func Example() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	l, err := proxyproto.NewListener(inner, proxyproto.Config{
		Balancers: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()

	go func() { // the balancer
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			panic(err)
		}
		defer c.Close()
		h := proxyproto.Header{
			Source: netip.MustParseAddrPort("203.0.113.7:40123"),
			Dest:   netip.MustParseAddrPort("192.0.2.25:25"),
		}
		b, _ := h.AppendV2(nil)
		c.Write(append(b, "EHLO client.example\r\n"...))
		bufio.NewReader(c).ReadString('\n')
	}()

	c, err := l.Accept()
	if err != nil {
		panic(err)
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Println(c.RemoteAddr(), c.LocalAddr())
	fmt.Printf("%q\n", line)
	c.Write([]byte("221 bye\r\n"))
	// Output:
	// 203.0.113.7:40123 192.0.2.25:25
	// "EHLO client.example\r\n"
}
