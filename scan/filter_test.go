package scan

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares got with testdata/golden/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join("testdata", "golden", name), []byte(got), *update)
}

// stubScanner answers with a fixed result or error. The filter's logic is
// under test here; the adapters are tested against real daemons.
type stubScanner struct {
	name  string
	res   Result
	err   error
	calls atomic.Int32
	seen  atomic.Pointer[Envelope]
	size  atomic.Int64
}

func (s *stubScanner) Name() string { return s.name }

func (s *stubScanner) Scan(_ context.Context, r io.Reader, env *Envelope) (Result, error) {
	s.calls.Add(1)
	n, _ := io.Copy(io.Discard, r)
	s.size.Store(n)
	s.seen.Store(env)
	return s.res, s.err
}

func virus(names ...string) *stubScanner {
	return &stubScanner{name: "av", res: Result{Scanner: "av", Infected: len(names) > 0, Viruses: names}}
}

func spam(score float64) *stubScanner {
	return &stubScanner{name: "sa", res: Result{Scanner: "sa", Scored: true, Score: score, Threshold: 5, Spam: score >= 5,
		Symbols: []Symbol{{Name: "BAYES_99", Score: 3.5}, {Name: "URIBL_BLACK", Score: 1.7}, {Name: "HTML_MESSAGE", Score: 0.001}}}}
}

func failing(name string) *stubScanner {
	return &stubScanner{name: name, err: errors.New("connection refused")}
}

const plainMsg = "Received: from mx.example.org by relay\r\n" +
	"From: Sender <sender@example.org>\r\n" +
	"To: user@example.com\r\n" +
	"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n" +
	" =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n" +
	"X-Spam-Flag: NO\r\n" +
	"X-Spam-Status: No, forged by the sender\r\n" +
	"Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Buy now.\r\n"

func session(rcpts ...string) (*postern.Conn, *postern.Txn) {
	c := &postern.Conn{ID: "C1", Remote: netip.MustParseAddrPort("192.0.2.10:40000"), HELO: "mx.example.org"}
	t := &postern.Txn{ID: "Q1", From: "sender@example.org"}
	for _, r := range rcpts {
		t.Rcpts = append(t.Rcpts, &postern.Rcpt{Addr: r, Original: r})
	}
	return c, t
}

func newFilter(t *testing.T, cfg FilterConfig) *Filter {
	t.Helper()
	f, err := NewFilter(cfg)
	require.NoError(t, err)
	return f
}

var render = testutil.Render

func TestFilterVirus(t *testing.T) {
	tests := []struct {
		name   string
		on     Action
		action postern.Action
		reply  string
	}{
		{"default rejects", ActDefault, postern.Reject, "554 5.7.0 Message rejected: virus Eicar-Signature found"},
		{"quarantine", ActQuarantine, postern.Quarantine, ""},
		{"discard", ActDiscard, postern.Discard, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			av := virus("Eicar-Signature")
			f := newFilter(t, FilterConfig{Virus: []ScannerEntry{{Scanner: av}}, OnVirus: tc.on})
			c, txn := session("user@example.com")
			v, err := f.CheckData(context.Background(), c, txn, spool(t, plainMsg))
			require.NoError(t, err)
			assert.Equal(t, tc.action, v.Action)
			if tc.reply != "" {
				assert.Equal(t, tc.reply, v.Reply.Error())
			}
			assert.Contains(t, v.Reason, "Eicar-Signature")
			rep, ok := postern.GetValue(&txn.Values, ReportKey)
			require.True(t, ok)
			assert.Equal(t, []string{"Eicar-Signature"}, rep.Viruses())
			env := av.seen.Load()
			require.NotNil(t, env)
			assert.Equal(t, "sender@example.org", env.From)
			assert.Equal(t, []string{"user@example.com"}, env.Rcpts)
			assert.Equal(t, "192.0.2.10", env.IP.String())
			assert.Equal(t, "Q1", env.QueueID)
			assert.Equal(t, int64(len(plainMsg)), av.size.Load(), "the scanner sees the message as received")
		})
	}
}

// Every OnError value for a virus scanner and a spam scorer: the defaults
// (virus closed, spam open) are what they always were.
func TestFilterFailurePolicy(t *testing.T) {
	const (
		temp = "451 4.7.1 Message could not be scanned, try again later"
		rej  = "554 5.7.1 Message could not be scanned"
	)
	av := func(p postern.ErrorPolicy) []ScannerEntry {
		return []ScannerEntry{{Scanner: failing("av"), OnError: p}}
	}
	sa := func(p postern.ErrorPolicy) []ScannerEntry {
		return []ScannerEntry{{Scanner: failing("sa"), OnError: p}}
	}
	tests := []struct {
		name   string
		cfg    FilterConfig
		action postern.Action
		reply  string
	}{
		{"virus scanner down, default fails closed", FilterConfig{Virus: av(postern.OnErrorDefault)}, postern.TempFail, temp},
		{"virus scanner down, tempfail", FilterConfig{Virus: av(postern.OnErrorTempFail)}, postern.TempFail, temp},
		{"virus scanner down, accept", FilterConfig{Virus: av(postern.OnErrorAccept)}, postern.Continue, ""},
		{"virus scanner down, reject", FilterConfig{Virus: av(postern.OnErrorReject)}, postern.Reject, rej},
		{"spam scorer down, default fails open", FilterConfig{Spam: sa(postern.OnErrorDefault)}, postern.Continue, ""},
		{"spam scorer down, accept", FilterConfig{Spam: sa(postern.OnErrorAccept)}, postern.Continue, ""},
		{"spam scorer down, tempfail", FilterConfig{Spam: sa(postern.OnErrorTempFail)}, postern.TempFail, temp},
		{"spam scorer down, reject", FilterConfig{Spam: sa(postern.OnErrorReject)}, postern.Reject, rej},
		{"second spam scorer answers", FilterConfig{Spam: append(sa(postern.OnErrorReject), ScannerEntry{Scanner: spam(1)})},
			postern.Continue, ""},
		{"one of two virus scanners down", FilterConfig{Virus: []ScannerEntry{{Scanner: virus()}, {Scanner: failing("av2")}}},
			postern.TempFail, temp},
		{"the stricter failure wins: reject", FilterConfig{Virus: av(postern.OnErrorTempFail), Spam: sa(postern.OnErrorReject)},
			postern.Reject, rej},
		{"the stricter failure wins: tempfail", FilterConfig{Virus: av(postern.OnErrorDefault), Spam: sa(postern.OnErrorDefault)},
			postern.TempFail, temp},
		{"both fail open", FilterConfig{Virus: av(postern.OnErrorAccept), Spam: sa(postern.OnErrorDefault)}, postern.Continue, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.LogBuffer
			tc.cfg.Logger = logs.Logger()
			f := newFilter(t, tc.cfg)
			c, txn := session("user@example.com")
			v, err := f.CheckData(context.Background(), c, txn, spool(t, plainMsg))
			require.NoError(t, err)
			assert.Equal(t, tc.action, v.Action, v.Reason)
			if tc.reply != "" {
				assert.Equal(t, tc.reply, v.Reply.Error())
				assert.Equal(t, tc.reply, v.ReplyAt(postern.StageData).Error(), "sent as is")
				assert.Contains(t, v.Reason, "connection refused")
				assert.Contains(t, v.Reason, "on error: "+v.Action.String())
			} else {
				assert.True(t, v.Reply.IsZero())
			}
			assert.NotEmpty(t, logs.Records(t, "scanner failed"))
		})
	}
}

func TestFilterSpamTagging(t *testing.T) {
	sa := spam(8.24)
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sa}}, TagScore: 6.8, RejectScore: 15, SubjectPrefix: "[SPAM]"})
	c, txn := session("user@example.com")
	m := spool(t, plainMsg)
	v, err := f.CheckData(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	rep, _ := postern.GetValue(&txn.Values, ReportKey)
	require.NotNil(t, rep.Spam)
	assert.False(t, rep.Split)
	assert.Equal(t, SpamTagged, rep.Rcpts[0].Decision)
	out := render(t, m)
	golden(t, "tagged.eml", out)
	// The Subject keeps its encoded words; the prefix decodes before them.
	tagged := spool(t, out)
	assert.Equal(t, "[SPAM] こんにちはこんにちは", decodeSubject(tagged))
	assert.Equal(t, []string{"YES"}, tagged.Header().Values("X-Spam-Flag"))

	// Tagged already: no second prefix.
	txn.Values = postern.Values{}
	m2 := spool(t, out)
	_, err = f.CheckData(context.Background(), c, txn, m2)
	require.NoError(t, err)
	assert.Equal(t, "[SPAM] こんにちはこんにちは", decodeSubject(spool(t, render(t, m2))))

	// Under the tag score: nothing added unless AlwaysAddStatus; the
	// forged fields go all the same.
	f = newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: spam(2)}}, TagScore: 6.8, AlwaysAddStatus: true})
	m = spool(t, plainMsg)
	_, err = f.CheckData(context.Background(), c, &postern.Txn{ID: "Q2", Rcpts: txn.Rcpts}, m)
	require.NoError(t, err)
	golden(t, "clean-status.eml", render(t, m))
}

func decodeSubject(m *postern.Message) string {
	w, _ := NewWalker(WalkerConfig{})
	var b bytes.Buffer
	_ = m.Render(&b)
	c, err := w.WalkBytes(context.Background(), b.Bytes())
	if err != nil {
		return err.Error()
	}
	return c.Subject
}

func TestFilterSpamReject(t *testing.T) {
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: spam(16)}}, TagScore: 6.8, RejectScore: 15})
	c, txn := session("a@example.com", "b@example.com")
	v, err := f.CheckData(context.Background(), c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, "550 5.7.1 Message rejected as spam", v.Reply.Error())

	// With the scorer's own verdict when no tag score is set.
	f = newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: spam(5.5)}}})
	m := spool(t, plainMsg)
	v, err = f.CheckData(context.Background(), c, &postern.Txn{Rcpts: txn.Rcpts}, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Contains(t, render(t, m), "X-Spam-Flag: YES\r\n")
}

// Two recipients, one with spam filtering off: the message is scanned
// once and split into a tagged and an untagged copy.
func TestFilterPerRecipientGroups(t *testing.T) {
	pol, err := ParsePolicy(strings.NewReader(`
alice@example.com spam=off
carol@example.com reject=8
`), "policy")
	require.NoError(t, err)
	sa := spam(8.24)
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sa}}, Policy: pol, TagScore: 6.8, SubjectPrefix: "[SPAM]"})
	c, txn := session("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com")
	m := spool(t, plainMsg)
	v, err := f.CheckData(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Equal(t, int32(1), sa.calls.Load(), "scanned once")

	rep, _ := postern.GetValue(&txn.Values, ReportKey)
	require.True(t, rep.Split)
	var decisions []SpamDecision
	for _, d := range rep.Rcpts {
		decisions = append(decisions, d.Decision)
	}
	assert.Equal(t, []SpamDecision{SpamFilterOff, SpamTagged, SpamRejected, SpamTagged}, decisions)

	groups := Groups(txn, m, nil)
	require.Len(t, groups, 3)
	addrs := func(g Group) []string {
		var out []string
		for _, r := range g.Rcpts {
			out = append(out, r.Addr)
		}
		return out
	}
	assert.Equal(t, []string{"alice@example.com"}, addrs(groups[0]))
	assert.False(t, groups[0].Tagged)
	assert.Empty(t, groups[0].Edits)
	assert.Equal(t, []string{"bob@example.com", "dave@example.com"}, addrs(groups[1]))
	assert.True(t, groups[1].Tagged)
	assert.Equal(t, []string{"carol@example.com"}, addrs(groups[2]))
	assert.True(t, groups[2].Drop)

	var untagged, tagged bytes.Buffer
	require.NoError(t, groups[0].Render(&untagged))
	require.NoError(t, groups[1].Render(&tagged))
	golden(t, "group-untagged.eml", untagged.String())
	golden(t, "group-tagged.eml", tagged.String())
	assert.NotContains(t, untagged.String(), "X-Spam-", "no spam fields for a recipient who turned filtering off")
	// The shared message carries only the common edits.
	assert.Equal(t, untagged.String(), render(t, m))

	// Without a split there is one group.
	_, txn1 := session("bob@example.com")
	m1 := spool(t, plainMsg)
	_, err = f.CheckData(context.Background(), c, txn1, m1)
	require.NoError(t, err)
	g1 := Groups(txn1, m1, nil)
	require.Len(t, g1, 1)
	assert.True(t, g1[0].Tagged)
	var b bytes.Buffer
	require.NoError(t, g1[0].Render(&b))
	assert.Equal(t, tagged.String(), b.String())
}

func TestFilterSenderLists(t *testing.T) {
	pol, err := ParsePolicy(strings.NewReader(`
alice@example.com allow=@example.org
bob@example.com   deny=sender@example.org
`), "policy")
	require.NoError(t, err)
	sa := spam(9)
	f := newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sa}}, Policy: pol, TagScore: 5})
	c, txn := session()

	v, err := f.CheckRcpt(context.Background(), c, txn, &postern.Rcpt{Addr: "bob@example.com"})
	require.NoError(t, err)
	assert.Equal(t, "550 5.7.1 Recipient address rejected: sender denied by recipient's policy", v.Reply.Error())
	v, err = f.CheckRcpt(context.Background(), c, txn, &postern.Rcpt{Addr: "alice@example.com"})
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)

	// Only allow-listed recipients: no scoring at all.
	_, txn = session("alice@example.com")
	m := spool(t, plainMsg)
	v, err = f.CheckData(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Zero(t, sa.calls.Load())
	assert.NotContains(t, render(t, m), "X-Spam-Flag: YES")

	// A denied sender that reached DATA (the filter was not in the RCPT
	// chain) is refused when it is every recipient's.
	_, txn = session("bob@example.com")
	v, err = f.CheckData(context.Background(), c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, "550 5.7.1 Message rejected: sender denied by recipient's policy", v.Reply.Error())
}

func TestFilterFindings(t *testing.T) {
	exeMsg := withParts(attachment("application/octet-stream", "invoice.pdf.exe", mzStub))
	attach, err := NewAttachmentPolicy(AttachmentConfig{})
	require.NoError(t, err)
	kw, err := NewKeywords(KeywordsConfig{Rules: []KeywordRule{{Name: "hi", Pattern: `\bhi\b`, Action: ActQuarantine}}})
	require.NoError(t, err)

	av := virus()
	f := newFilter(t, FilterConfig{Attachments: attach, Virus: []ScannerEntry{{Scanner: av}}})
	c, txn := session("user@example.com")
	v, err := f.CheckData(context.Background(), c, txn, spool(t, exeMsg))
	require.NoError(t, err)
	assert.Equal(t, `552 5.7.0 Message rejected: attachment "invoice.pdf.exe" not allowed (double-extension)`, v.Reply.Error())
	assert.Zero(t, av.calls.Load(), "no scanner for a message refused already")

	f = newFilter(t, FilterConfig{Attachments: attach, OnAttachment: ActQuarantine, Keywords: kw})
	v, err = f.CheckData(context.Background(), c, txn, spool(t, exeMsg))
	require.NoError(t, err)
	assert.Equal(t, postern.Quarantine, v.Action)

	// A keyword quarantine still lets a virus scanner have its say.
	f = newFilter(t, FilterConfig{Keywords: kw, Virus: []ScannerEntry{{Scanner: virus("Worm.X")}}})
	v, err = f.CheckData(context.Background(), c, txn, spool(t, withParts()))
	require.NoError(t, err)
	assert.Equal(t, postern.Reject, v.Action)
	f = newFilter(t, FilterConfig{Keywords: kw, Virus: []ScannerEntry{{Scanner: virus()}}})
	v, err = f.CheckData(context.Background(), c, txn, spool(t, withParts()))
	require.NoError(t, err)
	assert.Equal(t, postern.Quarantine, v.Action)
	assert.Contains(t, v.Reason, "rule hi")

	_, err = NewFilter(FilterConfig{SkipWalk: true, Keywords: kw})
	assert.ErrorIs(t, err, ErrConfig)
}

// Archives the check cannot open are refused by default, saying why,
// and their action can differ from the other attachment findings'.
func TestFilterUnopenable(t *testing.T) {
	encMsg := withParts(attachment("application/zip", "secret.zip", zipRaw(t, "secret.doc", 0, 1, []byte("ciphertext"), []byte("plaintext!"))))
	rarMsg := withParts(attachment("application/octet-stream", "a.rar", []byte("Rar!\x1a\x07\x00rest")))
	c, txn := session("user@example.com")
	tests := []struct {
		name       string
		act        Action
		onAttach   Action
		msg        string
		wantAction postern.Action
		wantReply  string
	}{
		{"encrypted, default", ActDefault, ActDefault, encMsg, postern.Reject,
			`552 5.7.0 Message rejected: attachment "secret.zip/secret.doc" not allowed (encrypted-archive: encrypted zip entry, cannot be inspected)`},
		{"rar, default", ActDefault, ActDefault, rarMsg, postern.Reject,
			`552 5.7.0 Message rejected: attachment "a.rar" not allowed (unopenable-archive: rar archive, cannot be inspected)`},
		{"follows OnAttachment", ActDefault, ActQuarantine, encMsg, postern.Quarantine, ""},
		{"quarantine", ActQuarantine, ActDefault, rarMsg, postern.Quarantine, ""},
		{"accept", ActLog, ActDefault, encMsg, postern.Continue, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			attach, err := NewAttachmentPolicy(AttachmentConfig{UnopenableArchives: tc.act})
			require.NoError(t, err)
			f := newFilter(t, FilterConfig{Attachments: attach, OnAttachment: tc.onAttach})
			v, err := f.CheckData(context.Background(), c, txn, spool(t, tc.msg))
			require.NoError(t, err)
			assert.Equal(t, tc.wantAction, v.Action)
			if tc.wantReply != "" {
				assert.Equal(t, tc.wantReply, v.Reply.Error())
			}
			assert.Contains(t, v.Reason, "archive", "the reason is logged whatever the action")
		})
	}
	// An accepted unopenable archive does not hide a banned name.
	attach, err := NewAttachmentPolicy(AttachmentConfig{UnopenableArchives: ActLog})
	require.NoError(t, err)
	both := withParts(attachment("application/octet-stream", "a.rar", []byte("Rar!\x1a\x07\x00rest")), attachment("application/octet-stream", "x.exe", mzStub))
	v, err := newFilter(t, FilterConfig{Attachments: attach}).CheckData(context.Background(), c, txn, spool(t, both))
	require.NoError(t, err)
	assert.Equal(t, `552 5.7.0 Message rejected: attachment "x.exe" not allowed (banned-extension)`, v.Reply.Error())
}

func TestFilterLimits(t *testing.T) {
	w, err := NewWalker(WalkerConfig{Limits: Limits{MaxDepth: 3, MaxSize: 4096}})
	require.NoError(t, err)
	c, txn := session("user@example.com")

	f := newFilter(t, FilterConfig{Walker: w})
	v, err := f.CheckData(context.Background(), c, txn, spool(t, deepNesting(10)))
	require.NoError(t, err)
	assert.Equal(t, "554 5.6.0 Message rejected: MIME nesting too deep", v.Reply.Error())
	v, err = f.CheckData(context.Background(), c, txn, spool(t, "Subject: big\r\n\r\n"+strings.Repeat("x", 5000)))
	require.NoError(t, err)
	assert.Equal(t, "552 5.3.4 Message rejected: message too large to scan", v.Reply.Error())

	av := virus()
	f = newFilter(t, FilterConfig{Walker: w, OnLimit: ActLog, Virus: []ScannerEntry{{Scanner: av}}})
	v, err = f.CheckData(context.Background(), c, txn, spool(t, deepNesting(10)))
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Equal(t, int32(1), av.calls.Load(), "scanners still run")
	rep, _ := postern.GetValue(&txn.Values, ReportKey)
	assert.ErrorIs(t, rep.WalkErr, ErrLimit)

	// A message too large for a scorer is scored by none.
	sa := spam(20)
	f = newFilter(t, FilterConfig{Spam: []ScannerEntry{{Scanner: sa, SkipLarger: 10}}})
	v, err = f.CheckData(context.Background(), c, txn, spool(t, plainMsg))
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.Zero(t, sa.calls.Load())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = newFilter(t, FilterConfig{}).CheckData(ctx, c, txn, spool(t, plainMsg))
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNewFilterErrors(t *testing.T) {
	for _, cfg := range []FilterConfig{
		{Virus: []ScannerEntry{{}}},
		{Spam: []ScannerEntry{{Scanner: spam(1), OnError: 9}}},
		{OnVirus: 42},
		{TagScore: 10, RejectScore: 5},
		{SubjectPrefix: "[SPAM]\r\nBcc: x"},
	} {
		_, err := NewFilter(cfg)
		assert.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
}
