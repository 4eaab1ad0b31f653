package rspamd_test

import (
	"fmt"

	"github.com/postern/postern/scan/rspamd"
)

func ExampleParseReply() {
	res, err := rspamd.ParseReply([]byte(`{"is_skipped":false,"score":7.2,"required_score":15,` +
		`"action":"add header","symbols":{"BAYES_SPAM":{"name":"BAYES_SPAM","score":5.1},"MIME_HTML_ONLY":{"name":"MIME_HTML_ONLY","score":0.2}}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res)
	// Output:
	// rspamd: score 7.2/15.0 spam action=add header symbols=BAYES_SPAM,MIME_HTML_ONLY
}

func Example() {
	c, err := rspamd.New(rspamd.Config{Addrs: []string{"127.0.0.1:11333", "/run/rspamd/normal.sock"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	// c.Scan(ctx, m.NewReader(), scan.EnvelopeOf(conn, txn)), or as a
	// scan.Filter's spam scorer.
}
