package access

import (
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// plainAddr is an address key that LookupAddr can reproduce from itself.
var plainAddr = regexp.MustCompile(`^[a-z0-9._-]+@[a-z0-9-]+(\.[a-z0-9-]+)*$`)

func FuzzParse(f *testing.F) {
	for _, name := range []string{"sendmail-site.access", "errors.access", "warnings.access"} {
		b, err := os.ReadFile("testdata/" + name)
		require.NoError(f, err)
		f.Add(string(b))
	}
	for _, s := range []string{
		"",
		"\ufeffConnect:IPv6:2001:db8::/32 OK\r\n",
		"GreetPause: 5000\nClientRate: 10\nClientConn:10.1 0\n",
		"To:[IPv6:2001:db8::1] RELAY\nFrom:[192.0.2] OK\n[10.0.0.0/8] REJECT\n",
		"a@b ERROR:5.7.1:\"550 x\"\nb@ 451 later\nc.example QUARANTINE:\"why\"\n",
		"Spam:abuse@ FRIEND\nIPv6:1:2:3:4:5:6:7 SKIP\nfe80::1 OK\n.example.org REJECT\n",
		"x ERROR:5.7.1:450 y\n1.2.3.4/40 OK\nIPv6:::ffff:1.2.3.4/120 OK\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		m, warns, err := Parse(strings.NewReader(src), "fuzz")
		for _, w := range warns {
			require.Positive(t, w.Line)
		}
		// Odd input to the lookups must not panic either.
		probe := src
		if len(probe) > 80 {
			probe = probe[:80]
		}
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			require.Nil(t, m)
			_, _ = (*Map)(nil).LookupAddr("From", probe)
			return
		}
		_, _ = m.LookupAddr("From", probe)
		_, _ = m.LookupAddr("To", probe)
		_, _ = m.LookupClient("Connect", netip.Addr{}, probe)
		_, _ = m.LookupDomain("To", probe)

		entries := m.Entries()
		require.Equal(t, m.Len(), len(entries))
		var out strings.Builder
		out.WriteString("# round trip\n")
		for _, e := range entries {
			// Every entry is found again by its own key ...
			got, ok := m.Exact(e.Tag, e.Key)
			require.True(t, ok, "%v", e)
			require.Equal(t, e, got)
			// ... and decides the lookups it is the most specific for.
			roundTripLookup(t, m, e)
			out.WriteString(e.tagKeyRaw())
			out.WriteString(" ")
			out.WriteString(e.Raw)
			out.WriteString("\n")
		}
		// Written back out, the entries parse to the same entries.
		m2, _, err := Parse(strings.NewReader(out.String()), "fuzz2")
		require.NoError(t, err, out.String())
		e2 := m2.Entries()
		require.Equal(t, len(entries), len(e2))
		for i := range entries {
			a, b := entries[i], e2[i]
			a.File, a.Line, b.File, b.Line = "", 0, "", 0
			require.Equal(t, a, b)
		}
	})
}

// tagKeyRaw is the key with its tag as it was written.
func (e Entry) tagKeyRaw() string {
	if e.Tag == "" {
		return e.Key
	}
	return e.Tag + ":" + e.Key
}

func roundTripLookup(t *testing.T, m *Map, e Entry) {
	if e.Action == ActionSkip || e.Tag == "" {
		return
	}
	if _, known := canonicalTag(strings.ToLower(e.Tag)); !known {
		return // not validated, not looked up
	}
	ki, errText := classifyKey(e.Key)
	require.Empty(t, errText)
	switch e.Tag {
	case TagConnect, TagGreetPause, TagClientRate, TagClientConn:
		if ki.kind == kindNet && ki.pfx.Bits() == ki.pfx.Addr().BitLen() {
			got, ok := m.lookupClientIP(e.Tag, ki.pfx.Addr())
			require.True(t, ok, "%v", e)
			require.Equal(t, e.Line, got.Line, "%v found %v", e, got)
		}
	case TagFrom, TagTo:
		if ki.kind == kindName && plainAddr.MatchString(ki.norm) && !strings.Contains(ki.norm, "+") {
			got, ok := m.LookupAddr(e.Tag, e.Key)
			require.True(t, ok, "%v", e)
			require.Equal(t, e.Line, got.Line, "%v found %v", e, got)
		}
	}
}
