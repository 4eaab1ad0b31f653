package milter_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/postern/postern"
	"github.com/postern/postern/smtpserver/milter"
)

// A Postern chain served to an MTA: Postfix's smtpd_milters (or
// sendmail's INPUT_MAIL_FILTER S=) names the address. Here Postern's own
// Client plays the MTA, as the relay calls any external milter.
func Example() {
	policy, err := postern.NewChain(postern.ChainConfig{Entries: []postern.Entry{
		{Filter: postern.MailFunc("no-spammer", func(_ context.Context, _ *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
			if t.From == "spammer@example.net" {
				return postern.Rejected(550, postern.ESC(5, 7, 1), "Access denied", "spammer"), nil
			}
			return postern.Pass, nil
		})},
	}})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := milter.New(milter.Config{Policy: policy})
	if err != nil {
		log.Fatal(err)
	}
	l, err := milter.Listen("inet:127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	client, err := milter.NewClient(milter.ClientConfig{Address: "inet:" + l.Addr().String(), Name: "postern"})
	if err != nil {
		log.Fatal(err)
	}
	for _, from := range []string{"alice@example.net", "spammer@example.net"} {
		conn := &postern.Conn{ID: "C1", HELO: "client.example.net", Remote: netip.MustParseAddrPort("192.0.2.7:40000")}
		v, err := client.CheckMail(context.Background(), conn, &postern.Txn{ID: "T1", From: from})
		if err != nil {
			log.Fatal(err)
		}
		if v.Action == postern.Reject {
			fmt.Println(from, "refused:", v.Reply.Error())
			continue
		}
		fmt.Println(from, "goes on")
	}
	// Output:
	// alice@example.net goes on
	// spammer@example.net refused: 550 5.7.1 Access denied
}
