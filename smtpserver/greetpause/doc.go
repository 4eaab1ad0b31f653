// Package greetpause delays the SMTP greeting and drops clients that talk
// before it: a net.Listener wrapper that works in front of any Go server.
//
// # Background
//
// An SMTP client must wait for the server's 220 greeting before it sends
// anything (RFC 5321 §3.1), and RFC 5321 §4.5.3.2.1 has it wait up to
// 5 minutes for that greeting. Many spam engines do neither: they connect,
// fire EHLO or the whole transaction at once, and hang up after a few
// seconds. Holding the greeting back for a few seconds and refusing
// whoever speaks first removes much of that traffic before any filter runs.
// sendmail calls it FEATURE(`greet_pause') (with per-client "GreetPause:"
// entries in the access map), Postfix postscreen the pregreet test.
//
// # Why a listener
//
// Servers such as github.com/emersion/go-smtp write the 220 greeting as
// soon as Accept returns a connection, so the pause must happen before
// that. The Listener accepts from the inner listener on its own goroutine
// and holds each new connection for its pause, on one goroutine parked in
// a one-byte read with a read deadline: about the memory of a bare
// connection waiting in Read, and no timer per connection. Then:
//
//   - a client that stays silent until the pause ends is returned by
//     Accept, with its read deadline cleared;
//   - a client that sends anything (any byte) during the pause is an early
//     talker: it gets EarlyTalkerReply ("554 5.5.1 …") and is closed, and
//     the server never sees it. With Config.LogOnly it is logged and
//     handed over at once instead, and the bytes it sent are replayed to
//     the server's first Read (the rollout mode);
//   - a client that disconnects during the pause is dropped quietly;
//   - a client whose pause is 0 (Config.Pause returned 0: trusted networks,
//     "GreetPause:… 0" entries) is handed over at once.
//
// Config.Known lets clients that passed before skip the pause, as
// postscreen's temporary allowlist does: it is asked about each held
// client on a goroutine of its own while the pause runs (a pass cache in
// Redis takes a round trip; nobody else waits for it), and a true answer
// hands the client over at once (ActionKnown). ratelimit.PassCache is
// such a cache; the Observer's ActionPass and ActionReject events are
// what it learns from. The package itself stays standard library only.
//
// Config.MaxPaused bounds the connections held at once; a client arriving
// over the bound is answered BusyReply ("421 4.7.0 …") and closed, as
// postscreen does, unless Config.PassWhenFull hands it over unpaused.
//
// Accept never returns an error for one connection (go-smtp's Serve stops
// at the first error): temporary errors of the inner listener (EMFILE,
// ECONNABORTED …) are logged and retried with backoff. Close closes the
// inner listener and every held connection; Accept then returns
// net.ErrClosed.
//
// Each connection's outcome is logged (stage=greetpause, remote_ip,
// action), counted in Stats and passed to Config.Observer.
//
// # Example
//
//	ln, err := net.Listen("tcp", ":25")
//	if err != nil { … }
//	gp, err := greetpause.New(ln, greetpause.Config{
//		Pause: func(ip netip.Addr) time.Duration {
//			if trusted.Contains(ip) {
//				return 0 // no pause for our own networks
//			}
//			return 5 * time.Second
//		},
//		Logger: logger,
//	})
//	if err != nil { … }
//	err = smtpServer.Serve(gp) // closes gp when the server is closed
package greetpause
