package mtasts_test

import (
	"fmt"

	"github.com/postern/postern/route/mtasts"
)

// A policy as https://mta-sts.example.net/.well-known/mta-sts.txt serves
// it, and the MX hosts it allows.
func ExampleParsePolicy() {
	p, err := mtasts.ParsePolicy("version: STSv1\nmode: enforce\nmx: mail.example.net\nmx: *.backup.example.net\nmax_age: 604800\n")
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Mode, p.MaxAge)
	for _, mx := range []string{"mail.example.net", "b1.backup.example.net", "evil.example.org"} {
		fmt.Println(mx, p.MatchMX(mx))
	}
	// Output:
	// enforce 168h0m0s
	// mail.example.net true
	// b1.backup.example.net true
	// evil.example.org false
}
