package rspamd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/postern/postern/scan/scanner"
)

// Bounds on what rspamd may ask of a message: a handful of fields is
// what its modules add (milter_headers' few, a DKIM signature, an ARC
// set of three); anything past these is dropped.
const (
	maxAddHeaders    = 32
	maxRemoveHeaders = 32
	maxFieldBytes    = 16 << 10 // a DKIM or ARC field with a 4096-bit key is ~1 KiB
	maxAddBytes      = 64 << 10
	maxText          = 512 // smtp_message and subject
)

// truncate cuts s to at most n bytes, on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// addField appends a field within the bounds.
func addField(fields []scanner.HeaderField, name, value string) []scanner.HeaderField {
	total := 0
	for _, f := range fields {
		total += len(f.Name) + len(f.Value)
	}
	if len(fields) >= maxAddHeaders || len(value) > maxFieldBytes || total+len(name)+len(value) > maxAddBytes {
		return fields
	}
	return append(fields, scanner.HeaderField{Name: name, Value: value})
}

// ordered is one field to add with rspamd's "order": 0 and up is the
// position from the top, -1 (or none) the end.
type ordered struct {
	field scanner.HeaderField
	order int
}

// parseMilter reads the milter block: {"add_headers": {name: value},
// "remove_headers": {name: index}}, where a value is a string, an object
// {"value": v, "order": n} or a list of these, and an index a number or
// a list of numbers. Names keep the reply's order (a JSON object read
// token by token: Go's maps would lose it). The fields to add come out
// in the order they should stand, top first.
func parseMilter(raw json.RawMessage) ([]scanner.HeaderField, []scanner.HeaderRemoval, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	var adds []ordered
	var rems []scanner.HeaderRemoval
	err := eachMember(raw, func(key string, val json.RawMessage) error {
		switch key {
		case "add_headers":
			return eachMember(val, func(name string, v json.RawMessage) error {
				return addValues(&adds, name, v)
			})
		case "remove_headers":
			return eachMember(val, func(name string, v json.RawMessage) error {
				return removeIndexes(&rems, name, v)
			})
		}
		return nil // other members: nothing for us
	})
	if err != nil {
		return nil, nil, err
	}
	// Stable: fields with an order by it, then those without, as given.
	slices.SortStableFunc(adds, func(a, b ordered) int {
		switch {
		case a.order < 0 && b.order < 0:
			return 0
		case a.order < 0:
			return 1
		case b.order < 0:
			return -1
		}
		return a.order - b.order
	})
	var out []scanner.HeaderField
	for _, a := range adds {
		out = addField(out, a.field.Name, a.field.Value)
	}
	return out, rems, nil
}

// eachMember calls fn for each member of a JSON object, in order.
func eachMember(raw json.RawMessage, fn func(key string, val json.RawMessage) error) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want an object, got %v", tok)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return err
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}

type orderedValue struct {
	Value *string `json:"value"`
	Order *int    `json:"order"`
}

func addValues(adds *[]ordered, name string, v json.RawMessage) error {
	if len(*adds) >= maxAddHeaders {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		*adds = append(*adds, ordered{scanner.HeaderField{Name: name, Value: s}, -1})
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		for _, item := range list {
			if err := addValues(adds, name, item); err != nil {
				return err
			}
		}
		return nil
	}
	var ov orderedValue
	if err := json.Unmarshal(v, &ov); err != nil || ov.Value == nil {
		return fmt.Errorf("header %q: value %s is not a string, {value, order} or a list", truncate(name, 64), truncate(string(v), 64))
	}
	order := -1
	if ov.Order != nil {
		order = *ov.Order
	}
	*adds = append(*adds, ordered{scanner.HeaderField{Name: name, Value: *ov.Value}, order})
	return nil
}

func removeIndexes(rems *[]scanner.HeaderRemoval, name string, v json.RawMessage) error {
	var idx []int
	var one int
	switch {
	case json.Unmarshal(v, &one) == nil:
		idx = []int{one}
	case json.Unmarshal(v, &idx) == nil:
	default:
		return fmt.Errorf("remove %q: index %s is not a number or a list", truncate(name, 64), truncate(string(v), 64))
	}
	for _, i := range idx {
		if len(*rems) >= maxRemoveHeaders {
			return nil
		}
		*rems = append(*rems, scanner.HeaderRemoval{Name: name, Index: i})
	}
	return nil
}

// stringOrList reads a string or a list of strings.
func stringOrList(raw json.RawMessage) ([]string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("not a string or a list of strings")
	}
	return list, nil
}
