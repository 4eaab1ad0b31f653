package main

import (
	"bufio"
	"strings"
	"testing"
)

// The harness reads two kinds of peer output: smtp-sink's counter lines
// and SMTP replies. Neither may panic on anything a peer could print.

func FuzzSinkOutput(f *testing.F) {
	for _, s := range []string{"\rsess=1 quit=1 mesg=1", "sess=2003 quit=2003 mesg=4000\r\n", "sess= mesg=",
		"sess=99999999999999999999 x mesg=1", "\r\r\n\n", "smtp-sink: fatal: bind"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Split(splitCR)
		for sc.Scan() {
			line := sc.Text()
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("line %q still holds a line end", line)
			}
			if s, m, ok := parseSinkCounter(line); ok && (s < 0 || m < 0) {
				t.Fatalf("negative count from %q", line)
			}
		}
	})
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 ready\r\n", "250-a\r\n250 b\r\n", "354\r\n", "2\r\n", "250-\r\n", "xyz abc\r\n", "-12 x\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		code, _, err := readReply(bufio.NewReader(strings.NewReader(in)))
		if err == nil && (code < 0 || code > 999) {
			t.Fatalf("code %d from %q", code, in)
		}
	})
}
