package postern_test

import (
	"errors"
	"flag"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func newMessage(t testing.TB, s string, maxHeader int) *postern.Message {
	t.Helper()
	m, err := postern.NewMessage(strings.NewReader(s), int64(len(s)), maxHeader)
	require.NoError(t, err)
	return m
}

var render = testutil.Render

func fieldRaws(m *postern.Message) []string {
	var out []string
	for _, f := range m.Fields() {
		out = append(out, string(f.Raw))
	}
	return out
}

func TestNewMessageHeader(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		raws   []string // raw bytes of each field, in order
		names  []string
		values []string
		body   string // what NewBodyReader gives
	}{
		{
			name:   "CRLF",
			in:     "From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n",
			raws:   []string{"From: a@example.test\r\n", "To: b@example.test\r\n", "Subject: hi\r\n"},
			names:  []string{"From", "To", "Subject"},
			values: []string{"a@example.test", "b@example.test", "hi"},
			body:   "body\r\n",
		},
		{
			name:   "bare LF",
			in:     "From: a@example.test\nSubject: hi\n\nbody\nline 2\n",
			raws:   []string{"From: a@example.test\n", "Subject: hi\n"},
			names:  []string{"From", "Subject"},
			values: []string{"a@example.test", "hi"},
			body:   "body\nline 2\n",
		},
		{
			name:   "mixed line ends",
			in:     "A: 1\nB: 2\r\n\nbody",
			raws:   []string{"A: 1\n", "B: 2\r\n"},
			names:  []string{"A", "B"},
			values: []string{"1", "2"},
			body:   "body",
		},
		{
			name:   "folded fields",
			in:     "Subject: a long\r\n subject\r\n\tline\r\nTo: x@example.test\r\n\r\nbody",
			raws:   []string{"Subject: a long\r\n subject\r\n\tline\r\n", "To: x@example.test\r\n"},
			names:  []string{"Subject", "To"},
			values: []string{"a long subject\tline", "x@example.test"},
			body:   "body",
		},
		{
			name:   "folded with bare LF",
			in:     "Subject: a\n  b\n\nbody",
			raws:   []string{"Subject: a\n  b\n"},
			names:  []string{"Subject"},
			values: []string{"a  b"},
			body:   "body",
		},
		{
			name:   "no body",
			in:     "Subject: x\r\n\r\n",
			raws:   []string{"Subject: x\r\n"},
			names:  []string{"Subject"},
			values: []string{"x"},
			body:   "",
		},
		{
			name:   "no blank line",
			in:     "Subject: x\r\nTo: y\r\n",
			raws:   []string{"Subject: x\r\n", "To: y\r\n"},
			names:  []string{"Subject", "To"},
			values: []string{"x", "y"},
			body:   "",
		},
		{
			name:   "no blank line, no final line end",
			in:     "Subject: x\r\nTo: y",
			raws:   []string{"Subject: x\r\n", "To: y"},
			names:  []string{"Subject", "To"},
			values: []string{"x", "y"},
			body:   "",
		},
		{
			name:   "non-field line ends the header",
			in:     "Subject: x\r\nthis is the body\r\nTo: not a field\r\n",
			raws:   []string{"Subject: x\r\n"},
			names:  []string{"Subject"},
			values: []string{"x"},
			body:   "this is the body\r\nTo: not a field\r\n",
		},
		{
			name:   "space in a name ends the header",
			in:     "Subject: x\r\nBad Name: y\r\n\r\nbody",
			raws:   []string{"Subject: x\r\n"},
			names:  []string{"Subject"},
			values: []string{"x"},
			body:   "Bad Name: y\r\n\r\nbody",
		},
		{
			name:   "obsolete white space before the colon",
			in:     "Subject : hello\r\nTo\t: y\r\n\r\nbody",
			raws:   []string{"Subject : hello\r\n", "To\t: y\r\n"},
			names:  []string{"Subject", "To"},
			values: []string{"hello", "y"},
			body:   "body",
		},
		{
			name:   "empty value and colon in value",
			in:     "X-Empty:\r\nX-Time: 12:00:01\r\n\r\n",
			raws:   []string{"X-Empty:\r\n", "X-Time: 12:00:01\r\n"},
			names:  []string{"X-Empty", "X-Time"},
			values: []string{"", "12:00:01"},
			body:   "",
		},
		{
			name: "empty message",
			in:   "",
			body: "",
		},
		{
			name: "only a blank line",
			in:   "\r\nbody",
			body: "body",
		},
		{
			name: "continuation without a field",
			in:   " folded: x\r\n\r\nbody",
			body: " folded: x\r\n\r\nbody",
		},
		{
			name: "line starting with a colon",
			in:   ":x\r\n\r\n",
			body: ":x\r\n\r\n",
		},
		{
			name: "mbox From line",
			in:   "From sender@example.test Mon Jan  1 12:00:00 2024\nSubject: x\n\n",
			body: "From sender@example.test Mon Jan  1 12:00:00 2024\nSubject: x\n\n",
		},
		{
			name:   "lone CR at the end is not a blank line",
			in:     "A: 1\r\n\r",
			raws:   []string{"A: 1\r\n"},
			names:  []string{"A"},
			values: []string{"1"},
			body:   "\r",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMessage(t, tt.in, 0)
			assert.Equal(t, tt.raws, fieldRaws(m))
			var names, values []string
			for _, f := range m.Fields() {
				names = append(names, f.Name)
				values = append(values, f.Value())
			}
			assert.Equal(t, tt.names, names)
			assert.Equal(t, tt.values, values)

			assert.Equal(t, int64(len(tt.in)), m.Size())
			assert.Equal(t, int64(len(tt.in)-len(tt.body)), m.BodyOffset())
			body, err := io.ReadAll(m.NewBodyReader())
			require.NoError(t, err)
			assert.Equal(t, tt.body, string(body))

			all, err := io.ReadAll(m.NewReader())
			require.NoError(t, err)
			assert.Equal(t, tt.in, string(all))
			// Readers are independent and re-readable.
			all, err = io.ReadAll(m.NewReader())
			require.NoError(t, err)
			assert.Equal(t, tt.in, string(all))

			assert.Equal(t, tt.in, render(t, m), "Render without edits")
		})
	}
}

func TestMessageHeaderGet(t *testing.T) {
	in := "Received: from a\r\n\tby b\r\nreceived: from c\r\nSUBJECT: Hello\r\n world\r\nx-custom-field : v\r\n\r\nbody\r\n"
	m := newMessage(t, in, 0)
	h := m.Header()
	assert.Equal(t, "from a\tby b", h.Get("Received"))
	assert.Equal(t, []string{"from a\tby b", "from c"}, h.Values("received"))
	assert.Equal(t, "Hello world", h.Get("Subject"))
	assert.Equal(t, "v", h.Get("X-Custom-Field"))
	assert.Empty(t, h.Get("To"))
	// Names in Fields keep the case they were received in.
	assert.Equal(t, []string{"Received", "received", "SUBJECT", "x-custom-field"}, func() []string {
		var n []string
		for _, f := range m.Fields() {
			n = append(n, f.Name)
		}
		return n
	}())

	// Edits do not change the received header.
	m.AddHeader("To", "x@example.test")
	require.True(t, m.DeleteHeader("subject", 0))
	assert.Empty(t, m.Header().Get("To"))
	assert.Equal(t, "Hello world", m.Header().Get("Subject"))
	assert.Len(t, m.Fields(), 4)
}

func TestNewMessageLongLine(t *testing.T) {
	long := strings.Repeat("a", 10000)
	in := "Subject: " + long + "\r\nX-Folded: b\r\n " + strings.Repeat("c", 5000) + "\r\n\r\nbody\r\n"
	m := newMessage(t, in, 0)
	require.Len(t, m.Fields(), 2)
	assert.Equal(t, "Subject: "+long+"\r\n", string(m.Fields()[0].Raw))
	assert.Equal(t, long, m.Header().Get("Subject"))
	assert.Equal(t, "b "+strings.Repeat("c", 5000), m.Header().Get("X-Folded"))
	assert.Equal(t, int64(len(in)-len("body\r\n")), m.BodyOffset())
	assert.Equal(t, in, render(t, m))

	// Exactly the bufio buffer size, with and without a line end.
	for _, n := range []int{4094, 4095, 4096, 4097, 8192} {
		field := "X: " + strings.Repeat("v", n-len("X: ")-2) + "\r\n"
		require.Len(t, field, n)
		in := field + "\r\nbody"
		m := newMessage(t, in, 0)
		require.Len(t, m.Fields(), 1, "n=%d", n)
		assert.Equal(t, field, string(m.Fields()[0].Raw), "n=%d", n)
		assert.Equal(t, in, render(t, m), "n=%d", n)

		in = strings.TrimSuffix(field, "\r\n")
		m = newMessage(t, in, 0)
		require.Len(t, m.Fields(), 1, "n=%d", n)
		assert.Equal(t, in, render(t, m), "n=%d", n)
	}
}

func TestNewMessageHeaderTooLarge(t *testing.T) {
	hdr := "Subject: x\r\nTo: y\r\n\r\n" // 21 bytes with the blank line
	tests := []struct {
		name string
		in   string
		max  int
		ok   bool
	}{
		{"fits", hdr + "body", len(hdr), true},
		{"too many fields", strings.Repeat("X-A: 0123456789\r\n", 10) + "\r\n", 100, false},
		{"one long line over a small limit", "Subject: " + strings.Repeat("a", 200) + "\r\n\r\n", 100, false},
		{"one line longer than the buffer", "Subject: " + strings.Repeat("a", 9000) + "\r\n\r\n", 5000, false},
		{"one line longer than the default limit", "Subject: " + strings.Repeat("a", postern.DefaultMaxHeaderBytes) + "\r\n\r\n", 0, false},
		{"many fields over the default limit", strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 300) + "\r\nbody", 0, false},
		{"no blank line over the limit", strings.Repeat("X-A: 0123456789\r\n", 10), 100, false},
		{"long body line does not count", hdr + strings.Repeat("b", 100000) + "\r\n", 64, true},
		{"default limit not reached", strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 200) + "\r\nbody", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := postern.NewMessage(strings.NewReader(tt.in), int64(len(tt.in)), tt.max)
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, tt.in, render(t, m))
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, postern.ErrHeaderTooLarge)
			assert.Nil(t, m)
		})
	}
}

// failingReaderAt serves the first n bytes of s, then fails.
type failingReaderAt struct {
	s string
	n int64
}

var errDisk = errors.New("disk on fire")

func (r failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.n {
		return 0, errDisk
	}
	k := copy(p, r.s[off:min(r.n, int64(len(r.s)))])
	if off+int64(k) >= r.n {
		return k, errDisk
	}
	return k, nil
}

func TestNewMessageReadError(t *testing.T) {
	in := "Subject: x\r\nTo: y\r\n\r\nbody"
	for _, n := range []int64{0, 5, 12, 15} {
		_, err := postern.NewMessage(failingReaderAt{in, n}, int64(len(in)), 0)
		assert.ErrorIs(t, err, errDisk, "failing at %d", n)
	}
	// An error well into the body shows at Render, not before.
	in += strings.Repeat("x", 100000)
	m, err := postern.NewMessage(failingReaderAt{in, int64(len(in) - 2)}, int64(len(in)), 0)
	require.NoError(t, err)
	assert.Equal(t, "y", m.Header().Get("To"))
	assert.ErrorIs(t, m.Render(io.Discard), errDisk)
}

// A source shorter than the size it was given is read as far as it goes.
func TestNewMessageShortSource(t *testing.T) {
	in := "Subject: x\r\nTo: y"
	m, err := postern.NewMessage(strings.NewReader(in), int64(len(in))+100, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"Subject: x\r\n", "To: y"}, fieldRaws(m))
	assert.Equal(t, in, render(t, m))
}

// Header is a read method: DATA filters that fan out to several scanners
// may call it from several goroutines at once.
func TestMessageHeaderConcurrent(t *testing.T) {
	m := newMessage(t, "Subject: x\r\nTo: y\r\n\r\nbody", 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			assert.Equal(t, "x", m.Header().Get("Subject"))
			assert.Len(t, m.Fields(), 2)
		})
	}
	wg.Wait()
}

func TestMessageAddHeader(t *testing.T) {
	in := "Subject: x\r\n\r\nbody\r\n"
	m := newMessage(t, in, 0)
	m.AddHeader("Received", "from a by b; Mon, 1 Jan 2024 00:00:00 +0000")
	m.AddHeader("Authentication-Results", "mx.test;\r\n\tspf=pass\r\n")
	m.AddHeader("X-Spam", "no")
	want := "X-Spam: no\r\n" +
		"Authentication-Results: mx.test;\r\n\tspf=pass\r\n" +
		"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
		in
	assert.Equal(t, want, render(t, m))
	assert.Equal(t, []postern.HeaderEdit{
		{Kind: postern.EditAdd, Name: "Received", Value: "from a by b; Mon, 1 Jan 2024 00:00:00 +0000"},
		{Kind: postern.EditAdd, Name: "Authentication-Results", Value: "mx.test;\r\n\tspf=pass"},
		{Kind: postern.EditAdd, Name: "X-Spam", Value: "no"},
	}, m.Edits())
	// Rendering twice gives the same bytes; the received bytes are untouched.
	assert.Equal(t, want, render(t, m))
	all, err := io.ReadAll(m.NewReader())
	require.NoError(t, err)
	assert.Equal(t, in, string(all))
}

func TestMessageDeleteHeader(t *testing.T) {
	in := "Received: r0\r\nSubject: s\r\nreceived: r1\r\n\tfolded\r\nRECEIVED: r2\r\n\r\nbody"
	tests := []struct {
		name  string
		del   string
		index int
		found bool
		want  string
	}{
		{"first", "Received", 0, true, "Subject: s\r\nreceived: r1\r\n\tfolded\r\nRECEIVED: r2\r\n\r\nbody"},
		{"second, folded", "Received", 1, true, "Received: r0\r\nSubject: s\r\nRECEIVED: r2\r\n\r\nbody"},
		{"third", "received", 2, true, "Received: r0\r\nSubject: s\r\nreceived: r1\r\n\tfolded\r\n\r\nbody"},
		{"other name", "SUBJECT", 0, true, "Received: r0\r\nreceived: r1\r\n\tfolded\r\nRECEIVED: r2\r\n\r\nbody"},
		{"index past the end", "Received", 3, false, in},
		{"negative index", "Received", -1, false, in},
		{"absent name", "To", 0, false, in},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMessage(t, in, 0)
			assert.Equal(t, tt.found, m.DeleteHeader(tt.del, tt.index))
			assert.Equal(t, tt.want, render(t, m))
			if tt.found {
				assert.Equal(t, []postern.HeaderEdit{{Kind: postern.EditDelete, Name: tt.del, Index: tt.index}}, m.Edits())
			} else {
				assert.Empty(t, m.Edits())
			}
		})
	}

	// Indexes count received fields, not what is left after earlier
	// deletions.
	m := newMessage(t, in, 0)
	require.True(t, m.DeleteHeader("Received", 0))
	require.True(t, m.DeleteHeader("Received", 2))
	require.True(t, m.DeleteHeader("Received", 0)) // again: no change
	assert.Equal(t, "Subject: s\r\nreceived: r1\r\n\tfolded\r\n\r\nbody", render(t, m))
}

func TestMessageRenderAddAndDelete(t *testing.T) {
	in := "DKIM-Signature: v=1; a=rsa-sha256;\n b=abc\nSubject: hi\n\nbody\n.\n"
	m := newMessage(t, in, 0)
	m.AddHeader("Received", "by mx")
	require.True(t, m.DeleteHeader("Subject", 0))
	m.AddHeader("X-Tag", "1")
	// Added fields end in CRLF; received bytes (bare LF) are kept as they are.
	assert.Equal(t, "X-Tag: 1\r\nReceived: by mx\r\nDKIM-Signature: v=1; a=rsa-sha256;\n b=abc\n\nbody\n.\n", render(t, m))
}

type shortWriter struct{ n int }

func (w *shortWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > 10 {
		return 0, errors.New("full")
	}
	w.n += len(p)
	return len(p), nil
}

func TestMessageRenderWriteError(t *testing.T) {
	m := newMessage(t, "Subject: x\r\n\r\n"+strings.Repeat("body\r\n", 20000), 0)
	assert.Error(t, m.Render(&shortWriter{}))
}

func TestMessageRenderGolden(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		edits func(m *postern.Message)
	}{
		{
			name: "trace-fields",
			in: "Received: from client.example.test (client.example.test [192.0.2.1])\r\n" +
				"\tby relay.example.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
				"From: Alice <alice@example.test>\r\n" +
				"To: bob@example.test\r\n" +
				"Subject: Hello\r\n" +
				"\r\n" +
				"Hi Bob,\r\n\r\nbye\r\n",
			edits: func(m *postern.Message) {
				m.AddHeader("Received", "from relay.example.test by mx.example.test with ESMTPS id Q123;\r\n\tMon, 1 Jan 2024 00:00:01 +0000")
				m.AddHeader("Authentication-Results", "mx.example.test; spf=pass smtp.mailfrom=example.test")
			},
		},
		{
			name: "delete-and-tag-lf",
			in: "X-Spam-Status: Yes, forged\n" +
				"From: a@example.test\n" +
				"X-Spam-Status: also forged\n" +
				"Subject: offer\n" +
				"\n" +
				"body\n",
			edits: func(m *postern.Message) {
				m.DeleteHeader("x-spam-status", 0)
				m.DeleteHeader("X-Spam-Status", 1)
				m.AddHeader("X-Spam-Status", "No, score=0.1")
			},
		},
		{
			name: "no-blank-line",
			in:   "Subject: headers only\r\nTo: x@example.test\r\n",
			edits: func(m *postern.Message) {
				m.AddHeader("X-Postern", "checked")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMessage(t, tt.in, 0)
			tt.edits(m)
			got := render(t, m)
			testutil.Golden(t, filepath.Join("testdata", "render", tt.name+".golden"), []byte(got), *update)
		})
	}
}

// Text from the client must not be able to end the header or add a field
// through AddHeader.
func TestMessageAddHeaderInjection(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"X-Helo", "evil\r\n\r\nfake body", "X-Helo: evil    fake body\r\n"},
		{"X-Helo", "a\nBcc: victim@example.org", "X-Helo: a Bcc: victim@example.org\r\n"},
		{"X-Fold", "a\r\n\tb\n c", "X-Fold: a\r\n\tb\r\n c\r\n"},
		{"Bad Name:\r\n", "v", "Bad-Name---: v\r\n"},
		{"", "v", "X-Unnamed: v\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			m, err := postern.NewMessage(strings.NewReader("A: b\r\n\r\nbody\r\n"), 16, 0)
			require.NoError(t, err)
			m.AddHeader(tt.name, tt.value)
			var b strings.Builder
			require.NoError(t, m.Render(&b))
			assert.Equal(t, tt.want+"A: b\r\n\r\nbody\r\n", b.String())
		})
	}
}
