package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/postern/postern"
)

// DefaultSPFTimeout bounds one SPF check. RFC 7208 §4.6.4 asks for a limit
// of at least 20 seconds over the whole evaluation.
const DefaultSPFTimeout = 20 * time.Second

// SPF identities (RFC 7208 §2.3, §2.4).
const (
	IdentityMailFrom = "mailfrom"
	IdentityHELO     = "helo"
)

// SPFEvaluator runs check_host() (RFC 7208 §4): is ip allowed to send mail
// from sender's domain? sender is a full address, helo the HELO/EHLO name.
// The Status is the result; the error, when not nil, says why (a DNS error,
// a bad record) and is for logs only.
//
// NewSPFEvaluator returns the implementation on blitiri.com.ar/go/spf; a
// custom MTA may put its own behind SPFConfig.Evaluator.
type SPFEvaluator interface {
	CheckHost(ctx context.Context, ip netip.Addr, helo, sender string) (Status, error)
}

// NewSPFEvaluator returns an SPFEvaluator on blitiri.com.ar/go/spf that
// resolves through r (nil: net.DefaultResolver), with the RFC 7208 §4.6.4
// limits of 10 DNS-querying terms and 2 void lookups.
func NewSPFEvaluator(r Resolver) SPFEvaluator {
	return blitiriSPF{orDefaultResolver(r)}
}

type blitiriSPF struct{ r Resolver }

func (b blitiriSPF) CheckHost(ctx context.Context, ip netip.Addr, helo, sender string) (Status, error) {
	res, err := spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, sender,
		spf.WithContext(ctx), spf.WithResolver(b.r))
	st := Status(res)
	if !validStatus(st) {
		return PermError, fmt.Errorf("unexpected SPF result %q: %v", res, err)
	}
	return st, err
}

// SPFConfig configures an SPFChecker. The zero value checks through
// net.DefaultResolver with a 20 s limit.
type SPFConfig struct {
	// Resolver answers the DNS queries; nil means net.DefaultResolver.
	// Ignored when Evaluator is set.
	Resolver Resolver
	// Evaluator runs check_host(); nil means NewSPFEvaluator(Resolver).
	Evaluator SPFEvaluator
	// Timeout bounds one check; 0 means DefaultSPFTimeout. A check that runs
	// out of time is a temperror.
	Timeout time.Duration
	// Logger receives one Debug line per check; nil discards.
	Logger *slog.Logger
}

// SPFChecker checks the MAIL FROM identity of a client, or its HELO
// identity when MAIL FROM is empty. It is safe for concurrent use.
type SPFChecker struct {
	eval    SPFEvaluator
	timeout time.Duration
	log     *slog.Logger
}

// NewSPFChecker validates cfg and returns a checker.
func NewSPFChecker(cfg SPFConfig) (*SPFChecker, error) {
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative SPF timeout", ErrConfig)
	}
	c := &SPFChecker{eval: cfg.Evaluator, timeout: cfg.Timeout, log: orDiscard(cfg.Logger)}
	if c.eval == nil {
		c.eval = NewSPFEvaluator(cfg.Resolver)
	}
	if c.timeout == 0 {
		c.timeout = DefaultSPFTimeout
	}
	return c, nil
}

// SPFResult is the outcome of one SPF check. It is a value: safe to copy
// and to share.
type SPFResult struct {
	Status Status
	// Identity is IdentityMailFrom or IdentityHELO.
	Identity string
	// Domain is the domain whose policy was asked: the MAIL FROM domain, or
	// the HELO name for the HELO identity. DMARC aligns it with the From
	// domain.
	Domain string
	// Sender is the <sender> given to check_host(): the MAIL FROM address,
	// with "postmaster" as local part when it had none (RFC 7208 §4.3) or
	// postmaster@HELO for the HELO identity (§2.4).
	Sender string
	// MailFrom is the reverse path as received, "" for <>.
	MailFrom string
	HELO     string
	ClientIP netip.Addr
	// Problem says why a check gave temperror or permerror, or why a
	// domain was not checked (result none); "" otherwise.
	Problem string
}

// Check evaluates SPF for a client at ip that said HELO helo and MAIL
// FROM:<mailFrom> ("" for the null reverse path). It never fails: DNS
// trouble is a TempError, a broken policy a PermError (RFC 7208 §2.6).
func (c *SPFChecker) Check(ctx context.Context, ip netip.Addr, helo, mailFrom string) SPFResult {
	res := SPFResult{MailFrom: mailFrom, HELO: helo, ClientIP: ip.Unmap()}
	// RFC 7208 §2.4: with a null reverse path (or one without a domain) the
	// HELO identity is checked, with postmaster@HELO as <sender>.
	local, domain, ok := splitAddr(mailFrom)
	if ok {
		res.Identity = IdentityMailFrom
		if local == "" || strings.Contains(local, "@") {
			// §4.3: no local part means "postmaster". A quoted local part
			// holding '@' would make the library split the address at the
			// wrong '@'; postmaster keeps the domain right.
			local = "postmaster"
		}
	} else {
		res.Identity = IdentityHELO
		local, domain = "postmaster", helo
	}
	res.Domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	res.Sender = local + "@" + domain
	if !ip.IsValid() {
		res.Status, res.Problem = None, "no client IP address"
		return res
	}
	// RFC 7208 §4.3: a malformed domain or one that is not multi-label is
	// "none" without any DNS query.
	if why := spfDomainProblem(res.Domain); why != "" {
		res.Status, res.Problem = None, why
		c.logResult(ctx, res)
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := c.eval.CheckHost(ctx, res.ClientIP, helo, res.Sender)
	res.Status = st
	switch st {
	case TempError, PermError:
		res.Problem = spfProblem(ctx, err, c.timeout)
	case None:
		if err != nil && !errors.Is(err, spf.ErrNoResult) {
			res.Problem = err.Error()
		}
	}
	c.logResult(ctx, res)
	return res
}

func (c *SPFChecker) logResult(ctx context.Context, r SPFResult) {
	if !c.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "spf check",
		slog.String("remote_ip", r.ClientIP.String()),
		slog.String("identity", r.Identity),
		slog.String("domain", r.Domain),
		slog.String("result", string(r.Status)),
		slog.String("problem", r.Problem))
}

// spfProblem words the reason for an error result.
func spfProblem(ctx context.Context, err error, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("SPF evaluation not finished within %v", timeout)
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, spf.ErrLookupLimitReached):
		return "more than 10 DNS-querying terms (RFC 7208 section 4.6.4)"
	case errors.Is(err, spf.ErrVoidLookupLimitReached):
		return "more than 2 void DNS lookups (RFC 7208 section 4.6.4)"
	case errors.Is(err, spf.ErrMultipleRecords):
		return "more than one SPF record"
	}
	return err.Error()
}

// splitAddr splits an address at its last '@'. ok is false when there is
// no domain part.
func splitAddr(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return addr, "", false
	}
	return addr[:i], addr[i+1:], true
}

// spfDomainProblem checks the domain rules of RFC 7208 §4.3: a
// fully-qualified, multi-label DNS name with labels of 1 to 63 octets. It
// returns "" for a usable domain.
func spfDomainProblem(d string) string {
	switch {
	case d == "":
		return "no domain to check"
	case strings.HasPrefix(d, "["):
		return "address literal " + d + " is not a domain"
	case len(d) > 253:
		return "domain name longer than 253 octets"
	case !strings.Contains(d, "."):
		return "domain " + d + " is not fully qualified"
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" {
			return "domain " + d + " has an empty label"
		}
		if len(l) > 63 {
			return "domain has a label longer than 63 octets"
		}
	}
	return ""
}

// ReceivedSPF returns the value of a Received-SPF field (RFC 7208 §9.1) for
// r, as written by receiver (our host name): the result, a comment that
// says it in words, and the key-value pairs client-ip, envelope-from, helo,
// receiver, identity and, for errors, problem. The value is folded between
// pairs.
func (r SPFResult) ReceivedSPF(receiver string) string {
	var b strings.Builder
	b.WriteString(string(r.Status))
	b.WriteString(" (")
	b.WriteString(commentText(receiver + ": " + r.explain()))
	b.WriteString(")")
	pairs := [][2]string{{"client-ip", r.ClientIP.String()}}
	if r.MailFrom != "" {
		pairs = append(pairs, [2]string{"envelope-from", r.MailFrom})
	} else {
		pairs = append(pairs, [2]string{"envelope-from", ""})
	}
	if r.HELO != "" {
		pairs = append(pairs, [2]string{"helo", r.HELO})
	}
	pairs = append(pairs, [2]string{"receiver", receiver}, [2]string{"identity", r.Identity})
	if r.Problem != "" && (r.Status == TempError || r.Status == PermError) {
		pairs = append(pairs, [2]string{"problem", r.Problem})
	}
	for _, p := range pairs {
		b.WriteString("\r\n\t")
		b.WriteString(p[0])
		b.WriteByte('=')
		b.WriteString(atomOrQuoted(p[1]))
		b.WriteByte(';')
	}
	return b.String()
}

// explain words the result for the Received-SPF comment.
func (r SPFResult) explain() string {
	who := "domain of " + r.Sender
	ip := r.ClientIP.String()
	switch r.Status {
	case Pass:
		return who + " designates " + ip + " as permitted sender"
	case Fail:
		return who + " does not designate " + ip + " as permitted sender"
	case SoftFail:
		return "domain of transitioning " + r.Sender + " does not designate " + ip + " as permitted sender"
	case Neutral:
		return ip + " is neither permitted nor denied by " + who
	case TempError:
		return "temporary error checking " + who
	case PermError:
		return "permanent error in the SPF policy of " + who
	}
	if r.Problem != "" && r.Domain != "" && spfDomainProblem(r.Domain) != "" {
		return r.Sender + " has no checkable domain"
	}
	return who + " does not designate permitted sender hosts"
}

// commentText makes s safe inside an RFC 5322 comment: parentheses and
// backslashes are quoted, control characters dropped.
func commentText(s string) string {
	var b strings.Builder
	escapeInto(&b, s, `()\`)
	return b.String()
}

// atomOrQuoted returns s as a dot-atom when it is one (RFC 5322 §3.2.3),
// else as a quoted-string.
func atomOrQuoted(s string) string {
	if isDotAtom(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	escapeInto(&b, s, `"\`)
	b.WriteByte('"')
	return b.String()
}

// escapeInto writes s to b with the bytes in special quoted by a
// backslash (RFC 5322 §3.2.1 quoted-pair) and control characters made
// spaces.
func escapeInto(b *strings.Builder, s, special string) {
	for _, c := range []byte(s) {
		switch {
		case strings.IndexByte(special, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range []byte(s) {
		if !isAtext(c) && c != '.' {
			return false
		}
	}
	return true
}

// isAtext reports an RFC 5322 atext octet (ASCII only).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// SPFResultKey holds the SPFResult of the transaction in Txn.Values, set by
// SPFFilter at MAIL. VerifyFilter reads it for DMARC and
// Authentication-Results.
var SPFResultKey = postern.NewKey[SPFResult]("auth.spf")

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return postern.DiscardLogger()
	}
	return l
}
