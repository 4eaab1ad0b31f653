package webui

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

// The header parser never fails or panics, and gives printable UTF-8.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"From: a@example.net\r\nSubject: hi\r\n\r\nbody",
		"Subject: one\r\n two\r\n\r\n",
		"Subject: =?UTF-8?B?w6k=?= =?ISO-8859-1?Q?Caf=E9?=\r\n\r\n",
		"From sender Mon Jan  1 00:00:00 2024\nX: y\n",
		" stray\r\n: nothing\r\nA\r\n",
		"Subject: \xff\x00\x1b\r\n\r\n",
		"Subject: =?x?Q?=ZZ?=\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fields := parseHeader(data, 50)
		if len(fields) > 50 {
			t.Fatalf("%d fields", len(fields))
		}
		for _, fl := range fields {
			if fl.Name == "" || strings.ContainsAny(fl.Name, ": \t\r\n") {
				t.Fatalf("field name %q", fl.Name)
			}
			if !utf8.ValidString(fl.Value) || strings.ContainsAny(fl.Value, "\r\n\x00") {
				t.Fatalf("field value %q", fl.Value)
			}
		}
	})
}

// Whatever a message holds, its page renders, and renders no markup of
// the message's: no script, no element a message could smuggle in.
func FuzzMessagePage(f *testing.F) {
	ui, err := New(Config{Queue: &fakeQueue{}, Authenticate: authenticate, MaxView: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"Subject: <script>alert(1)</script>\r\n\r\n<script>x</script>",
		"Content-Type: text/html\r\n\r\n<script>alert(1)</script><img src=x onerror=alert(1)>",
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
			"--b\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Disposition: attachment; filename=\"<svg onload=x>\"\r\n\r\nAAA\r\n--x--\r\n",
		deepNesting(3),
		"Content-Type: text/plain; charset=iso-2022-jp\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := ui.viewBytes(context.Background(), data)
		p := &page{User: "bob", CSRF: "token", Msg: &msgPage{listItem: listItem{ID: "Q1", Subject: "s", Rcpts: []string{"bob"}}, View: v}}
		var b strings.Builder
		if err := ui.pages["message"].ExecuteTemplate(&b, "layout", p); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !utf8.ValidString(out) {
			t.Fatal("page is not UTF-8")
		}
		// The page's own markup has a fixed set of elements; anything the
		// message said arrives escaped.
		low := strings.ToLower(out)
		for _, bad := range []string{"<script", "<img", "<svg onload", "<iframe", "<b>"} {
			if strings.Contains(low, bad) {
				t.Fatalf("page contains %q", bad)
			}
		}
	})
}
