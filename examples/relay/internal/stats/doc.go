// Package stats keeps the reference relay's statistics records and
// summarises them: the daily report for the postmaster (pflogsumm's
// questions: how much came in, went out, was refused and why, which
// viruses, how much spam, from whom) and the per-day totals behind the
// quarantine page's chart.
//
// # The journal
//
// The relay records one Event for each thing worth counting: a message
// received, a command rejected (with the filter, reason and SMTP code),
// a message quarantined or discarded, a virus found, a spam or ham
// score, and each recipient's delivery result from the queue. A Journal
// appends them as JSON, one object per line, to one file per UTC day:
//
//	/var/spool/postern/stats/2026-03-10.jsonl
//	{"time":"2026-03-10T06:00:01.5Z","kind":"received","queue_id":"4XyZ1","client_ip":"192.0.2.10","sender":"alice@example.com","size":2048}
//	{"time":"2026-03-10T06:00:02Z","kind":"rejected","client_ip":"198.51.100.7","stage":"connect","filter":"dnsbl","reason":"dnsbl: client 198.51.100.7 listed (score 1 >= 1): zen.spamhaus.org=127.0.0.2","code":554}
//
// The files are plain text for grep and jq. Record never blocks the SMTP
// session: it queues the event for one writer goroutine, which writes in
// batches at least once a second and drops (and counts) events when it
// cannot keep up. Nothing is synced: statistics are not mail, and a crash
// loses at most the last second; a line torn by it is skipped when read.
// Day files older than JournalConfig.Retain (35 days) are removed.
//
// # Summaries
//
// Summarize reads the day files that overlap a period, one line at a
// time, and counts: totals, rejections by RejectKey (the filter, the
// code and a short class of the reason, see ReasonClass), viruses by
// name, the spam ratio, top senders and client addresses of received
// mail, and the totals of each UTC day (Summary.Days). Bad lines are
// counted, not fatal; the maps behind the ranked lists are bounded, so a
// day of millions of lines from as many senders stays within memory.
//
// WriteText renders a summary as a plain-text report, and Message wraps
// it in an RFC 5322 message (MIME text/plain, RFC 2045) for the daily
// mail to the postmaster.
//
// # Example
//
//	j, err := stats.Open(stats.JournalConfig{Dir: "/var/spool/postern/stats", Logger: log})
//	if err != nil {
//		return err
//	}
//	defer j.Close()
//	j.Record(stats.Event{Kind: stats.Received, QueueID: id, ClientIP: ip, Sender: from, Size: size})
//
//	now := time.Now()
//	s, err := stats.Summarize(ctx, "/var/spool/postern/stats", now.Add(-24*time.Hour), now, stats.SummaryOptions{})
//	if err != nil {
//		return err
//	}
//	s.WriteText(os.Stdout)
//	msg, err := s.Message("postern@mx.example.org", "postmaster@example.org", "mx.example.org", now)
package stats
