// Package milter speaks the milter protocol (sendmail's mail filter
// protocol, versions 2 to 6) both ways, on github.com/d--j/go-milter:
//
//   - Server serves any Postern policy (a postern.Filter, usually a
//     *postern.Chain) to an MTA: Postfix (smtpd_milters) or sendmail
//     (INPUT_MAIL_FILTER) runs Postern's filters inside itself, and keeps
//     its own queue.
//   - Client is a Postern filter that calls an external milter (opendkim,
//     clamav-milter, rspamd's milter proxy, ...): a Postern server, or a
//     custom MTA built from Postern's packages, uses existing milters.
//
// Addresses are written as the MTAs write them (ParseAddress):
// inet:127.0.0.1:8891, inet:8891@127.0.0.1, unix:/run/postern.sock.
//
// # Server: stages
//
// Each MTA connection is one SMTP connection of the MTA. The events map
// to the policy's stages as smtpserver runs them:
//
//	SMFIC_CONNECT   CheckConnect: Conn.Remote, Conn.Local ({daemon_addr},
//	                {daemon_port}), the client's host name as the MTA
//	                found it (see Host names), MTAKey
//	SMFIC_HELO      CheckHelo: Conn.HELO; Conn.TLS from {tls_version}
//	                and {cipher}
//	SMFIC_MAIL      CheckMail: Txn.From (canonical form), Txn.Mail from
//	                the ESMTP parameters, Txn.ID = the MTA's queue ID
//	                (macro i); Conn.AuthUser and AuthMech from
//	                {auth_authen} and {auth_type}
//	SMFIC_RCPT      CheckRcpt, per recipient: NOTIFY and ORCPT
//	header, body    spooled (memory, then an unlinked temporary file) as
//	                smtpserver spools, under MaxMessageBytes and
//	                MaxHeaderBytes (552 5.3.4 past either)
//	SMFIC_BODYEOB   CheckData on the spooled postern.Message
//
// Verdicts become milter replies: Reject and TempFail answer
// SMFIR_REPLYCODE with Postern's code, enhanced code and text (so a virus
// is refused with "554 5.7.0 ..." by the MTA itself); Discard answers
// SMFIR_DISCARD; Quarantine answers SMFIR_QUARANTINE with the reason
// (Postfix puts the mail on its hold queue, sendmail quarantines the
// queue file) at the end of the message, whatever stage decided it;
// Accept and Continue let the MTA go on. A filter's error is answered
// 451 4.3.0, as smtpserver answers it; a panic ends the MTA connection
// (the MTA then applies milter_default_action) and never the process.
//
// Header edits become modifications at the end of the message: a
// deletion paired with an addition of the same field (a "[SPAM]"
// Subject, a replaced X-Spam-Flag) is SMFIR_CHGHEADER in place; other
// deletions are SMFIR_CHGHEADER with an empty value; additions
// (Authentication-Results, X-Spam-*, DKIM-Signature) are SMFIR_INSHEADER
// at the top. Recipients removed or rewritten by filters become
// SMFIR_DELRCPT and SMFIR_ADDRCPT, a changed sender SMFIR_CHGFROM. A
// modification the MTA did not agree to at negotiation fails closed:
// 451 4.3.0.
//
// What cannot be said in the protocol: one message is one message for
// the MTA, so a DATA-stage decision is for all its recipients. A
// per-recipient spam policy (scan.Policy) can refuse a recipient at RCPT
// (a denied sender), but at the end of the message it can only treat
// every recipient alike. When recipients disagree, scan.Report.Split is
// set and the message carries only the edits common to all; the server
// answers with those (the reference relay's milter_server.listen does
// so), neither tagging for one recipient nor refusing for another.
//
// # Server: macros
//
// At negotiation the server asks for the macros it reads
// (SMFIF_SETSYMLIST): Postfix and sendmail 8.14 and later send exactly
// those. An MTA that ignores the request sends what it is configured to;
// for Postfix that is
//
//	milter_connect_macros = j {daemon_name} {daemon_addr} {daemon_port} v _ {client_ptr}
//	milter_helo_macros = {tls_version} {cipher} {cipher_bits} {cert_subject}
//	milter_mail_macros = i {auth_type} {auth_authen}
//	milter_end_of_data_macros = i
//
// (docs/milter.md). Without {auth_authen} at MAIL an
// authenticated client is not known as one, and a relay control that
// lets authenticated users relay refuses them.
//
// Host names: Postfix passes the client's verified name or "unknown",
// and its PTR name in {client_ptr}; sendmail passes the PTR name and
// says whether it verified in {client_resolve} (asked for) or with "(may
// be forged)" in macro _. Only a verified name becomes Conn.ClientName;
// Conn.ClientResolve and ClientPTR are set as smtpserver's own lookup
// sets them. Postfix does not tell a temporary DNS failure from a
// missing PTR record: both read as ResolveFail.
//
// # Server: failures
//
// The server's own failures are the MTA's to answer: a connection the
// server closes (a packet over MaxPacketBytes, an event out of order, a
// filter that panicked, too many connections) gets Postfix's
// milter_default_action (default tempfail) or sendmail's F= flag
// (F=T: tempfail, F=R: reject, none: accept). Set them to tempfail:
// mail must not pass unchecked because the filter is down. Each packet
// is read whole and checked before go-milter sees it (empty, over the
// limit, or missing fields go-milter would index blindly): memory per
// connection is bounded, and a hostile peer cannot crash the process.
//
// # Client
//
// A Client is one external milter. Each transaction opens its own
// connection at MAIL (connect and HELO are sent then, with the macros
// sendmail would send: j, {daemon_name}, {client_addr}, {client_name},
// _, {tls_version}, {auth_authen}, i, ...), sends each RCPT, and at the
// end of DATA the message as the filters before it have left it (their
// header edits applied), so milters in a chain see each other's work
// in order, as in Postfix's smtpd_milters. A connect or HELO refusal is
// answered at MAIL (as Postfix's smtpd_delay_reject does).
//
// The milter's answers: reject, tempfail and reply codes refuse with
// the milter's reply (per recipient at RCPT); discard drops the message;
// accept ends the milter's part in the transaction. Its modifications:
// added and inserted fields are added at the top of the header (where
// Postern adds every field), changed fields are replaced (a field an
// earlier filter added cannot be, and is logged), SMFIR_QUARANTINE makes
// the verdict Quarantine, recipients may be added (in canonical form,
// at most MaxAddedRecipients, without passing the RCPT stage of the
// other filters, as in Postfix) and removed (removing all discards the
// message), the sender changed. A replaced body is refused
// (ErrReplaceBody): Postern keeps the received bytes of a message
// unchanged.
//
// Failures (unreachable, past ConnectTimeout, CommandTimeout or
// ContentTimeout, a protocol error, a refused modification) are answered
// under ClientConfig.OnError, a postern.ErrorPolicy in the words of
// Postfix's milter_default_action: tempfail (the default: 451 4.7.1),
// accept (the milter is skipped for the rest of the transaction),
// reject.
package milter
