// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461) for a
// sending MTA: it finds a recipient domain's policy, keeps it, and says
// which MX hosts may receive its mail and that their certificates must
// be valid.
//
// # Discovery
//
// Client.Get asks for the "_mta-sts.<domain>" TXT record through the one
// resolver (route/resolver). A domain with exactly one record starting
// "v=STSv1" and an id (RFC 8461 §3.1) publishes a policy: unless the
// cache holds an unexpired policy of that id, it is fetched from
// https://mta-sts.<domain>/.well-known/mta-sts.txt (§3.3): the
// certificate must be valid for mta-sts.<domain> (WebPKI, Config.RootCAs
// or the system's roots), redirects are not followed, the answer must be
// 200 with media type text/plain, at most 64 KiB, within
// Config.FetchTimeout. ParsePolicy reads it (§3.2): version STSv1, mode
// enforce, testing or none, one or more mx patterns, max_age at most a
// year.
//
// # Cache
//
// Policies are kept in memory and, with Config.CacheDir, on disk (one
// file per domain, written atomically), so a restart keeps them. A
// cached policy is used until its max_age runs out, as long as the TXT
// record names its id; a new id fetches the new policy. When the TXT
// lookup or the fetch fails, or the record vanishes, an unexpired cached
// policy stays in force (§5.1): an attacker who blocks DNS or HTTPS
// cannot turn a known policy off. Without a usable policy, and without a
// cached one, the domain has none: mail goes as without MTA-STS, and
// Result.Failure names the RFC 8460 result type to report
// (sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid).
//
// # Applying a policy
//
// Policy.MatchMX says whether an MX host may be used (§4.1: a pattern
// "*.example.com" stands for one left-most label). Under mode enforce,
// mail goes only to matching hosts, over TLS with a certificate valid
// for the MX host name (§4.2); under testing, it goes as it would
// without the policy and failures are only reported (RFC 8460); none
// switches the policy off. route applies this; DANE, where the MX host
// has usable TLSA records, comes first (§2).
package mtasts
