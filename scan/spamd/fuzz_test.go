package spamd

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"testing"
)

// FuzzParseResponse: any response parses or fails with a protocol or
// server error; a parsed one is scored with finite numbers.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(response(Symbols, "GTUBE,MISSING_DATE")), uint8(Symbols))
	f.Add([]byte(response(Report, report)), uint8(Report))
	f.Add([]byte("SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.1 / 5.0\r\n\r\n"), uint8(Check))
	f.Add([]byte("SPAMD/1.0 76 Bad header line\r\n"), uint8(Symbols))
	f.Add([]byte("SPAMD/1.1 0 EX_OK\nSpam: yes ; 1e308 / -0\nContent-length: 3\n\na,b"), uint8(Symbols))
	f.Fuzz(func(t *testing.T, data []byte, cmd uint8) {
		c := Command(cmd % 3)
		res, err := parseResponse(bufio.NewReader(bytes.NewReader(data)), c)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrServer) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if !res.Scored || math.IsNaN(res.Score) || math.IsInf(res.Score, 0) || math.IsNaN(res.Threshold) || math.IsInf(res.Threshold, 0) {
			t.Fatalf("%+v", res)
		}
		for _, s := range res.Symbols {
			if s.Name == "" {
				t.Fatalf("empty symbol in %+v", res)
			}
		}
	})
}

// FuzzParseReport: the report table parser never panics and names every
// symbol.
func FuzzParseReport(f *testing.F) {
	f.Add(report)
	f.Add("----\n1 A\n  continued\n-x B c\n")
	f.Fuzz(func(t *testing.T, body string) {
		for _, s := range parseReport(body) {
			if s.Name == "" || math.IsNaN(s.Score) {
				t.Fatalf("%+v", s)
			}
		}
	})
}
