package scan

import (
	"regexp"
	"strings"

	"golang.org/x/net/html"
)

// urlPattern finds URLs in plain text: a scheme the web uses, or a bare
// "www." host, up to white space or a character RFC 3986 §2 never allows
// unescaped.
var urlPattern = regexp.MustCompile(`(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>"'\x60{}|\\^\[\]\x00-\x1f\x7f]+`)

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
	st.urls[u] = true
	st.c.URLs = append(st.c.URLs, u)
}

func (st *walkState) plainURLs(s string) {
	if len(st.c.URLs) >= st.w.lim.MaxURLs {
		return
	}
	for _, u := range urlPattern.FindAllString(s, -1) {
		st.addURL(u)
	}
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
