package testutil

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/postern/postern"
)

// Message parses raw (header, empty line, body) as a message, with the
// default header limit.
func Message(t testing.TB, raw string) *postern.Message {
	t.Helper()
	m, err := postern.NewMessage(strings.NewReader(raw), int64(len(raw)), 0)
	require.NoError(t, err)
	return m
}

// Render returns m as it is written out, edits applied.
func Render(t testing.TB, m *postern.Message) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, m.Render(&b))
	return b.String()
}
