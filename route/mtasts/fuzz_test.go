package mtasts

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParsePolicy: a policy either fails with ErrSyntax or holds what
// RFC 8461 requires, and its lines parse to the same policy again.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{enforce, "version: STSv1\nmode: none\nmax_age: 0\n", "version:STSv1\r\nmode:testing\r\nmx:*.a.b\r\nmax_age:1",
		"mx: x\n\n\n", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		require.Contains(t, []Mode{ModeEnforce, ModeTesting, ModeNone}, p.Mode)
		require.LessOrEqual(t, p.MaxAge, MaxMaxAge)
		require.GreaterOrEqual(t, p.MaxAge, time.Duration(0))
		if p.Mode != ModeNone {
			require.NotEmpty(t, p.MX)
		}
		for _, mx := range p.MX {
			require.True(t, p.MatchMX(strings.Replace(mx, "*", "x", 1)), mx)
		}
		again, err := ParsePolicy(strings.Join(p.Lines(), "\n"))
		require.NoError(t, err)
		require.Equal(t, p.Mode, again.Mode)
		require.Equal(t, p.MX, again.MX)
		require.Equal(t, p.MaxAge, again.MaxAge)
	})
}

// FuzzParseRecord: a record either fails with ErrSyntax or has an id of
// 1 to 32 letters and digits.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"v=STSv1; id=20160831085700Z;", "v=STSv1;id=a;id=b", "v=STSv1 ; x=y; id=1", "v=STSv1; ="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		require.True(t, len(r.ID) >= 1 && len(r.ID) <= 32 && alnum(r.ID), r.ID)
	})
}
