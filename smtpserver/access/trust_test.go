package access

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// swapSource is a map source whose map a test replaces, as a Watcher does
// on reload.
type swapSource struct{ m atomic.Pointer[Map] }

func (s *swapSource) Current() *Map { return s.m.Load() }

// Trust granted at connect follows the map in force: a reload that
// removes the Connect: RELAY entry withdraws it at the next command, and
// RelayControl after it refuses to relay.
func TestTrustFollowsReload(t *testing.T) {
	src := &swapSource{}
	src.m.Store(mustMap(t, "Connect:192.0.2.7 RELAY\nConnect:relay.example RELAY\n"))
	logs := &testutil.LogBuffer{}
	tr, err := NewTrust(TrustConfig{Map: src, TrustedNets: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")},
		Logger: logs.Logger()})
	require.NoError(t, err)
	assert.Equal(t, "trust", tr.Name())
	rc, err := NewRelayControl(RelayConfig{Map: src, LocalDomains: []string{"example.test"}})
	require.NoError(t, err)
	chain, err := postern.NewChain(postern.ChainConfig{Name: "t", Entries: []postern.Entry{{Filter: tr}, {Filter: rc}}})
	require.NoError(t, err)

	c := newConn("192.0.2.7", "")
	v, err := chain.CheckConnect(bg, c)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action)
	assert.True(t, c.Trusted)
	txn := &postern.Txn{From: "a@example.net"}
	remote := &postern.Rcpt{Addr: "x@remote.example"}
	v, err = chain.CheckRcpt(bg, c, txn, remote)
	require.NoError(t, err)
	assert.Equal(t, postern.Continue, v.Action, v.Reason)

	src.m.Store(mustMap(t, "Connect:relay.example RELAY\n")) // the reload
	_, err = chain.CheckMail(bg, c, txn)
	require.NoError(t, err)
	assert.False(t, c.Trusted, "withdrawn at the next command")
	v, err = chain.CheckRcpt(bg, c, txn, remote)
	require.NoError(t, err)
	assert.Equal(t, "550 5.7.1 Relay access denied", v.ReplyAt(postern.StageRcpt).Error())
	recs := logs.Records(t, "trust withdrawn: the configuration in force no longer trusts the client")
	require.Len(t, recs, 1)
	assert.Equal(t, "mail", recs[0]["stage"])

	// The other sources of trust: a verified host name, a trusted network
	// (an IPv4-mapped prefix counts for IPv4 clients), and trust given
	// back by a later reload.
	named := newConn("198.51.100.1", "relay.example")
	_, err = tr.CheckHelo(bg, named)
	require.NoError(t, err)
	assert.True(t, named.Trusted)
	why, ok := tr.Trusted(newConn("10.1.2.3", ""))
	assert.True(t, ok)
	assert.Equal(t, "trusted network 10.0.0.0/8", why)
	src.m.Store(mustMap(t, "Connect:192.0.2 RELAY\n"))
	v, err = tr.CheckData(bg, c, txn, nil)
	require.NoError(t, err)
	assert.True(t, c.Trusted)
	assert.Equal(t, "trusted: Connect:192.0.2 RELAY (access:1)", v.Reason)

	// No map, no networks: nobody.
	none, err := NewTrust(TrustConfig{})
	require.NoError(t, err)
	c.Trusted = true
	_, err = none.CheckRcpt(bg, c, txn, remote)
	require.NoError(t, err)
	assert.False(t, c.Trusted)
	_, err = NewTrust(TrustConfig{TrustedNets: []netip.Prefix{{}}})
	assert.ErrorIs(t, err, ErrConfig)
}
