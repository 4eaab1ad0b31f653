package main

import "fmt"

// Every line the relay sends in the hostile-input scenario is checked as
// an RFC 5321 reply line.
func Example_replyLines() {
	for _, line := range []string{
		"250-PIPELINING\r\n",
		"250 2.0.0 Ok: queued as 06H14C\r\n",
		"421 4.7.0 Error: too many errors\n",
		"+OK not SMTP\r\n",
	} {
		l := parseReplyLine(line)
		fmt.Printf("%q final=%v err=%q\n", l.Code, l.Final, l.Err)
	}
	// Output:
	// "250" final=false err=""
	// "250" final=true err=""
	// "421" final=true err="not ended by CRLF"
	// "" final=false err="no reply code"
}

// The fuzz campaign reads go test's output: the executions of the last
// progress line, and whether a crasher was written.
func Example_fuzzOutcome() {
	out := "fuzz: elapsed: 9s, execs: 81234 (9026/sec), new interesting: 0 (total: 12)\n" +
		"--- FAIL: FuzzWalk (9.12s)\n    Failing input written to testdata/fuzz/FuzzWalk/9f86d081884c7d65\n"
	execs, result, crasher := fuzzOutcome(out, fmt.Errorf("exit status 1"))
	fmt.Println(execs, result, crasher)
	// Output:
	// 81234 crasher testdata/fuzz/FuzzWalk/9f86d081884c7d65
}
