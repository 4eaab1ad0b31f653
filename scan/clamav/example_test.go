package clamav_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/postern/postern/scan"
	"github.com/postern/postern/scan/clamav"
)

func ExampleParseReply() {
	for _, reply := range []string{"stream: OK", "stream: Win.Test.EICAR_HDB-1 FOUND", "INSTREAM size limit exceeded. ERROR"} {
		res, err := clamav.ParseReply(reply)
		fmt.Println(res.Infected, res.Viruses, err)
	}
	// Output:
	// false [] <nil>
	// true [Win.Test.EICAR_HDB-1] <nil>
	// false [] server error: message too large for the scanner: "INSTREAM size limit exceeded."
}

func Example() {
	c, err := clamav.New(clamav.Config{
		// The local socket first, a second clamd over TCP if it fails.
		Addrs: []string{"/run/clamav/clamd.ctl", "192.0.2.25:3310"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := c.Scan(context.Background(), strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), nil)
	switch {
	case err != nil:
		fmt.Println("not scanned:", err) // wraps scan.ErrScanner
	case res.Infected:
		fmt.Println("virus:", res.Viruses)
	}
	// As a filter's virus scanner: fails closed (451) by default.
	_, _ = scan.NewFilter(scan.FilterConfig{Virus: []scan.ScannerEntry{{Scanner: c}}})
}
