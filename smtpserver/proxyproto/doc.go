// Package proxyproto reads the PROXY protocol (versions 1 and 2, as
// HAProxy specifies it in proxy-protocol.txt) in front of any Go server:
// a net.Listener wrapper, standard library only, like greetpause.
//
// # Why
//
// A relay behind a TCP load balancer (HAProxy, a cloud provider's
// network balancer) sees every connection come from the balancer. Its
// access map, DNS lists, rate limits, greet pause, Received field and
// logs then all judge the balancer. With "send-proxy" (version 1, text)
// or "send-proxy-v2" (binary) the balancer starts each connection with a
// header naming the client; this listener reads it and returns the
// connection with the client's address as RemoteAddr, so everything
// after it judges the client.
//
// # Trust
//
// Anyone can send a header. So one is read only from the addresses in
// Config.Balancers (or Config.IsBalancer, for a list a reload can
// change), and from those it is required: a balancer connection without
// a valid header within Config.Timeout (5 s, Postfix's
// smtpd_upstream_proxy_timeout) and Config.MaxHeaderBytes (2048) is
// closed, since the protocol has no way to answer it. Connections from
// any other address are served as they are, and one that starts with a
// header anyway (a client naming an address of its choosing) is closed
// at its first Read with ErrUnexpectedHeader. Version 2's LOCAL command
// and version 1's UNKNOWN (a balancer's health check) keep the
// connection's own addresses; so do the UNSPEC and UNIX families.
// Version 2 TLVs are bounds-checked and kept (Conn.Header); a CRC32c TLV
// is verified.
//
// Headers are read on a goroutine per connection: a balancer that is
// slow to send one holds up no other connection, and Accept never
// returns an error for a single connection (go-smtp's Serve would stop).
//
// # Order of wrappers
//
// Put the listener first, right on the socket (after a global
// connection limit, which counts sockets): every wrapper after it, the
// rate limits and greet pause included, then sees the client.
//
//	ln, _ := net.Listen("tcp", ":25")
//	pl, err := proxyproto.NewListener(ln, proxyproto.Config{
//		Balancers: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")},
//	})
//	gp, err := greetpause.New(pl, greetpause.Config{})
//	err = server.Serve(gp)
//
// Parse and the Append methods read and write single headers, for a
// proxy or a test client of one's own.
package proxyproto
