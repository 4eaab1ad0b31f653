// Package access reads sendmail access maps and applies them as Postern
// filters.
//
// A site moving from sendmail keeps its /etc/mail/access: Parse and Load
// read the text source that makemap compiles (the .db is never needed),
// and the lookups follow the rulesets of sendmail's cf/m4/proto.m4 as
// documented in cf/README ("access_db", "Finer control by using tags").
//
// # Format
//
// One entry per line: a key, white space, a value (the rest of the line,
// trimmed). Lines starting with '#' and blank lines are skipped; a line
// starting with white space is skipped with a warning, as makemap skips
// it. Keys are case-insensitive. If a key appears twice the first entry
// wins and a warning names both lines, as with makemap.
//
// A key may carry a tag: Connect: (the connecting client), From: (the
// envelope sender), To: (the envelope recipient), GreetPause:,
// ClientRate:, ClientConn:. Untagged keys serve Connect, From and To
// lookups alike. AuthInfo: entries (sendmail's authinfo: the
// credentials of SMTP AUTH on the delivery side) are kept as written for
// route.ParseAuthInfo. Other tags (Spam:, Srv_Features:, TLS_Clt: ...) are
// kept, with a warning, and are reachable through Map.Exact.
//
// Keys are host or domain names (example.com also matches its
// subdomains; .example.com matches only subdomains, as with
// FEATURE(`lookupdotdomain')), e-mail addresses (user@example.com,
// user+*@example.com), user names (user@), the null sender (<>), IPv4
// networks written by leading octets (192.168.1.1, 192.168.1, 192.168),
// IPv6 networks written IPv6:<address> or by leading 16-bit groups
// (IPv6:2001:db8), CIDR networks (10.0.0.0/8, IPv6:2001:db8::/32; a
// Postern extension in the form contrib/cidrexpand reads) and bracketed
// address literals ([192.0.2.1], [192.0.2], [IPv6:::1]), which match
// unresolved clients and user@[literal] addresses.
//
// Addresses are looked up in the canonical form smtpserver gives them
// (postern.Address): the local part unquoted, so To:ceo@example.com also
// refuses RCPT TO:<"ceo"@example.com> and <CEO@EXAMPLE.COM.>, while
// <"ceo(x)"@example.com> is the mailbox ceo(x), not ceo. A key may spell a
// local part quoted as SMTP does (To:"ceo(x)"@example.com, "a.b."@); it
// is taken unquoted. A key cannot hold white space, as in sendmail.
//
// Values are OK, RELAY, REJECT, DISCARD, SKIP, ERROR:550 text,
// ERROR:5.7.1:550 text (the text may be quoted), QUARANTINE:reason, the
// deprecated "550 text", and for GreetPause:, ClientRate: and ClientConn:
// a number. GreetPause: is in milliseconds, as in sendmail
// ("GreetPause:example.com 5000" is five seconds); ClientRate: counts
// connections per rate window (sendmail's ConnectionRateWindowSize, 60 s
// by default) and ClientConn: concurrent connections, 0 meaning unlimited
// for both. The tag alone with an empty key ("GreetPause: 5000") is the
// default for clients nothing else matches (cf/README's "ClientRate: 10").
//
// Errors name the file and line ("access:12: ...") and wrap ErrSyntax.
// Warnings, which never stop a load, flag entries that cannot mean what
// they say: "GreetPause:192.168.1.0 0" matches only the address
// 192.168.1.0 (the network is GreetPause:192.168.1), an IP address under
// From: or To:, an e-mail address under Connect:, a duplicate key.
//
// # Lookup order
//
// Within each search the most specific key wins and, where the tag allows
// untagged keys, the tagged key is tried before the untagged one at each
// step.
//
//   - Connect: (sendmail check_relay) and GreetPause: (greet_pause): the
//     verified host name and its parent domains, or, if the name is unknown,
//     the bracketed address; then the address and its networks. Connect:
//     also tries untagged keys; GreetPause: needs its tag and falls back to
//     its default.
//   - ClientRate:, ClientConn: (RateControl, ConnControl): the address and
//     its networks only, then the default.
//   - From: (check_mail): the address (with +detail, +* and without), then
//     user@, then the domain and its parents.
//   - To: (check_rcpt): the address, then the domain and its parents, then
//     user@.
//
// Note that sendmail checks a client's host name before its address: with
// "Connect:example.com REJECT" and "Connect:192.0.2.5 OK", a client
// 192.0.2.5 named mail.example.com is rejected.
//
// Among network keys the longest prefix wins, which for sendmail's own
// forms is its order a.b.c.d, a.b.c, a.b, a. SKIP ends the search it is
// found in (the name, the address, ...) as if nothing matched there, and
// the next search runs; in cf/README it neither accepts nor rejects but
// leaves the default action. SKIP is also allowed under GreetPause:,
// ClientRate: and ClientConn:, where it leads to the default.
//
// # Filters
//
// NewFilter applies the map at three stages:
//
//	entry        Connect:                   From:                    To:
//	OK           accept, skip later checks  accept                   continue
//	RELAY        as OK + Conn.Trusted       as OK (no relaying)      continue (relaying: RelayControl)
//	REJECT       554 5.7.1                  550 5.7.1                550 5.7.1
//	DISCARD      every message discarded    Txn.Discard, accept      Txn.Discard (whole message), accept: 250
//	QUARANTINE   every message held         Txn.Quarantine, accept   Txn.Quarantine, continue
//	ERROR:       its reply (4xx: tempfail)  its reply                its reply
//	SKIP, none   continue                   continue                 continue
//
// Verdict reasons name the deciding line, e.g.
// "access: To:nix.co.jj RELAY (access:2)".
//
// NewRelayControl is the anti-relay check that goes first in the RCPT
// stage: it lets authenticated and trusted clients relay, and everybody
// else send only to local domains or To: RELAY domains, refusing the
// percent hack, bang paths, quoted '@' and foreign address literals.
//
// Two places where RelayControl is stricter than sendmail, on purpose:
//
//   - A To: RELAY entry for example.com relays example.com only, as
//     sendmail does with FEATURE(`relay_hosts_only'). Subdomains are
//     relayed when they have an entry of their own or a dotted key covers
//     them ("To:.example.com RELAY"); RelayConfig.RelaySubdomains restores
//     sendmail's default. A subdomain nobody routes would be accepted and
//     then bounced, usually to a forged sender.
//   - Names of this host (localhost, *.localhost, localhost.localdomain)
//     and loopback or unspecified address literals are never relay
//     destinations because of a map entry: sendmail delivers them locally
//     (class {w}), a relay would only hand them back to itself. Untagged
//     "localhost RELAY" and "127.0.0.1 RELAY" keep their meaning for the
//     connecting client. List such a name in LocalDomains to accept it.
//
// NewTrust derives Conn.Trusted (trusted networks, Connect: RELAY) from
// the map in force at every stage. Put it first in the chain: trust
// granted at connect then follows a reload that withdraws it at the
// client's next command, instead of lasting as long as the connection.
//
// A Watcher reloads the file when it changes and keeps the last good map
// when the new one does not parse.
//
// # Example
//
//	w, err := access.NewWatcher("/etc/mail/access", access.WatcherConfig{Logger: log})
//	if err != nil {
//		return err
//	}
//	go w.Run(ctx)
//	trust, _ := access.NewTrust(access.TrustConfig{Map: w, TrustedNets: mynetworks})
//	acc, _ := access.NewFilter(access.FilterConfig{Map: w, Logger: log})
//	relay, _ := access.NewRelayControl(access.RelayConfig{
//		Map:          w,
//		LocalDomains: []string{"example.jp"},
//	})
//	// every stage: trust first; connect stage: acc; RCPT stage: relay,
//	// then acc.
//
//	pause, ok := w.Current().GreetPause(clientIP, "")
package access
