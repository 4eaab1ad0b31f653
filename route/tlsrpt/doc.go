// Package tlsrpt is SMTP TLS Reporting (RFC 8460) for a sending MTA: it
// records the outcome of each delivery session under the recipient
// domain's transport-security policy (MTA-STS, DANE or none) and mails
// each domain that asks for them a daily aggregate report.
//
// # Recording
//
// Reporter.Record appends one Result (policy domain, policy type and
// text, MX host, addresses, and the RFC 8460 result type of a failure)
// to a journal of the UTC day under Config.Dir: one JSON line each, so
// the counts survive a restart. route.Transport calls it for every SMTP
// session to an MX host, through route's TLSReporter interface.
//
// # Reports
//
// Reporter.Send builds, for one UTC day, one report per policy domain
// (RFC 8460 §4: organization-name, date-range, contact-info, report-id,
// and per policy its type, text, MX patterns, total successful and
// failed session counts and the failure details grouped by result type
// and hosts), looks up the domain's "_smtp._tls" TXT record (v=TLSRPTv1,
// rua=), and hands a message to Config.Submit for each mailto: address:
// multipart/report; report-type="tlsrpt" with the JSON gzipped as an
// application/tlsrpt+gzip part, and the TLS-Report-Domain and
// TLS-Report-Submitter fields (§5.3). The envelope sender and From are
// the configured reporter address, not the null sender: a report is
// ordinary mail from the reporting organisation, and its failures should
// reach someone. https: addresses are not posted to (logged and
// skipped). A domain without the TXT record gets no report; its results
// are dropped with the day. A message built here is queued like any
// mail; the queue must deliver it despite TLS failures and leave its own
// sessions out of the next report (§3): route does so for envelopes
// marked queue.Envelope.TLSReport.
//
// Run sends the reports of each past day shortly after midnight UTC, and
// at start those of days a stopped reporter missed.
package tlsrpt
