package scan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeywords(t *testing.T) {
	k, err := NewKeywords(KeywordsConfig{Rules: []KeywordRule{
		{Name: "viagra", Pattern: `(?i)v[i1]agra`},
		{Name: "未承諾広告", Pattern: `未承諾広告`, Subject: true, Action: ActQuarantine},
		{Name: "invoice-body", Pattern: `(?i)overdue invoice`, Body: true, Action: ActLog},
		{Name: "hidden", Pattern: `secret-in-tag`},
	}})
	require.NoError(t, err)
	msg := "Subject: =?ISO-2022-JP?B?GyRCTCQ+NUJ6OS05cCIoGyhC?=\r\n" + // 未承諾広告※
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" + multipart("b",
		"Content-Type: text/plain; charset=utf-8\r\n\r\nCheap V1AGRA here. Your overdue invoice.\r\n",
		"Content-Type: text/html\r\n\r\n<p title=\"secret-in-tag\">only <b>viagra</b> text</p>\r\n")
	c, err := walk(t, Limits{}, msg)
	require.NoError(t, err)
	require.Equal(t, "未承諾広告※", c.Subject)
	type hit struct {
		rule, part string
		act        Action
	}
	var got []hit
	for _, f := range k.Match(c) {
		assert.Equal(t, KeywordMatch, f.Kind)
		got = append(got, hit{f.Rule, f.Part, f.Action})
	}
	assert.Equal(t, []hit{
		{"viagra", "1", ActReject}, {"viagra", "2", ActReject},
		{"未承諾広告", "0", ActQuarantine},
		{"invoice-body", "1", ActLog},
	}, got, "rules match decoded text, HTML without its markup")

	for _, bad := range []KeywordsConfig{
		{Rules: []KeywordRule{{Pattern: "x"}}},
		{Rules: []KeywordRule{{Name: "a", Pattern: "("}}},
		{Rules: []KeywordRule{{Name: "a"}}},
		{Rules: []KeywordRule{{Name: "a", Pattern: "x"}, {Name: "a", Pattern: "y"}}},
		{Rules: []KeywordRule{{Name: "a", Pattern: "x", Action: Action(99)}}},
		{MaxTextBytes: -1},
	} {
		_, err := NewKeywords(bad)
		assert.ErrorIs(t, err, ErrConfig)
	}
}
