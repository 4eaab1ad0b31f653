package postern_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/postern/postern"
)

func ExampleReply_Wire() {
	r := postern.Reply{
		Code:     550,
		Enhanced: postern.ESC(5, 7, 1),
		Lines:    []string{"Relay access denied", "See https://postmaster.example.test"},
	}
	fmt.Printf("%q\n", r.Wire())
	fmt.Println(r.Error())
	fmt.Println(r.Permanent(), r.Temporary())
	// Output:
	// "550-5.7.1 Relay access denied\r\n550 5.7.1 See https://postmaster.example.test\r\n"
	// 550 5.7.1 Relay access denied See https://postmaster.example.test
	// true false
}

func ExampleParseReplyString() {
	r, err := postern.ParseReplyString("452-4.2.2 Mailbox full\r\n452 4.2.2 Try again later\r\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Code, r.Enhanced, r.Temporary())
	fmt.Printf("%q\n", r.Lines)

	// Enhanced codes are only split off when every line has the same one.
	r, _ = postern.ParseReplyString("250-mx.example.test\r\n250 2.0.0 OK\r\n")
	fmt.Printf("%q %q\n", r.Enhanced, r.Lines)
	// Output:
	// 452 4.2.2 true
	// ["Mailbox full" "Try again later"]
	// "" ["mx.example.test" "2.0.0 OK"]
}

func ExampleNewChain() {
	blocked := map[string]bool{"spammer.example": true}

	senderCheck := postern.MailFunc("sender-domain", func(_ context.Context, _ *postern.Conn, t *postern.Txn) (postern.Verdict, error) {
		if blocked[postern.AddrDomain(t.From)] {
			return postern.Rejected(550, postern.ESC(5, 7, 1), "Sender rejected", "blocked domain"), nil
		}
		return postern.Pass, nil
	})
	relayControl := postern.RcptFunc("relay-control", func(_ context.Context, c *postern.Conn, _ *postern.Txn, r *postern.Rcpt) (postern.Verdict, error) {
		if c.Trusted || r.Domain() == "example.test" {
			return postern.Pass, nil
		}
		return postern.Rejected(554, postern.ESC(5, 7, 1), "Relay access denied", "not local"), nil
	})
	lookupFails := postern.RcptFunc("dnsbl", func(context.Context, *postern.Conn, *postern.Txn, *postern.Rcpt) (postern.Verdict, error) {
		return postern.Pass, fmt.Errorf("lookup timed out")
	})

	chain, err := postern.NewChain(postern.ChainConfig{
		Name: "inbound",
		Entries: []postern.Entry{
			{Filter: senderCheck},
			{Filter: relayControl},
			{Filter: lookupFails, OnError: postern.OnErrorAccept},
		},
		Observer: func(_ context.Context, d postern.Decision) {
			line := fmt.Sprintf("%s %s %s: %s", d.Chain, d.Stage, d.Filter, d.Verdict.Action)
			if d.Err != nil {
				line += " (error: " + d.Err.Error() + ")"
			}
			fmt.Println(line)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	conn := &postern.Conn{ID: "c1"}
	txn := &postern.Txn{From: "alice@friend.example"}
	v, _ := chain.CheckMail(ctx, conn, txn)
	fmt.Println("MAIL:", v.Action)
	v, _ = chain.CheckRcpt(ctx, conn, txn, &postern.Rcpt{Addr: "bob@example.test"})
	fmt.Println("RCPT bob:", v.Action)
	v, _ = chain.CheckRcpt(ctx, conn, txn, &postern.Rcpt{Addr: "eve@elsewhere.example"})
	fmt.Println("RCPT eve:", v.Action, v.Reply.Error())
	// Output:
	// inbound mail sender-domain: continue
	// MAIL: continue
	// inbound rcpt relay-control: continue
	// inbound rcpt dnsbl: continue (error: lookup timed out)
	// RCPT bob: continue
	// inbound rcpt relay-control: reject
	// RCPT eve: reject 554 5.7.1 Relay access denied
}

func ExampleErrorPolicy() {
	// A configuration names the policy in Postfix's words; the zero value
	// (an empty or missing setting) is the component's own default.
	var cfg struct {
		VirusOnError postern.ErrorPolicy
		SpamOnError  postern.ErrorPolicy
	}
	if err := cfg.VirusOnError.UnmarshalText([]byte("reject")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.VirusOnError, cfg.SpamOnError)

	// A component resolves the zero value to its documented default, here
	// a scanner's: virus scanning fails closed, spam scoring open.
	virus := cfg.VirusOnError.Or(postern.OnErrorTempFail)
	spam := cfg.SpamOnError.Or(postern.OnErrorAccept)

	// and answers a failed dependency with the policy's verdict.
	v := virus.Verdict(postern.StageData, postern.ESC(5, 7, 1), "Message could not be scanned", "clamd: connection refused")
	fmt.Println(v.Action, v.Reply.Error())
	v = spam.Verdict(postern.StageData, postern.ESC(4, 7, 1), "Message could not be scored", "spamd: timeout")
	fmt.Println(v.Action, v.Reason)
	v = postern.OnErrorTempFail.Verdict(postern.StageConnect, postern.ESC(4, 7, 1), "DNSBL lookup failed", "zen: SERVFAIL")
	fmt.Println(v.Action, v.Reply.Error())

	err := cfg.SpamOnError.UnmarshalText([]byte("bounce"))
	fmt.Println(errors.Is(err, postern.ErrErrorPolicy), err)
	// Output:
	// reject default
	// reject 554 5.7.1 Message could not be scanned
	// continue spamd: timeout; on error: accept
	// tempfail 421 4.7.1 DNSBL lookup failed, try again later
	// true postern: unknown error policy "bounce" (want tempfail, accept or reject)
}

func ExampleMessage_Render() {
	raw := "Received: from client.example.test\r\n" +
		"X-Spam-Flag: YES\r\n" +
		"Subject: Hello\r\n" +
		"\r\n" +
		"Hi!\r\n"
	m, err := postern.NewMessage(strings.NewReader(raw), int64(len(raw)), 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Subject:", m.Header().Get("Subject"))

	// Edits are recorded; the received bytes are never changed.
	m.DeleteHeader("x-spam-flag", 0) // do not trust the client's spam verdict
	m.AddHeader("Received", "from relay.example.test by mx.example.test")
	m.AddHeader("Authentication-Results", "mx.example.test; spf=pass")

	var out strings.Builder
	if err := m.Render(&out); err != nil {
		fmt.Println(err)
		return
	}
	// Shown with LF line ends; the rendered lines end in CRLF.
	fmt.Print(strings.ReplaceAll(out.String(), "\r\n", "\n"))
	// Output:
	// Subject: Hello
	// Authentication-Results: mx.example.test; spf=pass
	// Received: from relay.example.test by mx.example.test
	// Received: from client.example.test
	// Subject: Hello
	//
	// Hi!
}

// An address in canonical form, as a server session sees it, and the form
// a client writes to the next hop.
func ExampleSplitAddress() {
	for _, in := range []string{"ceo@Example.ORG.", "ceo(x)@example.org", "a b@example.org"} {
		a, err := postern.SplitAddress(in)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s -> %s\n", a, a.Wire())
	}
	_, err := postern.SplitAddress("ceo@example.org(x)")
	fmt.Println(err)
	// Output:
	// ceo@example.org -> ceo@example.org
	// ceo(x)@example.org -> "ceo(x)"@example.org
	// a b@example.org -> "a b"@example.org
	// postern: bad address syntax: bad domain "example.org(x)"
}
