package dane

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParseRecord: any text either fails with ErrSyntax or gives a
// record whose presentation form reads back the same.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{"3 1 1 00ff", "2 0 2 ab cd", "0 0 0 0", "3 1 1", "256 1 1 00", " 3\t1 1 0A "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		back, err := ParseRecord(r.String())
		require.NoError(t, err)
		require.Equal(t, r, back)
	})
}

// FuzzVerify: arbitrary records never authenticate a chain they were not
// made from, and never panic; the record made from the chain's own
// certificate always does.
func FuzzVerify(f *testing.F) {
	now := time.Now()
	p := newPKI(f, now.Add(-time.Hour), now.Add(time.Hour), "mx.example.net")
	ee := NewRecord(p.leaf, 3, 1, 1)
	f.Add(uint8(3), uint8(1), uint8(1), ee.Data)
	f.Add(uint8(2), uint8(0), uint8(0), p.ca.Raw)
	f.Add(uint8(3), uint8(0), uint8(2), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, u, s, m uint8, data []byte) {
		r := Record{Usage: u, Selector: s, MatchingType: m, Data: data}
		err := Verify([]*x509.Certificate{p.leaf, p.ca}, []Record{r}, []string{"mx.example.net"}, now)
		own := r.Usable() && (r.Usage == DANEEE && r.Matches(p.leaf) || r.Usage == DANETA && (r.Matches(p.ca) || r.Matches(p.leaf)))
		if err == nil {
			require.True(t, own, "authenticated by %v", r)
		}
		if r.Usable() && r.Usage == DANEEE && r.Matches(p.leaf) {
			require.NoError(t, err)
		}
	})
}
