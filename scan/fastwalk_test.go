package scan

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// fastSeeds are single-entity messages with the header tricks the fast
// path must read as enmime does, and bodies its decoders must refuse when
// enmime's cleaners would change them. want says whether the fast path
// takes the message.
var fastSeeds = []struct {
	name, msg string
	want      bool
}{
	{"no content type", "Subject: hi\r\n\r\nhello http://x.example/a\r\n", true},
	{"utf-8 8bit", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nh\xc3\xa9llo www.example.org\r\n", true},
	{"folded content type", "Content-Type: text/plain;\r\n\tcharset=\"UTF-8\"\r\n\r\nbody\r\n", true},
	{"duplicate CTE", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\naGVsbG8gd29ybGQ=\r\n", true},
	{"duplicate content type", "Content-Type: text/plain; charset=utf-8\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", true},
	{"quoted charset", "Content-Type: text/plain; charset=\"us-ascii\"\r\n\r\nplain\r\n", true},
	{"single-quoted charset", "Content-Type: text/plain; charset='utf-8'\r\n\r\nplain\r\n", false},
	{"spaced parameter", "Content-Type: text/plain ; charset = \"utf-8\" ;\r\n\r\nplain\r\n", true},
	{"RFC 2231 continuation", "Content-Type: text/plain; charset*0=utf; charset*1=-8\r\n\r\nplain\r\n", true},
	{"RFC 2231 extended", "Content-Type: text/plain; charset*=us-ascii''utf-8\r\n\r\nplain\r\n", true},
	{"upper case", "CONTENT-TYPE: TEXT/HTML; CHARSET=UTF-8\r\nCONTENT-TRANSFER-ENCODING: QUOTED-PRINTABLE\r\n\r\n<A HREF=3D\"HTTP://UP.EXAMPLE/\">x</A>\r\n", true},
	{"bare LF", "Content-Type: text/plain; charset=utf-8\n\nline one\nline two\n", true},
	{"NUL in body", "Content-Type: text/plain; charset=utf-8\r\n\r\na\x00b\r\n", true},
	{"NUL in header", "Content-Type: text/plain; charset=utf-8\x00\r\n\r\nab\r\n", false},
	{"8-bit in us-ascii", "Content-Type: text/plain; charset=us-ascii\r\n\r\ncaf\xe9 \x80 \x81\r\n", true},
	{"latin-1 quoted-printable", "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 na=efve=\r\n soft\r\n", true},
	// enmime turns a non-ASCII parameter into an RFC 2047 word.
	{"dotted capital I in label", "Content-Type: text/plain; charset=\u0130SO-8859-1\r\n\r\ncaf\xe9\r\n", false},
	{"utf8mb4", "Content-Type: text/plain; charset=UTF8MB4\r\n\r\n\xf0\x9f\x98\x80\r\n", true},
	{"invalid utf-8", "Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xff\xfe \xc3( end\r\n", true},
	{"unknown charset", "Content-Type: text/plain; charset=koi8-r\r\n\r\n\xc1\xc2\r\n", false},
	{"no charset", "Content-Type: text/plain\r\n\r\nplain\r\n", false},
	{"base64 padding inside", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=aGk=\r\n", true},
	{"base64 bad byte", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGk*aGk=\r\n", false},
	{"base64 8-bit byte", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGk\x8aaGk=\r\n", false},
	{"base64 one char over", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd\r\n", false},
	{"base64 trailing bits", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: Base64 \r\n\r\naGl=\r\n", true},
	{"qp soft breaks and hex", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3db=3D=\nc\t \r\ntrailing   \r\n=C3=A9\r\n", true},
	{"qp bad escape", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=ZZ b= \r\n", false},
	{"qp equals at end", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nend=", false},
	{"qp long line", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("x", 1100) + "\r\n", false},
	{"qp raw 8-bit", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nh\xc3\xa9 =C3=A9\r\n", true},
	{"qp control byte", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na\x01b\r\n", false},
	{"html", "Content-Type: text/html; charset=utf-8\r\n\r\n<html><script>var u='http://hidden.example'</script><a href=\"https://a.example/\">see www.b.example</a></html>\r\n", true},
	{"name parameter", "Content-Type: text/plain; charset=utf-8; name=\"notes.txt\"\r\n\r\nplain\r\n", true},
	{"attachment disposition", "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=\"x.pdf.exe\"\r\n\r\nplain\r\n", true},
	{"inline disposition", "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: INLINE\r\n\r\nplain\r\n", true},
	// enmime's media type parser decodes the word (x.exe) already.
	{"encoded file name", "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=\"=?utf-8?q?x.exe?=\"\r\n\r\nplain\r\n", true},
	{"encoded word left", "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=\"=?x.exe\"\r\n\r\nplain\r\n", false},
	{"archive as text", "Content-Type: text/plain; charset=utf-8\r\n\r\nPK\x03\x04\x14\x00\x00\x00\x00\x00", true},
	{"base64 archive named text", "Content-Type: text/plain; charset=UTF-8; name=\"notes.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\nUEsDBBQAAAAAAA==\r\n", true},
	{"space before colon", "Content-Type : text/plain; charset=utf-8\r\n\r\nplain\r\n", false},
	{"odd field names", "x-{weird}~: 1\r\nCONTENT-type:text/plain;charset=utf-8\r\nmessage-id:<a@b>\r\n" + strings.Repeat("Long-", 20) + "Name: v\r\n\r\nplain\r\n", true},
	{"continuations", "Subject: one\r\n \r\n\t two  \r\n   \r\nTo:\r\n\tbob@example.com\r\nX-Empty:\r\nX-Tab:\t\tv\t\r\n\r\nplain\r\n", true},
	{"repeated fields", "Received: a\r\nReceived: b\r\n c\r\nreceived: d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n", true},
	{"8-bit and NUL in values", "Subject: caf\xe9 \xff\r\nX-Nul: a\x00b\r\n\r\nplain\r\n", true},
	{"stray CR in header", "Subject: a\rb\r\n\r\nplain\r\n", false},
	{"CR CR LF", "Subject: a\r\r\n\r\nplain\r\n", false},
	{"header without newline", "Subject: only", true},
	{"lone CR", "\r", false},
	{"last line ends in CR", "Subject: x\r", false},
	{"continuation first", " Subject: x\r\n\r\nplain\r\n", false},
	{"LF header CRLF body", "Subject: x\n folded\nContent-Type: text/plain; charset=utf-8\n\nbody\r\n", true},
	{"colon first", ": odd\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n", false},
	{"continuation not indented", "Content-Type: text/plain;\r\ncharset=utf-8\r\n\r\nplain\r\n", false},
	{"boundary on text", "Content-Type: text/plain; charset=utf-8; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", false},
	{"unknown CTE", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n", false},
	{"header only", "Subject: no body\r\nContent-Type: text/plain; charset=utf-8\r\n", true},
	{"empty", "", true},
	{"repeated parameter", "Content-Type: text/plain; charset=utf-8; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n", true},
	// enmime reads this as application/octet-stream.
	{"missing semicolon", "Content-Type: text/plain charset=utf-8\r\n\r\nplain\r\n", false},
	{"attached message", "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n", false},
	{"multipart", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", false},
	{"encoded subject", "Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx\r\n", true},
}

// walkBoth walks data on the fast path and on the full walk. usedFast
// says whether the fast path took it; when it did, the results must be
// the same, and the fast path's must not change when data does.
func walkBoth(t *testing.T, w *Walker, data []byte) (usedFast bool) {
	t.Helper()
	ctx := context.Background()
	buf := bytes.Clone(data)
	fast, usedFast, ferr := w.walk(ctx, buf, true)
	if !usedFast {
		return false
	}
	buf2 := bytes.Clone(data)
	full, _, err := w.walk(ctx, buf2, false)
	if (err == nil) != (ferr == nil) || err != nil && err.Error() != ferr.Error() {
		t.Fatalf("errors differ on %q:\nfast %v\nfull %v", data, ferr, err)
	}
	// Neither Content keeps anything of the caller's buffer.
	for i := range buf {
		buf[i], buf2[i] = 'X', 'Y'
	}
	if !reflect.DeepEqual(fast, full) {
		assert.Equal(t, full, fast, "%q", data) // shows the difference
		t.FailNow()
	}
	return true
}

// TestWalkFastPath: the fast path takes the messages it should, and on
// those it gives exactly the full walk's Content.
func TestWalkFastPath(t *testing.T) {
	w, err := NewWalker(WalkerConfig{})
	require.NoError(t, err)
	for _, tc := range fastSeeds {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, walkBoth(t, w, []byte(tc.msg)))
		})
	}
}

// TestWalkFastPathCharsets converts every byte under every label the
// fast path converts itself, and compares with enmime's conversion.
func TestWalkFastPathCharsets(t *testing.T) {
	w, err := NewWalker(WalkerConfig{})
	require.NoError(t, err)
	var all []byte
	for c := range 256 {
		if c != '\r' && c != '\n' {
			all = append(all, byte(c))
		}
	}
	for label := range fastCharsets {
		for _, l := range []string{label, strings.ToUpper(label)} {
			msg := "Content-Type: text/plain; charset=\"" + l + "\"\r\n\r\n" + string(all) + "\r\n"
			assert.True(t, walkBoth(t, w, []byte(msg)), l)
		}
	}
}

// TestWalkFastPathLimits: the bounds hold on the fast path with the
// errors of the full walk.
func TestWalkFastPathLimits(t *testing.T) {
	text := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(bytes.Repeat([]byte("abcdefgh"), 512))
	for _, tc := range []struct {
		lim  Limits
		want Limit
	}{
		{Limits{MaxDecodedBytes: 1000}, LimitDecodedSize},
		{Limits{MaxHeaderBytes: 20}, LimitHeaderSize},
		{Limits{MaxLineLength: 30}, LimitLineLength},
		{Limits{MaxSize: 100}, LimitSize},
	} {
		w, err := NewWalker(WalkerConfig{Limits: tc.lim})
		require.NoError(t, err)
		for _, fast := range []bool{true, false} {
			_, used, err := w.walk(context.Background(), []byte(text), fast)
			var le *LimitError
			require.ErrorAs(t, err, &le, "fast %v", fast)
			assert.Equal(t, tc.want, le.Limit)
			assert.Equal(t, tc.want == LimitDecodedSize && fast, used, "fast %v", fast)
		}
	}
}

// TestFilterTakesFastPath: the filter as the relay builds it (a Walker
// of its own limits, the attachment policy) walks ordinary text mail on
// the fast path, and multipart mail on the full walk.
func TestFilterTakesFastPath(t *testing.T) {
	w, err := NewWalker(WalkerConfig{Limits: Limits{MaxSize: 10 << 20, MaxDepth: 20, MaxParts: 200}})
	require.NoError(t, err)
	a, err := NewAttachmentPolicy(AttachmentConfig{})
	require.NoError(t, err)
	f := newFilter(t, FilterConfig{Walker: w, Attachments: a})
	msgs := ordinaryMessages(t)
	for _, name := range ordinaryNames {
		c, txn := session("bob@example.com")
		v, err := f.CheckData(context.Background(), c, txn, spool(t, string(msgs[name])))
		require.NoError(t, err)
		require.Equal(t, postern.Continue, v.Action)
		rep, _ := postern.GetValue(&txn.Values, ReportKey)
		require.NotNil(t, rep.Content)
		if name != "attachment" {
			assert.Equal(t, []string{"https://example.com/menu"}, rep.Content.URLs, name)
		}
	}
	assert.Equal(t, int64(1), w.fastWalks.Load(), "only the single-part message")
}

// FuzzWalkFastPath is the differential test of the fast path: on every
// message it takes, its Content and error are exactly the full walk's,
// and hold no reference into the caller's buffer.
func FuzzWalkFastPath(f *testing.F) {
	for _, tc := range fastSeeds {
		f.Add([]byte(tc.msg))
	}
	w, err := NewWalker(WalkerConfig{Limits: Limits{MaxHeaderBytes: 4096, MaxLineLength: 2048}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		walkBoth(t, w, data)
	})
}
