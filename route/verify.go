package route

import (
	"cmp"
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern"
)

// Defaults of VerifierConfig.
const (
	DefaultPositiveTTL   = 24 * time.Hour
	DefaultNegativeTTL   = time.Hour
	DefaultVerifyCache   = 10000
	DefaultVerifyTimeout = 30 * time.Second
)

// Status is the outcome of a recipient verification.
type Status uint8

// The outcomes.
const (
	// StatusUnknown: nothing could tell (no list covers the domain and
	// no call-ahead, or a failed call-ahead under OnError accept).
	StatusUnknown Status = iota
	// StatusValid: the list has the address, or the next hop accepted it.
	StatusValid
	// StatusInvalid: the address does not exist; Reply is 550 5.1.1. A
	// failed call-ahead under OnError reject is StatusInvalid too, with
	// the failure's reply made permanent (550 5.4.x or 5.1.1).
	StatusInvalid
	// StatusTempFail: the next hop could not answer, or a mailertable
	// error entry gave a 4xx reply; Reply is 4xx.
	StatusTempFail
)

var statusNames = [...]string{"unknown", "valid", "invalid", "tempfail"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// VerifyResult is the answer of Verifier.Verify.
type VerifyResult struct {
	Status Status
	// Reply is what an SMTP server answers RCPT with: 550 5.1.1 for
	// StatusInvalid, 450 4.1.1 or 451 4.4.x for StatusTempFail; zero
	// otherwise.
	Reply postern.Reply
	// Source is "list", "directory", "maildir", "callahead" or
	// "mailertable".
	Source string
	// Remote is the next hop's own reply to RCPT, when it was asked.
	Remote postern.Reply
	// RemoteMTA names the host that answered a call-ahead.
	RemoteMTA string
	// Cached is set when the result came from the call-ahead cache.
	Cached bool
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Recipients is a list of valid recipients. For a domain it covers,
	// it decides alone.
	Recipients RecipientsSource
	// Directory is a user directory (auth/directory implements it). For
	// a domain it covers and Recipients does not, it decides alone: an
	// address it has is valid, one it has not is 550 5.1.1, and when it
	// cannot answer, DirectoryOnError applies. It keeps its own cache.
	Directory RecipientDirectory
	// DirectoryOnError is the policy for a directory that cannot answer.
	// The default, postern.OnErrorTempFail, answers 451 4.3.0 and the
	// client retries; postern.OnErrorAccept lets the recipient through
	// unverified (StatusUnknown). postern.OnErrorReject is refused by
	// NewVerifier: a directory that is down never makes a recipient
	// unknown (550), or mail would bounce for an outage.
	DirectoryOnError postern.ErrorPolicy
	// Mailboxes verifies recipients that Transport delivers "local:"
	// against its Maildir: with the transport's MaildirExistingOnly a
	// mailbox that does not exist is 550 5.1.1, else every address is
	// valid (its mailbox is made on delivery). It needs Transport, and
	// applies where Recipients does not cover the domain.
	Mailboxes bool
	// CallAhead asks the next hop (Transport's route, hosts, TLS policy
	// and timeouts) for domains the list does not cover: MAIL FROM:<>,
	// RCPT TO:<addr>, QUIT. It needs Transport.
	CallAhead bool
	Transport *Transport
	// PositiveTTL and NegativeTTL keep call-ahead answers
	// (DefaultPositiveTTL, DefaultNegativeTTL); a negative TTL turns
	// that cache off. Temporary failures are never cached.
	PositiveTTL time.Duration
	NegativeTTL time.Duration
	// CacheSize bounds the cache (DefaultVerifyCache entries).
	CacheSize int
	// OnError is the policy for a call-ahead that got no answer (no next
	// hop found or reachable, a 4xx to RCPT or to MAIL FROM:<>). The
	// default, postern.OnErrorTempFail, answers the failure's 4xx (450
	// 4.1.1 "unverified address", or 451 4.4.x) and the client retries,
	// as Postfix's unverified_recipient_tempfail_action does by default;
	// OnErrorAccept lets the recipient through unverified
	// (StatusUnknown); OnErrorReject refuses it with the same text as 550
	// (StatusInvalid). A mailertable error entry's 4xx is
	// configuration, not a failure: it is answered as written whatever
	// the policy.
	OnError postern.ErrorPolicy
	// Timeout bounds one call-ahead (DefaultVerifyTimeout).
	Timeout time.Duration
	// RecipientDelimiter, e.g. "+", makes user+ext@domain valid on the
	// list when user@domain is.
	RecipientDelimiter string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives call-ahead outcomes; nil discards.
	Logger *slog.Logger
}

// Verifier tells whether a recipient exists, from a static list or by
// asking the next hop (call-ahead, sendmail's and Postfix's
// reject_unverified_recipient). It is safe for concurrent use; concurrent
// checks of one address share one call-ahead.
type Verifier struct {
	list     RecipientsSource
	dir      RecipientDirectory
	dirError postern.ErrorPolicy // resolved
	boxes    bool
	tr       *Transport
	callAhd  bool
	posTTL   time.Duration
	negTTL   time.Duration
	onError  postern.ErrorPolicy // resolved: never OnErrorDefault
	timeout  time.Duration
	delim    string
	now      func() time.Time
	log      *slog.Logger
	cache    *lru
	flightMu sync.Mutex
	flight   map[string]*flight
}

type flight struct {
	done chan struct{}
	res  VerifyResult
}

// NewVerifier validates cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.CallAhead && cfg.Transport == nil {
		return nil, fmt.Errorf("%w: CallAhead needs a Transport", ErrConfig)
	}
	if cfg.Mailboxes && cfg.Transport == nil {
		return nil, fmt.Errorf("%w: Mailboxes needs a Transport", ErrConfig)
	}
	if cfg.Recipients == nil && cfg.Directory == nil && !cfg.CallAhead && !cfg.Mailboxes {
		return nil, fmt.Errorf("%w: Verifier needs Recipients, Directory, Mailboxes or CallAhead", ErrConfig)
	}
	if !cfg.DirectoryOnError.Valid() || cfg.DirectoryOnError == postern.OnErrorReject {
		return nil, fmt.Errorf("%w: DirectoryOnError must be tempfail or accept", ErrConfig)
	}
	if !cfg.OnError.Valid() || cfg.CacheSize < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: bad OnError, CacheSize or Timeout", ErrConfig)
	}
	v := &Verifier{
		list: cfg.Recipients, dir: cfg.Directory, dirError: cfg.DirectoryOnError.Or(postern.OnErrorTempFail), boxes: cfg.Mailboxes, tr: cfg.Transport, callAhd: cfg.CallAhead,
		posTTL: cmp.Or(cfg.PositiveTTL, DefaultPositiveTTL), negTTL: cmp.Or(cfg.NegativeTTL, DefaultNegativeTTL),
		onError: cfg.OnError.Or(postern.OnErrorTempFail), timeout: cmp.Or(cfg.Timeout, DefaultVerifyTimeout), delim: cfg.RecipientDelimiter,
		now: cfg.Now, log: cfg.Logger, flight: map[string]*flight{},
		cache: newLRU(cmp.Or(cfg.CacheSize, DefaultVerifyCache)),
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = postern.DiscardLogger()
	}
	return v, nil
}

func invalidReply(addr, why string) postern.Reply {
	return postern.NewReply(550, postern.ESC(5, 1, 1), "<"+postern.WireAddr(addr)+">: Recipient address rejected: User unknown"+why)
}

// Verify checks addr. The list decides for the domains it covers
// (postmaster is always valid, RFC 5321 §4.5.1); otherwise, with
// CallAhead, the next hop is asked and its answer cached. The error is
// non-nil only when ctx ended before an answer.
func (v *Verifier) Verify(ctx context.Context, addr string) (VerifyResult, error) {
	domain := postern.AddrDomain(addr)
	local := postern.AddrLocal(addr)
	if domain == "" || local == "" || !validAddr(addr) {
		return VerifyResult{Status: StatusInvalid, Source: "syntax",
			Reply: postern.NewReply(550, postern.ESC(5, 1, 3), "bad recipient address syntax")}, nil
	}
	if strings.EqualFold(local, "postmaster") {
		return VerifyResult{Status: StatusValid, Source: "postmaster"}, nil
	}
	if v.list != nil {
		if l := v.list.Current(); l.Covers(domain) {
			if l.Valid(addr) || v.delim != "" && l.Valid(stripExtension(addr, v.delim)) {
				return VerifyResult{Status: StatusValid, Source: "list"}, nil
			}
			return VerifyResult{Status: StatusInvalid, Source: "list", Reply: invalidReply(addr, " in local recipient table")}, nil
		}
	}
	if v.dir != nil && v.dir.Covers(domain) {
		return v.directory(ctx, addr)
	}
	if v.boxes {
		if r, ok := v.mailbox(addr); ok {
			return r, nil
		}
	}
	if !v.callAhd {
		return VerifyResult{}, nil
	}
	if err := ctx.Err(); err != nil {
		return VerifyResult{}, err
	}
	key := strings.ToLower(addr)
	if r, ok := v.cache.get(key, v.now()); ok {
		r.Cached = true
		r.Reply, r.Remote = copyReply(r.Reply), copyReply(r.Remote)
		return r, nil
	}
	v.flightMu.Lock()
	f := v.flight[key]
	leader := f == nil
	if leader {
		f = &flight{done: make(chan struct{})}
		v.flight[key] = f
	}
	v.flightMu.Unlock()
	if leader {
		// The probe runs on its own, bounded by Timeout: a client that
		// hangs up returns at once, and the answer still serves the
		// others waiting on it and the cache.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.timeout)
		go func() {
			defer cancel()
			res := v.callAhead(pctx, addr)
			switch {
			case res.Status == StatusValid && v.posTTL > 0:
				v.cache.put(key, res, v.now().Add(v.posTTL))
			case res.Status == StatusInvalid && v.negTTL > 0:
				v.cache.put(key, res, v.now().Add(v.negTTL))
			}
			f.res = res
			v.flightMu.Lock()
			delete(v.flight, key)
			v.flightMu.Unlock()
			close(f.done)
		}()
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return VerifyResult{}, ctx.Err()
	}
	r := f.res
	r.Reply, r.Remote = copyReply(r.Reply), copyReply(r.Remote)
	return v.applyPolicy(r), nil
}

// applyPolicy answers a failed call-ahead as OnError says. It runs after
// the cache, which never holds a temporary failure.
func (v *Verifier) applyPolicy(r VerifyResult) VerifyResult {
	if r.Status != StatusTempFail || r.Source != "callahead" {
		return r
	}
	switch v.onError {
	case postern.OnErrorAccept:
		r.Status, r.Reply = StatusUnknown, postern.Reply{}
	case postern.OnErrorReject:
		rej := v.onError.Verdict(postern.StageRcpt, r.Reply.Enhanced, r.Reply.Text(), "")
		r.Status, r.Reply = StatusInvalid, rej.Reply
	}
	return r
}

// RecipientDirectory is a user directory that knows the recipients of
// the domains it covers: auth/directory implements it with LDAP.
// RecipientExists reports whether addr is one of its addresses; an error
// means it could not answer (it is down, or timed out), not that the
// address is unknown.
type RecipientDirectory interface {
	Covers(domain string) bool
	RecipientExists(ctx context.Context, addr string) (bool, error)
}

// directory asks the Directory about addr; with RecipientDelimiter, an
// address with an extension it does not know is asked again without.
func (v *Verifier) directory(ctx context.Context, addr string) (VerifyResult, error) {
	ok, err := v.dir.RecipientExists(ctx, addr)
	if err == nil && !ok && v.delim != "" {
		if base := stripExtension(addr, v.delim); base != addr {
			ok, err = v.dir.RecipientExists(ctx, base)
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return VerifyResult{}, ctx.Err()
	case err != nil:
		v.log.LogAttrs(ctx, slog.LevelWarn, "recipient directory unavailable", slog.String("rcpt", addr),
			slog.String("action", v.dirError.String()), slog.String("error", err.Error()))
		if v.dirError == postern.OnErrorAccept {
			return VerifyResult{Status: StatusUnknown, Source: "directory"}, nil
		}
		return VerifyResult{Status: StatusTempFail, Source: "directory",
			Reply: postern.NewReply(451, postern.ESC(4, 3, 0), "<"+postern.WireAddr(addr)+">: Recipient address verification failed: directory unavailable, try again later")}, nil
	case ok:
		return VerifyResult{Status: StatusValid, Source: "directory"}, nil
	}
	return VerifyResult{Status: StatusInvalid, Source: "directory", Reply: invalidReply(addr, " in the directory")}, nil
}

// mailbox answers for an address the transport delivers to a Maildir;
// ok is false for other routes.
func (v *Verifier) mailbox(addr string) (VerifyResult, bool) {
	t := v.tr
	rt, err := t.router.Route(addr)
	if err != nil || rt.Hop.Kind != KindLocal || t.maildir == "" {
		return VerifyResult{}, false
	}
	dir, err := MaildirFolder(t.maildir, rt.Hop.User, addr)
	if err != nil {
		return VerifyResult{Status: StatusInvalid, Source: "maildir",
			Reply: postern.NewReply(550, postern.ESC(5, 1, 3), "bad recipient address syntax")}, true
	}
	if t.mustExist(rt.Hop.User, addr) && !mailboxExists(dir) {
		return VerifyResult{Status: StatusInvalid, Source: "maildir", Reply: noMailbox(addr)}, true
	}
	return VerifyResult{Status: StatusValid, Source: "maildir"}, true
}

func stripExtension(addr, delim string) string {
	local, domain := postern.AddrLocal(addr), postern.AddrDomain(addr)
	if i := strings.Index(local, delim); i > 0 {
		return local[:i] + "@" + domain
	}
	return addr
}

// callAhead asks the next hop whether it takes mail for addr.
func (v *Verifier) callAhead(ctx context.Context, addr string) VerifyResult {
	res := v.probe(ctx, addr)
	lvl := slog.LevelDebug
	if res.Status != StatusValid {
		lvl = slog.LevelInfo
	}
	v.log.LogAttrs(ctx, lvl, "recipient call-ahead", slog.String("rcpt", addr),
		slog.String("status", res.Status.String()), slog.String("relay", res.RemoteMTA),
		slog.String("remote", res.Remote.Error()), slog.Int("code", res.Reply.Code))
	return res
}

func tempFail(code int, esc postern.EnhancedCode, addr, why string) VerifyResult {
	return VerifyResult{Status: StatusTempFail, Source: "callahead",
		Reply: postern.NewReply(code, esc, "<"+postern.WireAddr(addr)+">: Recipient address verification failed: "+why)}
}

func (v *Verifier) probe(ctx context.Context, addr string) VerifyResult {
	t := v.tr
	rt, err := t.router.Route(addr)
	if err != nil {
		return VerifyResult{Status: StatusInvalid, Source: "syntax", Reply: postern.NewReply(550, postern.ESC(5, 1, 3), "bad recipient address syntax")}
	}
	switch rt.Hop.Kind {
	case KindError:
		r := VerifyResult{Source: "mailertable", Reply: copyReply(rt.Hop.Reply)}
		r.Status = StatusInvalid
		if r.Reply.Temporary() {
			r.Status = StatusTempFail
		}
		return r
	case KindLocal:
		return VerifyResult{Source: "mailertable"} // a Maildir folder is made on delivery
	}
	plan, err := t.router.Resolve(ctx, rt)
	if err != nil {
		f, ok := err.(*Failure)
		if ok && f.Reply.Permanent() {
			return VerifyResult{Status: StatusInvalid, Source: "callahead", Reply: copyReply(f.Reply)}
		}
		return tempFail(451, postern.ESC(4, 4, 3), addr, "cannot find the next hop: "+dnsText(err))
	}
	last := "no host to ask"
	sessions := 0
	for _, tg := range plan.Targets {
		if sessions >= t.maxSessions || ctx.Err() != nil {
			break
		}
		pol := t.tls
		s, f := t.dial(ctx, rt.Hop.Kind, tg, pol, pol)
		if f != nil {
			last = f.reply.Text()
			continue
		}
		sessions++
		res, done := v.ask(ctx, s, rt.Rcpt)
		t.closeSession(s)
		if done {
			res.Reply = v.finalReply(addr, res)
			return res
		}
		last = res.Remote.Text()
	}
	return tempFail(451, postern.ESC(4, 4, 1), addr, last)
}

// ask runs MAIL FROM:<> and RCPT TO on a session; done is false when the
// session broke and another host may answer.
func (v *Verifier) ask(ctx context.Context, s *session, rcpt string) (VerifyResult, bool) {
	res := VerifyResult{Source: "callahead", RemoteMTA: s.target.Host}
	name := s.target.String()
	if err := s.c.Mail("", nil); err != nil {
		rep, ok := serverReply(err)
		if !ok {
			s.broken = true
			res.Remote = localFailure(ctx, name, stepMAIL, err)
			return res, false
		}
		if rep.Code/100 != 2 {
			// A next hop that refuses the null sender cannot be asked.
			res.Status, res.Remote = StatusTempFail, rep
			return res, true
		}
	}
	err := s.c.Rcpt(postern.WireAddr(rcpt), nil) // as the transport will write it
	if err == nil {
		res.Status = StatusValid
		res.Remote = postern.NewReply(250, postern.EnhancedCode{}, "OK")
		return res, true
	}
	rep, ok := serverReply(err)
	if !ok {
		s.broken = true
		res.Remote = localFailure(ctx, name, stepRCPT, err)
		return res, false
	}
	res.Remote = rep
	switch rep.Code / 100 {
	case 2:
		res.Status = StatusValid
	case 5:
		res.Status = StatusInvalid
	default:
		res.Status = StatusTempFail
	}
	return res, true
}

func (v *Verifier) finalReply(addr string, r VerifyResult) postern.Reply {
	switch r.Status {
	case StatusInvalid:
		return invalidReply(addr, "")
	case StatusTempFail:
		return postern.NewReply(450, postern.ESC(4, 1, 1), "<"+addr+">: Recipient address rejected: unverified address: "+r.RemoteMTA+" said: "+r.Remote.Error())
	}
	return postern.Reply{}
}

// lru is a bounded cache with expiry.
type lru struct {
	mu  sync.Mutex
	max int
	ll  *list.List
	m   map[string]*list.Element
}

type lruEntry struct {
	key     string
	res     VerifyResult
	expires time.Time
}

func newLRU(max int) *lru {
	return &lru{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *lru) get(key string, now time.Time) (VerifyResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return VerifyResult{}, false
	}
	e := el.Value.(*lruEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, key)
		return VerifyResult{}, false
	}
	c.ll.MoveToFront(el)
	return e.res, true
}

func (c *lru) put(key string, res VerifyResult, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		el.Value = &lruEntry{key, res, expires}
		c.ll.MoveToFront(el)
		return
	}
	c.m[key] = c.ll.PushFront(&lruEntry{key, res, expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*lruEntry).key)
	}
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
