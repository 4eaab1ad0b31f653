package webui

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/jhillyerd/enmime/v2"

	"github.com/postern/postern/queue"
)

// DefaultDigestItems bounds the messages one digest lists.
const DefaultDigestItems = 200

// DigestConfig configures Digests.
type DigestConfig struct {
	// From is the digest's From address (postmaster@example.org, say).
	// Required.
	From string
	// URL is the page's public base URL (https://relay.example.org:8443);
	// each message is linked as URL/msg/ID. Required, https.
	URL string
	// Since lists only messages held at or after it (the time of the
	// previous digest); zero lists every held message.
	Since time.Time
	// MaxItems bounds the messages one digest lists, newest first;
	// default DefaultDigestItems.
	MaxItems int
}

// Digest is one digest e-mail: the held messages of one recipient
// address.
type Digest struct {
	// To is the recipient address the messages were held for; the
	// digest goes there.
	To string
	// Items are the messages listed, newest first; Omitted counts those
	// past MaxItems.
	Items   []DigestItem
	Omitted int
	// Message is the digest, an RFC 5322 message (text/plain, UTF-8)
	// ready to be queued, best from the null sender so it never bounces
	// back.
	Message []byte
}

// DigestItem is one held message in a digest.
type DigestItem struct {
	ID       string
	Received time.Time
	From     string
	Subject  string
	Reason   string
	// Link opens the message on the page (after login).
	Link string
}

// Digests composes one digest per recipient address with held mail
// pending for it (held at or after dc.Since): the daily "your
// quarantine" notice. A message is listed once per address, however
// often its envelope names it. Sending them is the caller's business.
func (s *Server) Digests(ctx context.Context, dc DigestConfig) ([]Digest, error) {
	from, err := mail.ParseAddress(dc.From)
	if err != nil {
		return nil, fmt.Errorf("%w: From %q: %w", ErrDigest, dc.From, err)
	}
	base, err := url.Parse(dc.URL)
	if err != nil || base.Scheme != "https" || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("%w: URL %q is not an https base URL", ErrDigest, dc.URL)
	}
	if dc.MaxItems < 0 {
		return nil, fmt.Errorf("%w: negative MaxItems", ErrDigest)
	}
	if dc.MaxItems == 0 {
		dc.MaxItems = DefaultDigestItems
	}
	link := strings.TrimSuffix(base.String(), "/") + "/msg/"
	byRcpt := map[string]*Digest{}
	held := s.cfg.Queue.List(queue.ListFilter{Held: "only"})
	for i := len(held) - 1; i >= 0; i-- { // newest first
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info := &held[i]
		if !dc.Since.IsZero() && info.State.HeldAt.Before(dc.Since) {
			continue
		}
		var sum *summary
		for k, r := range info.Envelope.Recipients {
			if k >= len(info.State.Rcpts) || info.State.Rcpts[k].Status != queue.Pending {
				continue
			}
			key := strings.ToLower(r.Addr)
			d := byRcpt[key]
			if d == nil {
				d = &Digest{To: r.Addr}
				byRcpt[key] = d
			}
			if n := len(d.Items); n > 0 && d.Items[n-1].ID == info.ID {
				continue // the address twice in one envelope
			}
			if len(d.Items) == dc.MaxItems {
				d.Omitted++
				continue
			}
			if sum == nil {
				v := s.summary(info.ID)
				sum = &v
			}
			d.Items = append(d.Items, DigestItem{ID: info.ID, Received: info.Envelope.Received, From: sum.From,
				Subject: sum.Subject, Reason: info.State.Hold, Link: link + info.ID})
		}
	}
	out := make([]Digest, 0, len(byRcpt))
	for _, d := range byRcpt {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].To < out[j].To })
	for i := range out {
		if out[i].Message, err = s.composeDigest(from, base.Host, &out[i], dc); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// composeDigest writes one digest message with enmime's builder. It is
// marked Auto-Submitted (RFC 3834 §5) so that vacation responders stay
// quiet.
func (s *Server) composeDigest(from *mail.Address, host string, d *Digest, dc DigestConfig) ([]byte, error) {
	loc := s.cfg.Location
	var b strings.Builder
	n := len(d.Items) + d.Omitted
	fmt.Fprintf(&b, "%d message(s) addressed to %s are held by the mail relay", n, d.To)
	if !dc.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", dc.Since.In(loc).Format("2006-01-02 15:04 MST"))
	}
	b.WriteString(".\n\nThey looked like spam or carried a virus, and will not be delivered\n" +
		"unless you release them. Open a message to read it and release or\n" +
		"delete it; log in with your mail account's user name and password.\n")
	for _, it := range d.Items {
		fmt.Fprintf(&b, "\n%s\n  From:    %s\n  Subject: %s\n  Held:    %s\n  %s\n",
			it.Received.In(loc).Format("2006-01-02 15:04 MST"), orNone(it.From), orNone(it.Subject), it.Reason, it.Link)
	}
	if d.Omitted > 0 {
		fmt.Fprintf(&b, "\n... and %d older message(s); see the page for all of them.\n", d.Omitted)
	}
	tok, err := token(s.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("webui: digest: %w", err)
	}
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	if domain == "" || !strings.Contains(from.Address, "@") {
		domain = host
	}
	part, err := enmime.Builder().
		From(from.Name, from.Address).
		To("", d.To).
		Subject(fmt.Sprintf("Held mail: %d message(s) for %s", n, d.To)).
		Date(s.cfg.Clock()).
		Header("Message-ID", "<digest."+tok+"@"+domain+">").
		Header("Auto-Submitted", "auto-generated").
		Text([]byte(b.String())).
		Build()
	if err != nil {
		return nil, fmt.Errorf("webui: digest for %s: %w", d.To, err)
	}
	var buf bytes.Buffer
	if err := part.Encode(&buf); err != nil {
		return nil, fmt.Errorf("webui: digest for %s: %w", d.To, err)
	}
	return buf.Bytes(), nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
