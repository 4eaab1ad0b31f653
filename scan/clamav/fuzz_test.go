package clamav

import (
	"errors"
	"strings"
	"testing"

	"github.com/postern/postern/scan/scanner"
)

// FuzzParseReply: any reply parses to a result or to a protocol or
// server error, never panics; a result is infected exactly when it names
// viruses, and every name is non-empty.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"stream: OK", "stream: Eicar-Signature FOUND", "1: stream: OK",
		"stream: A(0123:45) FOUND\nstream: B FOUND", "INSTREAM size limit exceeded. ERROR", "", "\x00\x00", "FOUND", ": FOUND"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		res, err := ParseReply(reply)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrServer) {
				t.Fatalf("error %v", err)
			}
			if res.Infected {
				t.Fatalf("error with an infected result")
			}
			return
		}
		if res.Infected != (len(res.Viruses) > 0) {
			t.Fatalf("%+v", res)
		}
		for _, v := range res.Viruses {
			if strings.TrimSpace(v) == "" {
				t.Fatalf("empty virus name in %+v", res)
			}
		}
		if res.Scanner != "clamav" {
			t.Fatal(res.Scanner)
		}
		_ = scanner.ErrScanner
	})
}
