// Package webui is the reference relay's quarantine page: a small
// server-rendered web UI (html/template, no script at all) where users
// review the mail the relay held for them (the queue's hold area: spam
// and viruses quarantined by scan's verdicts), read its header and text,
// and release it to their mailbox or delete it. Administrators see every
// held message, the queue's status and an SVG chart of the relay's totals
// per day.
//
// # Who sees what
//
// Users log in with the relay's credentials file (the passwords of SMTP
// submission). A user sees a held message when one of its pending
// recipients is theirs (Config.Owns: the relay asks its sender-binding
// file, or compares the address with the login name), and acts on those
// recipients only: when the message is also held for others, their
// recipients are first split into a message of their own (queue.Split),
// which is then released or deleted; the others' copy stays held. A
// message that is not the user's answers 404, as if it did not exist.
// Admins (Config.Admins) act on whole messages.
//
// A message is shown as text: its header fields, unfolded and decoded
// (RFC 5322 §2.2, RFC 2047), and its text as enmime extracts it, an
// HTML-only message converted to text. Its HTML is never sent to the
// browser as HTML, attachments are listed but not served, and at most
// Config.MaxView bytes are parsed, after scan's walker vetted the MIME
// structure (depth, parts, sizes, time).
//
// # Security
//
//   - Sessions live in memory; the cookie is __Host- prefixed, Secure,
//     HttpOnly and SameSite=Lax, and holds 256 random bits, replaced at
//     every login. Sessions end after SessionIdle unused or SessionMax in
//     all, and at once when the user's credentials change or the user is
//     removed (Config.Credential, asked at every request).
//   - Every state-changing request (release, delete, logout) carries the
//     session's CSRF token in the form; the login form has its own
//     double-submit token. Cross-origin POSTs are refused up front
//     (net/http's CrossOriginProtection: Sec-Fetch-Site and Origin).
//   - Failed logins are counted per client network (one IPv4 address,
//     one IPv6 /64) and per account by a ratelimit.AuthLimiter (the relay
//     shares its SMTP AUTH one, in Redis when configured): after 5 from
//     one network or 10 for one account within 10 minutes the key is
//     refused for 10 minutes (429 with Retry-After), known and unknown
//     accounts alike.
//   - After login the user goes to the list, or to a page of this site
//     named by path only: no open redirect.
//   - Templates escape everything; every response carries a
//     Content-Security-Policy without any script source, X-Frame-Options
//     DENY, nosniff, and Cache-Control no-store; over TLS also
//     Strict-Transport-Security (a year, this host only).
//   - Every action is logged with the keys user, queue_id, action and
//     remote_ip (login, login-failed, login-blocked, session-revoked,
//     view, release, delete, csrf-refused, not-found, logout).
//
// Serve the page over HTTPS only: its cookies are Secure, so a browser
// never sends them over plain HTTP.
//
// # Digests
//
// Server.Digests composes the daily "your quarantine" notice per
// recipient address: the messages held for it, each with a link to the
// page. The caller queues them.
//
// # Example
//
//	ui, err := webui.New(webui.Config{
//		Queue: q, // *queue.Queue
//		Authenticate: func(ctx context.Context, user, password string) error {
//			return creds.CheckPassword(ctx, nil, user, password)
//		},
//		Credential: creds.Version, // logs out removed users at once
//		Owns:       senders.Allowed, // auth.SenderMap
//		Admins:     []string{"postmaster"},
//		Limiter:    authLimiter,
//		Logger:     log,
//	})
//	if err != nil {
//		return err
//	}
//	srv := &http.Server{Addr: ":8443", Handler: ui, TLSConfig: tlsConfig}
//	go srv.ListenAndServeTLS("", "")
package webui
