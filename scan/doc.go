// Package scan is Postern's content scanning: a bounded MIME walker
// built on enmime, an attachment policy, keyword rules, the Scanner
// interface that virus scanners and spam scorers implement (clamav,
// spamd and rspamd in the subpackages), per-recipient spam policy, and
// a DATA-stage filter that turns all of it into verdicts.
//
// # Walking a message
//
// A Walker parses a message (RFC 5322) into its MIME entities (RFC 2045,
// RFC 2046) all the way down: multiparts inside multiparts, and messages
// attached as message/rfc822 or message/global (RFC 6532), whose own
// parts are walked as children. For every entity Content.Parts has the
// declared type, charset, disposition, file name (RFC 2231 and RFC 2047
// decoded), transfer encoding, the type sniffed from the content (Sniff:
// magic numbers for executables and archives, then
// http.DetectContentType), the decoded size, a SHA-256, and for text
// parts the text converted to UTF-8 (ISO-2022-JP and Shift_JIS
// included). The decoded Subject and the URLs of text and HTML parts
// (for URI block lists) come with it.
//
// enmime has no bounds of its own, and its cost grows faster than the
// input: ten thousand tiny parts (100 KB) cost it half a second and
// 100 MB or more, three thousand levels of nesting (200 KB) several
// seconds. So before enmime
// sees a message, a linear pre-scan follows the MIME structure the way
// enmime will (boundaries, nesting, header blocks and lines) and refuses
// a tree over Limits with an error wrapping ErrLimit; errors.As finds a
// *LimitError naming the limit: depth, parts, header-size, line-length,
// boundary-length, size, decoded-size or time. A declared charset is
// believed, so enmime's costly charset detection runs only for text that
// declares none. Broken encodings (bad base64, bad quoted-printable,
// missing or mismatched boundaries) do not stop the walk: what can be
// decoded is, and Part.Errors says what was wrong.
//
// Most mail is one text entity: text/plain or text/html with a declared
// charset (UTF-8, US-ASCII, ISO 8859-1, Windows-1252), in 7bit, 8bit,
// quoted-printable or base64. The walker decodes such a message without
// building enmime's tree, several times faster, into exactly the Content
// the full walk gives; any header or body enmime would repair or remark
// on takes the full walk. The Content keeps no reference into the bytes
// walked, so WalkMessage reuses its read buffers.
//
// # Attachments and keywords
//
// AttachmentPolicy.Check reports banned extensions (DefaultBannedExtensions:
// exe, pif, scr, com, bat, vbs, cmd, cpl, js, jse, wsf, hta, lnk, msi,
// iso, …), double extensions (invoice.pdf.exe, and names that use
// Unicode bidirectional controls to read differently), a declared type
// that hides the content (an executable declared image/jpeg), programs
// under any name, and looks inside archives.
//
// Archives are known by their content, never by name, declared type or
// offset: zip (also after a prefix, as self-extracting programs are,
// and every zip of a file that holds several, with the entries only
// their local headers list), tar, gzip (with the name its header keeps)
// and bzip2, nested in each other (a .tar.gz in a zip in a tar); an
// archive sent as a text part is looked into too. Inside, member names
// are judged as attachment names, and a program is a finding under any
// name (a type mismatch under a document's). One set of ArchiveLimits
// (depth, entries, bytes decompressed) bounds every kind and is
// enforced while reading: a gzip or zip bomb, a tar of 100,000 entries
// or nesting past the depth ends in an ArchiveLimit finding in bounded
// time and memory. An archive the check cannot open (an encrypted zip
// entry, rar, 7z, xz, zstd, cab, a zip method other than store,
// deflate and bzip2, a damaged archive) is a finding of its own,
// refused by default (AttachmentConfig.UnopenableArchives). Keywords
// applies RE2 rules (linear time) to the decoded Subject and the text
// parts, the visible text of HTML ones.
//
// # Scanners
//
// A Scanner gets the raw message and an Envelope and returns a Result:
// infected and the virus names, or a spam score, threshold, verdict,
// action and symbols. An error (ErrScanner) means "no answer". The
// adapters speak the real protocols, each with connect and scan
// timeouts, a size cap (ErrTooLarge) and several servers for failover:
// scan/clamav (clamd zINSTREAM), scan/spamd (SPAMC/1.5), scan/rspamd
// (HTTP /checkv2). Their errors name the adapter and the server once
// ("clamav: 127.0.0.1:3310: server error: ..."), and so does the reason
// of the verdict a failure leads to. scan/scantest starts real daemons
// for tests.
//
// The Scanner contract (Scanner, Envelope, Result, Symbol, the errors and
// the adapters' helpers) is package scan/scanner, which needs no
// third-party module; this package's names for it are aliases. The
// adapters import scan/scanner only, so a program that scans with clamd
// does not link enmime unless it walks MIME too.
//
// # The filter
//
// Filter.CheckData walks the message, checks attachments and keywords,
// then asks the virus scanners and the spam scorer at the same time. The
// whole message gets one verdict:
//
//	limit exceeded           552 5.3.4 (sizes) or 554 5.6.0, OnLimit
//	attachment finding       552 5.7.0 Message rejected: attachment "x.exe" not allowed (...), OnAttachment
//	unopenable archive       552 5.7.0 ... not allowed (encrypted-archive: encrypted zip entry, cannot be inspected),
//	                         AttachmentConfig.UnopenableArchives, else OnAttachment
//	keyword rule             552 5.7.0, or the rule's action
//	virus                    554 5.7.0 Message rejected: virus NAME found, OnVirus
//	scanner failure          451 4.7.1 Message could not be scanned, try again later,
//	                         ScannerEntry.OnError (reject: 554 5.7.1)
//	spam for every recipient 550 5.7.1 Message rejected as spam, OnSpamReject
//
// Each of them can be a quarantine (postern.Quarantine: the relay holds
// the message), a discard, or only logged instead. A scanner that gives no
// answer is handled by its ScannerEntry.OnError, a postern.ErrorPolicy:
// by default virus scanners fail closed (tempfail) and spam scorers fail
// open (accept: the message goes on unscored); tempfail, accept and reject
// can be set for either. A spam scorer's failure counts only when no
// later scorer in the list answers; when several failures count, the
// stricter policy wins.
// Everything found goes into a Report stored under ReportKey in
// Txn.Values.
//
// A message at or over the tag score is tagged: X-Spam-Flag: YES,
// X-Spam-Score and X-Spam-Status fields (AlwaysAddStatus adds the last
// two to untagged scored mail too), and, with SubjectPrefix, a Subject
// such as "[SPAM] original" whose original part is kept byte for byte,
// encoded words and folding included (the rewrite is a DeleteHeader and
// an AddHeader). X-Spam-* fields that came with the message are removed,
// so senders cannot forge them. Without a SubjectPrefix, rspamd's
// "rewrite subject" gives the Subject rspamd wrote (Result.Subject).
//
// # rspamd's full answer
//
// rspamd's "greylist" and "soft reject" actions ask for a delay, not a
// refusal (a first contact, a rate over a limit): by default
// (SoftTempFail) the message is answered 451 4.7.1 with rspamd's
// smtp_message, made printable ASCII and at most 120 characters;
// SoftGreylist hands it to Postern's greylisting (FilterConfig.Greylist,
// ratelimit.Greylist.CheckMessage), so the retry after the minimum delay
// passes; SoftAccept only logs. Trusted and authenticated clients are
// never delayed. The header fields rspamd's milter block asks for (its
// DKIM signature, an ARC set, X-Spamd-Result, removals of its own
// fields) are applied to every copy, each checked first: a name that is
// not an RFC 5322 field name, a value with a NUL or invalid UTF-8, or
// the removal of a trace field (Received, Return-Path) is skipped and
// logged. The adapter already bounds their number and size.
//
// # Per-recipient policy
//
// A Policy (ParsePolicy, LoadPolicy; PolicyWatcher reloads the file as
// it changes) says per recipient, or per @domain, whether spam filtering
// is on, the tag and reject scores, and which senders are allowed or
// denied:
//
//	# KEY                FIELDS
//	*                    tag=6.8                 # everyone not named below
//	@example.com         reject=15               # a domain; @.example.com: its subdomains
//	alice@example.com    spam=off                # no scoring, no tagging, no spam fields
//	bob@example.com      allow=@partner.example,boss@corp.example
//	                     deny=spammer@junk.example,<>   # continuation line
//
// Lookup tries the address, the address without its +detail, @domain,
// @.parent domains and *; the most specific entry applies whole. A
// denied sender is refused at RCPT for that recipient (CheckRcpt: 550
// 5.7.1); an allowed one is neither scored nor tagged for it.
//
// FilterConfig.Lookup is a source asked per recipient first, such as a
// user directory (PolicyLookup; auth/directory reads the policy from a
// user's LDAP entry): the policy it finds wins, a recipient it does not
// know gets the file's entry, and when it cannot answer the filter
// answers 451 4.3.0 (OnLookupError, a postern.ErrorPolicy). The policy
// types (RcptPolicy, SpamMode, SenderMatch) live in scan/scanner, so such
// a source builds them without importing this package (or enmime).
//
// When the recipients of one message want different things, the message
// is scanned once and decided per recipient (Report.Rcpts). If all get
// the same copy its edits are recorded on the message as usual. If not,
// Report.Split is set, the message carries only the edits common to all,
// and the relay calls Groups: each Group lists recipients and the header
// edits of their copy (Group.Message or Group.Render give it); recipients
// whose copy is to be dropped (over their reject score) come last in a
// group with Drop set. A scan.Group is a queue.Renderer: queue.Handoff's
// Copies hook takes the groups, and one copy per group is queued (as
// examples/relay does; ExampleGroups shows the copies).
//
// # Example
//
//	av, _ := clamav.New(clamav.Config{Addrs: []string{"/run/clamav/clamd.ctl"}})
//	sa, _ := spamd.New(spamd.Config{Addrs: []string{"127.0.0.1:783"}})
//	attach, _ := scan.NewAttachmentPolicy(scan.AttachmentConfig{})
//	pol, _ := scan.NewPolicyWatcher("/etc/postern/scan-policy", scan.PolicyWatcherConfig{Logger: log})
//	go pol.Run(ctx)
//	f, err := scan.NewFilter(scan.FilterConfig{
//		Walker:        walker, // scan.NewWalker(scan.WalkerConfig{Limits: scan.Limits{MaxSize: 10 << 20}})
//		Attachments:   attach,
//		Virus:         []scan.ScannerEntry{{Scanner: av}},
//		Spam:          []scan.ScannerEntry{{Scanner: sa, SkipLarger: 512 << 10}},
//		Policy:        pol,
//		TagScore:      6.8,
//		SubjectPrefix: "[SPAM]",
//		Logger:        log,
//	})
//	// RCPT and DATA chains: f. At hand-off: queue.Handoff, Copies from scan.Groups.
package scan
