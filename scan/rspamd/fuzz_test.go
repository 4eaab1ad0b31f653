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
	f.Add([]byte(`{"score":0,"action":"greylist","messages":{"smtp_message":"later"},"milter":{"add_headers":{"A":{"value":"1","order":1},"B":[{"value":"2"},"3"]},"remove_headers":{"C":0,"D":[1,-1]}}}`))
	f.Add([]byte(`{"score":0,"action":"no action","dkim-signature":["v=1; a","v=1; b"],"subject":"x"}`))
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
		// The milter block stays within its bounds.
		total := 0
		for _, h := range res.AddHeaders {
			total += len(h.Name) + len(h.Value)
			if len(h.Value) > maxFieldBytes {
				t.Fatalf("field of %d bytes", len(h.Value))
			}
		}
		if len(res.AddHeaders) > maxAddHeaders || len(res.RemoveHeaders) > maxRemoveHeaders || total > maxAddBytes ||
			len(res.Message) > maxText || len(res.Subject) > maxText {
			t.Fatalf("unbounded: %d fields (%d bytes), %d removals", len(res.AddHeaders), total, len(res.RemoveHeaders))
		}
	})
}
