package queue_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
	"github.com/postern/postern/queue/dsn"
)

// printer is a Deliverer that accepts everything and says so.
type printer struct{ done chan struct{} }

func (printer) Destination(rcpt string) string { return postern.AddrDomain(rcpt) }

func (p printer) Deliver(_ context.Context, d *queue.Delivery) []queue.Result {
	var out []queue.Result
	for _, r := range d.Recipients {
		fmt.Printf("deliver %d bytes to %s\n", d.Size, r.Addr)
		out = append(out, queue.Result{Reply: postern.NewReply(250, postern.ESC(2, 0, 0), "ok")})
	}
	close(p.done)
	return out
}

func Example() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	p := printer{done: make(chan struct{})}
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: "relay.example.org", Deliverer: p})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)

	msg := "From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	_, err = q.Enqueue(ctx, queue.Envelope{From: "alice@example.org",
		Recipients: []queue.Recipient{{Addr: "bob@example.net"}}}, strings.NewReader(msg))
	if err != nil {
		fmt.Println(err)
		return
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	// Output: deliver 47 bytes to bob@example.net
}

func ExampleQueue_Hold() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: "relay.example.org"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	id, _ := q.Enqueue(context.Background(), queue.Envelope{From: "alice@example.org", Hold: "quarantine: spam score 9.1",
		Recipients: []queue.Recipient{{Addr: "bob@example.net"}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	for _, m := range q.List(queue.ListFilter{Held: "only"}) {
		fmt.Println(m.ID == id, m.State.Hold)
	}
	fmt.Println(q.Release(id))
	total, held := q.Len()
	fmt.Println(total, held)
	// Output:
	// true quarantine: spam score 9.1
	// <nil>
	// 1 0
}

// Remove the recipients of one domain from every queued message (the
// others stay queued), after a dry run that lists them.
func ExampleQueue_DeleteRecipients() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: "relay.example.org"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	q.Enqueue(context.Background(), queue.Envelope{From: "alice@example.org", Recipients: []queue.Recipient{
		{Addr: "bob@gone.example"}, {Addr: "carol@example.net"}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))

	sel := queue.ListFilter{RcptDomain: "gone.example"}
	pick := q.SelectRecipients(sel)
	for _, m := range q.List(sel) {
		for i, r := range m.Envelope.Recipients {
			if pick(r, m.State.Rcpts[i]) {
				fmt.Println("would delete", r.Addr)
			}
		}
		removed, err := q.DeleteRecipients(context.Background(), m.ID, pick, "domain gone")
		fmt.Println(len(removed), err)
		after, _ := q.Show(m.ID)
		fmt.Println(after.State.Rcpts[0].Status, after.State.Rcpts[1].Status)
	}
	// Output:
	// would delete bob@gone.example
	// 1 <nil>
	// deleted pending
}

// The hand-off from an accepted transaction to the queue, as smtpserver
// calls it at the end of DATA (a *queue.Handoff is a smtpserver.Handoff).
// Here carol's copy is tagged as spam and bob's is not (Copies; scan.Groups
// gives such groups), and mail from an untrusted client is marked
// UnverifiedSender (Envelope). The client is told the first copy's ID,
// the transaction's.
func ExampleHandoff() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: "relay.example.org"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()

	h := &queue.Handoff{Queue: q,
		Copies: func(_ context.Context, _ *postern.Conn, t *postern.Txn, m *postern.Message) ([]queue.Copy, error) {
			tagged, _ := postern.NewMessage(m.ReaderAt(), m.Size(), 0)
			tagged.AddHeader("X-Spam-Flag", "YES")
			return []queue.Copy{{Rcpts: t.Rcpts[:1]}, {Rcpts: t.Rcpts[1:], Message: tagged}}, nil
		},
		Envelope: func(c *postern.Conn, _ *postern.Txn, env *queue.Envelope) {
			env.UnverifiedSender = !c.Trusted
		},
	}
	// What smtpserver hands over.
	conn := &postern.Conn{ID: "c1", HELO: "client.example.net"}
	txn := &postern.Txn{ID: "T42", From: "alice@example.org", Rcpts: []*postern.Rcpt{
		{Addr: "bob@example.net", Original: "bob@example.net"},
		{Addr: "carol@example.net", Original: "carol@example.net"},
	}}
	raw := "Subject: hi\r\n\r\nhello\r\n"
	msg, _ := postern.NewMessage(strings.NewReader(raw), int64(len(raw)), 0)

	id, err := h.Handoff(context.Background(), conn, txn, msg)
	fmt.Println("250 2.0.0 Ok: queued as", id, err)
	for _, m := range q.List(queue.ListFilter{}) {
		rc, _ := q.Open(m.ID)
		b, _ := io.ReadAll(rc)
		rc.Close()
		fmt.Printf("%s %s unverified=%v %q\n", m.ID, m.Envelope.Recipients[0].Addr, m.Envelope.UnverifiedSender,
			strings.SplitN(string(b), "\r\n", 2)[0])
	}
	// Output:
	// 250 2.0.0 Ok: queued as T42 <nil>
	// T42 bob@example.net unverified=true "Subject: hi"
	// T42-2 carol@example.net unverified=true "X-Spam-Flag: YES"
}

// A failure notice composed from queue state, as the queue composes its
// own: the report on the failed recipient, the message returned.
func ExampleInfo_Report() {
	dir, _ := os.MkdirTemp("", "queue-example")
	defer os.RemoveAll(dir)
	q, err := queue.Open(queue.Config{Dir: dir, Hostname: "relay.example.org"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	id, _ := q.Enqueue(context.Background(), queue.Envelope{From: "alice@example.org", Recipients: []queue.Recipient{
		{Addr: "bob@gone.example"}, {Addr: "carol@example.net"}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	q.BounceRecipients(context.Background(), id, func(r queue.Recipient, _ queue.RcptState) bool {
		return r.Addr == "bob@gone.example"
	}, "domain gone")

	m, _ := q.Show(id)
	rep, err := m.Report([]int{0}, time.Time{})
	if err != nil {
		fmt.Println(err)
		return
	}
	rc, _ := q.Open(id)
	body, _ := io.ReadAll(rc)
	rc.Close()
	rep.Message = bytes.NewReader(body)
	c, _ := dsn.New(dsn.Config{ReportingMTA: "relay.example.org"})
	var out bytes.Buffer
	info, _ := c.Compose(&out, rep)
	fmt.Println(rep.Sender, rep.Recipients[0].Action, rep.Recipients[0].Reply.Code, info.Subject)
	// Output: alice@example.org failed 550 Undelivered Mail Returned to Sender
}
