// Command bench measures Postern side by side with its references on one
// machine, in one run, and writes the report: REPORT.md, results.json and
// chart.svg in the bench directory (issue 8, the benchmark half; the fault
// suite is reliability/).
//
//	go run ./bench             the full run (under 10 minutes on 2 cores)
//	go run ./bench -quick      a short run while developing
//	go run ./bench -breakdown  also the ingest chain piece by piece
//	go run ./bench -render bench/results.json   only redraw the report
//
// It installs its peers from Debian packages when they are missing and it
// runs as root (postfix, for smtp-source, smtp-sink and the Postfix relay
// it compares with), builds examples/relay, and starts everything on
// loopback: a DNS server answering the relay's DNSBL, SPF, DKIM and DMARC
// lookups (route/resolver/dnstest, in this process), smtp-sink as the common
// downstream, a bare go-smtp server (the protocol ceiling), the relay and
// a private Postfix instance (its own config and queue directories under a
// temporary directory, stopped at the end).
//
// The benchmarks, each repeated (-reps, default 5) and reported as the
// median with min–max and the interquartile range, each beside a
// reference measured in the same run:
//
//  1. ingest: smtp-source (1 and 32 sessions, one and many messages per
//     session) against bare go-smtp, the relay with a realistic chain, and
//     Postfix; messages per second and CPU time per message;
//  2. durability: queue.Enqueue against one fsync per message;
//  3. greet pause: memory and goroutines per paused connection against a
//     goroutine blocked in Read, and the latency of an exempt client;
//  4. content: scan's MIME walk and attachment policy against bare enmime;
//  5. delivery: queue and route.Transport to smtp-sink against smtp-source;
//  6. latency: a probe client's transaction during the ingest load.
//
// Every ratio is taken repetition by repetition (both sides measured back
// to back), so a shared machine's noise falls on both. Targets (issue 8):
// Postern/Postfix ingest above 2, Postern/bare go-smtp above 0.5.
//
// The run needs root for the private Postfix instance (its daemons run as
// user postfix) and a file descriptor limit above the greet pause crowd
// (-crowd, default 10,000; it raises its soft limit to the hard one).
package main
