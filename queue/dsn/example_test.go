package dsn_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/postern/postern"
	"github.com/postern/postern/queue/dsn"
)

// A bounce for one recipient that the next hop refused, composed with a
// fixed clock, Message-ID and boundary so the output is always the same.
func Example() {
	c, err := dsn.New(dsn.Config{
		ReportingMTA: "mx.example.org",
		Now:          func() time.Time { return time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC) },
		MessageID:    func() string { return "dsn-1@mx.example.org" },
		Boundary:     func() string { return "=_dsn_1" },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	original := []byte("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: Lunch?\r\nMessage-ID: <lunch.42@example.com>\r\n\r\nThursday?\r\n")
	var notify []string // the recipient gave no NOTIFY: FAILURE,DELAY
	if !dsn.ShouldSend("alice@example.com", notify, dsn.Failed) {
		return
	}
	report := &dsn.Report{
		Sender:      "alice@example.com",
		ArrivalDate: time.Date(2026, 11, 25, 8, 30, 0, 0, time.UTC),
		Recipients: []dsn.RecipientStatus{{
			FinalRecipient:  "bob@example.net",
			Action:          dsn.Failed,
			RemoteMTA:       "mx1.example.net",
			Reply:           postern.NewReply(550, postern.ESC(5, 1, 1), "User unknown"),
			LastAttemptDate: time.Date(2026, 11, 25, 8, 59, 0, 0, time.UTC),
		}},
		Message: bytes.NewReader(original),
		Size:    int64(len(original)),
		Ret:     dsn.RetHdrs,
	}
	var out strings.Builder
	info, err := c.Compose(&out, report)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("returned:", info.Returned, "8bit:", info.EightBit, "smtputf8:", info.SMTPUTF8)
	// The DSN has CRLF line ends; print them as LF.
	fmt.Print(strings.ReplaceAll(out.String(), "\r\n", "\n"))
	// Output:
	// returned: headers 8bit: false smtputf8: false
	// From: "Mail Delivery System" <MAILER-DAEMON@mx.example.org>
	// To: <alice@example.com>
	// Subject: Undelivered Mail Returned to Sender
	// Date: Wed, 25 Nov 2026 09:00:00 +0000
	// Message-ID: <dsn-1@mx.example.org>
	// In-Reply-To: <lunch.42@example.com>
	// References: <lunch.42@example.com>
	// Auto-Submitted: auto-replied
	// MIME-Version: 1.0
	// Content-Type: multipart/report; report-type=delivery-status;
	//  boundary="=_dsn_1"
	//
	// This is a delivery status notification in MIME format (RFC 3464).
	//
	// --=_dsn_1
	// Content-Description: Notification
	// Content-Type: text/plain; charset=us-ascii
	//
	// This is the mail delivery system at mx.example.org.
	//
	// Your message could not be delivered to one or more of its recipients.
	// They are listed below with the reason; no further attempt will be made
	// to deliver to them.
	//
	// The delivery report and the header of your message are attached.
	//
	// If you need help, write to the postmaster of mx.example.org and include
	// this report.
	//
	// Could not be delivered:
	//
	// <bob@example.net>: host mx1.example.net said: 550 5.1.1 User unknown
	//
	// --=_dsn_1
	// Content-Description: Delivery report
	// Content-Type: message/delivery-status
	//
	// Reporting-MTA: dns; mx.example.org
	// Arrival-Date: Wed, 25 Nov 2026 08:30:00 +0000
	//
	// Final-Recipient: rfc822; bob@example.net
	// Action: failed
	// Status: 5.1.1
	// Remote-MTA: dns; mx1.example.net
	// Diagnostic-Code: smtp; 550 5.1.1 User unknown
	// Last-Attempt-Date: Wed, 25 Nov 2026 08:59:00 +0000
	//
	// --=_dsn_1
	// Content-Description: Undelivered message header
	// Content-Type: text/rfc822-headers
	//
	// From: alice@example.com
	// To: bob@example.net
	// Subject: Lunch?
	// Message-ID: <lunch.42@example.com>
	//
	// --=_dsn_1--
}

// Reading a DSN, ours or another MTA's.
func ExampleParse() {
	f, err := os.Open("testdata/foreign/postfix-style.eml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	p, err := dsn.Parse(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("reported by", p.ReportingMTA.Value, "queue ID", p.Fields.Get("X-Postfix-Queue-ID"))
	for _, r := range p.Recipients {
		rep, _ := r.Reply()
		fmt.Println(r.FinalRecipient.Value, r.Action, r.Status, "code", rep.Code)
	}
	fmt.Println("returned", p.ReturnedType)
	// Output:
	// reported by relay.example.net queue ID 3F1A22C0123
	// nobody@big.example failed 5.1.1 code 550
	// returned text/rfc822-headers
}

func ExampleWants() {
	for _, notify := range [][]string{nil, {"SUCCESS"}, {"NEVER"}} {
		fmt.Printf("%-11s failed=%v delayed=%v delivered=%v\n", fmt.Sprintf("%q", notify),
			dsn.Wants(notify, dsn.Failed), dsn.Wants(notify, dsn.Delayed), dsn.Wants(notify, dsn.Delivered))
	}
	// Output:
	// []          failed=true delayed=true delivered=false
	// ["SUCCESS"] failed=false delayed=false delivered=true
	// ["NEVER"]   failed=false delayed=false delivered=false
}
