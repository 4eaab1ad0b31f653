package spamd_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/postern/postern/scan"
	"github.com/postern/postern/scan/spamd"
)

func Example() {
	c, err := spamd.New(spamd.Config{
		Addrs:   []string{"127.0.0.1:783", "192.0.2.26:783"},
		Command: spamd.Report, // scores and descriptions of the rules hit
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := c.Scan(context.Background(), strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), nil)
	if err == nil {
		fmt.Println(res.Score, res.Threshold, res.SymbolNames())
	}
	// As the filter's spam scorer (fails open by default), tagging at 6.8
	// with "[SPAM]" in the Subject as the university relay did:
	_, _ = scan.NewFilter(scan.FilterConfig{
		Spam:          []scan.ScannerEntry{{Scanner: c}},
		TagScore:      6.8,
		SubjectPrefix: "[SPAM]",
	})
}
