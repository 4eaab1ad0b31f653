package queue_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue"
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
