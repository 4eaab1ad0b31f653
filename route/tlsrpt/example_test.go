package tlsrpt_test

import (
	"fmt"

	"github.com/postern/postern/route/tlsrpt"
)

// The sessions of a day with one domain's MX hosts, as the report's
// policies count them.
func ExampleAggregate() {
	sts := tlsrpt.Result{Domain: "example.net", PolicyType: tlsrpt.PolicySTS, MXHosts: []string{"*.mx.example.net"}}
	bad := sts
	bad.Failure, bad.ReceivingMX = tlsrpt.ResultCertificateExpired, "a.mx.example.net"
	for _, p := range tlsrpt.Aggregate([]tlsrpt.Result{sts, sts, bad}) {
		fmt.Println(p.Policy.Type, p.Summary.Successful, p.Summary.Failure, p.FailureDetails[0].ResultType)
	}
	// Output:
	// sts 2 1 certificate-expired
}
