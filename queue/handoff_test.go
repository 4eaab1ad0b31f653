package queue

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/internal/testutil"
)

// accepted builds what smtpserver hands over at the end of DATA: the
// connection, the transaction and the message with a Received edit.
func accepted(t *testing.T, id string, rcpts ...string) (*postern.Conn, *postern.Txn, *postern.Message) {
	t.Helper()
	c := &postern.Conn{ID: "C1", Remote: netip.MustParseAddrPort("192.0.2.7:40000"), HELO: "client.example.net",
		AuthUser: "alice"}
	txn := &postern.Txn{ID: id, From: "alice@example.org",
		Mail: postern.MailParams{EnvID: "env-7", Ret: "HDRS", SMTPUTF8: true, Body: "8BITMIME", RequireTLS: true}}
	for _, r := range rcpts {
		txn.Rcpts = append(txn.Rcpts, &postern.Rcpt{Addr: r, Original: r})
	}
	m := testutil.Message(t, "Subject: hi\r\n\r\nhello\r\n")
	m.AddHeader("Received", "from client.example.net by relay.example.org")
	return c, txn, m
}

func TestHandoffEnvelope(t *testing.T) {
	h := newHarness(t, nil)
	c, txn, m := accepted(t, "TXN1", "bob@example.net", "carol@example.net")
	txn.Rcpts[0].Notify = []string{"SUCCESS", "FAILURE"}
	txn.Rcpts[0].ORcptType, txn.Rcpts[0].ORcpt = "rfc822", "Bob@Example.NET"
	txn.Rcpts[1].Addr = "carol@store.example.net" // rewritten by a filter; Original stays

	id, err := (&Handoff{Queue: h.q}).Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, "TXN1", id, "the transaction ID is the queue ID the client is told")
	info, err := h.q.Show(id)
	require.NoError(t, err)
	env := info.Envelope
	assert.Equal(t, "alice@example.org", env.From)
	assert.Equal(t, []any{"env-7", "HDRS", true, "8BITMIME", true}, []any{env.EnvID, env.Ret, env.SMTPUTF8, env.Body, env.RequireTLS})
	assert.Equal(t, []string{"192.0.2.7", "client.example.net", "alice", "C1"}, []string{env.ClientIP, env.HELO, env.AuthUser, env.ConnID})
	assert.Equal(t, []Recipient{
		{Addr: "bob@example.net", Original: "bob@example.net", Notify: []string{"SUCCESS", "FAILURE"}, ORcptType: "rfc822", ORcpt: "Bob@Example.NET"},
		{Addr: "carol@store.example.net", Original: "carol@example.net"},
	}, env.Recipients)
	assert.Empty(t, env.Hold)
	assert.Equal(t, "Received: from client.example.net by relay.example.org\r\nSubject: hi\r\n\r\nhello\r\n", h.body(id),
		"the rendered message: the filters' edits applied")
	assert.Len(t, h.events(EventEnqueued), 1)
}

// A quarantined transaction is accepted and queued in the hold area; a
// discarded one never reaches the queue.
func TestHandoffQuarantineAndDiscard(t *testing.T) {
	h := newHarness(t, nil)
	ho := &Handoff{Queue: h.q}
	c, txn, m := accepted(t, "Q1", "bob@example.net")
	txn.Quarantine = "virus: Eicar-Test-Signature"
	id, err := ho.Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	info, err := h.q.Show(id)
	require.NoError(t, err)
	assert.True(t, info.Held())
	assert.Equal(t, "virus: Eicar-Test-Signature", info.State.Hold)
	require.Len(t, h.events(EventHeld), 1, "the observer has seen the hold when Handoff returns")

	h.crash()
	h.open()
	info, err = h.q.Show(id)
	require.NoError(t, err)
	assert.True(t, info.Held(), "the hold is durable with the message")

	c, txn, m = accepted(t, "D1", "bob@example.net")
	txn.Discard = true
	id, err = (&Handoff{Queue: h.q}).Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, "D1", id)
	_, err = h.q.Show("D1")
	assert.ErrorIs(t, err, ErrNotFound, "a discard is not queued")
}

// A large quarantined message (past InlineLimit, written to its own
// file) is never found without its hold, even after a crash.
func TestHandoffQuarantineLarge(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InlineLimit = 64 })
	c, txn, _ := accepted(t, "BIG1", "bob@example.net")
	raw := "Subject: big\r\n\r\n" + strings.Repeat("x", 1000) + "\r\n"
	m := testutil.Message(t, raw)
	txn.Quarantine = "spam score 31"
	id, err := (&Handoff{Queue: h.q}).Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	h.crash()
	h.open()
	info, err := h.q.Show(id)
	require.NoError(t, err)
	assert.Equal(t, "spam score 31", info.State.Hold)
	assert.Equal(t, raw, h.body(id))
}

// renderer is a copy's message: its own text, or an error.
type renderer struct {
	text string
	err  error
	done atomic.Bool
}

func (r *renderer) Render(w io.Writer) error {
	defer r.done.Store(true)
	if r.err != nil {
		return r.err
	}
	_, err := io.WriteString(w, r.text)
	return err
}

func TestHandoffCopies(t *testing.T) {
	h := newHarness(t, nil)
	tagged := &renderer{text: "Subject: [SPAM] hi\r\n\r\nhello\r\n"}
	ho := &Handoff{Queue: h.q, Copies: func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) ([]Copy, error) {
		// bob gets the message as it is, carol a tagged copy, dave
		// nothing (dropped by his policy), and an empty group is skipped.
		return []Copy{{Rcpts: t.Rcpts[:1]}, {}, {Rcpts: t.Rcpts[1:2], Message: tagged}}, nil
	}}
	c, txn, m := accepted(t, "TXN2", "bob@example.net", "carol@example.net", "dave@example.net")
	id, err := ho.Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, "TXN2", id, "the client is told the first copy's ID")
	first, err := h.q.Show("TXN2")
	require.NoError(t, err)
	assert.Equal(t, "bob@example.net", first.Envelope.Recipients[0].Addr)
	assert.Contains(t, h.body("TXN2"), "Subject: hi\r\n")
	second, err := h.q.Show("TXN2-2")
	require.NoError(t, err)
	assert.Equal(t, []Recipient{{Addr: "carol@example.net", Original: "carol@example.net"}}, second.Envelope.Recipients)
	assert.Equal(t, tagged.text, h.body("TXN2-2"))
	total, _ := h.q.Len()
	assert.Equal(t, 2, total, "no copy for dave")

	// Every copy dropped: accepted, nothing queued, the transaction ID.
	none := &Handoff{Queue: h.q, Copies: func(context.Context, *postern.Conn, *postern.Txn, *postern.Message) ([]Copy, error) {
		return nil, nil
	}}
	c, txn, m = accepted(t, "TXN3", "dave@example.net")
	id, err = none.Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	assert.Equal(t, "TXN3", id)
	total, _ = h.q.Len()
	assert.Equal(t, 2, total)
}

// When one copy cannot be queued, those already queued are withdrawn and
// the error goes back to the server: the client retries, nobody gets the
// message twice. Every renderer has returned by then.
func TestHandoffCopyFailureWithdraws(t *testing.T) {
	h := newHarness(t, nil)
	broken := &renderer{err: errors.New("spool read error")}
	ho := &Handoff{Queue: h.q, Copies: func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) ([]Copy, error) {
		return []Copy{{Rcpts: t.Rcpts[:1]}, {Rcpts: t.Rcpts[1:], Message: broken}}, nil
	}}
	c, txn, m := accepted(t, "TXN4", "bob@example.net", "carol@example.net")
	_, err := ho.Handoff(context.Background(), c, txn, m)
	require.Error(t, err)
	assert.ErrorContains(t, err, "spool read error")
	assert.True(t, broken.done.Load())
	total, _ := h.q.Len()
	assert.Zero(t, total, "the first copy was withdrawn")
	kinds := []EventKind{}
	for _, e := range h.evs {
		kinds = append(kinds, e.Kind)
	}
	assert.Equal(t, []EventKind{EventEnqueued, EventDeleted}, kinds)

	fail := &Handoff{Queue: h.q, Copies: func(context.Context, *postern.Conn, *postern.Txn, *postern.Message) ([]Copy, error) {
		return nil, errors.New("no decision")
	}}
	_, err = fail.Handoff(context.Background(), c, txn, m)
	assert.ErrorContains(t, err, "no decision")

	// A closed queue refuses before reading: the renderer still ends.
	require.NoError(t, h.q.Close())
	slow := &renderer{text: strings.Repeat("x", 1<<20)}
	ho = &Handoff{Queue: h.q, Copies: func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) ([]Copy, error) {
		return []Copy{{Rcpts: t.Rcpts, Message: slow}}, nil
	}}
	_, err = ho.Handoff(context.Background(), c, txn, m)
	assert.ErrorIs(t, err, ErrClosed)
	assert.True(t, slow.done.Load(), "Render has returned when Handoff does")
	h.q = nil
}

// A bare Postmaster (no domain to route by) goes to the site's
// postmaster; the Envelope hook runs first and may decide otherwise.
func TestHandoffPostmasterAndEnvelopeHook(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Postmaster = "hostmaster@example.org" })
	c, txn, m := accepted(t, "PM1", "Postmaster", "bob@example.net")
	id, err := (&Handoff{Queue: h.q}).Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	info, _ := h.q.Show(id)
	assert.Equal(t, "hostmaster@example.org", info.Envelope.Recipients[0].Addr, "the queue's postmaster by default")
	assert.Equal(t, "Postmaster", info.Envelope.Recipients[0].Original)

	ho := &Handoff{Queue: h.q, Postmaster: "postmaster@example.org", Envelope: func(c *postern.Conn, t *postern.Txn, env *Envelope) {
		env.UnverifiedSender = !c.Trusted
	}}
	c, txn, m = accepted(t, "PM2", "postmaster")
	id, err = ho.Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	info, _ = h.q.Show(id)
	assert.Equal(t, "postmaster@example.org", info.Envelope.Recipients[0].Addr)
	assert.True(t, info.Envelope.UnverifiedSender)

	own := &Handoff{Queue: h.q, Envelope: func(_ *postern.Conn, _ *postern.Txn, env *Envelope) {
		for i := range env.Recipients {
			if postern.AddrDomain(env.Recipients[i].Addr) == "" {
				env.Recipients[i].Addr = "abuse-desk@example.org"
			}
		}
	}}
	c, txn, m = accepted(t, "PM3", "Postmaster")
	id, err = own.Handoff(context.Background(), c, txn, m)
	require.NoError(t, err)
	info, _ = h.q.Show(id)
	assert.Equal(t, "abuse-desk@example.org", info.Envelope.Recipients[0].Addr)
}

// A transaction ID that cannot be a queue ID (a custom server's, with a
// '/' or too long for the copy suffix) is replaced, never refused.
func TestHandoffInvalidTxnID(t *testing.T) {
	h := newHarness(t, nil)
	for _, txnID := range []string{"../../etc/passwd", "", strings.Repeat("A", 64)} {
		ho := &Handoff{Queue: h.q, Copies: func(_ context.Context, _ *postern.Conn, t *postern.Txn, _ *postern.Message) ([]Copy, error) {
			return []Copy{{Rcpts: t.Rcpts[:1]}, {Rcpts: t.Rcpts[1:]}}, nil
		}}
		c, txn, m := accepted(t, txnID, "bob@example.net", "carol@example.net")
		id, err := ho.Handoff(context.Background(), c, txn, m)
		require.NoError(t, err, txnID)
		assert.True(t, validID(id), id)
		if validID(txnID) {
			assert.Equal(t, txnID, id)
		}
	}
	total, _ := h.q.Len()
	assert.Equal(t, 6, total)
	_, err := (&Handoff{}).Handoff(context.Background(), nil, &postern.Txn{}, nil)
	assert.ErrorIs(t, err, ErrConfig)
}
