package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern"
)

// FilterName is the filter's name in chains and logs.
const FilterName = "scan"

// ReportKey holds the *Report of the DATA stage in Txn.Values.
var ReportKey = postern.NewKey[*Report]("scan.report")

// ScannerEntry is one scanner of a filter with its policy.
type ScannerEntry struct {
	Scanner Scanner
	// OnError applies when the scanner gives no answer (down, timed out,
	// a garbled reply). The default is postern.OnErrorTempFail for a
	// virus scanner (451 4.7.1: the client retries, nothing passes
	// unscanned) and postern.OnErrorAccept for a spam scorer (the
	// message goes on unscored, the failure is logged); a spam scorer's
	// policy applies only when no later scorer in Spam answers.
	// postern.OnErrorReject answers 554 5.7.1.
	OnError postern.ErrorPolicy
	// SkipLarger leaves messages larger than this many bytes unscanned by
	// this scanner (spamc's --max-size); 0 sends every message. A
	// skipped message counts as clean, not as a failure. A message over
	// the adapter's own size cap (scan.ErrTooLarge) is skipped as well by
	// a spam scorer, but is a failure for a virus scanner: keep the
	// relay's message size limit under the virus scanner's cap, or set
	// SkipLarger to let larger mail through unscanned.
	SkipLarger int64
	// Timeout bounds one call; 0 leaves it to the scanner's own timeouts.
	Timeout time.Duration
}

// FilterConfig configures a Filter. The zero value walks messages within
// the default limits and does nothing else.
type FilterConfig struct {
	// Walker parses messages; nil means one with the default Limits.
	// The walk enforces the limits on every message and feeds the
	// attachment and keyword checks and Report.Content.
	Walker *Walker
	// SkipWalk does not parse messages (only scanners run).
	SkipWalk bool
	// Attachments, if set, checks attachments.
	Attachments *AttachmentPolicy
	// Keywords, if set, applies keyword rules; each rule has its action.
	Keywords *Keywords
	// Virus scanners are all asked, at the same time as the spam scorer.
	Virus []ScannerEntry
	// Spam scorers are asked in order until one answers.
	Spam []ScannerEntry
	// Policy gives per-recipient spam settings and sender lists; nil
	// gives everyone the filter's settings.
	Policy PolicySource
	// Lookup, if set, is asked for each recipient's policy first (a user
	// directory: auth/directory): the policy it finds wins, and a
	// recipient it does not know gets Policy's entry. It is asked at RCPT
	// (deny lists) and at DATA; it should cache its answers.
	Lookup PolicyLookup
	// OnLookupError applies when Lookup cannot answer. The default,
	// postern.OnErrorTempFail, answers 451 4.3.0 (at RCPT and at DATA):
	// the client retries, and nobody's spam setting is guessed.
	// OnErrorAccept goes on with Policy's entry, logged; OnErrorReject
	// answers 550 5.3.0 at RCPT and 554 5.3.0 at DATA.
	OnLookupError postern.ErrorPolicy

	// OnVirus: ActDefault means ActReject (554 5.7.0).
	OnVirus Action
	// OnAttachment applies to every attachment finding that carries no
	// action of its own (see AttachmentConfig.UnopenableArchives):
	// ActDefault means ActReject (552 5.7.0).
	OnAttachment Action
	// OnLimit applies when the message exceeds the walker's limits:
	// ActDefault means ActReject (552 5.3.4 for sizes, 554 5.6.0 for the
	// rest). ActLog lets the message through unparsed.
	OnLimit Action
	// OnMalformed applies when the message cannot be parsed at all:
	// ActDefault means ActLog.
	OnMalformed Action
	// OnSpamReject applies when the score reaches the reject score for
	// every recipient: ActDefault means ActReject (550 5.7.1).
	OnSpamReject Action

	// TagScore: at or over it a message is tagged. 0 means the scorer's
	// own verdict (Result.Spam). A recipient's policy may override it.
	TagScore float64
	// RejectScore: at or over it a message is refused. 0 means never.
	RejectScore float64
	// SubjectPrefix, if set (e.g. "[SPAM]"), is put before the Subject of
	// tagged messages.
	SubjectPrefix string
	// AlwaysAddStatus adds X-Spam-Status and X-Spam-Score for scored
	// messages under the tag score too (for recipients with filtering on).
	AlwaysAddStatus bool
	// OnGreylist and OnSoftReject are what a spam scorer's "greylist"
	// and "soft reject" actions (rspamd's) get: SoftTempFail, the
	// default, answers 451 4.7.1 with the scorer's message; SoftGreylist
	// asks Greylist; SoftAccept goes on. Trusted and authenticated
	// clients are never delayed.
	OnGreylist   SoftAction
	OnSoftReject SoftAction
	// Greylist decides for SoftGreylist: Postern's greylisting of the
	// message's triplets (ratelimit.Greylist.CheckMessage). Required
	// with SoftGreylist.
	Greylist func(ctx context.Context, c *postern.Conn, t *postern.Txn) postern.Verdict
	// IgnoreScorerHeaders leaves unapplied the header fields the spam
	// scorer that answered asks to add or remove (rspamd's milter
	// block: its DKIM signature, an ARC set, X-Spamd-Result). By
	// default they are applied to every copy, each checked: an invalid
	// name or value, or the removal of a trace field (Received,
	// Return-Path), is skipped and logged.
	IgnoreScorerHeaders bool
	// KeepSpamHeaders keeps X-Spam-Flag, X-Spam-Score and X-Spam-Status
	// fields that came with the message; by default they are removed when
	// spam scorers are configured, so a sender cannot forge them.
	KeepSpamHeaders bool

	// Logger receives decisions (Info) and scanner failures (Warn); nil
	// discards.
	Logger *slog.Logger
}

// Filter applies walking, attachment and keyword checks, virus scanners
// and spam scorers at the DATA stage, and recipients' deny lists at the
// RCPT stage. It is immutable and safe for concurrent use.
type Filter struct {
	cfg    FilterConfig
	walker *Walker
	log    *slog.Logger
}

var (
	_ postern.DataChecker = (*Filter)(nil)
	_ postern.RcptChecker = (*Filter)(nil)
)

// NewFilter validates cfg and returns the filter.
func NewFilter(cfg FilterConfig) (*Filter, error) {
	f := &Filter{cfg: cfg, walker: cfg.Walker, log: cfg.Logger}
	if f.log == nil {
		f.log = postern.DiscardLogger()
	}
	if f.walker == nil && !cfg.SkipWalk {
		w, err := NewWalker(WalkerConfig{})
		if err != nil {
			return nil, err
		}
		f.walker = w
	}
	if cfg.SkipWalk && (cfg.Attachments != nil || cfg.Keywords != nil) {
		return nil, fmt.Errorf("%w: attachment and keyword checks need the walk", ErrConfig)
	}
	for _, a := range []Action{cfg.OnVirus, cfg.OnAttachment, cfg.OnLimit, cfg.OnMalformed, cfg.OnSpamReject} {
		if !a.valid() {
			return nil, fmt.Errorf("%w: bad action %v", ErrConfig, a)
		}
	}
	for _, list := range [][]ScannerEntry{cfg.Virus, cfg.Spam} {
		for i, e := range list {
			if e.Scanner == nil || !e.OnError.Valid() || e.SkipLarger < 0 || e.Timeout < 0 {
				return nil, fmt.Errorf("%w: scanner entry %d: needs a Scanner, a known OnError and no negative value", ErrConfig, i+1)
			}
		}
	}
	if cfg.RejectScore != 0 && cfg.TagScore > cfg.RejectScore {
		return nil, fmt.Errorf("%w: TagScore %v over RejectScore %v", ErrConfig, cfg.TagScore, cfg.RejectScore)
	}
	for _, a := range []SoftAction{cfg.OnGreylist, cfg.OnSoftReject} {
		if a > SoftAccept {
			return nil, fmt.Errorf("%w: bad soft action %v", ErrConfig, a)
		}
		if a == SoftGreylist && cfg.Greylist == nil {
			return nil, fmt.Errorf("%w: soft action greylist without Greylist", ErrConfig)
		}
	}
	if !cfg.OnLookupError.Valid() {
		return nil, fmt.Errorf("%w: bad OnLookupError %v", ErrConfig, cfg.OnLookupError)
	}
	if strings.ContainsAny(cfg.SubjectPrefix, "\r\n") {
		return nil, fmt.Errorf("%w: SubjectPrefix with a line break", ErrConfig)
	}
	return f, nil
}

// Name returns "scan".
func (f *Filter) Name() string { return FilterName }

func (f *Filter) policy() *Policy {
	if f.cfg.Policy == nil {
		return nil
	}
	return f.cfg.Policy.Current()
}

// PolicyLookup finds one recipient's spam policy in a source that is
// asked per recipient, such as a user directory (auth/directory
// implements it). found is false when the source has no policy for the
// recipient; an error means it could not answer (it is down).
type PolicyLookup interface {
	LookupPolicy(ctx context.Context, rcpt string) (p RcptPolicy, found bool, err error)
}

// rcptPolicy returns the policy of one recipient: Lookup's, else the
// policy file's. When Lookup fails, v is the verdict OnLookupError
// gives, or Continue with a reason under OnErrorAccept (the file's
// entry then applies).
func (f *Filter) rcptPolicy(ctx context.Context, pol *Policy, st postern.Stage, rcpt string) (RcptPolicy, postern.Verdict) {
	if f.cfg.Lookup != nil {
		rp, found, err := f.cfg.Lookup.LookupPolicy(ctx, rcpt)
		if err != nil {
			v := f.cfg.OnLookupError.Or(postern.OnErrorTempFail).Verdict(st, postern.ESC(4, 3, 0),
				"Recipient's spam policy unavailable", "scan: policy of "+rcpt+": "+err.Error())
			return pol.Lookup(rcpt), v
		}
		if found {
			return rp, postern.Pass
		}
	}
	return pol.Lookup(rcpt), postern.Pass
}

// CheckRcpt refuses a recipient whose policy denies the sender: 550
// 5.7.1. Nothing else happens at RCPT.
func (f *Filter) CheckRcpt(ctx context.Context, c *postern.Conn, t *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
	rp, lv := f.rcptPolicy(ctx, f.policy(), postern.StageRcpt, r.Addr)
	if lv.Reason != "" {
		f.logDecision(ctx, c, t, postern.StageRcpt, lv, slog.String("rcpt", r.Addr))
		if lv.Final() {
			return lv, nil
		}
	}
	if rp.Sender(t.From) != SenderDenied {
		return postern.Pass, nil
	}
	v := postern.Rejected(550, postern.ESC(5, 7, 1), "Recipient address rejected: sender denied by recipient's policy",
		"scan: sender "+strconv.Quote(t.From)+" on the deny list of "+r.Addr+" ("+rp.Source+")")
	f.logDecision(ctx, c, t, postern.StageRcpt, v, slog.String("rcpt", r.Addr))
	return v, nil
}

// ScannerError is a scanner that gave no answer.
type ScannerError struct {
	Scanner string
	Err     error
}

// SpamDecision is what spam scoring means for one recipient.
type SpamDecision uint8

// Spam decisions.
const (
	// SpamNotScored: no scorer configured or answered, or the message
	// was too large for it.
	SpamNotScored SpamDecision = iota
	// SpamFilterOff: the recipient turned spam filtering off.
	SpamFilterOff
	// SpamAllowed: the sender is on the recipient's allow list.
	SpamAllowed
	// SpamClean: scored under the tag score.
	SpamClean
	// SpamTagged: at or over the tag score: delivered tagged.
	SpamTagged
	// SpamRejected: at or over the reject score.
	SpamRejected
	// SpamDenied: the sender is on the recipient's deny list.
	SpamDenied
)

var decisionNames = [...]string{"not-scored", "filter-off", "allowed", "clean", "tagged", "rejected", "denied"}

func (d SpamDecision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
}

// drops reports decisions whose recipients do not get the message.
func (d SpamDecision) drops() bool { return d == SpamRejected || d == SpamDenied }

// RcptDecision is the spam decision for one recipient.
type RcptDecision struct {
	// Rcpt is the recipient's address (Rcpt.Addr).
	Rcpt     string
	Decision SpamDecision
	Policy   RcptPolicy
	// TagScore and RejectScore are the thresholds applied (0: none).
	TagScore, RejectScore float64
	// Edits are the header edits of this recipient's copy, on top of the
	// message's own.
	Edits []postern.HeaderEdit
}

// Report is everything the DATA stage found, stored under ReportKey.
// Do not modify it.
type Report struct {
	// Content is the walked message; nil when not walked or the walk
	// failed (WalkErr).
	Content  *Content
	WalkErr  error
	Findings []Finding
	// Results are the scanners' answers, Errors their failures.
	Results []Result
	Errors  []ScannerError
	// Spam is the spam scorer's answer used, nil if none.
	Spam *Result
	// Rcpts are the decisions in the order of Txn.Rcpts.
	Rcpts []RcptDecision
	// Split is set when recipients get different copies: the message then
	// carries none of the per-recipient edits and Groups must be used to
	// deliver it.
	Split   bool
	Verdict postern.Verdict
}

// Viruses returns the virus names found by all scanners.
func (r *Report) Viruses() []string {
	var out []string
	for _, res := range r.Results {
		out = append(out, res.Viruses...)
	}
	return out
}

// CheckData runs the checks on the message as received and returns the
// verdict for the whole message; per-recipient outcomes go into the
// Report (see Groups). The Report is stored under ReportKey whatever the
// outcome.
func (f *Filter) CheckData(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message) (postern.Verdict, error) {
	rep := &Report{}
	v, err := f.check(ctx, c, t, m, rep)
	rep.Verdict = v
	postern.SetValue(&t.Values, ReportKey, rep)
	if err == nil {
		f.logDecision(ctx, c, t, postern.StageData, v, reportAttrs(rep)...)
	}
	return v, err
}

func (f *Filter) check(ctx context.Context, c *postern.Conn, t *postern.Txn, m *postern.Message, rep *Report) (postern.Verdict, error) {
	if f.walker != nil {
		content, err := f.walker.WalkMessage(ctx, m)
		switch {
		case err == nil:
			rep.Content = content
		case errors.Is(err, ErrLimit):
			rep.WalkErr = err
			if v := f.limitVerdict(err); v.Final() {
				return v, nil
			}
		case errors.Is(err, ErrMalformed):
			rep.WalkErr = err
			if v := actVerdict(f.cfg.OnMalformed.or(ActLog), postern.NewReply(554, postern.ESC(5, 6, 0),
				"Message rejected: malformed MIME structure"), "scan: "+err.Error()); v.Final() {
				return v, nil
			}
		default:
			return postern.Pass, err // the context ended, or the spool failed
		}
	}
	if rep.Content != nil {
		if f.cfg.Attachments != nil {
			rep.Findings = append(rep.Findings, f.cfg.Attachments.Check(ctx, rep.Content)...)
		}
		if f.cfg.Keywords != nil {
			rep.Findings = append(rep.Findings, f.cfg.Keywords.Match(rep.Content)...)
		}
	}
	held := f.findingsVerdict(rep.Findings)
	if held.Action == postern.Reject || held.Action == postern.Discard {
		return held, nil // no scanner needed
	}

	pol := f.policy()
	rps := make([]RcptPolicy, len(t.Rcpts))
	needSpam := false
	for i, r := range t.Rcpts {
		var lv postern.Verdict
		rps[i], lv = f.rcptPolicy(ctx, pol, postern.StageData, r.Addr)
		if lv.Final() {
			return lv, nil
		}
		if lv.Reason != "" {
			f.logDecision(ctx, c, t, postern.StageData, lv, slog.String("rcpt", r.Addr))
		}
		if rps[i].SpamFiltering() && rps[i].Sender(t.From) == SenderUnlisted {
			needSpam = true
		}
	}
	env := EnvelopeOf(c, t)
	failed := f.runScanners(ctx, m, env, needSpam, rep)
	if err := ctx.Err(); err != nil {
		return postern.Pass, err
	}

	if viruses := rep.Viruses(); len(viruses) > 0 {
		return actVerdict(f.cfg.OnVirus.or(ActReject), postern.NewReply(554, postern.ESC(5, 7, 0),
			"Message rejected: virus "+replySafe(strings.Join(viruses, ", "))+" found"),
			"scan: virus "+strings.Join(viruses, ", ")), nil
	}
	if failed == postern.OnErrorTempFail || failed == postern.OnErrorReject {
		return failed.Verdict(postern.StageData, postern.ESC(4, 7, 1), "Message could not be scanned",
			"scan: "+scannerErrors(rep.Errors)), nil
	}
	if held.Action == postern.Quarantine {
		return held, nil
	}

	// held is now Pass, or Continue with the reason of findings let
	// through (ActLog), which the decision log keeps.
	if len(f.cfg.Spam) == 0 {
		return held, nil
	}
	if !f.cfg.KeepSpamHeaders {
		for _, name := range spamHeaderNames {
			deleteAll(m, name)
		}
	}
	if rep.Spam != nil {
		if v, ok := f.softVerdict(ctx, c, t, rep.Spam); ok {
			return v, nil
		}
		if !f.cfg.IgnoreScorerHeaders {
			f.applyScorerHeaders(ctx, t, m, rep.Spam)
		}
	}
	v := f.decideSpam(t, m, rps, rep)
	if v.Action == postern.Continue && held.Reason != "" {
		v.Reason = strings.TrimSuffix(held.Reason+"; "+v.Reason, "; ")
	}
	return v, nil
}

var spamHeaderNames = []string{"X-Spam-Flag", "X-Spam-Score", "X-Spam-Status"}

// deleteAll deletes every received field named name (DeleteHeader counts
// received fields, deleted or not).
func deleteAll(m *postern.Message, name string) {
	n := 0
	for _, fl := range m.Fields() {
		if strings.EqualFold(fl.Name, name) {
			n++
		}
	}
	for i := range n {
		m.DeleteHeader(name, i)
	}
}

func (f *Filter) limitVerdict(err error) postern.Verdict {
	var le *LimitError
	errors.As(err, &le)
	rep := postern.NewReply(554, postern.ESC(5, 6, 0), "Message rejected: "+le.Limit.Describe())
	if le.Limit == LimitSize || le.Limit == LimitDecodedSize {
		rep = postern.NewReply(552, postern.ESC(5, 3, 4), "Message rejected: "+le.Limit.Describe())
	}
	return actVerdict(f.cfg.OnLimit.or(ActReject), rep, err.Error())
}

// actVerdict turns an action into a verdict; ActLog is Continue with a
// reason.
func actVerdict(a Action, rep postern.Reply, reason string) postern.Verdict {
	switch a {
	case ActReject:
		return postern.Verdict{Action: postern.Reject, Reply: rep, Reason: reason}
	case ActQuarantine:
		return postern.Quarantined(reason)
	case ActDiscard:
		return postern.Discarded(reason)
	}
	return postern.Verdict{Reason: reason}
}

var actRank = map[Action]int{ActLog: 1, ActQuarantine: 2, ActDiscard: 3, ActReject: 4}

// findingsVerdict returns the verdict of the strongest finding.
func (f *Filter) findingsVerdict(findings []Finding) postern.Verdict {
	best, bestAct := -1, ActDefault
	for i, fd := range findings {
		a := fd.Action.or(f.cfg.OnAttachment.or(ActReject))
		if fd.Kind == KeywordMatch {
			a = fd.Action.or(ActReject)
		}
		if actRank[a] > actRank[bestAct] {
			best, bestAct = i, a
		}
	}
	if best < 0 {
		return postern.Pass
	}
	fd := findings[best]
	text := "Message rejected: content not allowed by policy"
	if fd.Kind != KeywordMatch {
		text = "Message rejected: attachment"
		if fd.Name != "" {
			text += " \"" + replySafe(fd.Name) + "\""
		}
		text += " not allowed (" + fd.Kind.String()
		if fd.Kind == EncryptedArchive || fd.Kind == UnopenableArchive {
			text += ": " + fd.Detail + ", cannot be inspected" // say why
		}
		text += ")"
	}
	reason := "scan: " + fd.String()
	if fd.Rule != "" {
		reason += " (rule " + fd.Rule + ")"
	}
	return actVerdict(bestAct, postern.NewReply(552, postern.ESC(5, 7, 0), text), reason)
}

// replySafe keeps text taken from the message printable ASCII and short:
// it goes into an SMTP reply (RFC 5321 §4.2: text is ASCII).
func replySafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > 120 {
		return string(b[:117]) + "..."
	}
	return string(b)
}

func scannerErrors(errs []ScannerError) string {
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.describe()
	}
	return strings.Join(parts, "; ")
}

// Defaults of ScannerEntry.OnError: virus scanning fails closed, spam
// scoring open.
const (
	defaultVirusOnError = postern.OnErrorTempFail
	defaultSpamOnError  = postern.OnErrorAccept
)

// runScanners asks the virus scanners and (if needed) the spam scorers at
// the same time. It returns the stricter policy of the failures that
// count (OnErrorDefault when none): every virus scanner's, and the spam
// scorers' when none of them answered.
func (f *Filter) runScanners(ctx context.Context, m *postern.Message, env *Envelope, needSpam bool, rep *Report) (failed postern.ErrorPolicy) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	record := func(res *Result, se *ScannerError) {
		mu.Lock()
		defer mu.Unlock()
		if res != nil {
			rep.Results = append(rep.Results, *res)
		}
		if se != nil {
			rep.Errors = append(rep.Errors, *se)
		}
	}
	for _, e := range f.cfg.Virus {
		wg.Go(func() {
			res, skipped, err := f.scanOne(ctx, e, m, env, false)
			switch {
			case skipped && err == nil:
			case err != nil:
				record(nil, &ScannerError{Scanner: e.Scanner.Name(), Err: err})
				mu.Lock()
				failed = failed.Stricter(e.OnError.Or(defaultVirusOnError))
				mu.Unlock()
			default:
				record(&res, nil)
			}
		})
	}
	if needSpam && len(f.cfg.Spam) > 0 {
		wg.Go(func() {
			var spamFailed postern.ErrorPolicy
			for _, e := range f.cfg.Spam {
				res, skipped, err := f.scanOne(ctx, e, m, env, true)
				if skipped {
					continue
				}
				if err != nil {
					record(nil, &ScannerError{Scanner: e.Scanner.Name(), Err: err})
					spamFailed = spamFailed.Stricter(e.OnError.Or(defaultSpamOnError))
					continue
				}
				record(&res, nil)
				mu.Lock()
				rep.Spam = &res
				mu.Unlock()
				return
			}
			mu.Lock()
			failed = failed.Stricter(spamFailed)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, se := range rep.Errors {
		f.log.LogAttrs(ctx, slog.LevelWarn, "scanner failed", slog.String("filter", FilterName),
			slog.String("queue_id", env.QueueID), slog.String("scanner", se.Scanner), slog.String("error", se.Err.Error()))
	}
	return failed
}

// scanOne runs one scanner; skipped means the message was not for it
// (too large). A message over a spam scorer's own size cap is skipped as
// well; over a virus scanner's it is a failure.
func (f *Filter) scanOne(ctx context.Context, e ScannerEntry, m *postern.Message, env *Envelope, spam bool) (res Result, skipped bool, err error) {
	if e.SkipLarger > 0 && m.Size() > e.SkipLarger {
		return Result{}, true, nil
	}
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.Timeout)
		defer cancel()
	}
	res, err = e.Scanner.Scan(ctx, m.NewReader(), env)
	if err != nil {
		return Result{}, spam && errors.Is(err, ErrTooLarge), err
	}
	if res.Scanner == "" {
		res.Scanner = e.Scanner.Name()
	}
	return res, false, nil
}

func reportAttrs(rep *Report) []slog.Attr {
	var attrs []slog.Attr
	if v := rep.Viruses(); len(v) > 0 {
		attrs = append(attrs, slog.String("virus", strings.Join(v, ",")))
	}
	if rep.Spam != nil {
		attrs = append(attrs, slog.String("spam_score", FormatScore(rep.Spam.Score)), slog.String("scanner", rep.Spam.Scanner))
	}
	if len(rep.Findings) > 0 {
		attrs = append(attrs, slog.Int("findings", len(rep.Findings)))
	}
	if rep.Split {
		attrs = append(attrs, slog.Bool("split", true))
	}
	return attrs
}

func (f *Filter) logDecision(ctx context.Context, c *postern.Conn, t *postern.Txn, st postern.Stage, v postern.Verdict, extra ...slog.Attr) {
	level := slog.LevelDebug
	if v.Final() || v.Reason != "" {
		level = slog.LevelInfo
	}
	if !f.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("stage", st.String()),
		slog.String("filter", FilterName),
		slog.String("action", v.Action.String()),
	}
	if c != nil {
		attrs = append(attrs, slog.String("conn_id", c.ID), slog.String("remote_ip", c.RemoteAddr().String()))
	}
	if t != nil {
		attrs = append(attrs, slog.String("queue_id", t.ID))
	}
	if v.Reply.Code != 0 {
		attrs = append(attrs, slog.Int("code", v.Reply.Code))
	}
	attrs = append(attrs, extra...)
	if v.Reason != "" {
		attrs = append(attrs, slog.String("reason", v.Reason))
	}
	f.log.LogAttrs(ctx, level, "scan decision", attrs...)
}
