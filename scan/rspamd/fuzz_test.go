package rspamd

import (
	"errors"
	"math"
	"testing"
)

// FuzzParseReply: any body parses or fails with a protocol or server
// error; a parsed reply has an action, finite scores and named symbols.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte(gtubeReply))
	f.Add([]byte(`{"score":1,"action":"no action","symbols":{"X":{}}}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Add([]byte(`{"score":1e999,"action":"reject"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ParseReply(data)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrServer) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if res.Action == "" || math.IsNaN(res.Score) || math.IsInf(res.Score, 0) || math.IsInf(res.Threshold, 0) {
			t.Fatalf("%+v", res)
		}
		for _, s := range res.Symbols {
			if s.Name == "" || math.IsNaN(s.Score) {
				t.Fatalf("%+v", res)
			}
		}
	})
}
