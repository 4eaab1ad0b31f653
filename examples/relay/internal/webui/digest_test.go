package webui

import (
	"bytes"
	"context"
	"testing"

	"github.com/jhillyerd/enmime/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixedRand makes tokens, and so Message-IDs, repeatable.
type fixedRand struct{}

func (fixedRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

func TestDigests(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Rand = fixedRand{} })
	old := e.enqueue("spam score 8.1", spam("Old news", "x"), bob)
	since := e.clock.Now()
	shared := e.enqueue("spam score 12.5", "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.net>\r\nSubject: Cheap watches\r\n\r\nbuy\r\n",
		bob, carol, bob)
	virus := e.enqueue("virus Eicar-Test-Signature", spam("Invoice", "see attachment"), carol)
	e.enqueue("", spam("Not held", "x"), bob)
	_, err := e.q.Split(shared, []string{carol})
	require.NoError(t, err)

	ds, err := e.ui.Digests(context.Background(), DigestConfig{From: "Mail relay <postmaster@example.test>",
		URL: "https://relay.example.test:8443/", Since: since})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	assert.Equal(t, bob, ds[0].To)
	require.Len(t, ds[0].Items, 1, "once per message, and nothing held before Since")
	assert.Equal(t, shared, ds[0].Items[0].ID)
	assert.Equal(t, "https://relay.example.test:8443/msg/"+shared, ds[0].Items[0].Link)
	assert.Equal(t, carol, ds[1].To)
	require.Len(t, ds[1].Items, 2)
	assert.Equal(t, virus, ds[1].Items[0].ID, "newest first")
	assert.NotEqual(t, shared, ds[1].Items[1].ID, "carol's copy was split off")
	golden(t, "digest-bob.eml", string(ds[0].Message))

	// The message is what it says: enmime reads it back.
	env, err := enmime.ReadEnvelope(bytes.NewReader(ds[1].Message))
	require.NoError(t, err)
	assert.Equal(t, "Held mail: 2 message(s) for "+carol, env.GetHeader("Subject"))
	assert.Equal(t, "auto-generated", env.GetHeader("Auto-Submitted"))
	assert.Contains(t, env.Text, "Invoice")
	assert.Contains(t, env.Text, "https://relay.example.test:8443/msg/"+virus)

	all, err := e.ui.Digests(context.Background(), DigestConfig{From: "postmaster@example.test",
		URL: "https://relay.example.test", MaxItems: 1})
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.NotEqual(t, old, all[0].Items[0].ID, "newest first: the old one is past MaxItems")
	assert.Equal(t, 1, all[0].Omitted)
	assert.Contains(t, string(all[0].Message), "and 1 older message(s)")

	for _, bad := range []DigestConfig{
		{URL: "https://relay.example.test"},
		{From: "postmaster@example.test", URL: "http://relay.example.test"},
		{From: "postmaster@example.test", URL: "relay.example.test"},
		{From: "postmaster@example.test", URL: "https://relay.example.test", MaxItems: -1},
	} {
		_, err := e.ui.Digests(context.Background(), bad)
		assert.ErrorIs(t, err, ErrDigest, "%+v", bad)
	}
}
