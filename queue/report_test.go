package queue

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
	"github.com/postern/postern/queue/dsn"
)

// Info.Report turns queue state into a dsn.Report: each recipient with
// the action its state calls for; what Compose writes from it parses
// back to the same recipients.
func TestInfoReport(t *testing.T) {
	arrived := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	tried := arrived.Add(5 * 24 * time.Hour)
	info := Info{ID: "Q1", Size: 19, Envelope: Envelope{From: "alice@example.org", EnvID: "order-17", Ret: "HDRS",
		Received: arrived, Recipients: []Recipient{
			{Addr: "gone@example.net", ORcptType: "rfc822", ORcpt: "Gone@Example.NET"},
			{Addr: "slow@example.net"},
			{Addr: "later@example.net"},
			{Addr: "relayed@example.net"},
			{Addr: "removed@example.net"},
		}},
		State: State{Rcpts: []RcptState{
			{Status: Failed, Reply: postern.NewReply(550, postern.ESC(5, 1, 1), "User unknown"), RemoteMTA: "mx.example.net", LastAttempt: tried},
			{Status: Failed, Expired: true, Reply: postern.NewReply(451, postern.ESC(4, 3, 0), "try later"), LastAttempt: tried},
			{Status: Pending, Reply: postern.NewReply(450, postern.ESC(4, 2, 0), "mailbox busy"), LastAttempt: tried},
			{Status: Delivered, Relayed: true, Reply: postern.NewReply(250, postern.ESC(2, 0, 0), "ok"), RemoteMTA: "mx.example.net"},
			{Status: Deleted},
		}}}
	until := arrived.Add(5 * 24 * time.Hour)
	rep, err := info.Report([]int{0, 1, 2, 3}, until)
	require.NoError(t, err)
	assert.Equal(t, "alice@example.org", rep.Sender)
	assert.Equal(t, []any{"order-17", arrived, "Q1", dsn.RetHdrs, int64(19)}, []any{rep.EnvID, rep.ArrivalDate, rep.QueueID, rep.Ret, rep.Size})
	assert.Nil(t, rep.Message, "the caller supplies the bytes")
	require.Len(t, rep.Recipients, 4)
	r := rep.Recipients
	assert.Equal(t, []dsn.Action{dsn.Failed, dsn.Failed, dsn.Delayed, dsn.Relayed}, []dsn.Action{r[0].Action, r[1].Action, r[2].Action, r[3].Action})
	assert.Equal(t, "Gone@Example.NET", r[0].OriginalRecipient)
	assert.Equal(t, postern.ESC(4, 4, 7), r[1].Status, "expired: delivery time expired, RFC 3463")
	assert.Equal(t, until, r[2].WillRetryUntil)
	assert.True(t, r[0].WillRetryUntil.IsZero())

	c, err := dsn.New(dsn.Config{ReportingMTA: "relay.example.org", Now: func() time.Time { return tried }})
	require.NoError(t, err)
	rep.Message = strings.NewReader("Subject: x\r\n\r\nhello\r\n")
	var buf bytes.Buffer
	_, err = c.Compose(&buf, rep)
	require.NoError(t, err)
	p, err := dsn.Parse(&buf)
	require.NoError(t, err)
	require.Len(t, p.Recipients, 4)
	assert.Equal(t, "gone@example.net", p.Recipients[0].FinalRecipient.Value)
	assert.Equal(t, postern.ESC(5, 1, 1), p.Recipients[0].Status)
	assert.Equal(t, dsn.Delayed, p.Recipients[2].Action)
	assert.Equal(t, "Q1", p.Fields.Get(dsn.QueueIDField))

	for _, idx := range [][]int{{4}, {5}, {-1}} {
		_, err := info.Report(idx, until)
		assert.ErrorIs(t, err, ErrNoRecipient, idx)
	}
}
