package main

import (
	"fmt"
	"strings"

	"github.com/postern/postern"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/route"
)

// Backscatter is mail to a forged sender: accepted, found undeliverable,
// and bounced to whoever the spammer named. The relay avoids it in two
// ways: recipients are verified at RCPT, so unknown users are refused
// while the client is still there (recipientWarnings names the domains
// where nothing verifies them), and the failure notices of mail whose
// sender nothing vouched for go to the postmaster (senderVerified).

// senderVerified reports whether anything vouches for the reverse path,
// so that a failure notice may go to it: the client is trusted or logged
// in, or SPF passed for the MAIL FROM domain, or a valid DKIM signature
// of that domain (or of a parent or subdomain: relaxed alignment, RFC
// 7489 §3.1.1, without the public-suffix list) came with the message.
// With auth.check off nothing is checked, so only trusted and
// authenticated senders count as verified.
func senderVerified(c *postern.Conn, t *postern.Txn) bool {
	if t.From == "" || c.Trusted || c.Authenticated() {
		return true
	}
	domain := strings.ToLower(postern.AddrDomain(t.From))
	if domain == "" {
		return false
	}
	if r, ok := postern.GetValue(&t.Values, auth.SPFResultKey); ok && r.Status == auth.Pass &&
		r.Identity == auth.IdentityMailFrom && strings.EqualFold(r.Domain, domain) {
		return true
	}
	if sigs, ok := postern.GetValue(&t.Values, auth.DKIMResultsKey); ok {
		for _, s := range sigs {
			if s.Status == auth.Pass && relaxedAligned(strings.ToLower(s.Domain), domain) {
				return true
			}
		}
	}
	return false
}

// relaxedAligned reports whether two domains are the same or one is a
// subdomain of the other.
func relaxedAligned(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	return a != "" && b != "" && (a == b || strings.HasSuffix(a, "."+b) || strings.HasSuffix(b, "."+a))
}

// recipientWarnings names each local or relay domain whose unknown users
// would be accepted and then bounced: routed to another host (SMTP or
// LMTP) with neither a recipients file that covers it nor call-ahead, as
// Postfix warns about an empty relay_recipient_maps. Mail delivered to
// Maildir here needs no list: the Maildir knows its mailboxes.
func recipientWarnings(s *Config, d *delivery) []string {
	var out []string
	for _, domain := range s.domains {
		rt, err := d.router.Route("postmaster@" + domain)
		if err != nil {
			continue
		}
		switch rt.Hop.Kind {
		case route.KindLocal, route.KindError:
			continue
		}
		if s.Policy.CallAhead || d.rcptWatch != nil && d.rcptWatch.Current().Covers(domain) {
			continue
		}
		out = append(out, fmt.Sprintf("%s has no recipient verification: it goes to %s, and mail for its unknown users "+
			"would be accepted, then bounced to senders who are often forged (backscatter); list its users in "+
			"policy.recipients or set policy.callahead", domain, rt.Dest))
	}
	return out
}
