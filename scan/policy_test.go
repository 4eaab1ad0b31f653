package scan

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const samplePolicy = `# per-recipient scan policy
*                   spam=on tag=6.8
@example.com        spam=on reject=15
@.example.net       tag=5
alice@example.com   spam=off
bob@example.com     allow=@partner.example,boss@corp.example  # a comment
                    deny=spammer@x.example,@.junk.example
carol@example.com   reject=off deny=<>
`

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(strings.NewReader(samplePolicy), "policy.txt")
	require.NoError(t, err)
	assert.Equal(t, 6, p.Len())

	tests := []struct {
		rcpt, key string
		spamOn    bool
		tag, rej  float64
	}{
		{"alice@example.com", "alice@example.com", false, 0, 0},
		{"Alice@Example.COM", "alice@example.com", false, 0, 0},
		{"alice+news@example.com", "alice@example.com", false, 0, 0},
		{"dave@example.com", "@example.com", true, 0, 15},
		{"x@mail.example.net", "@.example.net", true, 5, 0},
		{"x@a.b.example.net", "@.example.net", true, 5, 0},
		{"x@example.net", "*", true, 6.8, 0},
		{"x@other.example", "*", true, 6.8, 0},
		{"<bob@example.com>", "bob@example.com", true, 0, 0},
	}
	for _, tc := range tests {
		rp := p.Lookup(tc.rcpt)
		assert.Equal(t, tc.key, rp.Key, tc.rcpt)
		assert.Equal(t, tc.spamOn, rp.SpamFiltering(), tc.rcpt)
		assert.Equal(t, tc.tag, rp.TagScore, tc.rcpt)
		assert.Equal(t, tc.rej, rp.RejectScore, tc.rcpt)
	}
	assert.Equal(t, "policy.txt:6", p.Lookup("bob@example.com").Source)
	carol := p.Lookup("carol@example.com")
	assert.True(t, carol.NeverReject)

	bob := p.Lookup("bob@example.com")
	for from, want := range map[string]SenderMatch{
		"friend@partner.example": SenderAllowed,
		"boss@corp.example":      SenderAllowed,
		"other@corp.example":     SenderUnlisted,
		"SPAMMER@x.example":      SenderDenied,
		"a@mail.junk.example":    SenderDenied,
		"a@junk.example":         SenderDenied,
		"":                       SenderUnlisted,
	} {
		assert.Equal(t, want, bob.Sender(from), from)
	}
	assert.Equal(t, SenderDenied, carol.Sender(""))
	assert.Equal(t, SenderUnlisted, carol.Sender("x@y.example"))

	// More specific wins; on a tie deny wins.
	rp := RcptPolicy{Allow: []string{"vip@spam.example"}, Deny: []string{"@spam.example", "both@x.example"}}
	assert.Equal(t, SenderAllowed, rp.Sender("vip@spam.example"))
	assert.Equal(t, SenderDenied, rp.Sender("other@spam.example"))
	rp.Allow = append(rp.Allow, "both@x.example")
	assert.Equal(t, SenderDenied, rp.Sender("both@x.example"))

	var nilPolicy *Policy
	assert.True(t, nilPolicy.Lookup("x@y").SpamFiltering())
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		text, want string
	}{
		{"user@example.com spam=maybe\n", "p:1: spam=maybe: want on or off"},
		{"\n\nuser@example.com tag=abc\n", "p:3: tag=abc: want a non-zero number"},
		{"user@example.com tag=NaN\n", "p:1: tag=NaN: want a non-zero number"},
		{"user@example.com color=red\n", `p:1: unknown field "color" (want spam, tag, reject, allow or deny)`},
		{"user@example.com spam\n", `p:1: field "spam": want name=value`},
		{"  spam=on\n", "p:1: continuation line without an entry above"},
		{"nobody spam=on\n", `p:1: bad key "nobody": want user@domain, @domain or @.domain`},
		{"@ spam=on\n", `p:1: bad key "@": bad domain`},
		{"a@b.example spam=on\n# x\nA@B.example spam=off\n", "p:3: a@b.example given twice (first at line 1)"},
		{"a@b.example allow=x@y.example,,z@y.example\n", `p:1: allow entry "": want user@domain, @domain or @.domain`},
		{"a@b.example deny=@..example\n", `p:1: deny entry "@..example": bad domain`},
		{"a@b.example spam=on\xff\n", "p:1: line is not valid UTF-8"},
	}
	for _, tc := range tests {
		_, err := ParsePolicy(strings.NewReader(tc.text), "p")
		require.Error(t, err, tc.text)
		assert.ErrorIs(t, err, ErrSyntax)
		var pe *ParseError
		require.True(t, errors.As(err, &pe))
		assert.Equal(t, tc.want, err.Error())
	}
	_, err := ParsePolicy(strings.NewReader("a@b.example allow="+strings.Repeat("x", maxPolicyLine)+"\n"), "p")
	assert.ErrorIs(t, err, ErrSyntax)
}

func TestPolicyWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "policy")
		require.NoError(t, os.WriteFile(path, []byte("alice@example.com spam=off\n"), 0o644))
		w, err := NewPolicyWatcher(path, PolicyWatcherConfig{Interval: time.Second})
		require.NoError(t, err)
		assert.False(t, w.Current().Lookup("alice@example.com").SpamFiltering())

		require.NoError(t, os.WriteFile(path, []byte("alice@example.com spam=on\n"), 0o644))
		require.NoError(t, w.Reload())
		assert.True(t, w.Current().Lookup("alice@example.com").SpamFiltering())

		// A broken file leaves the policy in force.
		require.NoError(t, os.WriteFile(path, []byte("alice@example.com spam=off\nbroken line=\n"), 0o644))
		err = w.Reload()
		assert.ErrorIs(t, err, ErrSyntax)
		assert.Contains(t, err.Error(), path+":2:")
		assert.True(t, w.Current().Lookup("alice@example.com").SpamFiltering())

		// Run notices a change once it has settled.
		require.NoError(t, os.WriteFile(path, []byte("alice@example.com spam=off\n"), 0o644))
		future := time.Now().Add(time.Hour)
		require.NoError(t, os.Chtimes(path, future, future))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		time.Sleep(2 * time.Second) // two looks
		synctest.Wait()
		assert.False(t, w.Current().Lookup("alice@example.com").SpamFiltering())
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)

		_, err = NewPolicyWatcher(filepath.Join(dir, "missing"), PolicyWatcherConfig{})
		assert.Error(t, err)
	})
}
