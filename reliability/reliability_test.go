package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// logWriter sends the suite's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// settled fails or skips the test as the scenario's outcome says: a
// missing peer skips (fails under CI=true, which the suite already
// turned into a failure).
func settled(t *testing.T, o *Outcome) {
	t.Helper()
	switch o.Status {
	case StatusSkip:
		t.Skip(o.Skipped)
	case StatusFail:
		t.Fatalf("failed:\n%s", strings.Join(o.Failures, "\n"))
	case StatusPass:
	default:
		t.Fatalf("status %q", o.Status)
	}
}

// TestSmoke runs every scenario at a small scale against the real relay
// and real peers. Timing bounds are out of the way (a shared CI machine
// says nothing about them); counts are checked.
func TestSmoke(t *testing.T) {
	ctx := context.Background()
	s, err := newSuite(ctx, logWriter{t}, os.Getenv("CI") == "true", false)
	require.NoError(t, err)
	t.Cleanup(s.close)

	t.Run("crash", func(t *testing.T) {
		r := runCrash(ctx, s, CrashConfig{Cycles: 2, Sessions: 2, Clients: 2, MinUp: 700 * time.Millisecond,
			MaxUp: 700 * time.Millisecond, Drain: time.Minute, Quiet: 3 * time.Second})
		settled(t, &r.Outcome)
		assert.Positive(t, r.Acknowledged)
		assert.Zero(t, r.Lost)
		assert.Equal(t, r.Acknowledged, r.Delivered)
		assert.Len(t, r.PerCycle, 2)
		assert.Positive(t, r.LoadDelivered, "smtp-source's load reached the sink")
	})
	t.Run("slow", func(t *testing.T) {
		r := runSlow(ctx, s, SlowConfig{Conns: 100, Probes: 6, Hold: 2 * time.Second, MaxRatio: 1e9})
		settled(t, &r.Outcome)
		assert.Equal(t, 2, r.Sources)
		assert.Equal(t, 100, r.Admitted)
		assert.Equal(t, 50, r.InData)
		assert.Equal(t, 100, r.StillOpen)
		assert.True(t, strings.HasPrefix(r.OverLimit, "421 "), r.OverLimit)
		assert.Positive(t, r.UnloadedMedianMs)
		assert.Positive(t, r.LoadedMedianMs)
	})
	t.Run("faults", func(t *testing.T) {
		r := runFaults(ctx, s, FaultsConfig{Messages: 2})
		assert.Len(t, r.Cases, 11)
		for _, c := range r.Cases {
			t.Run(c.Name, func(t *testing.T) {
				settled(t, &c.Outcome)
				assert.Zero(t, c.Lost)
				assert.Positive(t, c.Sent)
			})
		}
	})
	t.Run("hostile", func(t *testing.T) {
		r := runHostile(ctx, s, HostileConfig{MaxCaseTime: 5 * time.Minute, Sample: 4})
		settled(t, &r.Outcome)
		assert.Positive(t, r.Dialogs)
		assert.Positive(t, r.Messages)
		assert.Equal(t, r.Dialogs+r.Messages, r.Answered)
		assert.True(t, r.Alive)
		assert.True(t, r.CleanStop)
		assert.Positive(t, r.PeakRSSKiB)
	})
	t.Run("seams", func(t *testing.T) {
		r := runSeams(ctx, s, SeamsConfig{})
		require.Len(t, r.Cases, len(seamDefs()), "every case runs")
		for _, c := range r.Cases {
			t.Run(c.ID, func(t *testing.T) {
				if c.Status == StatusKnown {
					t.Logf("known issue: %s (%s)", c.Known, strings.Join(c.Failures, "; "))
					return
				}
				settled(t, &c.Outcome)
				assert.NotEmpty(t, c.Reply)
				assert.NotEmpty(t, c.Delivered)
			})
		}
		assert.Zero(t, r.Failed)
		assert.Equal(t, len(r.Cases), r.Passed+r.Known+r.Skipped)
	})
	t.Run("fuzz", func(t *testing.T) {
		r := runFuzz(ctx, s, FuzzConfig{Time: "200x", Packages: []string{"."}, Targets: []string{"FuzzParseReply"},
			CrasherDir: t.TempDir()})
		settled(t, &r.Outcome)
		require.Len(t, r.Targets, 1)
		assert.Equal(t, fuzzOK, r.Targets[0].Result)
		assert.Positive(t, r.TotalExecs)
	})
}

// A crasher is found, reported with its input and moved out of the
// package that has the target. The module is a throwaway one.
func TestFuzzCrasherMoved(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(text), 0o644))
	}
	write("go.mod", "module crashy\n\ngo 1.26\n")
	write("crashy_test.go", `package crashy

import "testing"

func FuzzCrash(f *testing.F) {
	f.Add([]byte("seed"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if string(b) != "seed" {
			t.Fatal("found it") // the first mutation
		}
	})
}

func FuzzFine(f *testing.F) {
	f.Add(1)
	f.Fuzz(func(t *testing.T, n int) {})
}
`)
	s := &suite{root: root, out: logWriter{t}}
	crashers := t.TempDir()
	r := runFuzz(context.Background(), s, FuzzConfig{Time: "500x", CrasherDir: crashers})
	require.Len(t, r.Targets, 2)
	assert.Equal(t, StatusFail, r.Status)
	assert.Equal(t, 1, r.Crashers)
	byName := map[string]*FuzzTarget{}
	for _, tg := range r.Targets {
		byName[tg.Name] = tg
	}
	crash := byName["FuzzCrash"]
	require.NotNil(t, crash)
	require.Equal(t, fuzzCrasher, crash.Result, crash.Output)
	assert.True(t, strings.HasPrefix(crash.Crasher, crashers), crash.Crasher)
	assert.Contains(t, crash.Input, "go test fuzz v1")
	b, err := os.ReadFile(crash.Crasher)
	require.NoError(t, err)
	assert.Contains(t, string(b), "[]byte(")
	_, err = os.Stat(filepath.Join(root, "testdata"))
	assert.True(t, os.IsNotExist(err), "the crasher is gone from the package")
	assert.Equal(t, fuzzOK, byName["FuzzFine"].Result, byName["FuzzFine"].Output)
}

func TestParseReplyLine(t *testing.T) {
	tests := []struct {
		line        string
		code        string
		final       bool
		err         string
		description string
	}{
		{"250 2.0.0 Ok\r\n", "250", true, "", "final line"},
		{"250-PIPELINING\r\n", "250", false, "", "continuation"},
		{"221\r\n", "221", true, "", "code only"},
		{"250 Ok\n", "250", true, "not ended by CRLF", "bare LF"},
		{"250 Ok", "250", true, "not ended by CRLF", "cut off"},
		{"hello\r\n", "", false, "no reply code", "no code"},
		{"150 wrong class\r\n", "", false, "no reply code", "1xx is not an SMTP reply"},
		{"25 short\r\n", "", false, "no reply code", "two digits"},
		{"250x\r\n", "", false, "code not followed by space or hyphen", "junk after code"},
		{"250 nul\x00\r\n", "250", true, "control character in the text", "NUL"},
		{"250 " + strings.Repeat("a", 600) + "\r\n", "250", true, "longer than 512 octets", "overlong"},
		{"250 " + strings.Repeat("a", 506) + "\r\n", "250", true, "", "exactly 512 octets"},
	}
	for _, tc := range tests {
		t.Run(tc.description, func(t *testing.T) {
			l := parseReplyLine(tc.line)
			assert.Equal(t, tc.code, l.Code)
			assert.Equal(t, tc.final, l.Final)
			assert.Equal(t, tc.err, l.Err)
		})
	}
}

func TestReadReplies(t *testing.T) {
	in := "220 hi\r\n250-a\r\n250 b\r\n" + "250 " + strings.Repeat("x", 5000) + "\r\n" + "221 bye"
	ch := make(chan replyLine, 16)
	readReplies(strings.NewReader(in), ch)
	var got []string
	for l := range ch {
		got = append(got, l.Code+"/"+l.Err)
	}
	assert.Equal(t, []string{"220/", "250/", "250/", "250/longer than 512 octets", "221/not ended by CRLF"}, got)
}

func TestParseFuzzList(t *testing.T) {
	out := "FuzzA\nFuzzB\nok  \tgithub.com/x/a\t0.01s\n?   \tgithub.com/x/none\t[no test files]\n" +
		"ok  \tgithub.com/x/empty\t0.01s\nFuzzC\nok  \tgithub.com/x/c\t(cached)\n"
	got := parseFuzzList([]byte(out))
	require.Len(t, got, 3)
	assert.Equal(t, FuzzTarget{Package: "github.com/x/a", Name: "FuzzA"}, *got[0])
	assert.Equal(t, FuzzTarget{Package: "github.com/x/a", Name: "FuzzB"}, *got[1])
	assert.Equal(t, FuzzTarget{Package: "github.com/x/c", Name: "FuzzC"}, *got[2])
}

func TestFuzzOutcome(t *testing.T) {
	progress := "fuzz: elapsed: 0s, gathering baseline coverage: 0/5 completed\n" +
		"fuzz: elapsed: 3s, execs: 1200 (400/sec), new interesting: 1 (total: 6)\n" +
		"fuzz: elapsed: 10s, execs: 4711 (470/sec), new interesting: 2 (total: 7)\n"
	exit := &exec.ExitError{}
	tests := []struct {
		name    string
		out     string
		err     error
		execs   int64
		result  string
		crasher string
	}{
		{"ok", progress + "PASS\nok  \tx\t10.1s\n", nil, 4711, fuzzOK, ""},
		{"spurious deadline", progress + "--- FAIL: FuzzReadEnvelope (10.37s)\n    context deadline exceeded\nFAIL\nexit status 1\n", exit, 4711, fuzzDeadline, ""},
		{"crasher", progress + "--- FAIL: FuzzX (3.2s)\n    Failing input written to testdata/fuzz/FuzzX/0123abcd\n", exit, 4711, fuzzCrasher,
			"testdata/fuzz/FuzzX/0123abcd"},
		{"deadline and a failing test", progress + "--- FAIL: FuzzX (3.2s)\n    context deadline exceeded\n    --- FAIL: FuzzX/seed#1 (0.00s)\n        x_test.go:9: bad\n", exit, 4711, fuzzFail, ""},
		{"deadline among other words", progress + "--- FAIL: FuzzX (3.2s)\n    x_test.go:9: dial: context deadline exceeded\n", exit, 4711, fuzzFail, ""},
		{"deadline before fuzzing", "context deadline exceeded\n", exit, 0, fuzzFail, ""},
		{"build error", "# x\n./x.go:1: syntax error\nFAIL\tx [build failed]\n", exit, 0, fuzzFail, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			execs, result, crasher := fuzzOutcome(tc.out, tc.err)
			assert.Equal(t, tc.execs, execs)
			assert.Equal(t, tc.result, result)
			assert.Equal(t, tc.crasher, crasher)
		})
	}
}

func TestHelpers(t *testing.T) {
	assert.Equal(t, "220 250x3 500 221", abbreviate("220 250 250 250 500 221"))
	assert.Equal(t, "250 250", abbreviate("250 250"))
	assert.Equal(t, "250×2 451×1", replyCounts(map[string]int{"451": 1, "250": 2}))
	assert.Equal(t, "-", replyCounts(nil))
	assert.Equal(t, "a ⏎ b ⏎ c", oneLine("a\r\nb\rc"), "no CR is left to break a table row")
	ds := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	assert.InDelta(t, 3.0, quantileMs(ds, 0.5), 1e-9)
	assert.InDelta(t, 5.0, quantileMs(ds, 0.9), 1e-9)
	assert.Zero(t, quantileMs(nil, 0.5))
	assert.Equal(t, "<a@b>", messageID([]byte("Subject: x\r\nMessage-ID:  <a@b> \r\n\r\nbody")))
	assert.Equal(t, "", messageID([]byte("no header at all")))
	assert.True(t, selected("dns-down", []string{"dns"}))
	assert.False(t, selected("redis-up", []string{"dns", "disk"}))
	assert.True(t, selected("redis-up", nil))

	var o Outcome
	o.skip(false, ErrMissing)
	o.settle()
	assert.Equal(t, StatusSkip, o.Status)
	o = Outcome{}
	o.skip(true, ErrMissing) // CI=true: a missing peer fails
	o.settle()
	assert.Equal(t, StatusFail, o.Status)
	_, err := lookTool("no-such-peer-program")
	assert.ErrorIs(t, err, ErrMissing)
}

func TestHostileCorpus(t *testing.T) {
	cases, err := mimeCases()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, c := range cases {
		assert.False(t, names[c.name], "duplicate %s", c.name)
		names[c.name] = true
		assert.NotEmpty(t, c.data, c.name)
	}
	assert.True(t, names["enmime/low-quality/bad-final-boundary.raw"])
	assert.True(t, names["postern/fuzz-newmessage-obsolete-and-cr.raw"])
	assert.Greater(t, len(cases), 100)
	for _, d := range dialogs(newTestRand()) {
		assert.NotEmpty(t, d.steps, d.name)
		assert.True(t, strings.HasPrefix(d.want, "^220") && strings.HasSuffix(d.want, "$"), d.name)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-scenarios", "crash, fuzz,seams", "-fuzztime", "2000x", "-faults-only", "dns,disk",
		"-seams-only", "5b,Backscatter"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, []string{"crash", "fuzz", "seams"}, o.scenarios)
	assert.Equal(t, []string{"5b", "Backscatter"}, o.seams.Only)
	assert.Equal(t, "2000x", o.fuzz.Time)
	assert.Equal(t, []string{"dns", "disk"}, o.faults.Only)
	assert.Equal(t, 10, o.crash.Cycles)
	for _, bad := range [][]string{{"-scenarios", "crash,bogus"}, {"-cycles", "0"}, {"extra"}} {
		_, err := parseFlags(bad, &bytes.Buffer{})
		assert.Error(t, err, "%q", bad)
	}
}

// The Markdown report of a fixed result, against testdata/report.golden
// (go test -run TestReportGolden -update rewrites it).
func TestReportGolden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, sampleResults().writeMarkdown(&b))
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, b.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), b.String())
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(7, 7)) }

func sampleResults() *Results {
	r := &Results{Date: "2026-01-02T03:04:05Z", Command: "go run ./reliability", Seconds: 321,
		Machine: Machine{CPUs: 2, CPU: "Test CPU", Memory: "24.0 GiB", Kernel: "6.1.0", Go: "go1.26.0", OSArch: "linux/amd64"}}
	r.Crash = &CrashResult{Outcome: Outcome{Status: StatusPass}, Cycles: 10, Sessions: 8, Clients: 4, Attempted: 1000,
		Acknowledged: 990, Delivered: 990, Duplicates: 7, DuplicatedIDs: 6, UnackedDelivered: 3, LoadDelivered: 5000,
		DrainSeconds: 7.5, PerCycle: []CrashCycle{{UpMillis: 1500, Attempted: 100, Acknowledged: 99}}}
	r.Slow = &SlowResult{Outcome: Outcome{Status: StatusFail, Failures: []string{"loaded median 9.00 ms is 3.00x the unloaded 3.00 ms (allowed 2.0x)"}},
		Conns: 1000, Sources: 20, PerSource: 50, NoFile: 20000, Admitted: 1000, InData: 500, StillOpen: 1000, Trickled: 30000,
		OverLimit: "421 4.7.0 too many connections", Probes: 40, UnloadedMedianMs: 3, UnloadedP90Ms: 4, LoadedMedianMs: 9,
		LoadedP90Ms: 12, Ratio: 3, MaxRatio: 2, RSSKiB: 50000}
	r.Faults = &FaultsResult{Outcome: Outcome{Status: StatusPass}, Cases: []*FaultCase{
		{Outcome: Outcome{Status: StatusPass, Notes: []string{"all delivered 1.2s after the next hop came back"}}, Name: "downstream-down",
			Fault: "next hop down", Expect: "250, retried", Sent: 3, Replies: map[string]int{"250": 3}, Acknowledged: 3, Delivered: 3},
		{Outcome: Outcome{Status: StatusSkip, Skipped: "clamd is not installed"}, Name: "clamd-up", Fault: "none (control)",
			Expect: "clean: 250 | EICAR: 5xx", Replies: map[string]int{}},
	}}
	r.Hostile = &HostileResult{Outcome: Outcome{Status: StatusPass}, Dialogs: 2, Messages: 1, Answered: 3,
		Replies: map[string]int{"250": 1}, MaxMillis: 10050, MaxCase: "error flood", MaxRSSKiB: 40000, PeakRSSKiB: 41000,
		StartRSSKiB: 19000, Alive: true, CleanStop: true, Delivered: 1, BoundMillis: 30000, BoundRSSKiB: 524288,
		KnownIssues: []string{"BDAT chunk cut short: accepted"},
		Cases: []*HostileCase{{Kind: "dialog", Name: "NUL in a command", Codes: "220 500 250 221", Millis: 1.5, Status: StatusPass},
			{Kind: "dialog", Name: "BDAT chunk cut short", Codes: "220 250 250 250 250", Millis: 2, Status: StatusKnown},
			{Kind: "mime", Name: "enmime/mail/x.raw", Codes: "250", Millis: 3, Status: StatusPass}}}
	r.Seams = &SeamsResult{Outcome: Outcome{Status: StatusPass}, Passed: 2, Known: 1, Skipped: 1, Seconds: 12, Cases: []*SeamCase{
		{Outcome: Outcome{Status: StatusPass}, ID: "1", Group: "Loops", Attack: "RCPT TO:<user@localhost> | from outside",
			Reply: "550 5.7.1 Relay access denied", Delivered: "nothing", Expect: "550 5.7.1"},
		{Outcome: Outcome{Status: StatusSkip, Skipped: "reliability: needs root"}, ID: "B1", Group: "Loops", Attack: "battery",
			Expect: "27 attempts, 0 relayed"},
		{Outcome: Outcome{Status: StatusKnown, Failures: []string{"the notice says Status: 5.1.3, want 5.4.6"}}, ID: "O2", Group: "Loops",
			Attack: "mapped loopback", Reply: "250 250 354 → 250 2.0.0 Ok", Delivered: "1 notice", Expect: "5.4.6", Known: "route refuses it"},
		{Outcome: Outcome{Status: StatusPass, Notes: []string{"the 250 names the canonical form"}}, ID: "5b", Group: "Addresses",
			Attack: `RCPT TO:<"ceo(x)"@example.test>`, Reply: "250", Delivered: `RCPT TO:<"ceo(x)"@example.test>`, Expect: "250"},
	}}
	r.Fuzz = &FuzzResult{Outcome: Outcome{Status: StatusFail, Failures: []string{"github.com/postern/postern/scan FuzzWalk: crasher /x"}},
		Time: "10s", TotalExecs: 3000, Crashers: 1, Targets: []*FuzzTarget{
			{Package: "github.com/postern/postern", Name: "FuzzParseReply", Execs: 2000, Seconds: 12, Result: fuzzOK},
			{Package: "github.com/postern/postern/scan", Name: "FuzzWalk", Execs: 1000, Seconds: 11, Result: fuzzCrasher,
				Crasher: "/x", Input: `"go test fuzz v1\n[]byte(\"x\")"`}}}
	return r
}

func TestWireTxns(t *testing.T) {
	wire := "EHLO relay\r\nMAIL FROM:<\"a b\"@x.example> BODY=8BITMIME\r\nRCPT TO:<\"ceo(x)\"@example.test> NOTIFY=NEVER\r\n" +
		"RCPT TO:<b@example.test>\r\nDATA\r\nSubject: x\r\n\r\n..\r\nline\r\n.\r\n" +
		"MAIL FROM:<probe@x.example>\r\nRCPT TO:<c@example.test>\r\nRSET\r\n" +
		"MAIL FROM:<>\r\nRCPT TO:<d@example.test>\r\nDATA\r\n.\r\nQUIT\r\n"
	got := wireTxns([]byte(wire))
	require.Len(t, got, 3)
	assert.Equal(t, `<"a b"@x.example> BODY=8BITMIME`, got[0].Mail)
	assert.Equal(t, []string{`<"ceo(x)"@example.test> NOTIFY=NEVER`, "<b@example.test>"}, got[0].Rcpts)
	assert.Equal(t, "Subject: x\r\n\r\n..\r\nline\r\n", string(got[0].Data))
	assert.Nil(t, got[1].Data, "a call-ahead probe has no DATA")
	assert.NotNil(t, got[2].Data)
	assert.Empty(t, got[2].Data)
	cut := wireTxns([]byte("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial"))
	require.Len(t, cut, 1)
	assert.Equal(t, "partial", string(cut[0].Data))
}

func TestWirePath(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b> SIZE=10":                  "<a@b>",
		`<"a b"@c> NOTIFY=NEVER`:         `<"a b"@c>`,
		`<"a>b"@c> X=1`:                  `<"a>b"@c>`,
		`<"a\"> b"@c>`:                   `<"a\"> b"@c>`,
		"<>":                             "<>",
		"no angle brackets":              "no angle brackets",
		`<"unterminated@c> NOTIFY=NEVER`: `<"unterminated@c> NOTIFY=NEVER`,
	} {
		assert.Equal(t, want, wirePath(in), in)
	}
}

func TestBareLineEnds(t *testing.T) {
	assert.Zero(t, bareLineEnds([]byte("a\r\nb\r\n")))
	assert.Equal(t, 1, bareLineEnds([]byte("a\rb\r\n")))
	assert.Equal(t, 1, bareLineEnds([]byte("a\nb")))
	assert.Equal(t, 2, bareLineEnds([]byte("\n\r")))
	assert.Equal(t, 1, bareLineEnds([]byte("\r\r\n")))
}

func TestSeamHelpers(t *testing.T) {
	assert.Equal(t, "250 250 354 → 250 2.0.0 Ok", summary([]string{"250 a", "250 b", "354 go", "250 2.0.0 Ok"}))
	assert.Equal(t, "554 5.4.6 x", summary([]string{"554 5.4.6 x"}))
	assert.Equal(t, "no reply", summary(nil))
	assert.Equal(t, "5.4.6", statusOf([]byte("Reporting-MTA: dns; x\r\nStatus: 5.4.6\r\n")))
	assert.Equal(t, "", statusOf([]byte("Subject: Status: 5.4.6\r\n")))
	k := &knownIssue{"x", regexp.MustCompile(`^want 5\.4\.6`)}
	assert.True(t, k.covers([]string{"want 5.4.6 a", "want 5.4.6 b"}))
	assert.False(t, k.covers([]string{"want 5.4.6 a", "the relay died"}), "another failure is a failure")
	assert.False(t, k.covers(nil))
	var none *knownIssue
	assert.False(t, none.covers([]string{"x"}))
	assert.True(t, hasFlag([]string{"-a", "-listen", "x"}, "-listen"))
	assert.True(t, hasFlag([]string{"-listen=x"}, "-listen"))
	assert.False(t, hasFlag([]string{"-listener"}, "-listen"))
}

// The cases of the issue are all there, each defined once, with at least
// three of our own; the battery has its 27 distinct attempts.
func TestSeamDefs(t *testing.T) {
	ids := map[string]bool{}
	own := 0
	for _, d := range seamDefs() {
		assert.False(t, ids[d.id], "duplicate %s", d.id)
		ids[d.id] = true
		assert.NotEmpty(t, d.attack, d.id)
		assert.NotEmpty(t, d.expect, d.id)
		assert.NotEmpty(t, d.group, d.id)
		assert.NotNil(t, d.run, d.id)
		if strings.HasPrefix(d.id, "O") {
			own++
		}
	}
	for i := 1; i <= 18; i++ {
		n := fmt.Sprint(i)
		assert.True(t, ids[n] || ids[n+"a"], "case %d of the issue", i)
	}
	assert.True(t, ids["B1"] && ids["B2"], "the battery against the defaults and the migration example")
	assert.GreaterOrEqual(t, own, 3)
	seen := map[[2]string]bool{}
	for _, a := range relayBattery("example.test", "127.0.0.1") {
		assert.False(t, seen[a], "duplicate attempt %v", a)
		seen[a] = true
	}
	assert.Len(t, seen, 27)
}
