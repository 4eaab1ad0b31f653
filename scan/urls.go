package scan

import (
	"strings"

	"golang.org/x/net/html"
)

// URLs in plain text are what the regular expression
//
//	(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'\x60{}|\\^\[\]\x00-\x1f\x7f]+
//
// finds: a scheme the web uses, or a bare "www." host, after a word
// boundary, up to white space or a character RFC 3986 §2 never allows
// unescaped. scanURLs finds them by hand: the regexp package runs that
// expression with its backtracker at every word boundary, which made URL
// extraction the largest cost of walking ordinary text. FuzzScanURLs
// holds scanURLs to the expression's matches.

const maxURLLength = 2048

// normalizeURL trims the punctuation that ends a sentence rather than the
// URL, and gives bare "www." hosts a scheme; "" means not a URL.
func normalizeURL(u string) string {
	u = strings.TrimSpace(u)
	u = strings.TrimRight(u, ".,;:!?)]}'\"")
	if len(u) > maxURLLength {
		u = u[:maxURLLength]
	}
	lower := strings.ToLower(u)
	switch {
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"), strings.HasPrefix(lower, "ftp://"):
		if len(u) <= len("https://") {
			return ""
		}
		return u
	case strings.HasPrefix(lower, "www."):
		if len(u) <= len("www.") {
			return ""
		}
		return "http://" + u
	case strings.HasPrefix(lower, "//"):
		return "http:" + u
	}
	return ""
}

func (st *walkState) addURL(u string) {
	u = normalizeURL(u)
	if u == "" || st.urls[u] || len(st.c.URLs) >= st.w.lim.MaxURLs {
		return
	}
	if st.urls == nil {
		st.urls = map[string]bool{}
	}
	st.urls[u] = true
	st.c.URLs = append(st.c.URLs, u)
}

func (st *walkState) plainURLs(s string) {
	scanURLs(s, func(u string) bool {
		st.addURL(u)
		return len(st.c.URLs) < st.w.lim.MaxURLs
	})
}

// scanURLs calls fn with every URL in s, left to right, as FindAllString
// of the expression above would return them, until fn returns false.
func scanURLs(s string, fn func(string) bool) {
	for i := 0; i < len(s); {
		j := strings.IndexAny(s[i:], "hHfFwW")
		if j < 0 {
			return
		}
		j += i
		i = j + 1
		// \b: the letter at j is a word character (ASCII, as \b has
		// it), so the one before must not be.
		if j > 0 && isWordByte(s[j-1]) {
			continue
		}
		n := urlPrefix(s[j:])
		if n == 0 {
			continue
		}
		k := j + n
		for k < len(s) && isURLByte(s[k]) {
			k++
		}
		if k == j+n {
			continue // the expression needs one more character
		}
		if !fn(s[j:k]) {
			return
		}
		i = k
	}
}

// urlPrefix returns the length of the scheme or "www." that s starts
// with, 0 for none. Case is ignored the way (?i) ignores it, by Unicode
// simple folding: the only letter of these with a fold outside ASCII is
// "s", which also matches "ſ" (U+017F).
func urlPrefix(s string) int {
	switch {
	case hasFoldPrefix(s, "www."):
		return len("www.")
	case hasFoldPrefix(s, "ftp://"):
		return len("ftp://")
	case !hasFoldPrefix(s, "http"):
		return 0
	}
	n := len("http")
	switch {
	case len(s) > n && (s[n] == 's' || s[n] == 'S'):
		n++
	case strings.HasPrefix(s[n:], "\u017f"):
		n += len("\u017f")
	}
	// After "https" the expression could give the "s" back, but "://"
	// cannot follow "http" then.
	if strings.HasPrefix(s[n:], "://") {
		return n + len("://")
	}
	return 0
}

// hasFoldPrefix reports whether s starts with prefix, ASCII letters
// matched in either case; prefix is lower case.
func hasFoldPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c, p := s[i], prefix[i]
		if c != p && !(p >= 'a' && p <= 'z' && c == p-'a'+'A') {
			return false
		}
	}
	return true
}

// isWordByte is \b's word character: ASCII letters, digits and "_". A
// byte of a multi-byte rune is none.
func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// isURLByte is the expression's character class, byte by byte: every
// byte of a non-ASCII rune (and of invalid UTF-8, which the regexp sees
// as U+FFFD) is in it.
func isURLByte(c byte) bool {
	if c >= 0x80 {
		return true
	}
	if c <= ' ' || c == 0x7f {
		return false
	}
	return strings.IndexByte("<>\"'`{}|\\^[]", c) < 0
}

// textURLs collects the URLs of a text part and, for HTML, its visible
// text.
func (st *walkState) textURLs(p *Part) {
	s := truncUTF8(p.text, st.w.lim.MaxTextBytes)
	if p.ContentType != "text/html" {
		st.plainURLs(s)
		return
	}
	var vis strings.Builder
	z := html.NewTokenizer(strings.NewReader(s))
	z.SetMaxBuf(st.w.lim.MaxTextBytes)
	skip := 0 // inside <script> or <style>
	for {
		switch z.Next() {
		case html.ErrorToken:
			p.visible = vis.String()
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			tag := string(name)
			if tag == "script" || tag == "style" {
				skip++
			}
			for more {
				var key, val []byte
				key, val, more = z.TagAttr()
				switch string(key) {
				case "href", "src", "action", "formaction", "background", "cite", "data", "poster":
					st.addURL(string(val))
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if tag := string(name); (tag == "script" || tag == "style") && skip > 0 {
				skip--
			}
		case html.TextToken:
			if skip > 0 {
				continue
			}
			t := string(z.Text())
			st.plainURLs(t)
			if vis.Len() > 0 {
				vis.WriteByte(' ')
			}
			vis.WriteString(strings.TrimSpace(t))
		}
	}
}
