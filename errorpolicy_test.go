package postern_test

import (
	"encoding"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

var (
	_ encoding.TextMarshaler   = postern.ErrorPolicy(0)
	_ encoding.TextUnmarshaler = (*postern.ErrorPolicy)(nil)
)

func TestErrorPolicyText(t *testing.T) {
	tests := []struct {
		p    postern.ErrorPolicy
		word string
	}{
		{postern.OnErrorDefault, "default"},
		{postern.OnErrorTempFail, "tempfail"},
		{postern.OnErrorAccept, "accept"},
		{postern.OnErrorReject, "reject"},
	}
	for _, tt := range tests {
		t.Run(tt.word, func(t *testing.T) {
			assert.Equal(t, tt.word, tt.p.String())
			assert.True(t, tt.p.Valid())
			b, err := tt.p.MarshalText()
			require.NoError(t, err)
			assert.Equal(t, tt.word, string(b))
			var got postern.ErrorPolicy
			require.NoError(t, got.UnmarshalText(b))
			assert.Equal(t, tt.p, got)
		})
	}
	assert.Equal(t, postern.OnErrorDefault, postern.ErrorPolicy(0), "the zero value is the component's default")

	var p postern.ErrorPolicy
	for in, want := range map[string]postern.ErrorPolicy{"": postern.OnErrorDefault, "TempFail": postern.OnErrorTempFail,
		"ACCEPT": postern.OnErrorAccept, "Reject": postern.OnErrorReject} {
		require.NoError(t, p.UnmarshalText([]byte(in)), in)
		assert.Equal(t, want, p, in)
	}
	for _, bad := range []string{"fail_open", "true", "tempfail ", "quarantine", "discard", "0"} {
		p = postern.OnErrorAccept
		err := p.UnmarshalText([]byte(bad))
		require.ErrorIs(t, err, postern.ErrErrorPolicy, bad)
		assert.Contains(t, err.Error(), "want tempfail, accept or reject")
		assert.Equal(t, postern.OnErrorAccept, p, "unchanged on error")
	}
	long := make([]byte, 10000)
	for i := range long {
		long[i] = 'x'
	}
	err := p.UnmarshalText(long)
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 200, "a huge value is not echoed whole")

	unknown := postern.OnErrorReject + 1
	assert.False(t, unknown.Valid())
	assert.Equal(t, "error-policy(4)", unknown.String())
	_, err = unknown.MarshalText()
	assert.ErrorIs(t, err, postern.ErrErrorPolicy)
}

func TestErrorPolicyOr(t *testing.T) {
	for _, def := range []postern.ErrorPolicy{postern.OnErrorTempFail, postern.OnErrorAccept, postern.OnErrorReject} {
		assert.Equal(t, def, postern.OnErrorDefault.Or(def))
		for _, p := range []postern.ErrorPolicy{postern.OnErrorTempFail, postern.OnErrorAccept, postern.OnErrorReject} {
			assert.Equal(t, p, p.Or(def), "an explicit policy wins over the default")
		}
	}
}

func TestErrorPolicyStricter(t *testing.T) {
	order := []postern.ErrorPolicy{postern.OnErrorDefault, postern.OnErrorAccept, postern.OnErrorTempFail, postern.OnErrorReject}
	for i, p := range order {
		for j, q := range order {
			want := order[max(i, j)]
			assert.Equal(t, want, p.Stricter(q), "%v, %v", p, q)
		}
	}
}

func TestErrorPolicyVerdict(t *testing.T) {
	esc := postern.ESC(4, 7, 1)
	tests := []struct {
		name   string
		p      postern.ErrorPolicy
		st     postern.Stage
		esc    postern.EnhancedCode
		text   string
		action postern.Action
		reply  string
	}{
		{"tempfail at connect closes with 421", postern.OnErrorTempFail, postern.StageConnect, esc, "DNSBL lookup failed",
			postern.TempFail, "421 4.7.1 DNSBL lookup failed, try again later"},
		{"tempfail at helo", postern.OnErrorTempFail, postern.StageHelo, esc, "DNSBL lookup failed",
			postern.TempFail, "451 4.7.1 DNSBL lookup failed, try again later"},
		{"tempfail at rcpt", postern.OnErrorTempFail, postern.StageRcpt, esc, "DNSBL lookup failed",
			postern.TempFail, "451 4.7.1 DNSBL lookup failed, try again later"},
		{"tempfail at data", postern.OnErrorTempFail, postern.StageData, esc, "Message could not be scanned",
			postern.TempFail, "451 4.7.1 Message could not be scanned, try again later"},
		{"tempfail outside a stage", postern.OnErrorTempFail, 0, esc, "x", postern.TempFail, "451 4.7.1 x, try again later"},
		{"tempfail, default text and code", postern.OnErrorTempFail, postern.StageMail, postern.EnhancedCode{}, "",
			postern.TempFail, "451 4.3.0 Temporary local problem, try again later"},
		{"reject at connect", postern.OnErrorReject, postern.StageConnect, esc, "DNSBL lookup failed",
			postern.Reject, "554 5.7.1 DNSBL lookup failed"},
		{"reject at helo", postern.OnErrorReject, postern.StageHelo, esc, "t", postern.Reject, "550 5.7.1 t"},
		{"reject at mail", postern.OnErrorReject, postern.StageMail, esc, "t", postern.Reject, "550 5.7.1 t"},
		{"reject at rcpt, class from the reply", postern.OnErrorReject, postern.StageRcpt, postern.ESC(4, 4, 1), "t",
			postern.Reject, "550 5.4.1 t"},
		{"reject at data", postern.OnErrorReject, postern.StageData, esc, "t", postern.Reject, "554 5.7.1 t"},
		{"reject outside a stage", postern.OnErrorReject, 0, esc, "t", postern.Reject, "554 5.7.1 t"},
		{"reject, default text and code", postern.OnErrorReject, postern.StageRcpt, postern.EnhancedCode{}, "",
			postern.Reject, "550 5.3.0 Local problem, mail refused"},
		{"accept", postern.OnErrorAccept, postern.StageRcpt, esc, "t", postern.Continue, ""},
		{"unresolved default fails closed", postern.OnErrorDefault, postern.StageRcpt, esc, "t",
			postern.TempFail, "451 4.7.1 t, try again later"},
		{"unknown value fails closed", postern.OnErrorReject + 9, postern.StageConnect, esc, "t",
			postern.TempFail, "421 4.7.1 t, try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.p.Verdict(tt.st, tt.esc, tt.text, "zone bl.test: SERVFAIL")
			assert.Equal(t, tt.action, v.Action)
			if tt.reply == "" {
				assert.True(t, v.Reply.IsZero())
				assert.False(t, v.Final())
			} else {
				assert.Equal(t, tt.reply, v.Reply.Error())
				if tt.st != 0 {
					assert.Equal(t, tt.reply, v.ReplyAt(tt.st).Error(), "consistent with the action, sent as is")
				}
			}
			assert.Contains(t, v.Reason, "zone bl.test: SERVFAIL")
			applied := map[postern.Action]string{postern.TempFail: "tempfail", postern.Reject: "reject", postern.Continue: "accept"}
			assert.True(t, strings.HasSuffix(v.Reason, "; on error: "+applied[tt.action]), v.Reason)
			assert.NotContains(t, v.Reply.Error(), "SERVFAIL", "the reason never goes to the client")
		})
	}
}
