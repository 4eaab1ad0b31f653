// Package ratelimit limits how fast a client may use the relay: connection
// rate and concurrent connections, messages and recipients per window,
// AUTH failures, and the directory-harvest guard. Limits answer with
// temporary failures (4xx): a legitimate sender is only delayed, and
// nobody has to clean anything up afterwards.
//
// # Background
//
// sendmail has two access-map entries for this, which Postern's access
// package reads unchanged: "ClientRate:192.0.2.7 10" allows 10
// connections per ConnectionRateWindowSize (60 s by default) and
// "ClientConn:192.0.2.7 5" 5 connections at once, 0 meaning unlimited and
// an empty key ("ClientRate: 10") setting the default. Over the limit
// sendmail answers 421 and closes. Postfix keeps the same kind of counts
// in its anvil(8) server: per client, connections (count and rate),
// messages (smtpd_client_message_rate_limit), recipients and AUTH
// commands per anvil_rate_time_unit, answering "421 4.7.0 … too many
// connections from <ip>" and "450 4.7.1 Error: too much mail from <ip>".
// Postern uses the Postfix replies, which operators and log tools know.
//
// # The pieces
//
//   - Class, IPKey, SenderKey, UserKey build the keys that are counted.
//     A client is counted by network: its IPv4 address (/32) or IPv6 /64
//     by default, or Class{V4: 24, V6: 48}. IPv4-mapped IPv6 addresses are
//     unmapped first, so a dual-stack listener counts IPv4 clients as IPv4.
//   - Limiters are golang.org/x/time/rate token buckets per key, in
//     memory, with a bound on the number of keys: idle keys whose bucket
//     has refilled are dropped (a full bucket is a fresh one) and past
//     MaxKeys the least recently used key goes.
//   - Listener is a net.Listener wrapper for the connection rate and
//     concurrency (go-smtp greets as soon as Accept returns, so there is
//     no later place for them). Over a limit the client reads
//     "421 4.7.0 Error: too many connections from <ip>" and is closed;
//     Accept never returns an error for one connection. ClientRate and
//     ClientConn lookups plug in access.Map.ClientRate and ClientConn. A
//     refused connection takes no token: a client that keeps knocking
//     gets in at its rate (sendmail and anvil count refused attempts too).
//   - Filter limits messages (MAIL) and recipients (RCPT) per key: by
//     default authenticated users per user, others per client network.
//     Over the limit it answers 450 4.7.1. Trusted clients are exempt
//     unless LimitTrusted; a second Filter with its own Name, LimitTrusted
//     and the ByOutbound key limits the site's own senders (per
//     authenticated user and per trusted client) apart from the inbound
//     limit: what stops a worm on an inside PC or a stolen password.
//   - AuthLimiter counts login failures per client network and per
//     account (LoginKeys) and, past MaxFailures (MaxUserFailures for an
//     account), answers AUTH 454 4.7.0 for a while, even to the right
//     password, for known and unknown accounts alike. It is an API for the
//     server: RecordAuthFailure after a failure, CheckAuth (or Check, with
//     the time left for an HTTP Retry-After) before an attempt; a web
//     login page can share it.
//   - Guard is the directory-harvest guard (below).
//   - PassCache and Greylist are the front door's memory (below): who
//     passed the greet pause and the DNS lists lately, and which
//     triplets retried after being greylisted.
//   - Store is where the shared counters live: MemoryStore in the
//     process (the default of every component), or
//     ratelimit/redisstore for several relay instances.
//
// Connection limits are per relay instance, as in sendmail and Postfix:
// they protect this process and must not wait on the network. Message,
// recipient, AUTH and harvest counters go through a Store and can be
// shared.
//
// # The directory-harvest guard
//
// A harvester sends RCPT after RCPT to guessed names and keeps the ones
// the relay does not answer "550 5.1.1 User unknown". A relay that knows
// its users (recipient verification at the edge) answers exactly that,
// so it leaks its directory one RCPT at a time. The operators' answer
// (IW2006, "the cost of running mail") is to count unknown-user answers
// per source over time and, above a threshold, answer a temporary failure
// — legally not a refusal — for a while, returning to normal by itself:
// that automatic return is what keeps the cost of the countermeasure low.
//
// Guard counts, per source network (an IPv4 address or IPv6 /64 by
// default), the RCPT rejections that mean "no such user": 550, 551 or 553
// with enhanced code 5.1.1 (configurable). The Threshold-th within Window
// (10 in 10 minutes) holds the source for HoldTime (30 minutes): every
// RCPT from it is answered "451 4.7.1 Too many unknown recipients from
// <ip>, try again later", and MAIL and connect too if asked. When the hold
// expires the source is served again. Counts and holds survive
// reconnects; in Redis they are shared by every relay instance.
// Trusted and authenticated sessions are exempt.
//
// The guard learns of unknown recipients from a chain Observer
// (Guard.Observe), or from RecordUnknown when the MTA does not use
// postern.Chain. Place it in the RCPT stage before the recipient check:
// a held source then learns nothing more, not even whether a name exists.
//
// # The pass cache and greylisting
//
// PassCache is postscreen's temporary allowlist. A client (an IPv4
// address, an IPv6 /64) that waited out the greet pause in silence
// (PassGreet), was not listed at connect (PassDNSBL) and, if asked,
// passed the deep protocol tests (PassProtocol) is Known while each
// required pass is current (a day, an hour, 30 days by default, as
// postscreen_greet_ttl, postscreen_dnsbl_min_ttl and
// postscreen_pipelining_ttl). Plug Known into greetpause.Config.Known
// and a known client gets the banner at once. A failure (an early
// talker, a listed client) forgets the passes and blocks new ones for
// FailTTL. The records are keys with a lifetime in the Store, so relays
// sharing Redis share the cache.
//
// Greylist is triplet greylisting (client /24 or /64, sender,
// recipient) as postgrey does it: 451 4.7.1 on the first attempt and on
// retries before MinDelay (5 min), a pass for a retry within RetryWindow
// (48 h), the passed triplet kept PassTTL (36 days) after it was last
// seen, and a client network with AutoAllow passed triplets (5) let
// through for anything. Trusted and authenticated clients are exempt;
// GreylistConfig.Exempt and PassCache add DNSWL listings, SPF-passed
// domains and known clients. CheckMessage lets another filter (a spam
// scorer's "greylist" action) hand a message to it; Day reads a day's
// figures (greylisted, passed, never retried) from the Store.
//
// # Failures of the store
//
// If a Store cannot be asked, the filters never return an error to the
// chain: each config's OnError, a postern.ErrorPolicy, decides. By default
// they fail open (the command goes ahead, unlimited), log one line per
// 10 s at most and count the error in Stats().StoreErrors; with
// postern.OnErrorTempFail they answer 451 4.3.0 (421 at connect, 454 4.3.0
// for AUTH), with postern.OnErrorReject 550 5.3.0 (554 at connect, 554
// 5.3.0 for AUTH).
//
// # Example
//
// The relay's wiring, with an access map watcher w:
//
//	rl, err := ratelimit.NewListener(tcpListener, ratelimit.ListenerConfig{
//		ClientRate: func(ip netip.Addr) (int, bool) { return w.Current().ClientRate(ip) },
//		ClientConn: func(ip netip.Addr) (int, bool) { return w.Current().ClientConn(ip) },
//		Logger:     log,
//	})
//	// rl → greetpause → smtpserver.Listen → go-smtp
//
//	guard, err := ratelimit.NewGuard(ratelimit.GuardConfig{Store: store, Logger: log})
//	flow, err := ratelimit.NewFilter(ratelimit.FilterConfig{
//		Store:      store,
//		Messages:   ratelimit.Rate{Count: 30, Per: time.Minute},
//		Recipients: ratelimit.Rate{Count: 200, Per: time.Minute},
//		Logger:     log,
//	})
//	chain, err := postern.NewChain(postern.ChainConfig{
//		Entries: []postern.Entry{
//			{Filter: flow}, {Filter: relayControl}, {Filter: guard}, {Filter: recipientCheck},
//		},
//		Observer: guard.Observe,
//	})
package ratelimit
