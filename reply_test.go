package postern_test

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestReplyWire(t *testing.T) {
	tests := []struct {
		name string
		r    postern.Reply
		want string
	}{
		{"one line with code", postern.NewReply(250, postern.ESC(2, 0, 0), "OK"), "250 2.0.0 OK\r\n"},
		{"one line without code", postern.NewReply(220, postern.EnhancedCode{}, "mx.test ESMTP"), "220 mx.test ESMTP\r\n"},
		{"no lines", postern.Reply{Code: 250}, "250 \r\n"},
		{"no lines with code", postern.Reply{Code: 250, Enhanced: postern.ESC(2, 0, 0)}, "250 2.0.0\r\n"},
		{"empty text with code", postern.NewReply(250, postern.ESC(2, 0, 0), ""), "250 2.0.0\r\n"},
		{
			"multi-line, code on every line",
			postern.Reply{Code: 550, Enhanced: postern.ESC(5, 7, 1), Lines: []string{"Relay denied", "see https://example.test", "bye"}},
			"550-5.7.1 Relay denied\r\n550-5.7.1 see https://example.test\r\n550 5.7.1 bye\r\n",
		},
		{
			"multi-line without code",
			postern.Reply{Code: 250, Lines: []string{"mx.test", "PIPELINING", "8BITMIME"}},
			"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
		},
		{
			"multi-line with an empty middle line",
			postern.Reply{Code: 421, Enhanced: postern.ESC(4, 3, 2), Lines: []string{"a", "", "b"}},
			"421-4.3.2 a\r\n421-4.3.2\r\n421 4.3.2 b\r\n",
		},
		{
			"CR and LF in text neutralised",
			postern.NewReply(554, postern.ESC(5, 7, 1), "listed\r\n250 2.0.0 injected\nx\ry"),
			"554 5.7.1 listed  250 2.0.0 injected x y\r\n",
		},
		{
			"CR/LF neutralised on every line",
			postern.Reply{Code: 451, Lines: []string{"a\r\n451 b", "c\n"}},
			"451-a  451 b\r\n451 c \r\n",
		},
		{
			"8-bit text kept byte for byte when neutralising",
			postern.NewReply(550, postern.EnhancedCode{}, "caf\xe9\rbar"),
			"550 caf\xe9 bar\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.r.Wire()
			assert.Equal(t, tt.want, got)
			// Whatever the text, the wire form has exactly one CRLF per line
			// and no other CR or LF.
			n := len(tt.r.Lines)
			if n == 0 {
				n = 1
			}
			assert.Equal(t, n, strings.Count(got, "\r\n"))
			assert.Equal(t, n, strings.Count(got, "\r"))
			assert.Equal(t, n, strings.Count(got, "\n"))
		})
	}
}

func TestReplyError(t *testing.T) {
	tests := []struct {
		name string
		r    postern.Reply
		want string
	}{
		{"full", postern.NewReply(550, postern.ESC(5, 7, 1), "Relay denied"), "550 5.7.1 Relay denied"},
		{"no enhanced code", postern.NewReply(421, postern.EnhancedCode{}, "closing"), "421 closing"},
		{"no text", postern.Reply{Code: 250, Enhanced: postern.ESC(2, 0, 0)}, "250 2.0.0"},
		{"code only", postern.Reply{Code: 250}, "250"},
		{"lines joined by a space", postern.Reply{Code: 550, Enhanced: postern.ESC(5, 1, 1), Lines: []string{"no such user", "try again"}}, "550 5.1.1 no such user try again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.r.Error())
			var err error = tt.r
			var rep postern.Reply
			require.True(t, errors.As(err, &rep))
			assert.Equal(t, tt.r.Code, rep.Code)
		})
	}
}

func TestReplyClass(t *testing.T) {
	tests := []struct {
		code                 int
		temporary, permanent bool
	}{
		{0, false, false},
		{250, false, false},
		{354, false, false},
		{399, false, false},
		{400, true, false},
		{421, true, false},
		{451, true, false},
		{499, true, false},
		{500, false, true},
		{550, false, true},
		{599, false, true},
		{600, false, false},
	}
	for _, tt := range tests {
		r := postern.Reply{Code: tt.code}
		assert.Equal(t, tt.temporary, r.Temporary(), "Temporary(%d)", tt.code)
		assert.Equal(t, tt.permanent, r.Permanent(), "Permanent(%d)", tt.code)
	}
	assert.True(t, postern.Reply{}.IsZero())
	assert.False(t, postern.NewReply(250, postern.EnhancedCode{}, "").IsZero())
}

func TestParseEnhancedCode(t *testing.T) {
	tests := []struct {
		in   string
		want postern.EnhancedCode
		ok   bool
	}{
		{"2.0.0", postern.ESC(2, 0, 0), true},
		{"4.7.1", postern.ESC(4, 7, 1), true},
		{"5.7.1", postern.ESC(5, 7, 1), true},
		{"5.999.999", postern.ESC(5, 999, 999), true},
		{"5.01.001", postern.ESC(5, 1, 1), true}, // 1*3digit allows leading zeros
		{"", postern.EnhancedCode{}, false},
		{"5", postern.EnhancedCode{}, false},
		{"5.7", postern.EnhancedCode{}, false},
		{"5.7.1.2", postern.EnhancedCode{}, false},
		{"5.7.", postern.EnhancedCode{}, false},
		{".7.1", postern.EnhancedCode{}, false},
		{"5..1", postern.EnhancedCode{}, false},
		{"1.0.0", postern.EnhancedCode{}, false},
		{"3.0.0", postern.EnhancedCode{}, false},
		{"6.0.0", postern.EnhancedCode{}, false},
		{"0.0.0", postern.EnhancedCode{}, false},
		{"5.1000.0", postern.EnhancedCode{}, false},
		{"5.0.1000", postern.EnhancedCode{}, false},
		{"05.7.1", postern.EnhancedCode{}, false}, // class is one digit
		{"5.+7.1", postern.EnhancedCode{}, false},
		{"5.-0.1", postern.EnhancedCode{}, false},
		{"+5.7.1", postern.EnhancedCode{}, false},
		{"5.7.a", postern.EnhancedCode{}, false},
		{" 5.7.1", postern.EnhancedCode{}, false},
		{"5.7.1 ", postern.EnhancedCode{}, false},
		{"5.٣.1", postern.EnhancedCode{}, false}, // non-ASCII digit
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := postern.ParseEnhancedCode(tt.in)
			if !tt.ok {
				require.Error(t, err)
				assert.ErrorIs(t, err, postern.ErrReplySyntax)
				assert.True(t, got.IsZero())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestEnhancedCodeString(t *testing.T) {
	assert.Equal(t, "", postern.EnhancedCode{}.String())
	assert.True(t, postern.EnhancedCode{}.IsZero())
	assert.Equal(t, "5.7.1", postern.ESC(5, 7, 1).String())
	assert.Equal(t, "4.999.0", postern.ESC(4, 999, 0).String())
	assert.False(t, postern.ESC(2, 0, 0).IsZero())
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want postern.Reply
	}{
		{"single line", "250 2.0.0 OK\r\n", postern.NewReply(250, postern.ESC(2, 0, 0), "OK")},
		{"single line without enhanced code", "220 mx.test ESMTP ready\r\n", postern.NewReply(220, postern.EnhancedCode{}, "mx.test ESMTP ready")},
		{"code only", "250\r\n", postern.Reply{Code: 250, Lines: []string{""}}},
		{"code and space", "250 \r\n", postern.Reply{Code: 250, Lines: []string{""}}},
		{"enhanced code only", "250 2.1.5\r\n", postern.Reply{Code: 250, Enhanced: postern.ESC(2, 1, 5), Lines: []string{""}}},
		{
			"multi-line with enhanced codes",
			"550-5.7.1 Relay access denied\r\n550-5.7.1 see https://postmaster.test\r\n550 5.7.1 bye\r\n",
			postern.Reply{Code: 550, Enhanced: postern.ESC(5, 7, 1), Lines: []string{"Relay access denied", "see https://postmaster.test", "bye"}},
		},
		{
			"EHLO reply without enhanced codes",
			"250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 ENHANCEDSTATUSCODES\r\n",
			postern.Reply{Code: 250, Lines: []string{"mx.test Hello", "PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES"}},
		},
		{
			"bare LF lines",
			"451-4.3.0 first\n451 4.3.0 second\n",
			postern.Reply{Code: 451, Enhanced: postern.ESC(4, 3, 0), Lines: []string{"first", "second"}},
		},
		{
			"mixed CRLF and LF",
			"250-a\r\n250-b\n250 c\r\n",
			postern.Reply{Code: 250, Lines: []string{"a", "b", "c"}},
		},
		{
			"enhanced class not matching the code is text",
			"550 4.7.1 greylisted\r\n",
			postern.Reply{Code: 550, Lines: []string{"4.7.1 greylisted"}},
		},
		{
			"invalid enhanced code is text",
			"550 5.7 nope\r\n",
			postern.Reply{Code: 550, Lines: []string{"5.7 nope"}},
		},
		{
			"enhanced code not on every line is kept as text",
			"250-2.0.0 first\r\n250 second\r\n",
			postern.Reply{Code: 250, Lines: []string{"2.0.0 first", "second"}},
		},
		{
			"different enhanced codes are kept as text",
			"550-5.1.1 unknown user\r\n550 5.7.1 policy\r\n",
			postern.Reply{Code: 550, Lines: []string{"5.1.1 unknown user", "5.7.1 policy"}},
		},
		{
			"text put back verbatim when codes differ",
			"550-5.01.1 spaced  \r\n550 5.7.1\r\n",
			postern.Reply{Code: 550, Lines: []string{"5.01.1 spaced  ", "5.7.1"}},
		},
		{
			"only the first reply is read",
			"250 2.0.0 OK\r\n221 2.0.0 bye\r\n",
			postern.NewReply(250, postern.ESC(2, 0, 0), "OK"),
		},
		{
			"stray CR inside a line is neutralised",
			"550 5.7.1 a\rb\r\n",
			postern.NewReply(550, postern.ESC(5, 7, 1), "a b"),
		},
		{
			"extra CRs at line end dropped",
			"250 ok\r\r\n",
			postern.NewReply(250, postern.EnhancedCode{}, "ok"),
		},
		{"354", "354 End data with <CR><LF>.<CR><LF>\r\n", postern.NewReply(354, postern.EnhancedCode{}, "End data with <CR><LF>.<CR><LF>")},
		{"lowest code", "200 x\r\n", postern.NewReply(200, postern.EnhancedCode{}, "x")},
		{"highest code", "599 5.0.0 x\r\n", postern.NewReply(599, postern.ESC(5, 0, 0), "x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := postern.ParseReply(bufio.NewReader(strings.NewReader(tt.in)))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseReplyReadsOneReplyAtATime(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("250-a\r\n250 b\r\n354 go ahead\r\n"))
	r1, err := postern.ParseReply(br)
	require.NoError(t, err)
	assert.Equal(t, postern.Reply{Code: 250, Lines: []string{"a", "b"}}, r1)
	r2, err := postern.ParseReply(br)
	require.NoError(t, err)
	assert.Equal(t, 354, r2.Code)
	_, err = postern.ParseReply(br)
	assert.ErrorIs(t, err, io.EOF)
	assert.NotErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestParseReplyErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty input", "", io.EOF},
		{"EOF mid-line", "250 OK", io.ErrUnexpectedEOF},
		{"EOF after a continuation line", "250-first\r\n", io.ErrUnexpectedEOF},
		{"EOF mid second line", "250-first\r\n250 sec", io.ErrUnexpectedEOF},
		{"short line", "25\r\n", postern.ErrReplySyntax},
		{"blank line", "\r\n", postern.ErrReplySyntax},
		{"non-numeric code", "abc OK\r\n", postern.ErrReplySyntax},
		{"code too low", "199 x\r\n", postern.ErrReplySyntax},
		{"code too high", "600 x\r\n", postern.ErrReplySyntax},
		{"signed code", "+25 x\r\n", postern.ErrReplySyntax},
		{"negative code", "-25 x\r\n", postern.ErrReplySyntax},
		{"bad separator", "250_OK\r\n", postern.ErrReplySyntax},
		{"tab separator", "250\tOK\r\n", postern.ErrReplySyntax},
		{"four-digit code", "2500 OK\r\n", postern.ErrReplySyntax},
		{"codes differ between lines", "250-first\r\n251 second\r\n", postern.ErrReplySyntax},
		{"code class differs between lines", "550-5.7.1 a\r\n450 4.7.1 b\r\n", postern.ErrReplySyntax},
		{"bad continuation line", "250-first\r\nsecond\r\n", postern.ErrReplySyntax},
		{"too many lines", strings.Repeat("250-x\r\n", 512) + "250 x\r\n", postern.ErrReplySyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := postern.ParseReply(bufio.NewReader(strings.NewReader(tt.in)))
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			assert.True(t, got.IsZero())
		})
	}
}

func TestParseReplyLineLimit(t *testing.T) {
	// 512 lines is the most a reply may have.
	in := strings.Repeat("250-x\r\n", 511) + "250 x\r\n"
	r, err := postern.ParseReply(bufio.NewReader(strings.NewReader(in)))
	require.NoError(t, err)
	assert.Len(t, r.Lines, 512)

	// A hostile peer that never ends the reply is cut off.
	in = strings.Repeat("250-x\r\n", 100000)
	_, err = postern.ParseReply(bufio.NewReader(strings.NewReader(in)))
	assert.ErrorIs(t, err, postern.ErrReplySyntax)
}

func TestParseReplyString(t *testing.T) {
	// The final line end is optional in a string.
	for _, in := range []string{"250 2.0.0 OK", "250 2.0.0 OK\r\n", "250 2.0.0 OK\n"} {
		r, err := postern.ParseReplyString(in)
		require.NoError(t, err, "%q", in)
		assert.Equal(t, postern.NewReply(250, postern.ESC(2, 0, 0), "OK"), r, "%q", in)
	}
	r, err := postern.ParseReplyString("250-a\r\n250 b")
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, r.Lines)

	_, err = postern.ParseReplyString("250-a\r\n")
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = postern.ParseReplyString("")
	assert.ErrorIs(t, err, postern.ErrReplySyntax)
}

func TestReplyRoundTrip(t *testing.T) {
	replies := []postern.Reply{
		postern.NewReply(250, postern.ESC(2, 0, 0), "OK"),
		postern.NewReply(220, postern.EnhancedCode{}, "mx.test ESMTP"),
		postern.NewReply(250, postern.ESC(2, 0, 0), ""),
		postern.NewReply(250, postern.EnhancedCode{}, ""),
		postern.NewReply(550, postern.ESC(5, 7, 1), "Relay denied"),
		postern.NewReply(421, postern.ESC(4, 3, 2), "Service not available, try again later"),
		postern.NewReply(354, postern.EnhancedCode{}, "go ahead"),
		postern.NewReply(550, postern.ESC(5, 7, 1), "text with  double  spaces"),
		postern.NewReply(550, postern.ESC(5, 7, 1), " leading space"),
		postern.NewReply(550, postern.ESC(5, 7, 1), "5.7.1 code-like text"),
		postern.NewReply(550, postern.EnhancedCode{}, "4.7.1 other-class code as text"),
		postern.NewReply(550, postern.ESC(5, 7, 1), "caf\xe9 8-bit"),
		{Code: 250, Lines: []string{"mx.test", "PIPELINING", "SIZE 1000", "8BITMIME"}},
		{Code: 550, Enhanced: postern.ESC(5, 7, 1), Lines: []string{"a", "", "c"}},
		{Code: 451, Enhanced: postern.ESC(4, 999, 999), Lines: []string{"x", "y"}},
		{Code: 250, Lines: []string{"2.0.0 first", "second"}},
		{Code: 550, Lines: []string{"5.1.1 unknown", "5.7.1 policy"}},
	}
	for _, r := range replies {
		t.Run(r.Error(), func(t *testing.T) {
			got, err := postern.ParseReplyString(r.Wire())
			require.NoError(t, err, "%q", r.Wire())
			assert.Equal(t, r, got)
			assert.Equal(t, r.Wire(), got.Wire())
		})
	}
}

func TestDefaultReply(t *testing.T) {
	tests := []struct {
		stage postern.Stage
		act   postern.Action
		want  string
	}{
		{postern.StageConnect, postern.Reject, "554 5.7.1"},
		{postern.StageHelo, postern.Reject, "550 5.7.1"},
		{postern.StageMail, postern.Reject, "550 5.7.1"},
		{postern.StageRcpt, postern.Reject, "550 5.7.1"},
		{postern.StageData, postern.Reject, "554 5.7.1"},
		{postern.StageConnect, postern.TempFail, "421 4.3.2"},
		{postern.StageRcpt, postern.TempFail, "451 4.3.0"},
		{postern.StageData, postern.Accept, "250 2.0.0"},
		{postern.StageData, postern.Discard, "250 2.0.0"},
	}
	for _, tt := range tests {
		r := postern.DefaultReply(tt.stage, tt.act)
		assert.True(t, strings.HasPrefix(r.Error(), tt.want+" "), "%s/%s: %s", tt.stage, tt.act, r.Error())
		if tt.act == postern.Reject {
			assert.True(t, r.Permanent())
		}
		if tt.act == postern.TempFail {
			assert.True(t, r.Temporary())
		}
	}
}

func TestVerdictHelpers(t *testing.T) {
	assert.False(t, postern.Pass.Final())
	assert.Equal(t, postern.Continue, postern.Verdict{}.Action)
	assert.Equal(t, postern.Accept, postern.Accepted("ok").Action)
	assert.Equal(t, postern.Discard, postern.Discarded("x").Action)
	assert.Equal(t, postern.Quarantine, postern.Quarantined("x").Action)
	v := postern.Rejected(550, postern.ESC(5, 7, 1), "denied", "listed")
	assert.Equal(t, postern.Reject, v.Action)
	assert.True(t, v.Final())
	assert.Equal(t, "550 5.7.1 denied", v.Reply.Error())
	assert.Equal(t, "listed", v.Reason)
	v = postern.TempFailed(451, postern.ESC(4, 7, 1), "later", "greylist")
	assert.Equal(t, postern.TempFail, v.Action)
	assert.True(t, v.Reply.Temporary())

	names := map[postern.Action]string{
		postern.Continue: "continue", postern.Accept: "accept", postern.Reject: "reject",
		postern.TempFail: "tempfail", postern.Discard: "discard", postern.Quarantine: "quarantine",
		postern.Action(42): "action(42)",
	}
	for a, n := range names {
		assert.Equal(t, n, a.String())
	}
	stages := map[postern.Stage]string{
		postern.StageConnect: "connect", postern.StageHelo: "helo", postern.StageMail: "mail",
		postern.StageRcpt: "rcpt", postern.StageData: "data", postern.Stage(0): "stage(0)", postern.Stage(9): "stage(9)",
	}
	for s, n := range stages {
		assert.Equal(t, n, s.String())
	}
}

func TestVerdictReplyAt(t *testing.T) {
	custom := postern.NewReply(550, postern.ESC(5, 1, 1), "No such user")
	tests := []struct {
		name string
		v    postern.Verdict
		st   postern.Stage
		want postern.Reply
	}{
		{"own reply", postern.Verdict{Action: postern.Reject, Reply: custom}, postern.StageRcpt, custom},
		{"zero reply", postern.Verdict{Action: postern.Reject}, postern.StageRcpt, postern.DefaultReply(postern.StageRcpt, postern.Reject)},
		{"reject with a 4xx reply", postern.Verdict{Action: postern.Reject, Reply: postern.NewReply(451, postern.ESC(4, 0, 0), "x")},
			postern.StageMail, postern.DefaultReply(postern.StageMail, postern.Reject)},
		{"tempfail with a 5xx reply", postern.Verdict{Action: postern.TempFail, Reply: custom},
			postern.StageConnect, postern.DefaultReply(postern.StageConnect, postern.TempFail)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.v.ReplyAt(tt.st))
		})
	}
}

func TestZeroReplyError(t *testing.T) {
	assert.Equal(t, "no reply", postern.Reply{}.Error())
	assert.Equal(t, "250", postern.Reply{Code: 250}.Error())
}
