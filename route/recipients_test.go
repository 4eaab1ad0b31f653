package route

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRecipients(t *testing.T) {
	text := "# valid users\n" +
		"alice@nix.co.jj\n" +
		"  Bob@NIX.CO.JJ.   # the boss\n" +
		"<carol@nix.co.jj>\tOK\n" +
		"odd#name@nix.co.jj\n" +
		"@catchall.example\n" +
		"\n"
	r, err := ParseRecipients(strings.NewReader(text), "recipients")
	require.NoError(t, err)
	assert.Equal(t, 5, r.Len())
	for addr, valid := range map[string]bool{
		"alice@nix.co.jj": true, "ALICE@Nix.Co.Jj": true, "bob@nix.co.jj": true, "carol@nix.co.jj": true,
		"odd#name@nix.co.jj": true, "dave@nix.co.jj": false, "x@catchall.example": true, "alice@other.example": false,
	} {
		assert.Equal(t, valid, r.Valid(addr), addr)
	}
	assert.True(t, r.Covers("NIX.co.jj"))
	assert.True(t, r.Covers("catchall.example"))
	assert.False(t, r.Covers("other.example"))
	var nilList *Recipients
	assert.False(t, nilList.Valid("a@b"))
	assert.False(t, nilList.Covers("b"))
}

// Entries in wire form are kept in the canonical form the server's
// lookups use: the quoted local part without its quotes.
func TestParseRecipientsQuoted(t *testing.T) {
	text := "\"john smith\"@nix.co.jj OK\n" +
		"<\"ceo(x)\"@nix.co.jj>\n" +
		"\"plain\"@nix.co.jj\n" +
		"\"a\\\"b\"@nix.co.jj\n"
	r, err := ParseRecipients(strings.NewReader(text), "recipients")
	require.NoError(t, err)
	assert.Equal(t, 4, r.Len())
	for addr, valid := range map[string]bool{
		"john smith@nix.co.jj": true, "ceo(x)@nix.co.jj": true, "plain@nix.co.jj": true, `a"b@nix.co.jj`: true,
		"ceo@nix.co.jj": false, "john@nix.co.jj": false,
	} {
		assert.Equal(t, valid, r.Valid(addr), addr)
	}
	_, err = ParseRecipients(strings.NewReader("\"open@nix.co.jj\n"), "recipients")
	assert.ErrorContains(t, err, "recipients:1: bad quoted address")
}

func TestParseRecipientsErrors(t *testing.T) {
	text := "ok@example.com\n" +
		"no-at-sign\n" + // 2
		"user@bad..domain\n" + // 3
		"<open@example.com\n" + // 4
		"user@\n" // 5
	_, err := ParseRecipients(strings.NewReader(text), "recipients")
	require.ErrorIs(t, err, ErrSyntax)
	for _, want := range []string{
		`recipients:2: "no-at-sign" is not an address`,
		`recipients:3: bad domain in "user@bad..domain"`,
		`recipients:4: unbalanced angle brackets`,
		`recipients:5: bad domain in "user@"`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "recipients:1:")
}

func TestRecipientsWatcher(t *testing.T) {
	p := filepath.Join(t.TempDir(), "recipients")
	writeFile(t, p, "alice@nix.co.jj\n")
	w, err := NewRecipientsWatcher(p, WatcherConfig{})
	require.NoError(t, err)
	v, err := NewVerifier(VerifierConfig{Recipients: w})
	require.NoError(t, err)
	r, _ := v.Verify(bg, "bob@nix.co.jj")
	assert.Equal(t, StatusInvalid, r.Status)

	writeFile(t, p, "alice@nix.co.jj\nbob@nix.co.jj\nbroken\n")
	assert.ErrorIs(t, w.Reload(), ErrSyntax)
	r, _ = v.Verify(bg, "bob@nix.co.jj")
	assert.Equal(t, StatusInvalid, r.Status, "the old list stays")

	writeFile(t, p, "alice@nix.co.jj\nbob@nix.co.jj\n")
	require.NoError(t, w.Reload())
	r, _ = v.Verify(bg, "bob@nix.co.jj")
	assert.Equal(t, StatusValid, r.Status)
	l, err := LoadRecipients(p)
	require.NoError(t, err)
	assert.Equal(t, 2, l.Len())
}
