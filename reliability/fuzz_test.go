package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseReplyLine: any line is classified without panicking, and a
// line found well formed really is one (RFC 5321 §4.2, §4.5.3.1.5).
func FuzzParseReplyLine(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n", "221\r\n", "550\x00\r\n", "999 x\r\n", "", "25", "250", "\r\n",
		"250 " + strings.Repeat("a", 600) + "\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		l := parseReplyLine(line)
		if l.Final && l.Code == "" {
			t.Fatalf("final without a code: %+v", l)
		}
		if l.Code != "" && (len(l.Code) != 3 || l.Code[0] < '2' || l.Code[0] > '5' || !strings.HasPrefix(line, l.Code)) {
			t.Fatalf("code %q of %q", l.Code, line)
		}
		if l.Err == "" && (l.Code == "" || !strings.HasSuffix(line, "\r\n") || len(line) > maxReplyLine) {
			t.Fatalf("%q passed as well formed: %+v", line, l)
		}
	})
}

// FuzzFuzzOutcome: any go test output is classified; a crasher path is
// always one go test would write.
func FuzzFuzzOutcome(f *testing.F) {
	f.Add("fuzz: elapsed: 3s, execs: 12 (4/sec), new interesting: 0 (total: 1)\nPASS\n", false)
	f.Add("Failing input written to testdata/fuzz/FuzzX/abc\n", true)
	f.Add("fuzz: elapsed: 1s, execs: 99999999999999999999 (1/sec)\ncontext deadline exceeded\n", true)
	f.Fuzz(func(t *testing.T, out string, failed bool) {
		var err error
		if failed {
			err = errors.New("exit status 1")
		}
		execs, result, crasher := fuzzOutcome(out, err)
		if execs < 0 {
			t.Fatalf("execs %d", execs)
		}
		switch result {
		case fuzzCrasher:
			if !strings.HasPrefix(crasher, "testdata/fuzz/") || strings.ContainsAny(crasher, " \t\n") {
				t.Fatalf("crasher path %q", crasher)
			}
		case fuzzOK:
			if err != nil {
				t.Fatal("a failed run classified ok")
			}
		case fuzzDeadline, fuzzFail:
			if err == nil {
				t.Fatalf("a passing run classified %s", result)
			}
		default:
			t.Fatalf("result %q", result)
		}
	})
}

// FuzzWireTxns: any bytes a client sent are split without panicking;
// message text never runs past an end of data, and a path is a prefix of
// its argument.
func FuzzWireTxns(f *testing.F) {
	f.Add([]byte("MAIL FROM:<a@b> SIZE=1\r\nRCPT TO:<\"c d\"@e>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("MAIL FROM:<>\r\nDATA\r\n.\r\n"))
	f.Add([]byte("RCPT TO:<x>\r\nDATA\r\n\r\n.\r\r\n"))
	f.Add([]byte("mail from:<\"a\\\"b>\"@c>\r\nrcpt to:<d>\r\ndata\r\nno end"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		for _, txn := range wireTxns(wire) {
			if bytes.Contains(txn.Data, []byte("\r\n.\r\n")) {
				t.Fatalf("message text past an end of data: %q", txn.Data)
			}
			for _, a := range append([]string{txn.Mail}, txn.Rcpts...) {
				if p := wirePath(a); !strings.HasPrefix(a, p) {
					t.Fatalf("path %q of %q", p, a)
				}
			}
		}
	})
}
