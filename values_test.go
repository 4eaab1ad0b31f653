package postern_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

type spfResult struct {
	Result string
	Domain string
}

func TestValuesTypedKeys(t *testing.T) {
	spfKey := postern.NewKey[spfResult]("spf")
	scoreKey := postern.NewKey[float64]("score")
	listedKey := postern.NewKey[[]string]("listed")
	sameName := postern.NewKey[float64]("score") // keys compare by identity

	var v postern.Values // the zero value is ready to use
	_, ok := postern.GetValue(&v, spfKey)
	assert.False(t, ok)
	score, ok := postern.GetValue(&v, scoreKey)
	assert.False(t, ok)
	assert.Zero(t, score)

	postern.SetValue(&v, spfKey, spfResult{"pass", "example.test"})
	postern.SetValue(&v, scoreKey, 4.5)
	postern.SetValue(&v, listedKey, []string{"zen"})

	spf, ok := postern.GetValue(&v, spfKey)
	require.True(t, ok)
	assert.Equal(t, spfResult{"pass", "example.test"}, spf)
	score, ok = postern.GetValue(&v, scoreKey)
	require.True(t, ok)
	assert.Equal(t, 4.5, score)
	_, ok = postern.GetValue(&v, sameName)
	assert.False(t, ok, "a key of the same name is another key")

	postern.SetValue(&v, scoreKey, 7.0) // overwrite
	score, _ = postern.GetValue(&v, scoreKey)
	assert.Equal(t, 7.0, score)

	postern.DeleteValue(&v, scoreKey)
	_, ok = postern.GetValue(&v, scoreKey)
	assert.False(t, ok)
	_, ok = postern.GetValue(&v, spfKey)
	assert.True(t, ok, "other keys stay")
	postern.DeleteValue(&v, scoreKey) // deleting twice is fine

	var empty postern.Values
	postern.DeleteValue(&empty, scoreKey) // on the zero value too

	assert.Equal(t, "spf", spfKey.String())
}

func TestValuesConcurrent(t *testing.T) {
	var v postern.Values
	keys := make([]*postern.Key[int], 4)
	for i := range keys {
		keys[i] = postern.NewKey[int](fmt.Sprint("k", i))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			k := keys[g%len(keys)]
			for i := range 200 {
				postern.SetValue(&v, k, i)
				if n, ok := postern.GetValue(&v, k); ok {
					assert.GreaterOrEqual(t, n, 0)
				}
				if i%50 == 0 {
					postern.DeleteValue(&v, keys[(g+1)%len(keys)])
				}
			}
		})
	}
	// A clone taken while others write.
	txn := &postern.Txn{}
	wg.Go(func() {
		for i := range 200 {
			postern.SetValue(&txn.Values, keys[0], i)
		}
	})
	wg.Go(func() {
		for range 50 {
			c := txn.Clone()
			postern.SetValue(&c.Values, keys[1], 1)
		}
	})
	wg.Wait()
}

func TestTxnClone(t *testing.T) {
	key := postern.NewKey[string]("k")
	other := postern.NewKey[int]("other")
	auth := "sender@example.test"
	orig := &postern.Txn{
		ID:   "T1",
		From: "a@example.test",
		Mail: postern.MailParams{Size: 1000, Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "env", Auth: &auth},
		Rcpts: []*postern.Rcpt{
			{Addr: "b@example.test", Original: "b@example.test"},
			{Addr: "c@example.test", Original: "c@example.test"},
		},
		Discard:    true,
		Quarantine: "held",
	}
	postern.SetValue(&orig.Values, key, "orig")

	c := orig.Clone()
	assert.Equal(t, orig.ID, c.ID)
	assert.Equal(t, orig.From, c.From)
	assert.Equal(t, orig.Mail, c.Mail)
	assert.Equal(t, orig.Discard, c.Discard)
	assert.Equal(t, orig.Quarantine, c.Quarantine)
	assert.Equal(t, orig.Rcpts, c.Rcpts)
	got, ok := postern.GetValue(&c.Values, key)
	require.True(t, ok)
	assert.Equal(t, "orig", got)

	// Changing the clone's slice and bag leaves the original alone.
	c.Rcpts[0] = &postern.Rcpt{Addr: "x@example.test"}
	c.Rcpts = append(c.Rcpts, &postern.Rcpt{Addr: "y@example.test"})
	postern.SetValue(&c.Values, key, "clone")
	postern.SetValue(&c.Values, other, 1)
	assert.Len(t, orig.Rcpts, 2)
	assert.Equal(t, "b@example.test", orig.Rcpts[0].Addr)
	got, _ = postern.GetValue(&orig.Values, key)
	assert.Equal(t, "orig", got)
	_, ok = postern.GetValue(&orig.Values, other)
	assert.False(t, ok)

	// And the other way round: an RSET-like change of the original.
	orig.Rcpts = orig.Rcpts[:0]
	orig.Rcpts = append(orig.Rcpts, &postern.Rcpt{Addr: "z@example.test"})
	postern.DeleteValue(&orig.Values, key)
	assert.Equal(t, "x@example.test", c.Rcpts[0].Addr)
	assert.Equal(t, "c@example.test", c.Rcpts[1].Addr)
	got, _ = postern.GetValue(&c.Values, key)
	assert.Equal(t, "clone", got)

	// A transaction without values or recipients.
	empty := (&postern.Txn{ID: "T2"}).Clone()
	assert.Equal(t, "T2", empty.ID)
	assert.Empty(t, empty.Rcpts)
	postern.SetValue(&empty.Values, key, "ok")
}

func TestAddrDomainLocal(t *testing.T) {
	tests := []struct {
		addr, domain, local string
	}{
		{"user@example.test", "example.test", "user"},
		{"User@EXAMPLE.Test", "example.test", "User"},
		{"user@example.test.", "example.test", "user"},
		{"USER@Example.TEST.", "example.test", "USER"},
		{`"a@b"@example.test`, "example.test", `"a@b"`},
		{"a@b@example.test", "example.test", "a@b"},
		{"postmaster", "", "postmaster"},
		{"", "", ""},
		{"@example.test", "example.test", ""},
		{"user@", "", "user"},
		{"user@.", "", "user"},
		{"user@[192.0.2.1]", "[192.0.2.1]", "user"},
		{"user@bücher.test", "bücher.test", "user"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			assert.Equal(t, tt.domain, postern.AddrDomain(tt.addr))
			assert.Equal(t, tt.local, postern.AddrLocal(tt.addr))
			r := &postern.Rcpt{Addr: tt.addr}
			assert.Equal(t, tt.domain, r.Domain())
		})
	}
}

func TestConnHelpers(t *testing.T) {
	var nilConn *postern.Conn
	require.NotNil(t, nilConn.Logger())
	nilConn.Logger().Info("dropped")
	require.NotNil(t, (&postern.Conn{}).Logger())
	l := postern.DiscardLogger()
	assert.Same(t, l, (&postern.Conn{Log: l}).Logger())

	c := &postern.Conn{Remote: netip.MustParseAddrPort("[::ffff:192.0.2.1]:25")}
	assert.Equal(t, netip.MustParseAddr("192.0.2.1"), c.RemoteAddr())
	c.Remote = netip.MustParseAddrPort("[2001:db8::1]:25")
	assert.Equal(t, netip.MustParseAddr("2001:db8::1"), c.RemoteAddr())

	assert.False(t, c.Authenticated())
	c.AuthUser = "alice"
	assert.True(t, c.Authenticated())
}

func TestTxnCloneDeepRcpts(t *testing.T) {
	key := postern.NewKey[string]("k")
	orig := &postern.Txn{Rcpts: []*postern.Rcpt{{Addr: "a@x", Notify: []string{"SUCCESS"}}}}
	postern.SetValue(&orig.Rcpts[0].Values, key, "orig")
	c := orig.Clone()
	c.Rcpts[0].Addr = "b@x"
	c.Rcpts[0].Notify[0] = "NEVER"
	postern.SetValue(&c.Rcpts[0].Values, key, "clone")
	assert.Equal(t, "a@x", orig.Rcpts[0].Addr)
	assert.Equal(t, "SUCCESS", orig.Rcpts[0].Notify[0])
	v, _ := postern.GetValue(&orig.Rcpts[0].Values, key)
	assert.Equal(t, "orig", v)
}
