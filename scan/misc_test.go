package scan

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/scan/scanner"
)

// Inputs where enmime finds boundaries RFC 2046 would not: the pre-scan
// must count at least what enmime builds (FuzzWalk checks this at large).
func TestPrescanMirrorsEnmime(t *testing.T) {
	tests := map[string]string{
		"delimiter after one junk byte":    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\nX--b \r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\ny\r\n--c--\r\n--b--\r\n",
		"delimiter inside a preamble line": "Content-Type: multipart/mixed; boundary=b\r\n\r\nsee --b here\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\n--c--\r\n--b--\r\n",
		"lone CR before a boundary":        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nbody\rX--b \r\ngarbage --b \r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\n--c--\r\n",
		"outer boundary closes inner":      "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n",
		"attached message in the clear":    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n",
		"header continued without indent":  "Content-Type: multipart/mixed;\r\nboundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
		"space before the colon":           "Content-Type : multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
	}
	lim, _ := Limits{}.withDefaults()
	w, _ := NewWalker(WalkerConfig{})
	for name, msg := range tests {
		t.Run(name, func(t *testing.T) {
			st, err := prescan(context.Background(), []byte(msg), &lim, 0, "0", lim.MaxParts)
			require.NoError(t, err)
			root, err := w.parser.ReadParts(bytes.NewReader([]byte(msg)))
			require.NoError(t, err)
			n, d := enmimeShape(root, 0)
			assert.GreaterOrEqual(t, st.parts, n)
			assert.GreaterOrEqual(t, st.maxDepth, d)
			t.Logf("enmime %d entities %d deep; pre-scan %d, %d deep", n, d, st.parts, st.maxDepth)
		})
	}
}

func TestSubjectEdits(t *testing.T) {
	m := spool(t, "From: a@example.org\r\n\r\nbody\r\n")
	assert.Equal(t, []postern.HeaderEdit{{Kind: postern.EditAdd, Name: "Subject", Value: "[SPAM]"}}, subjectEdits(m, "", "[SPAM]"))

	m = spool(t, "Subject: hello\r\n\r\nbody\r\n")
	edits := subjectEdits(m, "hello", "【迷惑】")
	require.Len(t, edits, 2)
	assert.Equal(t, "=?utf-8?q?=E3=80=90=E8=BF=B7=E6=83=91=E3=80=91?= hello", edits[1].Value)
	applyEdits(m, edits)
	var b bytes.Buffer
	require.NoError(t, m.Render(&b))
	c, err := walk(t, Limits{}, b.String())
	require.NoError(t, err)
	assert.Equal(t, "【迷惑】 hello", c.Subject)

	// Before an encoded word the space goes inside the prefix's own.
	m = spool(t, "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n")
	edits = subjectEdits(m, "café", "【迷惑】")
	applyEdits(m, edits)
	b.Reset()
	require.NoError(t, m.Render(&b))
	c, err = walk(t, Limits{}, b.String())
	require.NoError(t, err)
	assert.Equal(t, "【迷惑】 café", c.Subject)

	m = spool(t, "Subject:\r\n folded start\r\n\r\nbody\r\n")
	edits = subjectEdits(m, "folded start", "[SPAM]")
	assert.Equal(t, "[SPAM]\r\n folded start", edits[1].Value)
}

// The scanner contract moved to scan/scanner; its names here are the
// same types and errors, so code written against scan keeps working.
func TestScannerAliases(t *testing.T) {
	var r scanner.Result = Result{Scanner: "clamd"}
	assert.Equal(t, "clamd: clean", r.String())
	assert.Same(t, scanner.ErrScanner, ErrScanner)
	assert.Same(t, scanner.ErrTooLarge, ErrTooLarge)
	_, _, err := SplitAddr("localhost")
	assert.ErrorIs(t, err, ErrConfig, "SplitAddr's error is this package's ErrConfig")
	var s Scanner = scanner.Func("x", nil)
	assert.Equal(t, "x", s.Name())
}

func TestActionsAndNames(t *testing.T) {
	for _, a := range []Action{ActDefault, ActReject, ActQuarantine, ActDiscard, ActLog} {
		got, err := ParseAction(a.String())
		require.NoError(t, err)
		assert.Equal(t, a, got)
	}
	_, err := ParseAction("bounce")
	assert.ErrorIs(t, err, ErrConfig)
	assert.Equal(t, "action(9)", Action(9).String())
	assert.Equal(t, "tagged", SpamTagged.String())
	assert.Equal(t, "off", SpamOff.String())
	assert.Equal(t, "banned-extension", BannedExtension.String())
	assert.Equal(t, "message too large to scan", LimitSize.Describe())
	assert.Equal(t, "scan", newFilter(t, FilterConfig{}).Name())
}

func TestLoadPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy")
	require.NoError(t, os.WriteFile(path, []byte(samplePolicy), 0o644))
	p, err := LoadPolicy(path)
	require.NoError(t, err)
	assert.Equal(t, p, p.Current())
	_, err = LoadPolicy(path + ".missing")
	assert.Error(t, err)
}

func TestPartOpen(t *testing.T) {
	c, err := walk(t, Limits{}, withParts(attachment("application/octet-stream", "a.bin", mzStub)))
	require.NoError(t, err)
	for _, p := range c.Parts {
		var b bytes.Buffer
		_, _ = b.ReadFrom(p.Open())
		assert.Equal(t, p.Size, int64(b.Len()), p.ID)
	}
	assert.True(t, strings.HasPrefix(c.Parts[2].Sniffed, "application/x-msdownload"))
}
