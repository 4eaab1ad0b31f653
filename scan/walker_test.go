package scan

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/transform"
)

func sjis(t testing.TB, s string) string {
	b, _, err := transform.String(japanese.ShiftJIS.NewEncoder(), s)
	require.NoError(t, err)
	return b
}

func iso2022jp(t testing.TB, s string) string {
	b, _, err := transform.String(japanese.ISO2022JP.NewEncoder(), s)
	require.NoError(t, err)
	return b
}

func TestWalkStructure(t *testing.T) {
	msg := nestedEICAR(t)
	c, err := walk(t, Limits{}, msg)
	require.NoError(t, err)
	type row struct {
		id, ctype, name, sniffed string
		depth                    int
		multipart                bool
	}
	var got []row
	for _, p := range c.Parts {
		got = append(got, row{p.ID, p.ContentType, p.FileName, p.Sniffed, p.Depth, p.Multipart})
	}
	assert.Equal(t, []row{
		{"0", "multipart/alternative", "", "", 0, true},
		{"1", "text/plain", "", "text/plain", 1, false},
		{"2", "multipart/mixed", "", "", 1, true},
		{"2.1", "text/plain", "", "text/plain", 2, false},
		{"2.2", "application/zip", "report.zip", "application/zip", 2, false},
	}, got)
	assert.Equal(t, "report", c.Subject)
	assert.Equal(t, int64(len(msg)), c.Size)
	txt, ok := c.Parts[3].Text()
	assert.True(t, ok)
	assert.Equal(t, "The report is attached.", strings.TrimSpace(txt))
	_, ok = c.Parts[4].Text()
	assert.False(t, ok)
	assert.True(t, c.Parts[4].IsAttachment())
	assert.Equal(t, "base64", c.Parts[4].Encoding)
	assert.Equal(t, 2, c.Parts[3].Parent)
}

func TestWalkAttachedMessage(t *testing.T) {
	inner := "Subject: inner\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n" +
		multipart("in", "Content-Type: text/plain\r\n\r\nhello http://inner.example/\r\n", attachment("application/octet-stream", "x.exe", mzStub))
	msg := "Subject: outer\r\nContent-Type: multipart/mixed; boundary=out\r\n\r\n" +
		multipart("out", "Content-Type: text/plain\r\n\r\nsee attached\r\n",
			"Content-Type: message/rfc822\r\n\r\n"+inner)
	c, err := walk(t, Limits{}, msg)
	require.NoError(t, err)
	var ids []string
	for _, p := range c.Parts {
		ids = append(ids, fmt.Sprintf("%s@%d", p.ID, p.Depth))
	}
	assert.Equal(t, []string{"0@0", "1@1", "2@1", "2.1@2", "2.1.1@3", "2.1.2@3"}, ids)
	assert.True(t, c.Parts[2].Message)
	assert.Equal(t, "x.exe", c.Parts[5].FileName)
	assert.Equal(t, TypeWindowsExecutable, c.Parts[5].Sniffed)
	assert.Equal(t, sha256.Sum256(mzStub), c.Parts[5].SHA256)
	assert.Equal(t, int64(len(mzStub)), c.Parts[5].Size)
	assert.Equal(t, "outer", c.Subject)
	assert.Equal(t, []string{"http://inner.example/"}, c.URLs)

	// The attached message counts against the depth limit.
	_, err = walk(t, Limits{MaxDepth: 2}, msg)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, LimitDepth, le.Limit)
}

func TestWalkCharsets(t *testing.T) {
	const ja = "こんにちは、世界"
	tests := []struct {
		name, header, body, want string
	}{
		{"iso-2022-jp 7bit", "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit", iso2022jp(t, ja), ja},
		{"shift_jis 8bit", "Content-Type: text/plain; charset=Shift_JIS\r\nContent-Transfer-Encoding: 8bit", sjis(t, ja), ja},
		{"shift_jis base64", "Content-Type: text/plain; charset=\"shift_jis\"\r\nContent-Transfer-Encoding: base64", b64([]byte(sjis(t, ja))), ja},
		{"latin1 qp", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable", "caf=E9 cr=E8me", "café crème"},
		{"utf-8", "Content-Type: text/plain; charset=utf-8", ja, ja},
		{"html", "Content-Type: text/html; charset=iso-2022-jp", "<p>" + iso2022jp(t, ja) + "</p>", "<p>" + ja + "</p>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := walk(t, Limits{}, "Subject: x\r\n"+tc.header+"\r\n\r\n"+tc.body+"\r\n")
			require.NoError(t, err)
			txt, ok := c.Parts[0].Text()
			require.True(t, ok)
			assert.Equal(t, tc.want, strings.TrimSpace(txt))
			assert.Equal(t, int64(len(txt)), c.Parts[0].Size)
		})
	}
	// RFC 2047 Subject in ISO-2022-JP, as Japanese mailers send it.
	c, err := walk(t, Limits{}, "Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n\r\nx\r\n")
	require.NoError(t, err)
	assert.Equal(t, "こんにちは", c.Subject)
}

func TestWalkURLs(t *testing.T) {
	html := `<html><head><style>a{background:url(http://style.example/)}</style><script>var u="http://script.example/";</script></head>` +
		`<body><a href="https://link.example/a?b=1&amp;c=2">click</a> <img src="//img.example/p.png">` +
		`visit www.www.example now. <form action="mailto:x@example">` +
		`</body></html>`
	msg := "Subject: u\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" + multipart("b",
		"Content-Type: text/plain\r\n\r\nSee https://plain.example/path, and (http://paren.example/x).\r\nagain https://plain.example/path\r\n",
		"Content-Type: text/html\r\n\r\n"+html)
	c, err := walk(t, Limits{}, msg)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"https://plain.example/path", "http://paren.example/x",
		"https://link.example/a?b=1&c=2", "http://img.example/p.png", "http://www.www.example",
	}, c.URLs)
	vis := c.Parts[2].searchText(1 << 20)
	assert.Contains(t, vis, "click")
	assert.NotContains(t, vis, "script.example")

	c, err = walk(t, Limits{MaxURLs: 2}, msg)
	require.NoError(t, err)
	assert.Len(t, c.URLs, 2)
}

func deepNesting(n int) string {
	var b strings.Builder
	b.WriteString("Subject: deep\r\n")
	for i := range n {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func manyParts(n int) string {
	var b strings.Builder
	b.WriteString("Subject: wide\r\nContent-Type: multipart/mixed; boundary=w\r\n\r\n")
	for range n {
		b.WriteString("--w\r\n\r\nx\r\n")
	}
	b.WriteString("--w--\r\n")
	return b.String()
}

func TestWalkLimits(t *testing.T) {
	tests := []struct {
		name  string
		lim   Limits
		msg   string
		limit Limit
	}{
		{"depth", Limits{MaxDepth: 3}, deepNesting(4), LimitDepth},
		{"parts", Limits{MaxParts: 10}, manyParts(10), LimitParts},
		{"header size", Limits{MaxHeaderBytes: 100}, "Subject: " + strings.Repeat("x ", 60) + "\r\n\r\nbody\r\n", LimitHeaderSize},
		{"header line", Limits{MaxLineLength: 50}, "Subject: " + strings.Repeat("x", 60) + "\r\n\r\nbody\r\n", LimitLineLength},
		{"part header size", Limits{MaxHeaderBytes: 100}, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-A: " +
			strings.Repeat("y ", 60) + "\r\n\r\nx\r\n--b--\r\n", LimitHeaderSize},
		{"boundary", Limits{}, "Content-Type: multipart/mixed; boundary=" + strings.Repeat("b", 2000) + "\r\n\r\nx\r\n", LimitBoundaryLength},
		{"size", Limits{MaxSize: 100}, "Subject: x\r\n\r\n" + strings.Repeat("body ", 30), LimitSize},
		{"decoded size", Limits{MaxDecodedBytes: 100}, "Subject: x\r\n\r\n" + strings.Repeat("body ", 30), LimitDecodedSize},
		{"time", Limits{Timeout: time.Nanosecond}, manyParts(5), LimitTime},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := walk(t, tc.lim, tc.msg)
			require.ErrorIs(t, err, ErrLimit)
			var le *LimitError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, tc.limit, le.Limit, "%v", err)
		})
	}
	// Right at the limits passes.
	_, err := walk(t, Limits{MaxDepth: 4}, deepNesting(4))
	assert.NoError(t, err)
	_, err = walk(t, Limits{MaxParts: 11}, manyParts(10))
	assert.NoError(t, err)

	_, err = NewWalker(WalkerConfig{Limits: Limits{MaxParts: -1}})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestWalkCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w, err := NewWalker(WalkerConfig{})
	require.NoError(t, err)
	_, err = w.WalkBytes(ctx, []byte(manyParts(3)))
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, errors.Is(err, ErrLimit))
}

func TestWalkMessageAndReader(t *testing.T) {
	msg := nestedEICAR(t)
	w, err := NewWalker(WalkerConfig{})
	require.NoError(t, err)
	c1, err := w.WalkMessage(context.Background(), spool(t, msg))
	require.NoError(t, err)
	c2, err := w.Walk(context.Background(), strings.NewReader(msg))
	require.NoError(t, err)
	assert.Equal(t, c1.Parts, c2.Parts)

	w, err = NewWalker(WalkerConfig{Limits: Limits{MaxSize: 10}})
	require.NoError(t, err)
	_, err = w.WalkMessage(context.Background(), spool(t, msg))
	assert.ErrorIs(t, err, ErrLimit)
	_, err = w.Walk(context.Background(), strings.NewReader(msg))
	assert.ErrorIs(t, err, ErrLimit)
}

// measure runs f and returns its wall time and the bytes it allocated.
func measure(f func()) (time.Duration, uint64) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return d, after.TotalAlloc - before.TotalAlloc
}

// TestHostileMIME feeds shapes that hurt MIME parsers. Each is refused
// within the limits or handled; time and memory are logged, not
// asserted.
func TestHostileMIME(t *testing.T) {
	tests := []struct {
		name  string
		msg   string
		limit Limit // "" when the message must be walked
		check func(t *testing.T, c *Content)
	}{
		{name: "100-deep nesting", msg: deepNesting(100), limit: LimitDepth},
		{name: "3000-deep nesting", msg: deepNesting(3000), limit: LimitDepth},
		{name: "10,000 tiny parts", msg: manyParts(10000), limit: LimitParts},
		{name: "1 MiB header line", msg: "Subject: " + strings.Repeat("A", 1<<20) + "\r\n\r\nbody\r\n", limit: LimitLineLength},
		{name: "1 MiB part header line", msg: "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Long: " +
			strings.Repeat("A", 1<<20) + "\r\n\r\nx\r\n--b--\r\n", limit: LimitLineLength},
		{name: "missing boundary parameter", msg: "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n--x--\r\n",
			check: func(t *testing.T, c *Content) {
				require.Len(t, c.Parts, 1)
				assert.False(t, c.Parts[0].Multipart)
			}},
		{name: "boundary never used", msg: "Content-Type: multipart/mixed; boundary=b\r\n\r\njust text\r\n",
			check: func(t *testing.T, c *Content) { require.Len(t, c.Parts, 1) }},
		{name: "no closing delimiter", msg: "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nunterminated\r\n",
			check: func(t *testing.T, c *Content) {
				require.Len(t, c.Parts, 2)
				txt, _ := c.Parts[1].Text()
				assert.Contains(t, txt, "unterminated")
				assert.NotEmpty(t, c.Parts[0].Errors)
			}},
		{name: "mismatched boundaries", msg: "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ninner\r\n--a--\r\n--b--\r\n",
			check: func(t *testing.T, c *Content) { require.Len(t, c.Parts, 3) }},
		{name: "broken base64", msg: "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + multipart("b",
			"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQ!!!!AAMA***AAEAAAA@@\r\n",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=garbage=\r\n"),
			check: func(t *testing.T, c *Content) {
				require.Len(t, c.Parts, 3)
				assert.NotEmpty(t, c.Parts[1].Errors, "malformed base64 is noted")
			}},
		{name: "broken quoted-printable", msg: "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"caf=E9 =ZZ =\r\n=4 trailing=\r\n",
			check: func(t *testing.T, c *Content) {
				require.Len(t, c.Parts, 1)
				txt, _ := c.Parts[0].Text()
				assert.Contains(t, txt, "caf")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c *Content
			var err error
			d, alloc := measure(func() { c, err = walk(t, Limits{}, tc.msg) })
			t.Logf("%s: %d bytes, walked in %v, %.1f MiB allocated: %v", tc.name, len(tc.msg), d, float64(alloc)/(1<<20), err)
			if tc.limit != "" {
				var le *LimitError
				require.ErrorAs(t, err, &le)
				assert.Equal(t, tc.limit, le.Limit)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}
