package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern/scan"
	"github.com/postern/postern/smtpserver/access"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name    string
		in      []float64
		want    Summary
		wantNaN bool
	}{
		{name: "odd", in: []float64{5, 1, 3}, want: Summary{N: 3, Median: 3, Min: 1, Max: 5, Q1: 2, Q3: 4}},
		{name: "even", in: []float64{4, 1, 3, 2}, want: Summary{N: 4, Median: 2.5, Min: 1, Max: 4, Q1: 1.75, Q3: 3.25}},
		{name: "one", in: []float64{7}, want: Summary{N: 1, Median: 7, Min: 7, Max: 7, Q1: 7, Q3: 7}},
		{name: "NaN left out", in: []float64{nan, 2, 4}, want: Summary{N: 2, Median: 3, Min: 2, Max: 4, Q1: 2.5, Q3: 3.5}},
		{name: "empty", in: nil, wantNaN: true},
		{name: "all NaN", in: []float64{nan}, wantNaN: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.in)
			if tc.wantNaN {
				assert.Zero(t, got.N)
				assert.True(t, math.IsNaN(got.Median))
				return
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestQuantile(t *testing.T) {
	s := []float64{10, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {0.5, 5.5}, {0.99, 9.91}, {1, 10}, {0.25, 3.25}} {
		assert.InDelta(t, tc.want, Quantile(s, tc.q), 1e-9, "q=%v", tc.q)
	}
	assert.Equal(t, 10.0, s[0], "Quantile must not sort its argument")
	assert.True(t, math.IsNaN(Quantile(nil, 0.5)))
}

func TestPairedRatios(t *testing.T) {
	got, err := PairedRatios([]float64{10, 6, 5}, []float64{5, 0, math.NaN()})
	require.NoError(t, err)
	assert.Equal(t, 2.0, got[0])
	assert.True(t, math.IsNaN(got[1]), "zero denominator")
	assert.True(t, math.IsNaN(got[2]), "missing denominator")
	_, err = PairedRatios([]float64{1}, []float64{1, 2})
	assert.Error(t, err)
}

// A section that failed part way has figures with fewer samples than
// others: its ratios are left empty, not computed from the wrong pairs.
func TestFinishPartial(t *testing.T) {
	s := newSection("x", "X", "")
	s.figure("a", "a", "")
	s.figure("b", "b", "")
	s.ratio("ab", "a/b", "a", "b").withTarget(">", 1)
	s.add("a", 2)
	s.add("b", 1)
	s.add("a", 3)
	require.Error(t, s.finish())
	r := s.Ratios[0]
	assert.True(t, math.IsNaN(r.Summary.Median))
	require.NotNil(t, r.Met)
	assert.False(t, *r.Met)
	s.add("b", 1)
	require.NoError(t, s.finish())
	assert.Equal(t, 2.5, s.Ratios[0].Summary.Median)
}

func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		v    float64
		want bool
	}{
		{Target{">", 2}, 2.1, true},
		{Target{">", 2}, 2, false},
		{Target{"<", 1.5}, 1.2, true},
		{Target{"<", 1.5}, 1.5, false},
		{Target{">", 0.5}, math.NaN(), false},
	} {
		assert.Equal(t, tc.want, tc.t.met(tc.v), "%s with %v", tc.t, tc.v)
	}
}

func TestSinkCounter(t *testing.T) {
	out := "\rsess=1 quit=1 mesg=1\rsess=2 quit=2 mesg=40\r\nnoise\rsess=3 quit=2 mesg=41"
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Split(splitCR)
	var sess, msgs []int64
	for sc.Scan() {
		if s, m, ok := parseSinkCounter(sc.Text()); ok {
			sess, msgs = append(sess, s), append(msgs, m)
		}
	}
	assert.Equal(t, []int64{1, 2, 3}, sess)
	assert.Equal(t, []int64{1, 40, 41}, msgs)
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		ok   bool
	}{
		{"220 ready\r\n", 220, true},
		{"250-relay\r\n250-SIZE 10\r\n250 DSN\r\n", 250, true},
		{"354\r\n", 354, true},
		{"25\r\n", 0, false},
		{"abc def\r\n", 0, false},
		{"250-unfinished\r\n", 0, false},
	} {
		code, _, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
		if !tc.ok {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.code, code)
	}
}

func TestDotStuff(t *testing.T) {
	assert.Equal(t, "a\r\n..b\r\nc\r\n", string(dotStuff([]byte("a\r\n.b\r\nc"))))
}

func TestFmtNum(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{12345.6, "12,346"}, {123.4, "123"}, {12.34, "12.3"}, {1.234, "1.23"}, {0.01234, "0.0123"}, {0, "0"}, {math.NaN(), "–"}, {-1234, "-1,234"}} {
		assert.Equal(t, tc.want, fmtNum(tc.v))
	}
	assert.Equal(t, "2.35", fmtRatio(2.349))
	assert.Equal(t, "12.3", fmtRatio(12.34))
}

func TestSelectSections(t *testing.T) {
	all, err := selectSections("")
	require.NoError(t, err)
	assert.True(t, all["ingest"])
	assert.False(t, all["breakdown"], "optional")
	some, err := selectSections("ingest, content")
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"ingest": true, "content": true}, some)
	_, err = selectSections("ingest,nope")
	assert.ErrorContains(t, err, `"nope"`)
}

// The access file must load without warnings: an entry that does not
// mean what it says would make the benchmark measure something else.
func TestAccessFileLoads(t *testing.T) {
	m, warnings, err := access.Parse(strings.NewReader(accessFile()), "access")
	require.NoError(t, err)
	assert.Empty(t, warnings)
	require.NotNil(t, m)
}

// The test message carries a DKIM signature that verifies with the
// published record, also after the LF round trip smtp-source's -F does.
func TestTestMessage(t *testing.T) {
	msg, record, err := testMessage()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "m")
	require.NoError(t, writeLF(p, msg))
	lf, err := os.ReadFile(p)
	require.NoError(t, err)
	crlf := bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))
	assert.Equal(t, msg, crlf)
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(crlf), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			require.Equal(t, dkimSelector+"._domainkey."+senderDomain, domain)
			return []string{record}, nil
		}})
	require.NoError(t, err)
	require.Len(t, verifs, 1)
	assert.NoError(t, verifs[0].Err)
	assert.GreaterOrEqual(t, len(msg), 1024)
}

func TestContentMix(t *testing.T) {
	mix, err := contentMix()
	require.NoError(t, err)
	again, err := contentMix()
	require.NoError(t, err)
	assert.Equal(t, mix, again, "the mix must be the same bytes every run")
	w, err := scan.NewWalker(scan.WalkerConfig{})
	require.NoError(t, err)
	pol, err := scan.NewAttachmentPolicy(scan.AttachmentConfig{})
	require.NoError(t, err)
	var found []string
	for _, m := range mix {
		c, err := w.Walk(context.Background(), bytes.NewReader(m))
		require.NoError(t, err)
		for _, p := range c.Parts {
			assert.Empty(t, p.Errors, "part %q", p.FileName)
		}
		for _, f := range pol.Check(context.Background(), c) {
			found = append(found, f.Name)
		}
	}
	require.Len(t, found, 1)
	assert.Contains(t, found[0], "invoice.pdf.exe")
}

// goldenResults is a run with fixed numbers.
func goldenResults(t *testing.T) *Results {
	t.Helper()
	r := &Results{Date: time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC), Command: "go run ./bench", Reps: 3, Seconds: 312,
		Machine: Machine{CPU: "Example CPU", Cores: 2, MemoryMiB: 4096, OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "Linux 6.1",
			SpoolDir: "/tmp/postern-bench-1", SpoolFS: "ext4 on /dev/vda mounted at / (rw,relatime)", SpoolDisk: "vda: virtio_blk, non-rotational",
			GoVersion: "go1.26.0", Postfix: "3.7.11", LoadBefore: "0.10 0.20 0.30"}}
	in := newSection("ingest", "Ingest", "Setup text.")
	in.Number = 1
	in.figure("accept/postern", "Postern | relay", "msgs/s").Samples = Nums{1500, 1400, 1600}
	in.figure("accept/postfix", "Postfix", "msgs/s").Samples = Nums{500, 700, 600}
	in.figure("accept/bare", "bare", "msgs/s").Samples = Nums{4000, 4100, math.NaN()}
	in.ratio("pp", "Postern/Postfix", "accept/postern", "accept/postfix").withTarget(">", 2).inChart()
	in.ratio("pb", "Postern/bare", "accept/postern", "accept/bare").withTarget(">", 0.5).inChart()
	in.Checks = []string{"All arrived."}
	lat := newSection("latency", "Latency", "")
	lat.Number = 6
	lat.figure("a", "alone", "ms").Samples = Nums{1.2, 1.1, 1.3}
	lat.figure("b", "loaded", "ms").Samples = Nums{12, 10, 30}
	lat.ratio("ba", "loaded/alone", "b", "a").lowerIsBetter().inChart()
	failed := newSection("greetpause", "Greet pause", "")
	failed.Number = 3
	failed.Error = "crowd: connection refused"
	r.Sections = []*Section{in, failed, lat}
	for _, s := range r.Sections {
		require.NoError(t, s.finish())
	}
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(p, got, 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "run go test ./bench -run Golden -update")
	assert.Equal(t, string(want), string(got))
}

func TestReportGolden(t *testing.T) {
	r := goldenResults(t)
	var md, svg bytes.Buffer
	require.NoError(t, WriteMarkdown(&md, r, "chart.svg"))
	require.NoError(t, WriteChart(&svg, r))
	golden(t, "report.golden.md", md.Bytes())
	golden(t, "chart.golden.svg", svg.Bytes())
	assert.Contains(t, md.String(), `| Postern \| relay |`, "table cells are escaped")
	assert.Contains(t, md.String(), "| Postern/Postfix | 2.67 | 2.00–3.00 | > 2 | met |")
	assert.Contains(t, md.String(), "| Postern/bare | 0.36 | 0.34–0.38 | > 0.5 | missed by 28 % |")
	assert.Contains(t, md.String(), "**Failed:** crowd: connection refused")
}

// results.json keeps NaN samples as null and gives the same report back.
func TestResultsJSON(t *testing.T) {
	r := goldenResults(t)
	js, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Contains(t, string(js), `"samples":[4000,4100,null]`)
	var back Results
	require.NoError(t, json.Unmarshal(js, &back))
	for _, s := range back.Sections {
		require.NoError(t, s.finish())
	}
	var a, b bytes.Buffer
	require.NoError(t, WriteMarkdown(&a, r, "chart.svg"))
	require.NoError(t, WriteMarkdown(&b, &back, "chart.svg"))
	assert.Equal(t, a.String(), b.String())
}

func TestRender(t *testing.T) {
	dir := t.TempDir()
	r := goldenResults(t)
	var discard bytes.Buffer
	require.NoError(t, writeOutputs(r, dir, &discard))
	out := t.TempDir()
	var stdout bytes.Buffer
	require.Equal(t, 0, run([]string{"-render", filepath.Join(dir, "results.json"), "-out", out}, &stdout, &discard), discard.String())
	md, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	require.NoError(t, err)
	assert.Equal(t, string(md), stdout.String())
	first, err := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	require.NoError(t, err)
	assert.Equal(t, string(first), string(md))
}

func TestFlags(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"-reps", "-1"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"-only", "nope"}, &out, &errb))
	assert.Equal(t, 1, run([]string{"-render", filepath.Join(t.TempDir(), "missing.json"), "-out", t.TempDir()}, &out, &errb))
}
