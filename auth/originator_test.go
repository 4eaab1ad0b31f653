package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

func TestCheckOriginator(t *testing.T) {
	ours := func(addr string) bool { return strings.EqualFold(postern.AddrDomain(addr), "example.com") }
	for _, tc := range []struct {
		name, header string
		field, addr  string // "" field: accepted
		problem      string
	}{
		{"one mailbox", "From: Alice <alice@example.com>", "", "", ""},
		{"comment form", "From: alice@example.com (Alice)", "", "", ""},
		{"folded", "From: Alice\r\n <alice@example.com>,\r\n\tbob@example.com", "", "", ""},
		{"group", "From: Team: alice@example.com, bob@example.com;", "", "", ""},
		{"encoded display name", "From: =?utf-8?b?Qm9i?= <bob@example.com>", "", "", ""},
		{"display name that looks like an address", "From: \"ceo@example.net\" <alice@example.com>", "", "", ""},
		{"sender ours", "From: alice@example.com\r\nSender: bob@example.com", "", "", ""},
		{"foreign author", "From: CEO <ceo@example.net>", "From", "ceo@example.net", "not owned by the user"},
		{"second author foreign", "From: alice@example.com, ceo@example.net", "From", "ceo@example.net", "not owned by the user"},
		{"group member foreign", "From: Board: alice@example.com, ceo@example.net;", "From", "ceo@example.net", "not owned by the user"},
		{"quoted local part hiding a domain", "From: \"alice@example.com\"@example.net", "From", "alice@example.com@example.net", "not owned by the user"},
		{"encoded word as address", "From: =?utf-8?q?ceo=40example.net?=", "From", "", "cannot be parsed"},
		{"foreign sender", "From: alice@example.com\r\nSender: ceo@example.net", "Sender", "ceo@example.net", "not owned by the user"},
		{"two senders", "Sender: a@example.com\r\nFrom: alice@example.com\r\nSENDER: b@example.com", "Sender", "", "2 fields"},
		{"sender list", "From: alice@example.com\r\nSender: a@example.com, b@example.com", "Sender", "", "more than one mailbox"},
		{"two From fields", "From: alice@example.com\r\nFROM: ceo@example.net", "From", "", "2 fields"},
		{"no From", "Subject: hi", "From", "", "missing"},
		{"empty group", "From: undisclosed:;", "From", "", "names no mailbox"},
		{"empty", "From: ", "From", "", "cannot be parsed"},
		{"obsolete route", "From: <@relay.example:alice@example.com>", "From", "", "cannot be parsed"},
		{"escape sequence", "From: alice@example.com\x1b]0;x\x07", "From", "", "control character"},
		{"NUL", "From: alice@example.com\x00ceo@example.net", "From", "", "control character"},
		{"bare CR", "From: alice@example.com\r, ceo@example.net", "From", "", "bare CR or LF"},
		{"invalid UTF-8", "From: \xff <alice@example.com>", "From", "", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMessage(t, tc.header+"\r\n\r\nbody\r\n")
			err := CheckOriginator(m, ours)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrOriginator)
			var oe *OriginatorError
			require.True(t, errors.As(err, &oe))
			assert.Equal(t, tc.field, oe.Field)
			assert.Equal(t, tc.addr, oe.Addr)
			assert.Contains(t, oe.Problem, tc.problem)
		})
	}
}

// FuzzCheckOriginator is differential: whenever the sender binding
// accepts a header for a user bound to example.com, the DKIM signer's
// reading of the same header (FromDomain, which picks the key) names
// example.com or nothing: binding and signing never disagree about whose
// mail it is.
func FuzzCheckOriginator(f *testing.F) {
	for _, s := range []string{
		"From: Alice <alice@example.com>",
		"From: alice@example.com, ceo@example.net",
		"From: Team: alice@example.com, bob@example.com;",
		"From: \"alice@example.com\"@example.net",
		"From: =?utf-8?q?ceo=40example.net?= <alice@example.com>",
		"From: alice@example.com\r\nSender: ceo@example.net",
		"From: alice@example.com\r\nFrom: ceo@example.net",
		"From: alice@EXAMPLE.com (x) , <bob@example.com>",
		"From: alice@example.com.",
		"From: alice@xn--exmple-cua.com",
		"From : alice@example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		m, err := postern.NewMessage(strings.NewReader(header+"\r\n\r\nbody\r\n"), int64(len(header)+8), 0)
		if err != nil {
			return
		}
		if CheckOriginator(m, func(addr string) bool { return postern.AddrDomain(addr) == "example.com" }) != nil {
			return
		}
		d, err := FromDomain(m)
		if err == nil && d != "example.com" {
			t.Fatalf("binding accepted %q but the signer would sign for %q", header, d)
		}
	})
}
