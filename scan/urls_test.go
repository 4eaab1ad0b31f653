package scan

import (
	"regexp"
	"slices"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
)

// urlPattern is the expression scanURLs stands for (see urls.go).
var urlPattern = regexp.MustCompile(`(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'\x60{}|\\^\[\]\x00-\x1f\x7f]+`)

func scanAll(s string) []string {
	var out []string
	scanURLs(s, func(u string) bool {
		out = append(out, u)
		return true
	})
	return out
}

var urlSeeds = []string{
	"See https://example.com/x and www.example.org, or ftp://files.example.net/a.",
	"xhttp://no _www.no 1www.no é.www.yes \xffhttp://yes",
	"HTTPS://UP.example WwW.Mixed.example FTP://x hTtP://y",
	"http:// x https:// www. https//no http:/no",
	"httpſ://long-s.example httpſs://no http\u017F://x",
	"https://a<b>c\"d'e`f{g}h|i\\j^k[l]m\x00n\x1fo\x7fp q\tr\ns",
	"http://ü.example/ä?ö=ß#€ http://\xc3(bad",
	"https://https://twice www.www.x",
	"<a href=\"http://in.attr\">http://in.text</a>",
	"",
}

// TestScanURLs pins a few cases against the expression.
func TestScanURLs(t *testing.T) {
	for _, s := range urlSeeds {
		want := urlPattern.FindAllString(s, -1)
		assert.Equal(t, want, scanAll(s), "%q", s)
	}
	// ")" is in the class: normalizeURL trims it later.
	assert.Equal(t, []string{"http://a)", "https://b"}, scanAll("(http://a) https://b"))
}

// TestURLPrefixFolds checks urlPrefix's claim: of the letters in the
// prefixes, only "s" folds to a rune outside ASCII, and that rune is
// U+017F.
func TestURLPrefixFolds(t *testing.T) {
	for _, c := range "wftphs" {
		var orbit []rune
		for r := unicode.SimpleFold(c); r != c; r = unicode.SimpleFold(r) {
			orbit = append(orbit, r)
		}
		slices.Sort(orbit)
		want := []rune{unicode.ToUpper(c)}
		if c == 's' {
			want = append(want, '\u017f')
		}
		assert.Equal(t, want, orbit, "%c", c)
	}
}

// FuzzScanURLs: scanURLs finds exactly what the expression finds, in the
// same order, on any text, valid UTF-8 or not.
func FuzzScanURLs(f *testing.F) {
	for _, s := range urlSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := urlPattern.FindAllString(s, -1)
		if got := scanAll(s); !slices.Equal(got, want) {
			t.Fatalf("%q:\n got %q\nwant %q", s, got, want)
		}
	})
}
