// Package dnsbl asks DNS block and allow lists (DNSBL, DNSWL, RHSBL) about
// client addresses and domain names, and applies the answers as a Postern
// filter.
//
// # Lists
//
// A list is a DNS zone (RFC 5782). An address is looked up as its
// reversed octets under the zone: 192.0.2.99 in zen.spamhaus.org is
// 99.2.0.192.zen.spamhaus.org (§2.1); an IPv6 address as its 32 nibbles
// reversed (§2.4). A domain list (RHSBL) is asked for
// <domain>.<zone> (§3). An A record in 127.0.0.0/8 means "listed", its
// value being a return code (§2.3); NXDOMAIN means "not listed".
//
// Every zone asked in a check is asked at the same time, so a check takes
// as long as the slowest zone, not the sum. Each listing adds the zone's
// weight to a score; the subject is listed when the score reaches the
// threshold (1 by default). A zone can weigh its return codes apart
// (Zone.Codes) with ranges, sets and bit masks, and an allow list
// (list.dnswl.org) has a negative weight, which can bring the score back
// under the threshold.
//
// # What is never a listing
//
// Only answers in 127.0.0.0/8 count. Any other address, which is what a
// zone whose domain has lapsed and now resolves to a parking page answers
// for every query, makes the lookup fail with ErrBadAnswer: a broken list
// must not list everyone. So do Spamhaus's 127.255.255.0/24 codes (.252
// typing error in the zone name, .254 query through a public resolver,
// .255 excessive queries) and codes the zone's ErrorMatch names. Records
// of other types do not answer the question and are left out. A timeout,
// SERVFAIL or REFUSED, or a garbled response, fails with ErrLookup once
// the resolver's attempts are spent (Config.Resolver, a
// route/resolver.Resolver: each server in turn, a truncated UDP answer
// asked again over TCP).
//
// A failed zone counts as not listing the subject and appears in
// Result.Errors. Its OnError, a postern.ErrorPolicy, decides the rest. The
// default, postern.OnErrorAccept, ignores it: a list that is down lets mail
// through, as sendmail's dnsbl FEATURE and Postfix's postscreen do.
// postern.OnErrorTempFail sets Result.Failed when the zone's answer could
// have changed the outcome, and the filter then answers 4xx so the client
// retries later (the dnsbl FEATURE's "t" argument); postern.OnErrorReject
// answers 5xx instead. When several failed zones could have changed the outcome, the
// stricter policy wins (Result.OnError).
//
// # Cache
//
// The resolver keeps answers: for their TTL, between its MinTTL and
// MaxTTL (1 minute and 1 hour by default, as Postfix's postscreen; a TTL
// with the top bit set counts as 0, RFC 2181 §8); "not listed" for the
// SOA minimum of the negative answer (RFC 2308 §5), at most its
// NegativeMaxTTL (10 minutes), and not at all without an SOA. Failures
// are not kept. Concurrent checks of the same subject share one query. A
// check whose answers are all cached asks nothing and starts no
// goroutine. Sharing the resolver with SPF, DKIM and routing shares the
// cache.
//
// # Health checks
//
// RunHealthChecks (or CheckHealth, once) asks every zone for the test
// points of RFC 5782 §5: an IP list must list 127.0.0.2 and must not
// list 127.0.0.1; a domain list must list "test" and must not list
// "invalid". A zone that fails is marked broken and logged at Warn: it is
// not asked until it passes again, and its error policy applies
// (ErrZoneBroken). A zone that answers the negative test point lists
// everyone, which is how zones that were shut down have behaved.
//
// # Filter
//
// NewFilter checks the client address at connect (and, optionally, the
// HELO name and the sender's domain against the domain zones). By default
// a listed client gets, instead of the banner (RFC 5321 §3.1):
//
//	554 5.7.1 Service unavailable; Client host [192.0.2.99] blocked using zen.spamhaus.org; <TXT>
//
// and a failed lookup of a zone whose OnError is tempfail
//
//	421 4.7.1 DNSBL lookup failed, try again later
//
// (reject: 554 5.7.1 DNSBL lookup failed). With EnforceAt
// postern.StageRcpt, the connect stage only records the result
// (IPResultKey) and each RCPT is refused with 550 5.7.1 (451 4.7.1 for a
// failed lookup under tempfail, 550 5.7.1 under reject):
// the log then names sender and recipient, and a client that
// authenticates is not refused. Trusted and authenticated clients are
// never checked. A client on an allow list can be spared later filters
// with Whitelisted as a chain entry's Skip. FilterConfig.ClientResult
// hears each client check: a pass cache (ratelimit.PassCache) records
// there that a client passed or failed the lists.
//
// # Example
//
//	res, err := resolver.New(resolver.Config{Servers: []string{"127.0.0.1"}}) // a local recursive resolver
//	if err != nil {
//		return err
//	}
//	ck, err := dnsbl.New(dnsbl.Config{
//		Resolver: res,
//		Zones: []dnsbl.Zone{
//			{Name: "zen.spamhaus.org", TXT: true, Codes: []dnsbl.Code{
//				{Match: "127.0.0.2-127.0.0.9", Weight: 1},     // SBL, CSS, XBL
//				{Match: "127.0.0.10-127.0.0.11", Weight: 0.5}, // PBL: needs a second opinion
//			}},
//			{Name: "bl.spamcop.net", Match: "127.0.0.2", Weight: 0.5},
//			{Name: "list.dnswl.org", Match: "127.0.0.0/16", ErrorMatch: "127.0.0.255", Weight: -2},
//			{Name: "dbl.spamhaus.org", Kind: dnsbl.DomainZone, Match: "127.0.1.2-127.0.1.99"},
//		},
//		Logger: log,
//	})
//	if err != nil {
//		return err
//	}
//	go ck.RunHealthChecks(ctx)
//	f, _ := dnsbl.NewFilter(dnsbl.FilterConfig{Checker: ck, EnforceAt: postern.StageRcpt, CheckSender: true})
//	// connect, MAIL and RCPT chains: f.
//
//	res, err := ck.CheckIP(ctx, netip.MustParseAddr("192.0.2.99"))
//	if res.Listed { ... }
package dnsbl
