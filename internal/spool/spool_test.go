package spool

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A message larger than the memory limit moves to the file and reads back
// the same at every offset, whether written or read from a reader.
func TestSpoolMemoryAndFile(t *testing.T) {
	msg := []byte(strings.Repeat("0123456789abcdef", 1000)) // 16000 bytes
	for _, tc := range []struct {
		name string
		fill func(s *Spool) error
	}{
		{"write", func(s *Spool) error {
			for i := 0; i < len(msg); i += 700 {
				if _, err := s.Write(msg[i:min(i+700, len(msg))]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"readfrom", func(s *Spool) error { _, err := s.ReadFrom(bytes.NewReader(msg)); return err }},
	} {
		for _, mem := range []int{0, 100, 4096, 1 << 20} {
			t.Run(tc.name, func(t *testing.T) {
				s := New(mem, t.TempDir(), 0, 0)
				defer s.Release()
				require.NoError(t, tc.fill(s))
				require.Equal(t, int64(len(msg)), s.Size())
				got, err := io.ReadAll(io.NewSectionReader(s, 0, s.Size()))
				require.NoError(t, err)
				assert.Equal(t, msg, got)
				p := make([]byte, 10)
				n, err := s.ReadAt(p, 15995)
				assert.Equal(t, 5, n)
				assert.ErrorIs(t, err, io.EOF)
			})
		}
	}
}

// The bound holds on either path: one byte over is ErrTooLarge, and the
// spool lets go of what it held.
func TestSpoolMax(t *testing.T) {
	for _, mem := range []int{10, 1 << 20} {
		s := New(mem, t.TempDir(), 0, 100)
		_, err := s.Write(make([]byte, 100))
		require.NoError(t, err)
		_, err = s.Write([]byte{'x'})
		require.ErrorIs(t, err, ErrTooLarge)

		s = New(mem, t.TempDir(), 0, 100)
		_, err = s.ReadFrom(bytes.NewReader(make([]byte, 101)))
		require.ErrorIs(t, err, ErrTooLarge)
		n, _ := s.ReadAt(make([]byte, 1), 0)
		assert.Zero(t, n, "nothing kept")
	}
}
