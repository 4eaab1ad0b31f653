package tlsrpt

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseRecord: a record either fails with ErrSyntax or yields only
// addresses safe to put in RCPT TO and https: URIs.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=TLSRPTv1; rua=mailto:a@b.example", "v=TLSRPTv1;rua=https://x/,mailto:a%40b@c", "v=TLSRPTv1; rua=mailto:%0d%0a@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		for _, a := range r.Mailto {
			require.True(t, validMailbox(a), a)
			require.False(t, strings.ContainsAny(a, "\r\n<> "), a)
		}
		for _, u := range r.HTTPS {
			require.True(t, strings.HasPrefix(strings.ToLower(u), "https://"), u)
		}
	})
}
