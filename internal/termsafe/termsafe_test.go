package termsafe

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.test":               "alice@example.test",
		"bob\x1b]0;pwned\x07@example.test": "bob?]0;pwned?@example.test",
		"\x1b[2J\x1b[1;1H":                 "?[2J?[1;1H",
		"a\u009b31mb":                      "a?31mb", // the one-character CSI
		"\u202egnp.exe":                    "?gnp.exe",
		"zero\u200bwidth":                  "zero?width",
		"tab\there":                        "tab?here",
		"line\r\nbreak\nx\ry":              "line??break?x?y",
		"bad\xff\xfeutf8":                  "bad??utf8",
		"Jürgen 山田 🙂 \u00a0nbsp":           "Jürgen 山田 🙂 \u00a0nbsp",
		"del\x7f":                          "del?",
		"nul\x00":                          "nul?",
		"line\u2028sep":                    "line?sep",
		"":                                 "",
	} {
		assert.Equal(t, want, String(in), "%q", in)
	}
}

func TestText(t *testing.T) {
	assert.Equal(t, "Subject: hi\r\nFrom: \tx\n\nbody ?[31m red?? \u00e9",
		Text("Subject: hi\r\nFrom: \tx\n\nbody \x1b[31m red\r\x07 \u00e9"))
	s := "plain text\r\n"
	assert.Equal(t, s, Text(s))
}

func TestWriter(t *testing.T) {
	var b strings.Builder
	w := NewWriter(&b)
	for _, chunk := range []string{"a\r", "\nb \xc3", "\xa9 c\x1b", "[0m\xe2\x80", "\xae\r"} {
		n, err := w.Write([]byte(chunk))
		require.NoError(t, err)
		assert.Equal(t, len(chunk), n)
	}
	require.NoError(t, w.Close())
	assert.Equal(t, "a\r\nb é c?[0m??", b.String())
}

// FuzzText: whatever the input and however it is split between writes,
// the output has no character a terminal acts on, String's has no line
// break at all, and the Writer writes exactly what Text returns.
func FuzzText(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[2J\r\n", "a\r\rb\n\r\n", "\u202e\u009b\xff\xc3", "é🙂\t"} {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, s string, split uint8) {
		for _, c := range []struct {
			out   string
			lines bool
		}{{String(s), false}, {Text(s), true}} {
			out := c.out
			if !utf8.ValidString(out) {
				t.Fatalf("invalid UTF-8 out of %q: %q", s, out)
			}
			for i, r := range out {
				ok := shown(r) || c.lines && (r == '\n' || r == '\t' || r == '\r' && strings.HasPrefix(out[i+1:], "\n"))
				if !ok {
					t.Fatalf("%q kept in %q (from %q)", r, out, s)
				}
			}
		}
		if strings.ContainsAny(String(s), "\r\n\t") {
			t.Fatalf("line break in String(%q)", s)
		}
		var b strings.Builder
		w := NewWriter(&b)
		step := int(split%7) + 1
		for i := 0; i < len(s); i += step {
			w.Write([]byte(s[i:min(i+step, len(s))]))
		}
		w.Close()
		if b.String() != Text(s) {
			t.Fatalf("writer %q, Text %q (input %q, step %d)", b.String(), Text(s), s, step)
		}
	})
}
